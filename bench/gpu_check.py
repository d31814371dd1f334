"""Is this GPU ready for wrn_trax? One command, under 8 minutes on one GPU.

Writes a JSON record (default bench/results/gpu_check.json) and prints a
markdown table. Each check has its own time budget; one that fails, times out
or is skipped is recorded with its reason and the others still run. The JSON
is rewritten after every check, so a killed run keeps what it measured.

  device         jax.devices(): platform, names, count. Hard: a GPU (or TPU).
  placement      our trax Loop, built as `train()` builds it
                 (`wrn_trax.train.build_loop`), trains a few steps:
                 the weights, optimizer slots and model state, and the
                 step's outputs, are on the first GPU; the batch (host numpy
                 from our pipeline) is what the jitted step copies there;
                 and nothing compiles after the first steps (jax's compile
                 events). Hard.
  data_parallel  the same Loop with n_devices = jax.local_device_count(),
                 a few steps: finite loss and weights, weights laid out over
                 every device. Hard.
  throughput     stock-WRN-22-k (k = 1..4, seed recipe, batch 64) and
                 WRN-28-10 (paper recipe, batch 128): training images/s,
                 float32 weights and activations (jax's default matmul and
                 conv precision), and the 200-epoch time that implies
                 (50,000 images x 200 / images/s).
  real_data      stock-WRN-22-1, seed recipe, 300 steps on CIFAR-10 (a
                 folder with train/<class>/ and test/<class>/ images, or the
                 .tar.gz of one, unpacked to a temp dir) through
                 `wrn_trax.train`: test error on the whole test split.
  seed_vs_ours   bench/seed_speed.py's two setups for stock-WRN-22-1 (the
                 seed notebooks' tensorflow-numpy Loop against ours), one
                 subprocess each.

Exit status: 0; 2 when jax sees no GPU ("no GPU found"; --allow-cpu runs on
the CPU anyway); 1 when a hard check (device, placement, data_parallel) fails.

Usage::

  mkdir -p /tmp/cifar10-jpeg &&
    tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C /tmp/cifar10-jpeg
  python bench/gpu_check.py --data /tmp/cifar10-jpeg     # on a GPU
  python bench/gpu_check.py --data ../shared/data/cifar10-jpeg.tar.gz
  python bench/gpu_check.py --allow-cpu --quick           # CPU smoke run
"""
import argparse
import contextlib
import glob
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, 'results', 'gpu_check.json')
EPOCHS, CIFAR_TRAIN = 200, 50_000
RESULT_MARK = 'RESULT_JSON '  # bench/_common.emit's mark

# The checks in the order they run; the hard ones decide the exit status.
ITEMS = ('device', 'placement', 'data_parallel', 'throughput', 'real_data',
         'seed_vs_ours')
HARD = ('device', 'placement', 'data_parallel')

# What each check trains and for how long. The full sizes fit 8 minutes on one
# recent GPU (imports and compiles included); quick ones a few CPU minutes.
FULL = dict(
    budget=dict(device=20, placement=60, data_parallel=45, throughput=170,
                real_data=110, seed_vs_ours=100),
    placement=dict(model='stock-WRN-22-1', batch=64, steps=20),
    data_parallel=dict(model='stock-WRN-22-1', batch_per_device=64, steps=10),
    throughput=dict(models=[('stock-WRN-22-1', 64), ('stock-WRN-22-2', 64),
                            ('stock-WRN-22-3', 64), ('stock-WRN-22-4', 64),
                            ('WRN-28-10', 128)],
                    warmup=5, chunk=20, min_seconds=4.0, max_chunks=10,
                    min_left_s=20),
    real_data=dict(model='stock-WRN-22-1', steps=300, overrides={}),
    seed_vs_ours=dict(k=1, steps=30, warmup=3, n_train=2048, parallel=False),
)
QUICK = dict(
    budget=dict(device=20, placement=90, data_parallel=90, throughput=90,
                real_data=90, seed_vs_ours=300),
    placement=dict(model='stock-WRN-10-1', batch=8, steps=4),
    data_parallel=dict(model='stock-WRN-10-1', batch_per_device=4, steps=2),
    throughput=dict(models=[('stock-WRN-10-1', 8), ('WRN-10-1', 8)],
                    warmup=1, chunk=2, min_seconds=0.0, max_chunks=1,
                    min_left_s=5),
    real_data=dict(model='stock-WRN-10-1', steps=10,
                   overrides=dict(batch_size=8)),
    # bench/seed_speed.py's workers train stock-WRN-22-1 at batch 64 and
    # the seed's 20-batch eval: minutes on a small CPU, so only on request
    # (--only seed_vs_ours).
    seed_vs_ours=dict(k=1, steps=1, warmup=1, n_train=128, parallel=True,
                      only_if_asked=True),
)


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__.split('\n\n', 1)[1])
  p.add_argument('--data', default=None,
                 help='CIFAR-10 as image folders (train/<class>/, '
                 'test/<class>/) or a .tar.gz of them; without it '
                 'real_data is skipped')
  p.add_argument('--out', default=DEFAULT_OUT,
                 help='the JSON record (default: bench/results/'
                 "gpu_check.json; '' = none)")
  p.add_argument('--allow-cpu', action='store_true',
                 help='run on the CPU when jax sees no GPU (else exit 2)')
  p.add_argument('--quick', action='store_true',
                 help='tiny models and a few steps (a CPU smoke run)')
  p.add_argument('--only', nargs='+', choices=ITEMS, default=None,
                 help='run these checks only (device always runs)')
  p.add_argument('--budget-scale', type=float, default=1.0,
                 help='multiply every check\'s time budget (default: 1)')
  p.add_argument('--max-seconds', type=float, default=465,
                 help='stop starting checks after this long; a check gets '
                 'at most what is left (default: 465, inside 8 minutes)')
  return p.parse_args(argv)


# ------------------------------------------------------------ time budgets


class OutOfTime(Exception):
  """A check ran past its budget."""


@contextlib.contextmanager
def time_limit(seconds):
  """Raises OutOfTime in this (main) thread after `seconds`.

  A long XLA compile is not interrupted; the exception comes when it returns.
  """
  def handler(signum, frame):
    del signum, frame
    raise OutOfTime(f'over its {seconds:.0f} s budget')
  old = signal.signal(signal.SIGALRM, handler)
  signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------ compile events


class Compiles:
  """Counts XLA compilations through jax's monitoring events.

  jax records BACKEND_COMPILE_EVENT around every backend compile (a cache
  hit of the persistent compilation cache included); newer jax passes the
  function's name as `fun_name`.
  """
  EVENT = '/jax/core/compile/backend_compile_duration'

  def __init__(self):
    import jax  # pylint: disable=g-import-not-at-top
    self.events = []
    jax.monitoring.register_event_duration_secs_listener(self._listen)

  def _listen(self, event, duration, **kwargs):
    if event == self.EVENT:
      self.events.append((str(kwargs.get('fun_name', '?')), float(duration)))

  def mark(self):
    return len(self.events)

  def between(self, start, end):
    return [name for name, _ in self.events[start:end]]


# ------------------------------------------------------------------- checks


def _leaf_devices(tree):
  """Sorted names of the devices the array leaves of `tree` are on.

  A leaf that is not a jax Array (numpy, a Python number) counts as 'host'.
  """
  import jax  # pylint: disable=g-import-not-at-top
  names = set()
  for leaf in jax.tree_util.tree_leaves(tree):
    if isinstance(leaf, jax.Array):
      names.update(str(d) for d in leaf.devices())
    elif hasattr(leaf, 'shape'):
      names.add('host')
  return sorted(names)


def _describe_batch(batch):
  import jax  # pylint: disable=g-import-not-at-top
  parts = []
  for x in batch if isinstance(batch, (tuple, list)) else [batch]:
    where = ('/'.join(sorted(str(d) for d in x.devices()))
             if isinstance(x, jax.Array) else 'host ' + type(x).__module__)
    parts.append(f'{x.dtype}{list(x.shape)} on {where}')
  return ', '.join(parts)


def _trainer(loop):
  return loop._trainer_per_task[0]  # pylint: disable=protected-access


def _spy_update(trainer, seen, compiles=None):
  """Wraps the trainer's compiled update (the train step) to see its batch,
  its outputs' devices, its loss and what compiled during each call."""
  update = trainer._accelerated_update_fn  # pylint: disable=protected-access

  def spied(*args, **kwargs):
    seen['batch'] = _describe_batch(args[3])
    mark = compiles.mark() if compiles else 0
    out = update(*args, **kwargs)
    if compiles:
      seen.setdefault('step_compiles', []).append(
          compiles.between(mark, compiles.mark()))
    seen['outputs'] = _leaf_devices(out)  # (weights, slots), state, stats
    seen.setdefault('losses', []).append(float(np.mean(out[2]['loss'])))
    return out

  trainer._accelerated_update_fn = spied  # pylint: disable=protected-access


def _n_devices():
  import jax  # pylint: disable=g-import-not-at-top
  return jax.local_device_count()


def _our_path(model, ds, batch, n_devices):
  """`bench/_common.OurPath` on `n_devices` devices, as `train()` runs.

  `train()` trains on every local device; trax refuses a Loop on fewer
  devices than jax sees ("n_devices != all devices"), so the benchmarks'
  one-device `OurPath` would fail on a machine with several GPUs.
  """
  import _common  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  path = _common.OurPath.__new__(_common.OurPath)
  path.run = _common.make_run(model, ds, batch)
  path.run.config['n_devices'] = n_devices
  built = train_lib.build_loop(path.run.config, ds, path.run.workdir)
  path.loop = built.loop
  path.log = train_lib.MetricsLog(os.path.join(path.run.workdir,
                                               'metrics.jsonl'),
                                  path.run.config, built.schedule)
  path.step_times, path._out = [], io.StringIO()  # pylint: disable=protected-access
  return path


def _batch_for(batch, n):
  """`batch` rounded up to a multiple of n devices."""
  return -(-batch // n) * n


def _synthetic(n_train, n_test=256):
  import _common  # pylint: disable=g-import-not-at-top
  return _common.synthetic_dataset(n_train=n_train, n_test=n_test)


def check_device(rec, cfg, ctx):
  del cfg
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices()
  first = devices[0]
  rec.update(
      platform=first.platform, backend=jax.default_backend(),
      devices=[f'{d}: {getattr(d, "device_kind", d.platform)}'
               for d in devices],
      local_device_count=jax.local_device_count(), jax=jax.__version__,
      matmul_precision=str(getattr(jax.config,
                                   'jax_default_matmul_precision', None)))
  ctx['accelerator'] = first.platform in ('gpu', 'cuda', 'rocm', 'tpu')
  ctx['platform'] = first.platform
  rec['summary'] = (f'{len(devices)} x {getattr(first, "device_kind", "?")} '
                    f'({first.platform})')
  if not ctx['accelerator']:
    rec['ok'] = ctx['allow_cpu']
    rec['summary'] = 'no GPU found: ' + rec['summary'] + (
        ' (--allow-cpu: checking the CPU)' if ctx['allow_cpu'] else '')


def check_placement(rec, cfg, ctx):
  import _common  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  compiles = ctx['compiles']
  n = _n_devices()
  batch = _batch_for(cfg['batch'], n)
  ds = _synthetic(max(4 * batch, 256))
  mark0 = compiles.mark()
  path = _our_path(cfg['model'], ds, batch, n)
  loop = path.loop
  trainer = _trainer(loop)
  model = trainer.accelerated_model_with_loss
  seen = {}
  _spy_update(trainer, seen, compiles)
  mark1 = compiles.mark()
  path.chunk(1)                      # compiles the step (and step 1's eval)
  mark2 = compiles.mark()
  path.chunk(1)
  mark3 = compiles.mark()
  path.chunk(max(1, cfg['steps'] - 2))
  mark4 = compiles.mark()
  target = sorted(str(d) for d in jax.local_devices()[:n])
  where = dict(weights=_leaf_devices(model.weights),
               # The copy the step reads (replicated over the devices);
               # `trainer.slots` is trax's unreplicated copy for checkpoints,
               # on the first device only when n > 1 (jax <= 0.9 at least).
               slots=_leaf_devices(trainer._slots),  # pylint: disable=protected-access
               state=_leaf_devices(model.state),
               step_outputs=seen.get('outputs'))
  rec.update(model=cfg['model'], batch=batch, n_devices=n, steps=loop.step,
             devices=target, where=where, batch_in=seen.get('batch'),
             compiles=dict(build=compiles.between(mark0, mark1),
                           step_1=compiles.between(mark1, mark2),
                           step_2=compiles.between(mark2, mark3),
                           later_steps=compiles.between(mark3, mark4)))
  misplaced = {k: v for k, v in where.items() if v != target}
  problems = []
  if misplaced:
    problems.append(f'not only on {"+".join(target)}: {misplaced}')
  # The train step (trax's compiled update) compiles in its first call and
  # never again; small host-side helpers (a loss sum, the NaN check) may
  # compile once each in the first steps and are listed, not counted.
  per_call = seen.get('step_compiles', [])
  rec['train_step_compiles'] = per_call
  if not per_call or not per_call[0]:
    problems.append('no compile seen in the first train step: cannot tell '
                    'if the step compiles once')
  recompiled = [(i + 1, c) for i, c in enumerate(per_call) if i and c]
  if recompiled:
    problems.append(f'the train step compiled again: {recompiled}')
  rec['ok'] = not problems
  rec['summary'] = ('; '.join(problems) if problems else
                    f'{cfg["model"]}: weights, slots, state and step outputs '
                    f'on {"+".join(target)}; batch in: {seen.get("batch")}; '
                    f'the train step compiled in step 1 ('
                    f'{", ".join(per_call[0])}), not in steps 2-{loop.step}')
  rec['peak_device_mb'] = _common.peak_device_mb()


def check_data_parallel(rec, cfg, ctx):
  del ctx
  import _common  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from wrn_trax import optim  # pylint: disable=g-import-not-at-top
  n = jax.local_device_count()
  batch = cfg['batch_per_device'] * n
  ds = _synthetic(max(4 * batch, 256))
  run = _common.make_run(cfg['model'], ds, batch)
  run.config['n_devices'] = n
  loop = _common.build_loop(run, ds)
  seen = {}
  _spy_update(_trainer(loop), seen)
  t0 = time.perf_counter()
  with contextlib.redirect_stdout(io.StringIO()):
    loop.run(cfg['steps'])
  finite = bool(optim.tree_all_finite(loop.model.weights))
  seconds = time.perf_counter() - t0
  losses = seen.get('losses', [])
  weights = jax.tree_util.tree_leaves(_trainer(loop).accelerated_model_with_loss
                                      .weights)
  spread_over = sorted({len(w.devices()) for w in weights
                        if isinstance(w, jax.Array)})
  rec.update(n_devices=n, model=cfg['model'], batch=batch, steps=loop.step,
             losses=losses, weights_finite=finite, seconds_for_steps=seconds,
             weight_leaf_device_counts=spread_over)
  ok_loss = bool(losses) and all(np.isfinite(losses))
  rec['ok'] = finite and ok_loss and spread_over == [n]
  rec['summary'] = (f'{n} device(s), {cfg["model"]} batch {batch}, '
                    f'{loop.step} steps, loss '
                    + (f'{losses[-1]:.3f}' if losses else 'not logged')
                    + ('' if rec['ok'] else
                       f' (weights finite: {finite}, weight leaves on '
                       f'{spread_over} devices)'))


def _hours(seconds):
  return f'{seconds / 3600:.1f} h' if seconds >= 3600 else (
      f'{seconds / 60:.0f} min')


def check_throughput(rec, cfg, ctx):
  import gc  # pylint: disable=g-import-not-at-top
  import _common  # pylint: disable=g-import-not-at-top
  ds = _synthetic(2048)
  n = _n_devices()
  rec['models'] = rows = []
  rec['precision'] = 'float32 weights and activations; jax default precision'
  rec['n_devices'] = n
  for model, batch in cfg['models']:
    batch = _batch_for(batch, n)
    row = dict(model=model, batch=batch)
    rows.append(row)
    if ctx['deadline'] - time.monotonic() < cfg['min_left_s']:
      row['error'] = 'skipped: out of time'
      continue
    try:
      t0 = time.perf_counter()
      path = _our_path(model, ds, batch, n)
      path.chunk(1)
      for _ in range(cfg['warmup']):
        path.chunk(1)
      row['build_and_compile_s'] = time.perf_counter() - t0
      times, t1 = [], time.perf_counter()
      while not times or (time.perf_counter() - t1 < cfg['min_seconds'] and
                          len(times) < cfg['max_chunks']):
        times.append(path.chunk(cfg['chunk']) / cfg['chunk'])
      step_s = float(np.median(times))
      ips = batch / step_s
      row.update(step_s=step_s, images_per_s=ips, timed_steps=len(times) *
                 cfg['chunk'], epochs_200_s=CIFAR_TRAIN * EPOCHS / ips,
                 peak_device_mb=_common.peak_device_mb())
    except OutOfTime:
      row['error'] = 'out of time'
      raise
    except Exception as e:  # pylint: disable=broad-except
      row['error'] = f'{type(e).__name__}: {e}'[:500]
    finally:
      path = None
      gc.collect()
      rec['summary'] = ', '.join(
          f'{r["model"]} {r["images_per_s"]:,.0f} img/s'
          for r in rows if 'images_per_s' in r) or 'nothing measured'
  rec['ok'] = all('images_per_s' in r for r in rows)


def _find_image_folders(root):
  """The folder under `root` (itself or one below) holding train/ and test/."""
  for cand in [root] + sorted(glob.glob(os.path.join(glob.escape(root), '*'))):
    if (os.path.isdir(os.path.join(cand, 'train')) and
        os.path.isdir(os.path.join(cand, 'test'))):
      return cand
  return None


class Unpacked:
  """The data folder of --data; a tarball is unpacked in a background thread.

  The tarball is unpacked once into a folder named by its name, size and
  mtime under the temp dir, and that folder is kept: a second run (and
  `data.load`'s cache beside the images) reuses it, and no time is spent
  deleting 60,000 files.
  """

  def __init__(self, path):
    self.path, self.folder, self.error, self.seconds = path, None, None, None
    self.reused = False
    self._thread = None
    if path and os.path.isfile(path):
      self._thread = threading.Thread(target=self._unpack, daemon=True)
      self._thread.start()
    elif path and not os.path.exists(path):
      self.error = f'data not found: no file or folder {path}'
    elif path:
      self.folder = _find_image_folders(path)
      if self.folder is None:
        self.error = (f'data not found: {path} holds no train/ and test/ '
                      'image folders')

  def _unpack(self):
    t0 = time.perf_counter()
    try:
      st = os.stat(self.path)
      dest = os.path.join(
          tempfile.gettempdir(), 'wrn_gpu_check_data',
          f'{os.path.basename(self.path)}-{st.st_size}-{int(st.st_mtime)}')
      if os.path.exists(os.path.join(dest, '.unpacked')):
        self.reused = True
      else:
        partial = f'{dest}.partial-{os.getpid()}'
        os.makedirs(partial)
        with tarfile.open(self.path) as tar:
          try:
            tar.extractall(partial, filter='data')
          except TypeError:  # Python without extraction filters
            tar.extractall(partial)  # noqa: S202
        open(os.path.join(partial, '.unpacked'), 'w').close()
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(partial, dest)
      self.folder = _find_image_folders(dest)
      if self.folder is None:
        self.error = f'data not found: {self.path} holds no train/ and test/'
    except Exception as e:  # pylint: disable=broad-except
      self.error = f'data not found: cannot unpack {self.path}: {e}'
    self.seconds = time.perf_counter() - t0

  def wait(self):
    if self._thread is not None:
      self._thread.join()
    return self.folder


def check_real_data(rec, cfg, ctx):
  unpacked = ctx['data']
  if not unpacked.path:
    rec['skipped'] = 'no --data given'
    return
  folder = unpacked.wait()
  rec['unpack_s'], rec['unpack_reused'] = unpacked.seconds, unpacked.reused
  if folder is None:
    rec['skipped'] = unpacked.error
    return
  import wrn_trax  # pylint: disable=g-import-not-at-top
  from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
  rec['data_dir'] = folder
  t0 = time.perf_counter()
  try:
    ds = data_lib.load('cifar10', folder)
  except data_lib.DataNotFoundError as e:
    rec['skipped'] = 'data not found: ' + str(e).splitlines()[0][:300]
    return
  rec['load_s'] = time.perf_counter() - t0
  rec['source'] = getattr(ds, 'source', None)
  rec['n_train'], rec['n_test'] = len(ds.train_labels), len(ds.test_labels)
  del ds
  workdir = tempfile.mkdtemp(prefix='wrn_gpu_check_run_')
  ctx['cleanup'].append(workdir)
  t0 = time.perf_counter()
  summary = wrn_trax.train(cfg['model'], dataset='cifar10', recipe='notebook',
                           steps=cfg['steps'], data_dir=folder,
                           workdir=workdir, verbose=False, **cfg['overrides'])
  rec['train_s'] = time.perf_counter() - t0
  rec.update(model=cfg['model'], recipe='notebook', steps=summary['step'],
             status_of_run=summary['status'],
             test_error=summary['test_error'],
             eval_examples=summary['eval_examples'],
             images_per_s=summary['images_per_s'], workdir=workdir)
  rec['ok'] = summary['status'] == 'done'
  err = summary['test_error']
  rec['summary'] = (f'{cfg["model"]}, seed recipe, {summary["step"]} steps on '
                    f'CIFAR-10 image folders ({rec["n_train"]:,} train): test '
                    'error '
                    + ('n/a' if err is None else f'{100 * err:.2f}%')
                    + f' on {summary["eval_examples"]:,} images '
                    f'(load {rec["load_s"]:.0f} s, '
                    f'train {rec["train_s"]:.0f} s)')


def _worker_env(platform_name):
  """A worker's environment: memory on demand, one device.

  seed_speed's workers train on one device; trax refuses a one-device Loop
  where jax sees several, so a worker sees the first GPU only (and no
  forced host devices).
  """
  env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE='false',
             TF_FORCE_GPU_ALLOW_GROWTH='true')
  env['XLA_FLAGS'] = re.sub(r'--xla_force_host_platform_device_count=\S+',
                            '', env.get('XLA_FLAGS', '')).strip()
  if platform_name in ('gpu', 'cuda'):
    visible = env.get('CUDA_VISIBLE_DEVICES') or '0'
    env['CUDA_VISIBLE_DEVICES'] = visible.split(',')[0]
  return env


def _workers(script, argvs, timeout, env, parallel):
  """Runs a bench script's `--worker`s; returns the dicts they emitted.

  One after the other (timings on a GPU), or all at once (`parallel`, the
  quick CPU run, where only that they run matters). A worker still running
  at `timeout` is killed and gives an 'out of time' error.
  """
  deadline = time.monotonic() + timeout
  results = [None] * len(argvs)
  procs = {}

  def start(i):
    procs[i] = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, script, *argvs[i]], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env)

  def finish(i):
    proc = procs[i]
    try:
      out, err = proc.communicate(
          timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.communicate()
      results[i] = dict(error=f'out of time ({timeout:.0f} s for the workers)')
      return
    for line in out.splitlines():
      if line.startswith(RESULT_MARK):
        results[i] = json.loads(line[len(RESULT_MARK):])
        return
    tail = (err.strip() or out.strip() or
            f'exit status {proc.returncode}').splitlines()[-6:]
    results[i] = dict(error='\n'.join(tail))

  try:
    if parallel:
      for i in range(len(argvs)):
        start(i)
      for i in range(len(argvs)):
        finish(i)
    else:
      for i in range(len(argvs)):
        start(i)
        finish(i)
  finally:
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.communicate()
  return results


def check_seed_vs_ours(rec, cfg, ctx):
  if cfg.get('only_if_asked') and 'seed_vs_ours' not in (ctx['only'] or ()):
    rec['skipped'] = ('not in --quick without --only seed_vs_ours (two '
                      'subprocesses training stock-WRN-22-1 at batch 64)')
    return
  script = os.path.join(HERE, 'seed_speed.py')
  argv = ['--steps', str(cfg['steps']), '--warmup', str(cfg['warmup']),
          '--n-train', str(cfg['n_train']), '--json', '']
  k = cfg['k']
  rec.update(model=f'stock-WRN-22-{k}', batch=64,
             workers_at_once=cfg['parallel'])
  # A little time is kept back so that the workers' kill beats the alarm.
  rec['seed'], rec['ours'] = _workers(
      script, [argv + ['--worker', c, str(k)] for c in ('seed', 'ours')],
      ctx['deadline'] - time.monotonic() - 2,
      _worker_env(ctx['platform']), cfg['parallel'])
  seed, ours = rec['seed'], rec['ours']
  if 'error' in seed or 'error' in ours:
    rec['ok'] = False
    rec['summary'] = '; '.join(
        f'{c}: {r["error"].splitlines()[-1][:200]}'
        for c, r in (('seed', seed), ('ours', ours)) if 'error' in r)
    return
  rec['speedup'] = ours['images_per_s'] / seed['images_per_s']
  rec['summary'] = (f'stock-WRN-22-{k} batch 64: seed (tensorflow-numpy) '
                    f'{seed["images_per_s"]:,.0f} img/s, ours (jax) '
                    f'{ours["images_per_s"]:,.0f} img/s: '
                    f'{rec["speedup"]:.2f}x')


CHECKS = dict(device=check_device, placement=check_placement,
              data_parallel=check_data_parallel, throughput=check_throughput,
              real_data=check_real_data, seed_vs_ours=check_seed_vs_ours)


# ------------------------------------------------------------------ running


def run_item(name, cfg, budget, ctx):
  """Runs one check within `budget` seconds; returns its record."""
  rec = dict(budget_s=budget)
  t0 = time.perf_counter()
  ctx['deadline'] = time.monotonic() + budget
  try:
    with time_limit(budget):
      CHECKS[name](rec, cfg.get(name), ctx)
    if 'skipped' in rec:
      rec['status'] = 'skipped'
      rec['summary'] = rec['skipped']
    else:
      rec['status'] = 'ok' if rec.get('ok', True) else 'failed'
  except OutOfTime as e:
    rec.update(status='timeout', error=str(e))
  except Exception as e:  # pylint: disable=broad-except
    rec.update(status='failed', error=f'{type(e).__name__}: {e}'[:2000],
               traceback=traceback.format_exc()[-3000:])
  rec.pop('ok', None)
  rec['seconds'] = time.perf_counter() - t0
  if rec['status'] == 'timeout' and rec.get('summary'):
    rec['summary'] = f'{rec["error"]}; so far: {rec["summary"]}'
  rec.setdefault('summary', rec.get('error', ''))
  return rec


def _versions():
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  out = dict(python=platform.python_version())
  for pkg in ('wrn_trax', 'trax', 'jax', 'jaxlib', 'tensorflow', 'numpy'):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      out[pkg] = None
  return out


def _cell(x):
  return str(x).replace('|', '/').replace('\n', ' ')


def print_tables(record):
  lines = ['| check | status | result | s |', '|---|---|---|---|']
  for name in ITEMS:
    r = record['items'].get(name)
    if r is None:
      continue
    lines.append(f'| {name} | {r["status"]} | {_cell(r["summary"])[:400]} | '
                 f'{r["seconds"]:.0f} |')
  print('\n'.join(lines))
  rows = record['items'].get('throughput', {}).get('models', [])
  if rows:
    print('\n| model | batch | images/s (fp32) | est. 200 epochs | '
          'compile s |\n|---|---|---|---|---|')
    for r in rows:
      if 'images_per_s' in r:
        print(f'| {r["model"]} | {r["batch"]} | {r["images_per_s"]:,.0f} | '
              f'{_hours(r["epochs_200_s"])} | '
              f'{r["build_and_compile_s"]:.0f} |')
      else:
        print(f'| {r["model"]} | {r["batch"]} | {_cell(r.get("error"))} | | |')


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  t_start = time.perf_counter()
  # Grow device memory on demand (jax and TF), so that the seed_vs_ours
  # subprocesses find room beside this process.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  os.environ.setdefault('TF_FORCE_GPU_ALLOW_GROWTH', 'true')
  sys.path.insert(0, HERE)
  cfg = QUICK if args.quick else FULL
  names = [n for n in ITEMS if args.only is None or n == 'device' or
           n in args.only]
  command = ['python', 'bench/gpu_check.py'] + list(
      sys.argv[1:] if argv is None else argv)
  record = dict(args=vars(args), quick=args.quick, items={},
                command=' '.join(command),
                env={k: os.environ.get(k) for k in (
                    'XLA_PYTHON_CLIENT_PREALLOCATE',
                    'TF_FORCE_GPU_ALLOW_GROWTH', 'XLA_FLAGS',
                    'CUDA_VISIBLE_DEVICES', 'JAX_PLATFORMS')})
  ctx = dict(allow_cpu=args.allow_cpu, only=args.only, data=Unpacked(None),
             cleanup=[])
  try:
    return _run(args, names, cfg, record, ctx, t_start)
  finally:
    ctx['data'].wait()
    for path in ctx['cleanup']:
      shutil.rmtree(path, ignore_errors=True)


def _run(args, names, cfg, record, ctx, t_start):
  """Runs the checks `names`; returns the exit status."""

  def write():
    record['total_s'] = time.perf_counter() - t_start
    if args.out:
      os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
      with open(args.out, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True, default=str)
        f.write('\n')

  for name in names:
    if name != 'device' and 'compiles' not in ctx:  # after the device check
      if 'real_data' in names:  # unpacks while the other checks run
        ctx['data'] = Unpacked(args.data)
      import _common  # pylint: disable=g-import-not-at-top,unused-import
      _hide_gpus_from_tensorflow()
      record['versions'] = _versions()
      ctx['compiles'] = Compiles()
    budget = cfg['budget'][name] * args.budget_scale
    left = args.max_seconds - (time.perf_counter() - t_start) - 5
    if name != 'device' and left < min(budget, 10):
      record['items'][name] = dict(
          status='skipped', seconds=0.0, budget_s=0.0,
          summary=f'out of time: --max-seconds {args.max_seconds:.0f} spent')
      write()
      continue
    budget = min(budget, left) if name != 'device' else budget
    print(f'[{time.perf_counter() - t_start:5.0f} s] {name} '
          f'(budget {budget:.0f} s) ...', flush=True)
    rec = record['items'][name] = run_item(name, cfg, budget, ctx)
    print(f'[{time.perf_counter() - t_start:5.0f} s] {name}: {rec["status"]}:'
          f' {rec["summary"][:300]}', flush=True)
    write()
    if name == 'device' and not ctx.get('accelerator') and not args.allow_cpu:
      print('no GPU found: jax.devices() = '
            + ', '.join(rec.get('devices', [])) +
            '. Install jax with CUDA (pip install "jax[cuda12]"), or pass '
            '--allow-cpu.', file=sys.stderr)
      record['hard_failures'] = ['device']
      write()
      return 2
  hard = [n for n in HARD if n in record['items'] and
          record['items'][n]['status'] not in ('ok', 'skipped')]
  record['hard_failures'] = hard
  write()
  print()
  print_tables(record)
  print(f'\ntotal {record["total_s"]:.0f} s' +
        (f'; wrote {args.out}' if args.out else ''))
  if hard:
    print(f'HARD CHECKS FAILED: {", ".join(hard)}', file=sys.stderr)
    return 1
  return 0


def _hide_gpus_from_tensorflow():
  """TF only feeds data here; keep it off the GPU jax measures (as train).

  `wrn_trax._tf.import_tensorflow`, the one place wrn_trax imports TF: it
  warns (with the fix) where TF had initialised a GPU already.
  """
  from wrn_trax import _quiet  # pylint: disable=g-import-not-at-top
  _quiet.import_tensorflow_quietly()


if __name__ == '__main__':
  sys.exit(main())
