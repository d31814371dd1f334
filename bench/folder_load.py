"""Load time of an image-folder data set: first (decode) and cached.

Times `wrn_trax.data.load(name, data_dir=PATH)` on a folder holding
``train/<class>/*.png|jpg`` and ``test/<class>/...``:

* ``first``: no cache yet, so every image is listed, decoded (PIL, in
  ``data._DECODE_THREADS`` threads; ``--threads`` compares counts) and the
  ``.npz`` cache is written;
* ``cached``: the same call again: the folder is listed and fingerprinted
  (names, sizes, mtimes) and the arrays are read from the cache.

The cache goes to a fresh temporary folder (``$WRN_TRAX_CACHE``), so nothing
is written in the data folder, and is removed afterwards. The image files
themselves are whatever the OS page cache holds (the first load of a folder
right after a reboot or a fresh mount reads the disk too). Prints a markdown
table, checks the arrays (shape, per-class counts, channel means) and writes
``bench/results/folder_load.json``.

Usage::

  python bench/folder_load.py /tmp/cifar10-jpeg                # cifar10
  python bench/folder_load.py PATH --name folder --threads 1 8
  python bench/folder_load.py --help
"""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

import _common  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description='First (decode) and cached load time of image folders.')
  p.add_argument('path', help='folder holding train/<class>/ and '
                 'test/<class>/ (or one level above it)')
  p.add_argument('--name', default='cifar10',
                 choices=('cifar10', 'cifar100', 'folder'),
                 help='data set name passed to data.load (default cifar10)')
  p.add_argument('--threads', type=int, nargs='+', default=None,
                 help='decode-thread counts to time a first load with '
                 '(default: data._DECODE_THREADS only)')
  p.add_argument('--cached-rounds', type=int, default=3,
                 help='cached loads to time (median; default 3)')
  p.add_argument('--json', default=os.path.normpath(
      os.path.join(_common.RESULTS, 'folder_load.json')),
                 help="where to write the results ('' = nowhere)")
  return p.parse_args(argv)


def _facts():
  import PIL  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f
                 if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return dict(cpu=cpu, nproc=os.cpu_count(), python=platform.python_version(),
              numpy=np.__version__, pillow=PIL.__version__)


def main(argv=None):
  args = parse_args(argv)
  from wrn_trax import data  # pylint: disable=g-import-not-at-top
  default_threads = data._DECODE_THREADS  # pylint: disable=protected-access
  threads = args.threads or [default_threads]
  old_env = os.environ.get('WRN_TRAX_CACHE')
  rows, runs = [], []
  ds = None
  load_before = os.getloadavg()
  try:
    for n_threads in threads:
      cache = tempfile.mkdtemp(prefix='wrn_trax_bench_cache_')
      os.environ['WRN_TRAX_CACHE'] = cache
      data._DECODE_THREADS = n_threads  # pylint: disable=protected-access
      try:
        start = time.perf_counter()
        ds = data.load(args.name, data_dir=args.path, download=False)
        first = time.perf_counter() - start
        cached = []
        for _ in range(max(1, args.cached_rounds)):
          start = time.perf_counter()
          again = data.load(args.name, data_dir=args.path, download=False)
          cached.append(time.perf_counter() - start)
        np.testing.assert_array_equal(again.train_labels, ds.train_labels)
        cache_mb = sum(os.path.getsize(os.path.join(cache, f))
                       for f in os.listdir(cache)) / 2**20
      finally:
        shutil.rmtree(cache, ignore_errors=True)
      n = len(ds.train_labels) + len(ds.test_labels)
      s = _common.spread(cached)
      runs.append(dict(threads=min(n_threads, 2 * (os.cpu_count() or 1)),
                       threads_setting=n_threads, first_s=first,
                       cached_s=s, images=n, images_per_s_first=n / first,
                       cache_mb=cache_mb))
      rows.append([f'{min(n_threads, 2 * (os.cpu_count() or 1))}', f'{n:,}',
                   f'{first:.1f}', f'{n / first:,.0f}',
                   _common.fmt_spread(s, 2), f'{cache_mb:.0f}'])
  finally:
    data._DECODE_THREADS = default_threads  # pylint: disable=protected-access
    if old_env is None:
      os.environ.pop('WRN_TRAX_CACHE', None)
    else:
      os.environ['WRN_TRAX_CACHE'] = old_env
  mean = ds.train_images.reshape(-1, ds.train_images.shape[-1]).mean(0)
  check = dict(
      train_shape=list(ds.train_images.shape),
      test_shape=list(ds.test_images.shape), dtype=str(ds.train_images.dtype),
      train_per_class=np.bincount(ds.train_labels).tolist(),
      test_per_class=np.bincount(ds.test_labels).tolist(),
      class_names=list(ds.class_names),
      train_channel_means=[round(float(m), 2) for m in mean])
  facts = _facts()
  # Other jobs on the machine: 1-minute load average before and after.
  facts['load_average_1min'] = [round(load_before[0], 1),
                                round(os.getloadavg()[0], 1)]
  print(f'\n{args.name} image folders at {os.path.abspath(args.path)}: '
        f'train {tuple(ds.train_images.shape)}, test '
        f'{tuple(ds.test_images.shape)} {ds.train_images.dtype}; '
        f'channel means {check["train_channel_means"]}')
  print(f'{facts["cpu"]}, {facts["nproc"]} cores; Python {facts["python"]}, '
        f'numpy {facts["numpy"]}, Pillow {facts["pillow"]}; load average '
        f'{facts["load_average_1min"][0]} before, '
        f'{facts["load_average_1min"][1]} after\n')
  print(_common.markdown_table(
      ['decode threads', 'images', 'first load, s', 'images/s',
       'cached load, s: median (min–max)', 'cache MB'], rows))
  if args.json:
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    import json  # pylint: disable=g-import-not-at-top
    with open(args.json, 'w') as f:
      json.dump(dict(path=os.path.abspath(args.path), name=args.name,
                     command='python bench/folder_load.py ' +
                     ' '.join(argv if argv is not None else sys.argv[1:]),
                     machine=facts, runs=runs, check=check),
                f, indent=1, sort_keys=True)
      f.write('\n')
    print(f'\nwrote {args.json}')
  return runs, check


if __name__ == '__main__':
  main()
