"""Test error of a finished run against the BatchNorm statistics it is read with.

For the final weights of one run folder, the whole test split is evaluated:

  - with trax's running BN averages (what the checkpoint holds),
  - with precise BN statistics over N training batches, for each N given and
    for several draws of those batches (the spread is the sampling noise),
  - in train mode (each test batch normalised by its own statistics, as the
    seed notebooks' in-training eval did), over shuffled batches.

It picks the default of the recipe field `precise_bn_batches`. Example, on a
run of the seed recipe on the CIFAR-10 JPEG copy:

  python bench/precise_bn.py --run /tmp/real/check_k1_2000 \\
      --data-dir /tmp/cifar10-jpeg --batches 1 2 5 10 20 50 100 200 --draws 3
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common  # pylint: disable=g-import-not-at-top,wrong-import-position


def train_mode_error(model, weights, state, ds, batch_size, preprocess, seed):
  """Error on one shuffled pass over the test split, in train mode.

  Each batch is normalised by its own BN statistics, as the seed notebooks'
  in-training eval did. The pass is the first epoch of `eval_sample_batches`
  (floor(n_test / batch_size) full batches, no image twice).
  """
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
  fn = fastmath.jit(lambda x, w, s, r: model.pure_fn(x, w, s, r)[0])
  batches = data_lib.eval_sample_batches(ds, batch_size, preprocess=preprocess,
                                         seed=seed)
  correct = count = 0.0
  rng = fastmath.random.get_prng(seed)
  for _ in range(len(ds.test_labels) // batch_size):
    x, y, w = next(batches)
    logp = np.asarray(fn(x, weights, state, rng))
    correct += float(np.sum((logp.argmax(-1) == y) * w))
    count += float(np.sum(w))
  return 1.0 - correct / count, int(count)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--run', required=True, help='a finished run folder')
  p.add_argument('--data-dir', default=None)
  p.add_argument('--batches', type=int, nargs='+',
                 default=[1, 2, 5, 10, 20, 50, 100, 200])
  p.add_argument('--draws', type=int, default=3,
                 help='independent draws of the BN batches per N')
  p.add_argument('--json', default='bench/results/precise_bn.json')
  args = p.parse_args(argv)

  from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  ckpt = train_lib.load_checkpoint(args.run, mode='eval')
  c = ckpt['config']
  ds = data_lib.load(c['dataset'], args.data_dir or c['data_dir'],
                     download=False)
  eval_model, weights, state = ckpt['model'], ckpt['weights'], ckpt['state']
  evaluate = lambda s: train_lib.evaluate(eval_model, weights, s, ds,
                                          c['batch_size'], c['preprocess'])
  rows = []
  running = evaluate(state)
  rows.append(dict(stats='running averages (checkpoint)', n=None,
                   errors=[running['error']]))
  print(f'running: {100 * running["error"]:.2f}%', flush=True)
  for n in args.batches:
    errors = []
    for draw in range(args.draws):
      bn_model = train_lib.load_checkpoint(args.run, mode='train')['model']
      batches = data_lib.train_batches(ds, c['batch_size'],
                                       preprocess=c['preprocess'],
                                       seed=10_000 + draw)
      exact = train_lib.precise_bn_state(bn_model, weights, state, batches, n,
                                         seed=draw)
      errors.append(evaluate(exact)['error'])
    rows.append(dict(stats=f'precise, {n} train batches', n=n, errors=errors))
    print(f'precise {n}: {[round(100 * e, 2) for e in errors]}', flush=True)
  train_model = train_lib.load_checkpoint(args.run, mode='train')['model']
  errors = []
  for draw in range(args.draws):
    err, n_images = train_mode_error(train_model, weights, state, ds,
                                     c['batch_size'], c['preprocess'], draw)
    errors.append(err)
  rows.append(dict(stats=f'train mode (batch statistics), {n_images} images',
                   n=None, errors=errors))

  print(f'\n{c["model"]}, {c["dataset"]}, recipe {c["recipe"]}, step '
        f'{ckpt["step"]}, batch {c["batch_size"]}: test error (%) on all '
        f'{running["examples"]} test images\n')
  print('| BN statistics | error % (median) | min–max over draws |')
  print('|---|---:|---|')
  for r in rows:
    e = 100 * np.asarray(r['errors'])
    print(f'| {r["stats"]} | {np.median(e):.2f} | '
          f'{e.min():.2f}–{e.max():.2f} |')
  print(f'\n{time.time() - t0:.0f} s')
  if args.json:
    os.makedirs(os.path.dirname(args.json) or '.', exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(dict(run=os.path.basename(os.path.normpath(args.run)),
                     step=ckpt['step'], model=c['model'],
                     dataset=c['dataset'], recipe=c['recipe'],
                     batch_size=c['batch_size'], rows=rows,
                     machine=_common.machine(), seconds=time.time() - t0),
                f, indent=1)


if __name__ == '__main__':
  main()
