"""Trains one model on one data set with trax's `training.Loop`.

The run folder is the record of a run:

  config.json    the resolved config, package versions and device (written once)
  metrics.jsonl  one JSON object per logged step: step, split, loss, accuracy,
                 lr, seconds, images_per_s ('train', 'eval' = the cheap
                 in-training eval, 'test' = the full test split at the end)
  summary.json   written when the run ends: status, final full-split test
                 error, best in-training eval, params, FLOPs, timings, memory
  model.*        trax's own checkpoint files; train/ and eval/ TensorBoard logs

Running `train` again with the same folder resumes from trax's last checkpoint
(Loop restores it when built) and runs only the missing steps; a finished run
returns its summary without training.
"""
import contextlib
import io
import os
import platform
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NamedTuple, Optional

import numpy as np

from wrn_trax import _compat

_compat.ensure_trax()  # TF and gym quietly, then trax, patched: before trax

# pylint: disable=g-import-not-at-top,wrong-import-position
from wrn_trax import augment as augment_lib
from wrn_trax import data as data_lib
from wrn_trax import devices
from wrn_trax import models
from wrn_trax import optim
from wrn_trax import precision as precision_lib
from wrn_trax import recipes
from wrn_trax import record
from wrn_trax import runio
# Evaluation lives in wrn_trax.evaluate, the host/device split of the
# preprocessing in wrn_trax.augment; their old names here keep working.
from wrn_trax.augment import host_preprocess
from wrn_trax.evaluate import _PRECISE_BN_STREAM  # noqa: F401
from wrn_trax.evaluate import _sublayers  # noqa: F401
from wrn_trax.evaluate import evaluate  # noqa: F401
from wrn_trax.evaluate import final_eval
from wrn_trax.evaluate import load_checkpoint  # noqa: F401
from wrn_trax.evaluate import precise_bn_state  # noqa: F401
from wrn_trax.evaluate import test_row
# pylint: enable=g-import-not-at-top,wrong-import-position

def ready_loop(loop: Any, light_step: bool = True) -> None:
  """What `build_loop` does to a freshly built Loop before its first step.

  Places the optimizer state on the training device (`_compat`), and with
  `light_step` gives single-device trainers the lighter `one_step` (the same
  step with less host work, `_compat._one_step_one_device`) and a donating
  update; see `_compat.lighten_steps` and bench/README.md.
  """
  _compat.spread_optimizer_state(loop)
  if light_step:
    _compat.lighten_steps(loop)


def default_run_name(model: str, dataset: str, recipe: str, seed: int,
                     overrides: Optional[Mapping[str, Any]] = None) -> str:
  """A readable, stable folder name for a run, e.g. 'WRN-16-4_digits_smoke_s0'.

  Overridden recipe fields are appended in sorted order so that two runs with
  different settings never share a folder.
  """
  name = f'{model}_{dataset}_{recipe}_s{seed}'
  overrides = overrides or {}
  for key in sorted(overrides):
    value = overrides[key]
    if isinstance(value, (list, tuple)):
      value = '-'.join(str(v) for v in value)
    name += f'_{key}{value}'
  return name.replace('(', '').replace(')', '').replace(',', '.').replace(' ', '')


def default_workdir(config: Mapping[str, Any], root: str = 'runs') -> str:
  """`root/<run name>`, or the folder an older version named this run.

  A run made with the recipe's old name ('seed', now 'notebook') lives in
  `..._seed_s0`; if that folder exists and this run's does not, it is the
  run's folder, so a rerun resumes or skips it instead of training again.
  """
  workdir = os.path.join(root, config['run_name'])
  if os.path.exists(workdir):
    return workdir
  recipe = config['recipe']
  for old, new in recipes.ALIASES.items():
    if new != recipe:
      continue
    legacy = os.path.join(root, default_run_name(
        config['model'], config['dataset'], old, config['seed'],
        config['overrides']))
    if os.path.exists(os.path.join(legacy, 'config.json')):
      return legacy
  return workdir


def make_config(model: str = 'WRN-16-4', dataset: str = 'digits',
                recipe: str = 'notebook', steps: Optional[int] = None,
                seed: int = 0, data_dir: Optional[str] = None,
                **overrides: Any) -> record.RunConfig:
  """The resolved config of a run, before the data set is loaded.

  Checks every argument (model name, recipe fields, data set name) so that bad
  input fails before anything is trained or written.
  """
  spec = models.parse(model)
  if dataset not in data_lib.DATASETS:
    raise ValueError(f'unknown dataset {dataset!r}; choose one of '
                     f'{data_lib.DATASETS}')
  if steps is not None:
    if not isinstance(steps, (int, np.integer)) or steps <= 0:
      raise ValueError(f'steps must be a positive int, got {steps!r}')
    overrides = dict(overrides, steps=int(steps))
  recipe = recipes.canonical(recipe)  # 'seed' (old name) -> 'notebook'
  r = recipes.get(recipe, dataset, **overrides)
  if r['preprocess'] is None:
    r['preprocess'] = data_lib.default_preprocess(dataset)
  if spec.family == 'stock' and r['dropout']:
    raise ValueError('stock WideResnet has no dropout; use a paper-family '
                     f'model (e.g. {model.replace("stock-", "")}) for dropout')
  return record.new_config(
      run_name=default_run_name(model, dataset, recipe, seed, overrides),
      model=model, family=spec.family, depth=spec.depth,
      widen_factor=spec.widen_factor,
      block='B(' + ','.join(str(b) for b in spec.block) + ')',
      blocks_per_group=spec.blocks_per_group,
      dataset=dataset, recipe=recipe, seed=int(seed), data_dir=data_dir,
      overrides=overrides, **r)


# The run record's comparison of two configs (kept here by its old name).
check_same_run = record.check_same_run


def train(model: str = 'WRN-16-4', dataset: str = 'digits',
          recipe: str = 'notebook', steps: Optional[int] = None,
          workdir: Optional[str] = None, seed: int = 0,
          data_dir: Optional[str] = None, verbose: bool = True,
          **overrides: Any) -> dict[str, Any]:
  """Trains `model` on `dataset` with `recipe`; resumable.

  Args:
    model: any name `wrn_trax.models` reads, e.g. 'WRN-28-10',
      'WRN-40-2-B(3,1,3)' or 'stock-WRN-22-1'.
    dataset: one of `wrn_trax.data.DATASETS`.
    recipe: 'notebook' (the seed Kaggle notebooks; 'seed' is its old name),
      'paper' (Sec. 3 of the paper) or 'smoke' (minutes on a CPU).
    steps: total training steps; default: the recipe's.
    workdir: the run folder; default `runs/<run name>`.
    seed: seeds weights, dropout, shuffling and augmentation.
    data_dir: where the data set lies (a TFDS dir or a folder with the CIFAR
      python batches).
    verbose: print trax's per-checkpoint log, a progress bar and the result.
    **overrides: recipe fields to change (batch_size, lr, dropout,
      eval_every, eval_batches, checkpoint_every, preprocess, augment,
      backend, ...).

  Returns:
    The run summary (also in `workdir/summary.json`): status ('done',
    'diverged' or 'failed'), step, test_error (a fraction, on the whole test
    split), eval_examples, params, flops, timings and memory.
  """
  config = make_config(model, dataset, recipe, steps, seed, data_dir,
                       **overrides)
  return train_config(config, workdir, verbose)


def train_config(config: record.RunConfig, workdir: Optional[str] = None,
                 verbose: bool = True) -> dict[str, Any]:
  """Trains the run of a `make_config` config; what `train` does after it.

  `sweep` plans its members as configs and trains each through here, so a
  member's config is built and checked once.
  """
  workdir = workdir or default_workdir(config)
  config_path = os.path.join(workdir, 'config.json')
  # A garbage config.json or summary.json, or a truncated checkpoint, raises
  # runio.CorruptFileError naming the file before anything is written.
  if os.path.exists(config_path):
    check_same_run(runio.read_json(config_path), config, workdir)
  summary = record.finished_summary(workdir)
  if summary is None:
    # One process trains a folder at a time: a second one fails here with
    # runio.RunFolderBusyError naming the holder, having written nothing. A
    # finished run (above) needs no lock: its summary is final.
    with runio.lock_run_folder(workdir):
      # The holder may have finished the run since the check above.
      summary = record.finished_summary(workdir)
      if summary is None:
        runio.check_checkpoint(workdir)
        return run_session(config, workdir, verbose)
  if verbose:
    print(f'{workdir}: already {summary.status} at step '
          f'{summary.step} (test error {_pct(summary.test_error)})')
  return summary.to_dict()


def _pct(x):
  return 'n/a' if x is None else f'{100 * x:.2f}%'


class BuiltLoop(NamedTuple):
  """What `build_loop` returns: trax's Loop and the models beside it."""
  loop: Any           # trax.supervised.training.Loop, ready to train
  eval_model: Any     # eval mode: the final evaluation's model
  bn_model: Any       # train mode, its own copy: precise BN statistics
  schedule: Any       # step -> learning rate


def resolve(config: record.RunConfig, ds: Any) -> record.ResolvedConfig:
  """`config` completed once the data set and the device are known.

  Returns a new dict: steps and learning-rate milestones in steps (from
  epochs where the recipe has them), the data set's sizes and image shape,
  package versions, the device and the precision 'auto' chose on it.
  """
  steps, milestones = recipes.resolve_steps(config, len(ds.train_labels))
  device, available = _device()
  # One device unless data-parallel training is asked for, so that a
  # recipe's result does not depend on how many GPUs the machine has.
  n_devices = available if config.get('data_parallel') else 1
  precision_used, precision_reason = precision_lib.explain(
      config['precision'], n_devices=n_devices,
      raw_inputs=config['preprocess'] == 'raw')
  return record.resolved_config(
      config, steps=steps, lr_milestone_steps=list(milestones),
      n_classes=int(ds.n_classes), image_shape=list(ds.train_images.shape[1:]),
      n_train=len(ds.train_labels), n_test=len(ds.test_labels),
      versions=_versions(), device=device, n_devices=n_devices,
      # BatchNorm normalises over each device's share of the batch.
      bn_batch_per_device=config['batch_size'] // n_devices,
      precision_used=precision_used, precision_reason=precision_reason)


def build_loop(config: Mapping[str, Any], ds: Any, workdir: str, *,
               light_step: bool = True, out: Optional[IO[str]] = None
               ) -> BuiltLoop:
  """trax's `training.Loop` of a resolved config, restored and ready.

  The Loop restores `workdir`'s checkpoint if there is one (through the
  restricted unpickler), then `ready_loop` places the optimizer state on the
  training device and, with `light_step`, gives single-device trainers the
  lighter one-step; float16 adds the loss-scaled step, starting from the
  checkpoint's scale. Nothing is trained or written.

  Args:
    config: a config from `resolve`.
    ds: the data set (`wrn_trax.data.load`).
    workdir: the run folder (Loop's output_dir).
    light_step: `_compat._one_step_one_device` on one device (the same step
      with less host work, and a donating update); False keeps trax's own.
    out: where trax's prints go while building (default: swallowed).

  Returns:
    A `BuiltLoop`.
  """
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax.supervised import training  # pylint: disable=g-import-not-at-top
  c = config
  n_devices = c['n_devices']
  if c['batch_size'] % n_devices:
    raise ValueError(
        f'batch_size {c["batch_size"]} does not divide over {n_devices} '
        f'devices; pass batch_size= a multiple of {n_devices}')
  build: Callable[..., Any] = lambda mode: models.build(
      c['model'], n_classes=ds.n_classes, dropout=c['dropout'], mode=mode,
      precision=c['precision_used'])
  # augment='device': the preprocessing is the model's first layer, whose
  # 'train' mode crops and flips and 'eval' mode only normalises (the
  # in-training eval never augments, even with eval_bn='batch', whose
  # network runs in train mode).
  network, device = build, c.get('augment', 'host') == 'device'
  build = lambda mode, augment_mode=None: (
      augment_lib.with_preprocess(network(mode), ds, c['preprocess'],
                                  augment_mode or mode)
      if device else network(mode))
  eval_model = build('eval')
  bn_model = build('train')  # for the precise BN statistics
  model = build('train')
  # The cheap in-training eval: eval mode (running BN averages) or, as the
  # seed notebooks, the train-mode model (each eval batch's own BN
  # statistics). Loop drops the state its evals return, so neither changes
  # the training state.
  loop_eval_model = (build('train', 'eval') if c['eval_bn'] == 'batch'
                     else eval_model)
  restart = runio.checkpoint_step(workdir)
  # A resumed session draws a fresh permutation stream (seeded by the step)
  # instead of replaying the first epoch's order.
  train_stream = data_lib.train_batches(
      ds, c['batch_size'], preprocess=host_preprocess(c),
      seed=c['seed'] * 1_000_003 + restart)
  sample_stream = data_lib.eval_sample_batches(
      ds, c['batch_size'], preprocess=host_preprocess(c), seed=c['seed'])
  schedule = optim.piecewise_constant(c['lr'], c['lr_milestone_steps'],
                                      c['lr_decay'])
  task = training.TrainTask(
      labeled_data=train_stream,
      loss_layer=tl.CrossEntropyLoss(),
      optimizer=optim.make_optimizer(c),
      lr_schedule=schedule,
      n_steps_per_checkpoint=c['checkpoint_every'])
  eval_task = training.EvalTask(
      labeled_data=sample_stream,
      metrics=[tl.CrossEntropyLoss(), tl.Accuracy()],
      n_eval_batches=c['eval_batches'])
  every = c['eval_every']
  steps = c['steps']
  with contextlib.redirect_stdout(out or io.StringIO()), \
      runio.restricted_checkpoints(), _compat.loop_device_count(n_devices):
    loop = training.Loop(
        model, [task], eval_model=loop_eval_model, eval_tasks=[eval_task],
        output_dir=workdir,
        eval_at=lambda s: s == 1 or s % every == 0 or s == steps,
        # train_in_chunks saves checkpoints itself, after the step's evals
        # are logged and written to metrics.jsonl (Loop saves before its
        # evals, so a kill right after a checkpoint would lose that step's
        # log lines).
        checkpoint_at=lambda s: False,
        n_devices=n_devices, random_seed=c['seed'])
  ready_loop(loop, light_step=light_step)
  if c['precision_used'] == 'float16':  # the loss scale of the checkpoint
    precision_lib.enable_loss_scaling(
        loop, c['loss_scale_period'],
        precision_lib.load_loss_scale(workdir, loop.step))
  return BuiltLoop(loop, eval_model, bn_model, schedule)


class MetricsLog:
  """A run's `metrics.jsonl`: rows read from trax's history, each once.

  One row per (step, split): 'train' (loss, lr, images/s), 'eval' (the cheap
  in-training eval; `bn` says how BatchNorm normalised) and 'test' (the final
  whole-split evaluation).
  """

  def __init__(self, path, config, schedule):
    self.path = path
    self.batch_size = config['batch_size']
    self.eval_bn = config.get('eval_bn', 'running')
    self.schedule = schedule
    self.logged = set()

  def restart_at(self, step):
    """Keeps the rows up to `step` (a restored checkpoint); their seconds.

    A kill after the checkpoint leaves lines that the resumed run writes
    again. Returns the training seconds logged up to `step` (0.0 if none).
    """
    rows = [r for r in runio.read_jsonl(self.path) if r['step'] <= step]
    runio.write_jsonl(self.path, rows)
    self.logged = {(r['step'], r['split']) for r in rows}
    return max((r.get('seconds', 0.0) for r in rows), default=0.0)

  def rows_from_history(self, loop, elapsed, step_times):
    """New rows from trax's history (not yet logged), in step order."""
    h = loop.history
    loss_name = loop.tasks[0].loss_name
    median = float(np.median(step_times)) if step_times else None
    ips = self.batch_size / median if median else None
    rows = []
    series = {
        'train': {'loss': h.get('train', f'metrics/{loss_name}')},
        'eval': {'loss': h.get('eval', 'metrics/CrossEntropyLoss'),
                 'accuracy': h.get('eval', 'metrics/Accuracy')},
    }
    for split, metrics in series.items():
      by_step = {}
      for metric, points in metrics.items():
        for step, value in points:
          by_step.setdefault(int(step), {})[metric] = float(value)
      for step in sorted(by_step):
        if (step, split) in self.logged:
          continue
        self.logged.add((step, split))
        row = self._row(step, split, by_step[step].get('loss'),
                        by_step[step].get('accuracy'), elapsed, ips)
        if split == 'eval':
          row['bn'] = self.eval_bn
        rows.append(row)
    rows.sort(key=lambda r: (r['step'], r['split'] != 'train'))
    return rows

  def _row(self, step, split, loss, accuracy, elapsed, ips):
    return dict(step=step, split=split, loss=loss, accuracy=accuracy,
                lr=float(self.schedule(step)), seconds=round(elapsed, 3),
                images_per_s=ips if split == 'train' else None)

  def stop_row(self, step, losses, elapsed, step_times):
    """The 'train' row of a run stopped at `step` between trax's logs.

    trax logs the mean training loss only at eval steps; a run stopped in
    between would leave its last steps out of the log, although the
    checkpoint holds them. `losses` are the step losses since the last
    logged train row; the row gives their mean, as trax's rows do. None
    when `step` already has its row or no step ran since.
    """
    if (step, 'train') in self.logged or not losses:
      return None
    self.logged.add((step, 'train'))
    median = float(np.median(step_times)) if step_times else None
    ips = self.batch_size / median if median else None
    loss = float(np.mean([np.mean(np.asarray(l)) for l in losses]))
    return self._row(step, 'train', loss, None, elapsed, ips)

  def append(self, rows):
    runio.append_jsonl(self.path, rows)

  def rows(self):
    return runio.read_jsonl(self.path)

  def last_step(self):
    return max((r['step'] for r in self.rows()), default=0)


class ChunkResult(NamedTuple):
  """What `train_in_chunks` did: how it ended and how fast it went."""
  status: str         # record.DONE, DIVERGED or INTERRUPTED
  reason: Any         # why it diverged or stopped (None when done)
  start_step: int     # the step the session started from (0, or resumed)
  step_times: list    # seconds per step of each timed chunk (not the first)
  seconds0: float     # the seconds logged before this session (resumes)
  t_start: float      # time.time() when this session's training began

  def elapsed(self):
    """Seconds of the run until now, earlier sessions included."""
    return self.seconds0 + time.time() - self.t_start


class Interrupted(KeyboardInterrupt):
  """A run stopped by SIGTERM or Ctrl-C after its final checkpoint was saved.

  A KeyboardInterrupt, so whatever stops on Ctrl-C stops on it too; its
  message says where the run stopped and how to resume.
  """

  def __init__(self, message, signum):
    super().__init__(message)
    self.signum = signum


class _StopRequested(Exception):
  """Raised before a training step runs, once a stop was asked for."""


@contextlib.contextmanager
def _stop_on_signals(loop):
  """SIGTERM and Ctrl-C (SIGINT) end training at the next step boundary.

  The first signal sets a flag; the step that would run next raises
  `_StopRequested` instead, undoing the step count trax's `Loop.run` made
  for it, so the loop's step, weights and slots agree and can be saved. A
  second signal interrupts at once, as Ctrl-C did before. Handlers are
  installed only in the main thread (Python allows no other) and restored
  on exit. Yields a dict whose 'signum' is the signal received, or None,
  and whose 'losses' maps each step run to its loss (for
  `MetricsLog.stop_row`; the caller drops the steps trax has logged).
  """
  asked = {'signum': None, 'losses': {}}
  if threading.current_thread() is not threading.main_thread():
    yield asked
    return

  def handler(signum, frame):
    del frame
    if asked['signum'] is not None:
      raise KeyboardInterrupt
    asked['signum'] = signum

  run_one_step = loop._run_one_step  # pylint: disable=protected-access

  def checked_step(*args, **kwargs):
    if asked['signum'] is not None:
      loop._step -= 1  # pylint: disable=protected-access
      raise _StopRequested
    loss, metrics = run_one_step(*args, **kwargs)
    asked['losses'][loop.step] = loss  # a device array: no sync here
    return loss, metrics

  previous = {s: signal.signal(s, handler)
              for s in (signal.SIGTERM, signal.SIGINT)}
  loop._run_one_step = checked_step  # pylint: disable=protected-access
  try:
    yield asked
  finally:
    del loop._run_one_step  # pylint: disable=protected-access
    for s, h in previous.items():
      signal.signal(s, h)


def train_in_chunks(built: BuiltLoop, config: Mapping[str, Any], workdir: str,
                    log: 'MetricsLog', *, out: Optional[IO[str]] = None,
                    verbose: bool = False) -> 'ChunkResult':
  """Trains `built.loop` to `config['steps']` in chunks; logs, checkpoints.

  Each chunk runs up to the next eval, checkpoint or 100-step mark (the
  first one step, which compiles and is timed apart). After each chunk the
  new history rows go to `log`, a checkpoint is saved when one is due (the
  float16 loss scale first), and the weights and losses are checked:
  non-finite ones end the session as 'diverged'.
  """
  c, loop = config, built.loop
  out = out or io.StringIO()
  start_step = loop.step
  if start_step and verbose:
    print(f'{workdir}: resuming from the checkpoint at step '
          f'{start_step} of {c["steps"]}')
  seconds0 = log.restart_at(start_step)
  steps = c['steps']
  periods = (c['eval_every'], c['checkpoint_every'], 100)
  step_times = []
  t_start = time.time()
  bar = _progress(steps, start_step, c['run_name'], verbose)
  status, reason = record.DONE, None
  with contextlib.ExitStack() as stack:
    stack.callback(bar.close)
    asked = stack.enter_context(_stop_on_signals(loop))
    while loop.step < steps:
      if loop.step == start_step:
        n = 1  # compiles; timed apart from the steady state
      else:  # up to the next eval, checkpoint or 100-step mark
        n = min(min(p - loop.step % p for p in periods), steps - loop.step)
      t0, before = time.time(), loop.step
      with contextlib.redirect_stdout(out):
        try:
          loop.run(n)
        except _StopRequested:
          pass
      n = loop.step - before
      dt = time.time() - t0
      if n and loop.step - n > start_step:
        step_times.append(dt / n)
      bar.update(n)
      new_rows = log.rows_from_history(
          loop, seconds0 + time.time() - t_start, step_times)
      log.append(new_rows)
      logged = [r['step'] for r in new_rows if r['split'] == 'train']
      if logged:  # trax logged these steps' mean loss
        asked['losses'] = {s: l for s, l in asked['losses'].items()
                           if s > max(logged)}
      if asked['signum'] is not None:  # SIGTERM or Ctrl-C: save, then stop
        row = log.stop_row(loop.step, list(asked['losses'].values()),
                           seconds0 + time.time() - t_start, step_times)
        if row:
          log.append([row])
        precision_lib.save_loss_scale(workdir, loop)
        with contextlib.redirect_stdout(out):
          loop.save_checkpoint('model')
        status = record.INTERRUPTED
        reason = (f'{signal.Signals(asked["signum"]).name} at step '
                  f'{loop.step}; a checkpoint was saved there')
        break
      if loop.step % c['checkpoint_every'] == 0 or loop.step == steps:
        precision_lib.save_loss_scale(workdir, loop)  # before trax's
        with contextlib.redirect_stdout(out):
          loop.save_checkpoint('model')
      if not optim.tree_all_finite(loop.model.weights) or any(
          not np.isfinite(r['loss']) for r in new_rows):
        status = record.DIVERGED
        reason = (f'non-finite loss or weights by step {loop.step} '
                  f'(lr {built.schedule(loop.step):g}); lower lr')
        break
      if precision_lib.diverged(loop):  # float16: skipped steps are not
        status = record.DIVERGED
        reason = (f'float16 gradients overflow even unscaled by step '
                  f'{loop.step} (lr {built.schedule(loop.step):g}); lower lr '
                  "or use precision='float32'")
        break
  return ChunkResult(status, reason, start_step, step_times, seconds0,
                     t_start)


def run_session(config: record.RunConfig, workdir: str, verbose: bool = True,
                *, light_step: bool = True) -> dict[str, Any]:
  """One training session of a run folder the caller holds the lock of.

  Loads the data, resolves and records the config (or checks it against
  the folder's), builds the Loop (resuming from its checkpoint), trains in
  chunks, evaluates on the whole test split and writes the summary. Any
  exception but a KeyboardInterrupt is recorded as a 'failed' summary
  (`record.write_failed_summary`) and raised again.
  """
  import trax  # pylint: disable=g-import-not-at-top
  trax.fastmath.set_backend(config['backend'])
  if config['backend'] == 'jax':
    _hide_gpus_from_tensorflow()
  _SESSIONS[0] += 1
  ds = data_lib.load(config['dataset'], config['data_dir'])
  c = resolve(config, ds)
  devices.warn_if_gpu_unused()
  devices.enable_compilation_cache(os.path.dirname(os.path.abspath(workdir)))
  os.makedirs(workdir, exist_ok=True)
  config_path = os.path.join(workdir, 'config.json')
  if os.path.exists(config_path):
    check_same_run(runio.read_json(config_path), c, workdir)
  else:
    runio.write_json(config_path, c)
  log = MetricsLog(os.path.join(workdir, 'metrics.jsonl'), c, None)
  built = None
  try:
    out = sys.stdout if verbose else io.StringIO()
    built = build_loop(c, ds, workdir, light_step=light_step, out=out)
    log.schedule = built.schedule
    done = train_in_chunks(built, c, workdir, log, out=out, verbose=verbose)
    loop = built.loop
    test = running = None
    if done.status == record.INTERRUPTED:  # SIGTERM or Ctrl-C: checkpoint saved
      record.write_summary(workdir, make_summary(
          c, log, done.status, done.reason, step=loop.step,
          step_times=done.step_times, wall=done.elapsed(), loop=loop))
      signame = done.reason.split(' ', 1)[0]
      raise Interrupted(
          f'interrupted by {signame} at step {loop.step} of {c["steps"]} '
          f'(checkpoint saved in {workdir})', signal.Signals[signame])
    if done.status == record.DONE:
      test, running = final_eval(built, c, ds)
      log.append([test_row(loop.step, test, running, done.elapsed())])
      if verbose:
        print(f'Step {loop.step:6d}: test  error {_pct(test["error"])} on '
              f'all {test["examples"]} test images (loss {test["loss"]:.4f}; '
              f'BN statistics: {test["bn"]}; with trax\'s running BN '
              f'averages: {_pct(running["error"])})')
    summary = make_summary(
        c, log, done.status, done.reason, step=loop.step, test=test,
        running=running, ds=ds, step_times=done.step_times,
        wall=done.elapsed(), loop=loop)
    record.write_summary(workdir, summary)
    return summary.to_dict()
  except KeyboardInterrupt:
    raise
  except Exception as e:  # pylint: disable=broad-except
    record.write_failed_summary(
        workdir, f'{type(e).__name__}: {e}', step=log.last_step(),
        steps=c['steps'], precision=c.get('precision_used'))
    raise


def make_summary(config: Mapping[str, Any], log: 'MetricsLog', status: str,
                 reason: Optional[str], step: int,
                 test: Optional[Mapping[str, Any]] = None,
                 running: Optional[Mapping[str, Any]] = None,
                 ds: Any = None, step_times: Sequence[float] = (),
                 wall: Optional[float] = None,
                 loop: Any = None) -> record.Summary:
  """The `record.Summary` of a session that ran to its end (done/diverged)."""
  c = config
  evals = [r for r in log.rows() if r['split'] == 'eval' and
           r.get('accuracy') is not None]
  best = min(evals, key=lambda r: 1 - r['accuracy'], default=None)
  median = float(np.median(step_times)) if len(step_times) else None
  scale = precision_lib.loss_scale_of(loop) if loop is not None else None
  params = flops = None
  if ds is not None:
    params = models.count_params(c['model'], n_classes=ds.n_classes)
    flops = models.count_flops(c['model'], input_shape=tuple(c['image_shape']),
                               n_classes=ds.n_classes)
  return record.Summary(
      status=status, reason=reason, step=int(step),
      steps=int(c['steps']),
      test_error=None if test is None else test['error'],
      test_loss=None if test is None else test['loss'],
      test_bn=None if test is None else test['bn'],
      test_error_running_bn=None if running is None else running['error'],
      test_loss_running_bn=None if running is None else running['loss'],
      eval_examples=0 if test is None else test['examples'],
      best_eval_error=None if best is None else 1 - best['accuracy'],
      best_eval_step=None if best is None else best['step'],
      params=params, flops=flops, wall_seconds=wall,
      median_step_seconds=median,
      images_per_s=(c['batch_size'] / median) if median else None,
      peak_host_mb=_peak_host_mb(), peak_device_mb=_peak_device_mb(),
      peak_device_scope=_peak_device_scope(),
      precision=c.get('precision_used'),
      loss_scale=None if scale is None else scale['scale'],
      skipped_steps=None if scale is None else scale['skipped'])


def _progress(total, initial, name, verbose):
  if not verbose:
    return _NoBar()
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(total=total, initial=initial, desc=name, unit='step',
              dynamic_ncols=True, leave=True)


class _NoBar:

  def update(self, n):
    del n

  def close(self):
    pass


def _hide_gpus_from_tensorflow():
  """TF only feeds data here; keep it from reserving the GPU jax trains on.

  `_tf.import_tensorflow` (already done when `_compat` imported TF; again
  here in case TF was imported around it): a GPU TF had initialised before
  gets a `_tf.TensorFlowOnGpuWarning` with the fix, not silence.
  """
  from wrn_trax import _quiet  # pylint: disable=g-import-not-at-top
  _quiet.import_tensorflow_quietly()


def _versions():
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  out = {}
  for pkg in ('wrn_trax', 'trax', 'jax', 'jaxlib', 'tensorflow', 'numpy'):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      out[pkg] = None
  out['python'] = platform.python_version()
  # True where TensorFlow is wrn_trax's stand-in (wrn_trax/_tf_standin.py).
  from wrn_trax import _tf_standin  # pylint: disable=g-import-not-at-top
  out['tensorflow_standin'] = _tf_standin.active()['tensorflow'] == 'stand-in'
  out['patches'] = _compat.patch_report(run_self_tests=True)  # and why
  return out


def _device():
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  d = jax.local_devices()[0]
  kind = getattr(d, 'device_kind', d.platform)
  return f'{d.platform}: {kind}', int(fastmath.local_device_count())


def _peak_host_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# Training sessions this process has started (`run_session`): XLA's peak
# device memory is the process's since it started, not one run's.
_SESSIONS = [0]


def _peak_device_scope():
  """What summary.json's peak_device_mb covers: 'run' or the process."""
  earlier = _SESSIONS[0] - 1
  if earlier <= 0:
    return 'run'
  return (f'process: the peak since this process started, {earlier} earlier '
          'run(s) in it included')


def _peak_device_mb():
  import jax  # pylint: disable=g-import-not-at-top
  try:
    stats = jax.local_devices()[0].memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    return None
  peak = stats.get('peak_bytes_in_use')
  return None if peak is None else peak / 2**20


runio.make_callable(__name__, train)
