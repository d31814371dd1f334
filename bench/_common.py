"""Shared pieces of the training benchmarks in `bench/`.

Synthetic CIFAR-shaped data, the Loop exactly as `wrn_trax.train.build_loop`
builds it, the jax "limit" train step, timing helpers, machine facts and markdown /
JSON output. Nothing here runs at import except making the checkout
importable.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
RESULTS = os.path.join(_ROOT, 'bench', 'results')

try:
  import wrn_trax  # pylint: disable=unused-import
except ImportError:  # Run from a checkout without installing it.
  sys.path.insert(0, _ROOT)


# ------------------------------------------------------------------ machine


def machine():
  """Facts about this host and accelerator for the tables' headers."""
  import jax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f
                 if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  d = jax.local_devices()[0]
  return dict(cpu=cpu, nproc=os.cpu_count(), device=f'{d.platform}: '
              f'{getattr(d, "device_kind", d.platform)}',
              python=platform.python_version(), jax=jax.__version__)


# The same measures train() writes into summary.json.
def peak_host_mb():
  """Peak resident memory of this process so far, MB."""
  from wrn_trax import train  # pylint: disable=g-import-not-at-top
  return train._peak_host_mb()  # pylint: disable=protected-access


def peak_device_mb():
  """Peak device memory in MB where the backend reports it (None on CPU)."""
  from wrn_trax import train  # pylint: disable=g-import-not-at-top
  return train._peak_device_mb()  # pylint: disable=protected-access


# --------------------------------------------------------------------- data


def synthetic_dataset(n_train=2048, n_test=512, n_classes=10, seed=0):
  """CIFAR-shaped uint8 images with random labels, as a wrn_trax Dataset."""
  from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n_train + n_test, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, n_classes, n_train + n_test).astype(np.int32)
  return data_lib.from_arrays(images[:n_train], labels[:n_train],
                              images[n_train:], labels[n_train:],
                              n_classes=n_classes, name='synthetic')


# ----------------------------------------------------------- our Loop path


def recipe_for(model):
  """The recipe our benchmarks train a model with: stock = seed, else paper."""
  return 'notebook' if model.startswith('stock-') else 'paper'


class BenchRun(NamedTuple):
  """A resolved config and a run folder, as `wrn_trax.train` trains them."""
  config: dict
  workdir: str


def make_run(model, ds, batch_size, workdir=None, recipe=None, **overrides):
  """The config `train.resolve` gives for `ds`, in a temp folder.

  Evals and checkpoints are pushed out of reach (every 10**9 steps, as is the
  run length) so that timed chunks are pure training steps; the first step
  still runs trax's step-1 eval, which the warm-up absorbs. One device (the
  recipes' data_parallel=False).
  """
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  big = 10**9
  recipe = recipe or recipe_for(model)
  c = train_lib.make_config(model, 'cifar10', recipe, steps=big,
                            batch_size=batch_size, eval_every=big,
                            checkpoint_every=big, **overrides)
  c = train_lib.resolve(c, ds)
  workdir = workdir or tempfile.mkdtemp(prefix='wrn_bench_')
  return BenchRun(c, workdir)


def build_loop(run, ds, light_step=True):
  """`wrn_trax.train.build_loop` of `run` (the Loop `train` trains)."""
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  return train_lib.build_loop(run.config, ds, run.workdir,
                              light_step=light_step).loop


class OurPath:
  """Chunks of `loop.run(n)` plus `train.train_in_chunks`'s bookkeeping.

  One `chunk(n)` is what `train_in_chunks` does per chunk, less the progress
  bar and the metrics.jsonl append: `loop.run(n)` (stdout redirected), the
  history read into rows (`train.MetricsLog.rows_from_history`) and the NaN
  check of the weights (`optim.tree_all_finite`), which also waits for the
  device.
  """

  def __init__(self, model, ds, batch_size, light_step=True, **overrides):
    import io  # pylint: disable=g-import-not-at-top
    from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
    self.run = make_run(model, ds, batch_size, **overrides)
    built = train_lib.build_loop(self.run.config, ds, self.run.workdir,
                                 light_step=light_step)
    self.loop = built.loop
    self.log = train_lib.MetricsLog(
        os.path.join(self.run.workdir, 'metrics.jsonl'), self.run.config,
        built.schedule)
    self.step_times = []
    self._out = io.StringIO()

  def chunk(self, n):
    import contextlib  # pylint: disable=g-import-not-at-top
    from wrn_trax import optim  # pylint: disable=g-import-not-at-top
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(self._out):
      self.loop.run(n)
    self._out.seek(0)
    self._out.truncate()
    self.log.rows_from_history(self.loop, 0.0, self.step_times)
    ok = optim.tree_all_finite(self.loop.model.weights)
    dt = time.perf_counter() - t0
    self.step_times.append(dt / n)
    if not ok:
      raise FloatingPointError(f'non-finite weights at step {self.loop.step}')
    return dt


# ---------------------------------------------------------------- the limit


class LimitStep:
  """One `jax.jit` train step of the same model, loss and optimizer update.

  The model's trax `pure_fn` + `tl.CrossEntropyLoss`, `jax.value_and_grad`,
  and the recipe's own trax optimizer `tree_update` (the same update our Loop
  runs, diagnostics included), in one jitted function that donates the
  weights, optimizer slots and model state. Batches are drawn from our
  pipeline once and kept on the device, so no host work is timed but the
  dispatch itself.
  """

  def __init__(self, model, ds, batch_size, n_batches=4, **overrides):
    import jax  # pylint: disable=g-import-not-at-top
    from trax import layers as tl  # pylint: disable=g-import-not-at-top
    from trax import shapes  # pylint: disable=g-import-not-at-top
    from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
    from wrn_trax import models  # pylint: disable=g-import-not-at-top
    from wrn_trax import optim  # pylint: disable=g-import-not-at-top
    c = make_run(model, ds, batch_size, **overrides).config
    stream = data_lib.train_batches(ds, batch_size,
                                    preprocess=c['preprocess'], seed=c['seed'])
    host = [next(stream) for _ in range(n_batches)]
    self.batches = [jax.device_put(b) for b in host]
    net = models.build(model, n_classes=ds.n_classes, dropout=c['dropout'],
                       mode='train', precision=c['precision_used'])
    with_loss = tl.Serial(net, tl.CrossEntropyLoss())
    with_loss.init(shapes.signature(host[0]),
                   rng=jax.random.PRNGKey(c['seed']))
    optimizer = optim.make_optimizer(c)
    optimizer.tree_init(with_loss.weights)
    lr = float(c['lr'])

    def loss_fn(weights, state, batch, rng):
      return with_loss.pure_fn(batch, weights, state, rng)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step_fn(weights, slots, state, opt_params, batch, step, key):
      rng = jax.random.fold_in(key, step)
      (loss, state), grads = grad_fn(weights, state, batch, rng)
      weights, slots, _ = optimizer.tree_update(
          step, grads, weights, slots, opt_params, store_slots=False)
      return weights, slots, state, loss

    self._step_fn = jax.jit(step_fn, donate_argnums=(0, 1, 2))
    opt_params = dict(optimizer.opt_params, learning_rate=lr)
    self.opt_params = jax.device_put(opt_params)
    self.weights = jax.device_put(with_loss.weights)
    self.slots = jax.device_put(optimizer.slots)
    self.state = jax.device_put(with_loss.state)
    self.key = jax.random.PRNGKey(c['seed'] + 1)
    self.step = 0
    self.loss = None

  def chunk(self, n):
    import jax  # pylint: disable=g-import-not-at-top
    t0 = time.perf_counter()
    for _ in range(n):
      self.step += 1
      batch = self.batches[self.step % len(self.batches)]
      self.weights, self.slots, self.state, self.loss = self._step_fn(
          self.weights, self.slots, self.state, self.opt_params, batch,
          np.int32(self.step), self.key)
    jax.block_until_ready((self.weights, self.loss))
    return time.perf_counter() - t0


# ------------------------------------------------------------ subprocesses
#
# Each measurement runs in a fresh interpreter (the script itself, with
# `--worker ...` appended), so peak memory is that configuration's and no
# compile cache carries over. The worker prints one line: RESULT_MARK + JSON.

RESULT_MARK = 'RESULT_JSON '


def emit(result):
  """Prints a worker's result dict for `run_worker` to read."""
  print(RESULT_MARK + json.dumps(result), flush=True)


def run_worker(script, argv, worker_args, **identity):
  """Runs `script *argv --worker *worker_args`; returns the dict it emitted.

  A worker that emitted nothing (it crashed or was killed) gives `identity`
  plus `error`: the last lines of its stderr, else of its stdout.
  """
  cmd = [sys.executable, os.path.abspath(script), *argv, '--worker',
         *map(str, worker_args)]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  for line in proc.stdout.splitlines():
    if line.startswith(RESULT_MARK):
      return json.loads(line[len(RESULT_MARK):])
  tail = (proc.stderr.strip() or proc.stdout.strip() or
          f'exit status {proc.returncode}, no output').splitlines()[-8:]
  return dict(identity, error='\n'.join(tail))


# ------------------------------------------------------------------ output


def spread(values):
  """dict(median, min, max) of a list of numbers."""
  return dict(median=float(np.median(values)), min=float(np.min(values)),
              max=float(np.max(values)))


def fmt_spread(s, digits=0):
  """'median (min-max)' of a `spread` dict."""
  return (f'{s["median"]:,.{digits}f} ({s["min"]:,.{digits}f}–'
          f'{s["max"]:,.{digits}f})')


def markdown_table(header, rows):
  """A GitHub markdown table from a header list and row lists."""
  from wrn_trax import _markdown  # pylint: disable=g-import-not-at-top
  return _markdown.pipe_table(header, rows)


def guard(failures, flag):
  """Ends the process with status 1 when a `--min-*`/`--max-*` guard failed.

  `failures` are sentences naming what fell past the bound given by `flag`;
  the tables and JSON are already written, so a failing guard loses nothing.
  """
  if not failures:
    return
  print(f'\nGUARD FAILED ({flag}):', file=sys.stderr)
  for f in failures:
    print('  ' + f, file=sys.stderr)
  sys.exit(1)


def write_json(name, obj):
  """Writes `obj` to bench/results/<name>.json; returns the path."""
  os.makedirs(RESULTS, exist_ok=True)
  path = os.path.join(RESULTS, name + '.json')
  with open(path, 'w') as f:
    json.dump(obj, f, indent=1, sort_keys=True)
    f.write('\n')
  return path
