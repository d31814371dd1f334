"""Per-batch cost of our 'cifar' pipeline with `data._LookupStep` as is vs fixed.

`bench/host_overhead.py --profile` shows `_LookupStep` (the uint8 -> float32
lookup of `Standardize`/`Rescale`) as the largest host cost per step: it
runs one `np.take` per channel and writes each into a strided channel view
of the output. The candidate fix does one gather over all channels,
``table[channel, images]``, whose output is contiguous. This script checks
the two give identical batches and times `train_batches(preprocess=...)`
with each, interleaved over rounds, by monkeypatching `wrn_trax.data`.

Usage::

  python bench/standardize_fix.py
  python bench/standardize_fix.py --batch 128 --rounds 7 --batches 50
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # pylint: disable=g-import-not-at-top,wrong-import-position


def LookupStepOneGather(table):  # pylint: disable=invalid-name
  """The fix: one fancy-index gather over every channel at once."""
  table = np.ascontiguousarray(table)

  def lookup(generator):
    for images, *rest in generator:
      if images.dtype != np.uint8:
        raise ValueError(f'expected uint8 images, got {images.dtype}.')
      rows = np.minimum(np.arange(images.shape[-1]), len(table) - 1)
      yield (table[rows, images], *rest)
  return lookup


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--batch', type=int, default=128, help='default: 128')
  p.add_argument('--preprocess', default='cifar',
                 help="'cifar' (default), 'standardize' or 'svhn'")
  p.add_argument('--rounds', type=int, default=7, help='default: 7')
  p.add_argument('--batches', type=int, default=50,
                 help='batches per stream and round (default: 50)')
  p.add_argument('--json', default='standardize_fix',
                 help="name of bench/results/<name>.json ('' = none)")
  args = p.parse_args(argv)
  from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
  ds = _common.synthetic_dataset(n_train=8192)
  stock = data_lib._LookupStep  # pylint: disable=protected-access

  def stream(step):
    data_lib._LookupStep = step  # pylint: disable=protected-access
    try:
      return data_lib.train_batches(ds, args.batch,
                                    preprocess=args.preprocess, seed=0)
    finally:
      data_lib._LookupStep = stock  # pylint: disable=protected-access

  streams = {'stock': stream(stock), 'one_gather': stream(LookupStepOneGather)}
  a, b = next(streams['stock']), next(streams['one_gather'])
  identical = all(np.array_equal(x, y) for x, y in zip(a, b))
  ms = {k: [] for k in streams}
  for _ in range(args.rounds):
    for name, s in streams.items():
      t0 = time.perf_counter()
      for _ in range(args.batches):
        next(s)
      ms[name].append((time.perf_counter() - t0) / args.batches * 1e3)
  ratios = [s / f for s, f in zip(ms['stock'], ms['one_gather'])]
  rows = [[k, _common.fmt_spread(_common.spread(v), 3)] for k, v in ms.items()]
  rows.append(['speed-up stock / fix',
               _common.fmt_spread(_common.spread(ratios), 2) + '×'])
  print(f'batch {args.batch}, preprocess {args.preprocess}, {args.rounds} '
        f'rounds x {args.batches} batches; outputs identical: {identical}\n')
  print(_common.markdown_table(['_LookupStep', 'ms per batch, median '
                                '(min–max)'], rows))
  if args.json:
    print('\nwrote', _common.write_json(args.json, dict(
        args=vars(args), identical=identical, ms_per_batch=ms,
        speedup=_common.spread(ratios))))


if __name__ == '__main__':
  main()
