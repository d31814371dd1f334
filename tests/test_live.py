"""wrn_trax.live: the estimate's arithmetic, the progress line, and that the
live plot updates one figure (one display, then updates of its handle)."""
import io
import json
import os

import pytest

from wrn_trax import live
from wrn_trax import record
from wrn_trax import runio


def _config(model='WRN-10-1', steps=100, **kw):
  return dict(dict(model=model, dataset='digits', batch_size=32,
                   precision='float32', augment='host', preprocess='digits',
                   steps=steps, epochs=None, eval_every=50, eval_batches=4,
                   precise_bn_batches=20), **kw)


def _done_run(root, name, config, step_seconds, wall):
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  runio.write_json(record.config_path(workdir),
                   dict(config, device='cpu: cpu', n_train=1437))
  record.write_summary(workdir, record.Summary(
      status='done', step=config['steps'], steps=config['steps'],
      median_step_seconds=step_seconds, wall_seconds=wall))
  return workdir


def test_measured_timing_and_member_arithmetic(tmp_path):
  root = str(tmp_path)
  _done_run(root, 'a', _config(steps=100), 0.5, 80.0)   # overhead 30 s
  _done_run(root, 'b', _config(steps=200), 0.7, 150.0)  # overhead 10 s
  members = [(os.path.join(root, 'a'), _config(steps=100)),   # done
             (os.path.join(root, 'new'), _config(steps=400)),
             (os.path.join(root, 'k2'), _config('WRN-10-2', steps=10))]
  calls = []
  est = live.estimate(members, probe=False, device='cpu: cpu',
                      probe_fn=calls.append)
  assert calls == []
  done, new, unknown = est.members
  assert done.source == 'done' and done.seconds == 0.0
  # medians over the two runs: 0.6 s per step, 20 s overhead
  assert new.source == 'measured'
  assert new.step_seconds == pytest.approx(0.6)
  assert new.overhead_seconds == pytest.approx(20.0)
  assert new.seconds == pytest.approx(400 * 0.6 + 20.0)
  assert unknown.source == 'unknown' and unknown.seconds is None
  assert est.seconds == pytest.approx(260.0) and est.unknown == 1
  assert '0:04:20' in est.text() and '1 measured' in est.text()


def test_probe_once_per_key_and_only_where_shared(tmp_path):
  root = str(tmp_path)
  members = [(os.path.join(root, f'm{s}'), _config(seed=s)) for s in (0, 1)]
  members.append((os.path.join(root, 'k2'), _config('WRN-10-2')))
  calls = []

  def probe_fn(config):
    calls.append(config['model'])
    return live.Timing(0.25, 5.0, 'probe', 1437)

  est = live.estimate(members, probe='auto', device='d', timings={},
                      probe_fn=probe_fn)
  assert calls == ['WRN-10-1']  # k=2 has one member: not worth a probe
  assert [m.source for m in est.members] == ['probe', 'probe', 'unknown']
  assert est.members[0].seconds == pytest.approx(100 * 0.25 + 5.0)
  calls.clear()
  live.estimate(members, probe=True, device='d', timings={},
                probe_fn=probe_fn)
  assert calls == ['WRN-10-1', 'WRN-10-2']


def test_resumed_member_counts_the_steps_left(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'half')
  os.makedirs(workdir)
  monkeypatch.setattr(live.runio, 'checkpoint_step', lambda w: 60)
  timing = live.Timing(0.5, 10.0, 'measured')
  key = live.step_key(_config(), 'd')
  est = live.estimate([(workdir, _config(steps=100))], device='d',
                      timings={key: timing})
  assert est.members[0].steps_left == 40
  assert est.members[0].seconds == pytest.approx(40 * 0.5 + 10.0)


def test_epochs_become_steps_with_the_measured_split_size():
  config = _config(steps=None, epochs=2, batch_size=100)
  assert live.member_steps(config, 1437) == 2 * 15
  assert live.member_steps(config) is None


def test_forward_batches():
  # evals at 1, 50, 100 (3) x 4 batches + 20 precise-BN + ceil(360/32)=12
  assert live.forward_batches(100, _config(), 360) == 3 * 4 + 20 + 12
  # steps not a multiple of eval_every: one more eval at the end
  assert live.forward_batches(120, _config(), 0) == 4 * 4 + 20


def _estimate(seconds):
  return live.SweepEstimate(
      [live.MemberEstimate(str(i), 10, 10 if s is not None else None,
                           None if s is None else s / 10, 0.0,
                           'measured' if s is not None else 'unknown')
       for i, s in enumerate(seconds)], 'd')


def test_progress_time_left_scales_by_the_finished_members():
  now = [0.0]
  progress = live.Progress(_estimate([100.0, 100.0, 200.0, None]),
                           clock=lambda: now[0])
  assert progress.seconds_left() == pytest.approx(400.0)
  progress.member_done(0, 150.0)       # 1.5x its estimate
  assert progress.ratio() == pytest.approx(1.5)
  # (100 + 200) x 1.5 + one unknown at the mean real time, 150
  assert progress.seconds_left() == pytest.approx(450.0 + 150.0)
  progress.member_done(1, 50.0)        # now (150 + 50) / 200 = 1.0
  assert progress.seconds_left() == pytest.approx(200.0 + 100.0)
  now[0] = 200.0
  text = progress.text(width=8)
  assert '[####....] 2/4 members' in text
  assert '0:03:20 spent' in text and '0:05:00 left' in text


class _FakeDisplay:
  """IPython's display with display_id=True: returns a handle."""

  def __init__(self):
    self.shown, self.updates = [], []

  def __call__(self, obj, display_id=True):
    assert display_id is True
    self.shown.append(obj)
    return self

  def update(self, obj):
    self.updates.append(obj)


def _append(workdir, rows):
  with open(os.path.join(workdir, 'metrics.jsonl'), 'a') as f:
    for row in rows:
      f.write(json.dumps(row) + '\n')


def test_live_plot_updates_one_figure(tmp_path):
  workdirs = [str(tmp_path / n) for n in ('a', 'b')]
  for w in workdirs:
    os.makedirs(w)
  display = _FakeDisplay()
  plot = live.LivePlot(workdirs, 'notebook', display=display)
  assert not plot.refresh()  # nothing logged yet: nothing drawn
  figures = set()
  for step in (1, 50, 100):
    for w in workdirs:
      _append(w, [{'step': step, 'split': 'train', 'loss': 2.0 / step},
                  {'step': step, 'split': 'eval', 'accuracy': step / 200}])
    assert plot.refresh()
    figures.add(id(plot.figure))
  assert not plot.refresh()  # no new points: no redraw
  assert len(figures) == 1
  assert len(display.shown) == 1 and len(display.updates) == 2
  assert plot.draws == 3
  eval_ax, loss_ax = plot.figure.axes
  assert len(eval_ax.lines) == 2 and len(loss_ax.lines) == 2
  assert list(eval_ax.lines[0].get_ydata()) == pytest.approx(
      [100 * (1 - s / 200) for s in (1, 50, 100)])


def test_live_plot_waits_for_a_line_cut_short(tmp_path):
  w = str(tmp_path)
  plot = live.LivePlot([w], 'text', out=io.StringIO())
  with open(os.path.join(w, 'metrics.jsonl'), 'w') as f:
    f.write('{"step": 5, "split": "eval", "accu')
  assert not plot.refresh()
  with open(os.path.join(w, 'metrics.jsonl'), 'a') as f:
    f.write('racy": 0.75}\n')
  assert plot.refresh()
  assert plot.points[w]['eval'] == [(5, pytest.approx(25.0))]
  assert 'step 5, eval error 25.00 %' in plot.out.getvalue()


def test_monitor_text_prints_estimate_then_progress(tmp_path):
  out = io.StringIO()
  members = [(str(tmp_path / 'a'), _config()), (str(tmp_path / 'b'),
                                                 _config())]
  now = [0.0]
  monitor = live.Monitor(members, _estimate([60.0, 60.0]), 'text',
                         interval=0, out=out, clock=lambda: now[0])
  now[0] = 30.0
  monitor.member_done(0, {'status': 'done'})
  monitor.close()
  lines = out.getvalue().splitlines()
  assert lines[0].startswith('== sweep estimate on d: 0:02:00')
  assert '0/2 members' in lines[1]
  assert '1/2 members' in lines[2] and '0:00:30 left' in lines[2]


def test_start_off_and_bad_mode():
  assert live.start([], live=False).member_done(0) is None
  with pytest.raises(ValueError, match='live must be one of'):
    live.start([], live='gui')
