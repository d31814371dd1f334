"""Live view of a sweep: its time estimate, progress, and curves as they grow.

Before a sweep trains, `estimate` works out how long each member will take
on this device; `Monitor` prints that estimate, then keeps an overall
progress bar with the time left and draws every member's curves as they are
logged. In a notebook the curves are ONE figure, redrawn in place through an
IPython display handle (`display(..., display_id=True)`, then
`handle.update(...)`), and the progress line is updated in place the same
way; on a terminal both are text lines.

Where the seconds per step come from, per member, first found wins:

1. ``done``: a member whose summary.json says 'done' needs nothing.
2. ``measured``: a finished run under the same folder root with the same
   step-time key (`step_key`: model, data set, batch size, precision,
   preprocessing, device) gives its median seconds per step and its
   overhead (wall time less steps x step time: compile, evaluations).
3. ``probe``: a short timing of the member's compiled training step
   (`probe_timing`: the real data set, the real Loop, evaluations pushed
   out of reach, one step to compile, then a few timed ones), once per key.
   The overhead is the compile time plus the evaluations' forward batches
   at a third of a step each.
4. ``unknown``: none of these (probing off); the progress bar then uses the
   mean time of the members finished so far.

A member half trained counts only the steps after its last checkpoint.
While the sweep runs, the time left is the remaining members' estimates
scaled by how far the finished members' real times were from theirs
(`Progress.seconds_left`).

The hook API (all the sweep calls): ``monitor = start(members, ...)`` before
training, ``monitor.member_done(i, summary)`` after each member, and
``monitor.close()`` at the end. Curves are read from the run folders'
metrics.jsonl by a background thread every `interval` seconds, so training
code is not touched and Ray members show up too; the thread only reads files
and redraws when one has grown (bench/live_overhead.py measures its cost).
"""
import dataclasses
import io
import math
import os
import sys
import tempfile
import threading
import time
from typing import Optional

from wrn_trax import record
from wrn_trax import runio

# The step-time key: runs that agree on these take the same time per step.
STEP_KEY_FIELDS = ('model', 'dataset', 'batch_size', 'precision', 'augment',
                   'preprocess', 'device')
# A forward pass (evaluation, precise BN batch) costs about a third of a
# training step (forward + backward ~ 3 forwards).
FORWARD_SHARE = 1.0 / 3.0
LIVE = ('auto', 'text', 'notebook')
# The live reader sleeps at least this many times its last redraw.
DRAW_SHARE_INVERSE = 20


def _hms(seconds):
  if seconds is None or not math.isfinite(seconds):
    return '?'
  seconds = int(round(seconds))
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def step_key(config, device=None):
  """What a member's time per step depends on, as a hashable tuple.

  `device` stands in for a planned config's device (not known until the run
  resolves it): this process's device name (`current_device`).
  """
  values = dict(config)
  if values.get('device') is None:
    values['device'] = device
  return tuple(str(values.get(k)) for k in STEP_KEY_FIELDS)


def current_device():
  """The name `train` records as a run's device (e.g. 'cpu: cpu')."""
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  return train_lib._device()[0]  # pylint: disable=protected-access


@dataclasses.dataclass
class Timing:
  """Seconds per training step and per run beside the steps, and whence."""
  step_seconds: float
  overhead_seconds: float
  source: str        # 'measured' or 'probe'
  n_train: Optional[int] = None  # training images (steps from epochs)


@dataclasses.dataclass
class MemberEstimate:
  """One member's estimate: `seconds` = steps_left x step + overhead."""
  workdir: str
  steps: Optional[int]
  steps_left: Optional[int]
  step_seconds: Optional[float]
  overhead_seconds: Optional[float]
  source: str        # 'done', 'measured', 'probe' or 'unknown'

  @property
  def seconds(self):
    if self.source == 'done' or self.steps_left == 0:
      return 0.0
    if self.step_seconds is None or self.steps_left is None:
      return None
    return self.steps_left * self.step_seconds + (self.overhead_seconds or 0.0)


def member_steps(config, n_train=None):
  """A planned member's total steps (its epochs turned into steps), or None."""
  if config.get('steps') is not None:
    return int(config['steps'])
  if config.get('epochs') is None or not n_train:
    return None
  return int(config['epochs']) * -(-int(n_train) // int(config['batch_size']))


def steps_trained(workdir):
  """(finished, steps trained): a 'done' summary, else the last checkpoint."""
  try:
    summary = record.read_summary(workdir)
  except runio.CorruptFileError:
    summary = None
  if summary is not None and summary.status == record.DONE:
    return True, summary.step
  try:
    return False, runio.checkpoint_step(workdir)
  except runio.RunFolderError:
    return False, 0


def forward_batches(steps, config, n_test):
  """Forward-only batches of a run: its evals, precise BN, the final test."""
  every = int(config.get('eval_every') or steps)
  n_evals = 1 + steps // every + (1 if steps % every else 0)
  final = -(-int(n_test) // int(config['batch_size'])) if n_test else 0
  return (n_evals * int(config.get('eval_batches') or 0)
          + int(config.get('precise_bn_batches') or 0) + final)


def measured_timings(roots):
  """Timings of the finished runs under `roots`, by `step_key`.

  Per key, the median over runs of summary.json's median_step_seconds and
  of the overhead wall_seconds - steps x median_step_seconds (at least 0).
  """
  found = {}
  for root in sorted(set(roots)):
    if not os.path.isdir(root):
      continue
    for name in sorted(os.listdir(root)):
      workdir = os.path.join(root, name)
      try:
        config = runio.read_json_or_none(os.path.join(workdir, 'config.json'))
        summary = record.read_summary(workdir)
      except (OSError, runio.CorruptFileError):
        continue
      if not (isinstance(config, dict) and summary is not None
              and summary.status == record.DONE
              and summary.median_step_seconds
              and summary.wall_seconds and summary.step):
        continue
      step = float(summary.median_step_seconds)
      overhead = max(float(summary.wall_seconds) - summary.step * step, 0.0)
      found.setdefault(step_key(config), []).append(
          (step, overhead, config.get('n_train')))
  timings = {}
  for key, values in found.items():
    steps, overheads, n_trains = zip(*values)
    timings[key] = Timing(_median(steps), _median(overheads), 'measured',
                          next((n for n in n_trains if n), None))
  return timings


def _median(values):
  values = sorted(values)
  n = len(values)
  return values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1]
                                             + values[n // 2])


def probe_timing(config, n_steps=3):
  """Times a member's compiled training step here: a `Timing` ('probe').

  Loads the member's data set, builds its Loop (`train.build_loop`) in a
  temporary folder with evaluations and checkpoints out of reach, runs one
  step (compiles, and trax's step-1 evaluation) and then `n_steps` timed
  ones. Nothing is written to the member's folder.
  """
  import contextlib  # pylint: disable=g-import-not-at-top
  from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
  from wrn_trax import optim  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  ds = data_lib.load(config['dataset'], config.get('data_dir'))
  big = 10**9
  c = train_lib.resolve(dict(config, steps=big, epochs=None, eval_every=big,
                             checkpoint_every=big), ds)
  with tempfile.TemporaryDirectory(prefix='wrn_probe_') as workdir:
    out = io.StringIO()
    t0 = time.perf_counter()
    built = train_lib.build_loop(c, ds, workdir, out=out)
    with contextlib.redirect_stdout(out):
      built.loop.run(1)
    optim.tree_all_finite(built.loop.model.weights)  # waits for the device
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(out):
      built.loop.run(n_steps)
    optim.tree_all_finite(built.loop.model.weights)
    t2 = time.perf_counter()
  step = (t2 - t1) / n_steps
  steps = member_steps(config, len(ds.train_labels))
  overhead = (t1 - t0) + FORWARD_SHARE * step * forward_batches(
      steps, config, len(ds.test_labels))
  return Timing(step, overhead, 'probe', len(ds.train_labels))


@dataclasses.dataclass
class SweepEstimate:
  """The members' estimates and where their timings came from."""
  members: list
  device: str
  probe_seconds: float = 0.0

  @property
  def seconds(self):
    """Total seconds of the members with an estimate."""
    return sum(m.seconds or 0.0 for m in self.members)

  @property
  def unknown(self):
    return sum(1 for m in self.members if m.seconds is None)

  def text(self):
    """The estimate as the sweep prints it before training."""
    todo = [m for m in self.members if m.source != 'done']
    sources = {}
    for m in todo:
      sources[m.source] = sources.get(m.source, 0) + 1
    how = ', '.join(f'{n} {s}' for s, n in sorted(sources.items()))
    done = len(self.members) - len(todo)
    line = (f'== sweep estimate on {self.device}: {_hms(self.seconds)} for '
            f'{len(todo)} member(s) to train ({done} done already')
    line += f'; timings: {how})' if how else ')'
    if self.unknown:
      line += (f'; {self.unknown} member(s) without a timing, counted as the '
               'mean of the finished ones once there are some')
    if self.probe_seconds:
      line += f'; probing took {self.probe_seconds:.0f} s'
    return line


def estimate(members, probe='auto', timings=None, device=None,
             probe_fn=probe_timing):
  """How long each member of a sweep will take on this device.

  Args:
    members: `sweep.plan`'s (workdir, config) pairs.
    probe: True times each step-time key without a measured timing
      (`probe_fn`, once per key: it costs about one member's compile
      time); False never; 'auto' only when members left to train share a
      key (seeds, budgets), so that one timing serves several members.
    timings: step_key -> `Timing`; default `measured_timings` of the
      members' roots.
    device: the device name of the keys (default `current_device()`).
    probe_fn: config -> `Timing` (tests pass a fake).

  Returns:
    A `SweepEstimate`.
  """
  device = device or current_device()
  if timings is None:
    timings = measured_timings(os.path.dirname(w) or '.' for w, _ in members)
  timings = dict(timings)
  status = [steps_trained(w) for w, _ in members]
  # 'auto': a probe is worth it where one timing serves several members.
  todo = [step_key(c, device) for (_, c), (done, _) in zip(members, status)
          if not done]
  shared = {k for k in todo if todo.count(k) > 1}
  probe_seconds = 0.0
  out = []
  for (workdir, config), (done, trained) in zip(members, status):
    if done:
      out.append(MemberEstimate(workdir, trained, 0, None, None, 'done'))
      continue
    key = step_key(config, device)
    if key not in timings and (probe is True or
                               (probe == 'auto' and key in shared)):
      t0 = time.perf_counter()
      try:
        timings[key] = probe_fn(config)
      except Exception as e:  # pylint: disable=broad-except
        print(f'== sweep estimate: timing {config.get("model")} failed '
              f'({type(e).__name__}: {e}); its time is unknown',
              file=sys.stderr)
        timings[key] = None
      probe_seconds += time.perf_counter() - t0
    timing = timings.get(key)
    if timing is None:
      steps = member_steps(config)
      out.append(MemberEstimate(
          workdir, steps, None if steps is None else steps - trained, None,
          None, 'unknown'))
      continue
    steps = member_steps(config, timing.n_train)
    left = None if steps is None else max(steps - trained, 0)
    # A resumed member still compiles and evaluates (the overhead).
    out.append(MemberEstimate(workdir, steps, left, timing.step_seconds,
                              timing.overhead_seconds, timing.source))
  return SweepEstimate(out, device, probe_seconds)


class Progress:
  """Members done, time spent, and the time left, as the sweep goes.

  The time left is the sum of the remaining members' estimates times the
  ratio of real to estimated time of the finished members that had one
  (1 before any); a member without an estimate counts as the mean real
  time of the finished ones (0 before any).
  """

  def __init__(self, sweep_estimate, clock=time.time):
    self.estimate = sweep_estimate
    self.clock = clock
    self.t0 = clock()
    self.actual = {}   # member index -> real seconds

  def member_done(self, i, seconds):
    self.actual[i] = float(seconds)

  def ratio(self):
    pairs = [(self.actual[i], self.estimate.members[i].seconds)
             for i in self.actual
             if self.estimate.members[i].seconds]
    if not pairs:
      return 1.0
    return sum(a for a, _ in pairs) / sum(e for _, e in pairs)

  def seconds_left(self):
    left = [m.seconds for i, m in enumerate(self.estimate.members)
            if i not in self.actual]
    known = sum(s for s in left if s is not None) * self.ratio()
    n_unknown = sum(1 for s in left if s is None)
    mean = (sum(self.actual.values()) / len(self.actual)
            if self.actual else 0.0)
    return known + n_unknown * mean

  def text(self, width=24):
    n = len(self.estimate.members)
    done = len(self.actual)
    filled = int(width * done / n) if n else width
    elapsed = self.clock() - self.t0
    return (f'== sweep progress [{"#" * filled}{"." * (width - filled)}] '
            f'{done}/{n} members, {_hms(elapsed)} spent, about '
            f'{_hms(self.seconds_left())} left')


def in_notebook():
  """True inside a Jupyter kernel (where display handles update in place)."""
  shell = sys.modules.get('IPython')
  shell = shell.get_ipython() if shell else None
  return shell is not None and type(shell).__name__ == 'ZMQInteractiveShell'


def _read_points(workdir, offset, partial):
  """New complete metrics.jsonl lines after byte `offset`: (rows, offset)."""
  path = os.path.join(workdir, 'metrics.jsonl')
  try:
    with open(path, 'rb') as f:
      f.seek(offset)
      data = f.read()
  except OSError:
    return [], offset, partial
  data = partial + data
  cut = data.rfind(b'\n') + 1
  rows = []
  import json  # pylint: disable=g-import-not-at-top
  for line in data[:cut].splitlines():
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if isinstance(row, dict):
      rows.append(row)
  return rows, offset + len(data) - len(partial), data[cut:]


class LivePlot:
  """Every member's eval error and training loss, as they are logged.

  `refresh()` reads what each run folder's metrics.jsonl gained since the
  last call and, if anything, redraws. In 'notebook' mode the curves are one
  matplotlib Figure with two axes, shown once through
  `display(png, display_id=True)` and replaced in place with
  `handle.update(png)` after; in 'text' mode each new eval point is one
  printed line.
  """

  def __init__(self, workdirs, mode='text', display=None, out=None):
    if mode not in ('text', 'notebook'):
      raise ValueError(f"mode must be 'text' or 'notebook', got {mode!r}")
    self.workdirs = list(workdirs)
    self.mode = mode
    self.out = out or sys.stdout
    self._display = display
    self._state = {w: (0, b'') for w in self.workdirs}
    self.points = {w: {'eval': [], 'train': []} for w in self.workdirs}
    self.steps = {}
    self.figure = None
    self.handle = None
    self.draws = 0
    self.last_draw_seconds = 0.0
    self._lock = threading.Lock()

  def refresh(self):
    """Reads new points; redraws (or prints) if there are any. -> bool."""
    with self._lock:
      new = {}
      for w in self.workdirs:
        offset, partial = self._state[w]
        rows, offset, partial = _read_points(w, offset, partial)
        self._state[w] = (offset, partial)
        for row in rows:
          split = row.get('split')
          if split == 'eval' and row.get('accuracy') is not None:
            point = (row['step'], 100.0 * (1.0 - row['accuracy']))
          elif split == 'train' and row.get('loss') is not None:
            point = (row['step'], row['loss'])
          else:
            continue
          self.points[w][split].append(point)
          new.setdefault(w, []).append((split, point))
      if not new:
        return False
      if self.mode == 'text':
        self._print(new)
      else:
        self._draw()
      return True

  def _print(self, new):
    for w, points in new.items():
      evals = [p for s, p in points if s == 'eval']
      if evals:
        step, error = evals[-1]
        print(f'== live {os.path.basename(w)}: step {step}, eval error '
              f'{error:.2f} %', file=self.out, flush=True)

  def _draw(self):
    if self.figure is None:
      from matplotlib import figure  # pylint: disable=g-import-not-at-top
      self.figure = figure.Figure(figsize=(10, 3.6), layout='constrained')
      self.figure.add_subplot(1, 2, 1)
      self.figure.add_subplot(1, 2, 2)
    eval_ax, loss_ax = self.figure.axes
    for ax in (eval_ax, loss_ax):
      ax.clear()
    for w in self.workdirs:
      name = os.path.basename(w)
      for ax, split in ((eval_ax, 'eval'), (loss_ax, 'train')):
        points = self.points[w][split]
        if points:
          steps, values = zip(*points)
          ax.plot(steps, values, marker='.' if split == 'eval' else None,
                  label=name)
    eval_ax.set(xlabel='step', ylabel='eval error (%)',
                title='in-training eval (a few test batches)')
    loss_ax.set(xlabel='step', ylabel='training loss', yscale='log')
    if eval_ax.lines:
      eval_ax.legend(fontsize='xx-small')
    for ax in (eval_ax, loss_ax):
      ax.grid(True, alpha=0.3)
    self._show()

  def _show(self):
    t0 = time.perf_counter()
    buffer = io.BytesIO()
    self.figure.savefig(buffer, format='png', dpi=80)
    display = self._display or _ipython_display
    image = _png(buffer.getvalue())
    if self.handle is None:
      self.handle = display(image, display_id=True)
    else:
      self.handle.update(image)
    self.draws += 1
    self.last_draw_seconds = time.perf_counter() - t0


def _png(data):
  try:
    from IPython.display import Image  # pylint: disable=g-import-not-at-top
  except ImportError:  # a fake display gets the bytes
    return data
  return Image(data=data, format='png')


def _ipython_display(obj, display_id=True):
  from IPython.display import display  # pylint: disable=g-import-not-at-top
  return display(obj, display_id=display_id)


class _TextLine:
  """A progress line: printed on a terminal, one updated line in a notebook."""

  def __init__(self, mode, display=None, out=None):
    self.mode = mode
    self.display = display
    self.out = out or sys.stdout
    self.handle = None

  def show(self, text):
    if self.mode == 'text':
      print(text, file=self.out, flush=True)
      return
    from IPython.display import Pretty  # pylint: disable=g-import-not-at-top
    if self.handle is None:
      self.handle = (self.display or _ipython_display)(Pretty(text),
                                                        display_id=True)
    else:
      self.handle.update(Pretty(text))


class Monitor:
  """The sweep's hooks: the estimate, progress after each member, live curves.

  Made by `start`; `member_done(i, summary)` after each member, `close()`
  at the end (stops the reader thread and draws the last points).
  """

  def __init__(self, members, sweep_estimate, mode='text', interval=10.0,
               plot=True, display=None, out=None, clock=time.time):
    self.members = list(members)
    self.mode = mode
    self.out = out or sys.stdout
    self.progress = Progress(sweep_estimate, clock)
    self.line = _TextLine(mode, display, self.out)
    self.plot = (LivePlot([w for w, _ in members], mode, display, self.out)
                 if plot else None)
    self.interval = interval
    self.clock = clock
    self._started = clock()
    self._stop = threading.Event()
    self._thread = None
    print(sweep_estimate.text(), file=self.out, flush=True)
    self.line.show(self.progress.text())
    if self.plot is not None and interval:
      self._thread = threading.Thread(target=self._poll, daemon=True,
                                      name='wrn_trax.live')
      self._thread.start()

  def _poll(self):
    # A redraw (PNG of the figure) took 0.7 s for 8 members on a loaded
    # 2-core CPU: the reader waits at least DRAW_SHARE_INVERSE x the last
    # redraw, so drawing takes at most 1/20 of one core.
    while not self._stop.wait(max(
        self.interval, DRAW_SHARE_INVERSE * self.plot.last_draw_seconds)):
      try:
        self.plot.refresh()
      except Exception as e:  # pylint: disable=broad-except
        print(f'== live plot stopped: {type(e).__name__}: {e}',
              file=sys.stderr)
        return

  def member_done(self, i, summary=None):
    """After member `i` (its summary, unused but for the record) ended."""
    del summary
    now = self.clock()
    self.progress.member_done(i, now - self._started)
    self._started = now
    if self.plot is not None:
      self.plot.refresh()
    self.line.show(self.progress.text())

  def close(self):
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    if self.plot is not None:
      self.plot.refresh()


class _Off:
  """What `start` returns when the live view is off: hooks that do nothing."""

  def member_done(self, i, summary=None):
    del i, summary

  def close(self):
    pass


def start(members, live='auto', interval=None, probe='auto', display=None,
          out=None):
  """Prints the sweep's estimate and starts its live view; the hooks.

  Args:
    members: `sweep.plan`'s (workdir, config) pairs.
    live: 'auto' (a notebook: the plot and progress line updated in place;
      elsewhere: text lines), 'notebook', 'text', or False/None (off:
      nothing printed, nothing timed).
    interval: seconds between reads of the run folders (default 10 in a
      notebook, 30 on a terminal).
    probe: passed to `estimate`.
    display: IPython's `display` stand-in (tests).
    out: where text goes (default stdout).

  Returns:
    An object with `member_done(i, summary)` and `close()`.
  """
  if not live:
    return _Off()
  if live is True:
    live = 'auto'
  if live not in LIVE:
    raise ValueError(f'live must be one of {LIVE} or False, got {live!r}')
  mode = live if live != 'auto' else (
      'notebook' if in_notebook() else 'text')
  if interval is None:
    interval = 10.0 if mode == 'notebook' else 30.0
  return Monitor(members, estimate(members, probe=probe), mode, interval,
                 display=display, out=out)
