"""Images/s of the wrn_trax training pipeline vs trax.data's stock one.

Runs offline on CIFAR-shaped synthetic uint8 data (default 50,000 x 32 x 32 x
3), pinned to one core. Each round times, back to back, every pipeline:

* ``stock``: ``trax.data.Serial(source, Shuffle(), Batch(b),
  AddLossWeights())`` over a per-example stream of the same arrays (what
  ``trax.data.TFDS`` feeds it), no augmentation;
* ``ours_raw``: ``wrn_trax.data.train_batches(preprocess='raw')``;
* ``ours_cifar``: ``wrn_trax.data.train_batches(preprocess='cifar')``
  (standardize + reflect-pad-4 random crop + random flip).

Prints median and min-max images/s over the rounds, and peak host memory
(ru_maxrss) before and after the split exists and after all pipelines ran,
which shows the pipelines hold the split once.

Usage::

  python bench/pipeline.py            # full size, 5 rounds (~1-2 min)
  python bench/pipeline.py --help
"""
import argparse
import os
import sys

if __name__ == '__main__':
  # One core for every library, set before numpy/TF/jax are imported.
  for _var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS',
               'TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS'):
    os.environ.setdefault(_var, '1')
  os.environ.setdefault(
      'XLA_FLAGS', '--xla_cpu_multi_thread_eigen=false '
      'intra_op_parallelism_threads=1')

import platform  # pylint: disable=g-import-not-at-top,wrong-import-position
import resource  # pylint: disable=g-import-not-at-top,wrong-import-position
import time  # pylint: disable=g-import-not-at-top,wrong-import-position

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def _import_data():
  """Imports wrn_trax.data (slow: TF, jax, trax), from a checkout if need be."""
  try:
    import wrn_trax  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:  # Run from a checkout without installing it.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    '..'))
  from wrn_trax import _compat  # pylint: disable=g-import-not-at-top
  from wrn_trax import data  # pylint: disable=g-import-not-at-top
  _compat.ensure_trax()  # trax below is imported through us: quiet, patched
  return data


def _peak_mb():
  """Peak resident memory of this process so far, MB (Linux: KB units)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_name():
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def StockPipeline(images, labels, batch_size):  # pylint: disable=invalid-name
  """The seed notebooks' trax.data pipeline over in-memory arrays."""
  import trax  # pylint: disable=g-import-not-at-top

  def examples(generator=None):
    del generator
    while True:  # Like TFDS(...): one (image, label) at a time, repeated.
      for i in range(len(images)):
        yield images[i], labels[i]

  return trax.data.Serial(examples, trax.data.Shuffle(),
                          trax.data.Batch(batch_size),
                          trax.data.AddLossWeights())()


def _time(stream, n_batches, batch_size):
  start = time.perf_counter()
  for _ in range(n_batches):
    next(stream)
  return n_batches * batch_size / (time.perf_counter() - start)


def main(argv=None):
  """Runs the benchmark; returns {pipeline: {median, min, max}} images/s."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--n', type=int, default=50_000,
                      help='training images (default: 50000, CIFAR)')
  parser.add_argument('--batch-size', type=int, default=128,
                      help='batch size (default: 128, the paper)')
  parser.add_argument('--rounds', type=int, default=5,
                      help='interleaved rounds per pipeline (default: 5)')
  parser.add_argument('--batches', type=int, default=100,
                      help='batches timed per pipeline and round '
                      '(default: 100)')
  parser.add_argument('--no-pin', action='store_true',
                      help='do not pin the process to CPU core 0')
  args = parser.parse_args(argv)

  if not args.no_pin and hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  cores = (sorted(os.sched_getaffinity(0))
           if hasattr(os, 'sched_getaffinity') else '?')
  data = _import_data()
  import trax  # pylint: disable=g-import-not-at-top,unused-import
  mem_imports = _peak_mb()

  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.n, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, args.n).astype(np.int32)
  ds = data.from_arrays(images, labels, images[:1000], labels[:1000],
                        n_classes=10, name='synthetic')
  ds.channel_stats  # pylint: disable=pointless-statement
  mem_split = _peak_mb()

  streams = {
      'stock': StockPipeline(images, labels, args.batch_size),
      'ours_raw': data.train_batches(ds, args.batch_size, preprocess='raw'),
      'ours_cifar': data.train_batches(ds, args.batch_size,
                                       preprocess='cifar'),
  }
  for stream in streams.values():  # Warm-up (fills Shuffle's 1024 queue).
    _time(stream, max(10, 2048 // args.batch_size), args.batch_size)
  rates = {k: [] for k in streams}
  for _ in range(args.rounds):
    for name, stream in streams.items():
      rates[name].append(_time(stream, args.batches, args.batch_size))
  mem_end = _peak_mb()

  print(f'machine: {_cpu_name()}, pinned to cores {cores}; '
        f'python {platform.python_version()}, numpy {np.__version__}')
  print(f'data: synthetic uint8 {images.shape} ({images.nbytes / 2**20:.1f} MB)'
        f', batch {args.batch_size}, {args.rounds} rounds x {args.batches} '
        f'batches each')
  result = {}
  for name, r in rates.items():
    result[name] = dict(median=float(np.median(r)), min=float(min(r)),
                        max=float(max(r)))
    print(f'{name:>10}: {np.median(r):>9,.0f} images/s (median; min '
          f'{min(r):,.0f}, max {max(r):,.0f})')
  print(f'peak RSS: {mem_imports:,.0f} MB after imports, {mem_split:,.0f} MB '
        f'with the split (+{mem_split - mem_imports:,.0f} MB), '
        f'{mem_end:,.0f} MB after all pipelines '
        f'(+{mem_end - mem_split:,.0f} MB)')
  return result


if __name__ == '__main__':
  main()
