"""SIGTERM (a Kaggle session ending, a scheduler's preemption) stops a run as
Ctrl-C does: at a step boundary, with a final checkpoint, an 'interrupted'
summary and one line saying how to resume; rerunning resumes there."""

import os
import re
import signal
import subprocess
import time

import pytest

from wrn_trax import record
from wrn_trax import runio

TINY = 'WRN-10-1'
STEPS = 60


def _argv(python, workdir):
  return [
    python,
    '-m',
    'wrn_trax',
    'train',
    '--model',
    TINY,
    '--dataset',
    'digits',
    '--recipe',
    'smoke',
    '--steps',
    str(STEPS),
    '--set',
    'eval_every=2',
    '--set',
    'checkpoint_every=1000',
    '--workdir',
    workdir,
  ]


def _train_rows(workdir):
  return [
    r for r in runio.read_jsonl(os.path.join(workdir, 'metrics.jsonl')) if r['split'] == 'train'
  ]


@pytest.mark.slow
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT], ids=['SIGTERM', 'SIGINT'])
def test_signal_saves_a_checkpoint_and_rerun_resumes(tmp_path, python, subprocess_env, signum):
  workdir = str(tmp_path / 'run')
  child = subprocess.Popen(
    _argv(python, workdir) + ['--quiet'],
    env=subprocess_env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  deadline = time.time() + 300
  try:
    # Training is under way (the first chunks logged), far from its end.
    while time.time() < deadline:
      rows = os.path.exists(os.path.join(workdir, 'metrics.jsonl')) and (_train_rows(workdir))
      if rows and rows[-1]['step'] >= 2:
        break
      assert child.poll() is None, child.communicate()
      time.sleep(0.05)
    else:
      pytest.fail('no training step logged within 300 s')
    child.send_signal(signum)
    out, err = child.communicate(timeout=120)
  finally:
    if child.poll() is None:
      child.kill()
      child.wait()
  assert child.returncode == 128 + signum, (out, err)
  assert 'Traceback' not in err, err
  lines = [l for l in err.splitlines() if l.strip()]
  name = signal.Signals(signum).name
  match = re.fullmatch(
    rf'wrn-trax train: interrupted by {name} at step (\d+) of {STEPS} '
    rf'\(checkpoint saved in {re.escape(workdir)}\); rerun the same '
    r'command to resume',
    lines[-1],
  )
  assert match, err
  stopped = int(match.group(1))
  assert 2 <= stopped < STEPS
  # The checkpoint, the summary and the log all stop at that step.
  ckpt = os.path.join(workdir, 'model.pkl.gz')
  assert runio.load_checkpoint_dict(ckpt)['step'] == stopped
  summary = record.read_summary(workdir)
  assert summary.status == 'interrupted' and summary.step == stopped
  assert name in summary.reason
  assert runio.finished_summary(workdir) is None  # not over: it resumes
  assert _train_rows(workdir)[-1]['step'] == stopped

  r = subprocess.run(
    _argv(python, workdir),
    env=subprocess_env,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert r.returncode == 0, r.stderr
  assert f'resuming from the checkpoint at step {stopped}' in r.stdout
  summary = record.read_summary(workdir)
  assert summary.status == 'done' and summary.step == STEPS
  steps = [row['step'] for row in _train_rows(workdir)]
  assert steps == sorted(set(steps)) and steps[-1] == STEPS


def _stop_at(signal_step, tmp_path):
  """Trains in-process, sending this process SIGTERM during `signal_step`.

  Returns the chunk result, the log's train rows and every step's loss.
  """
  from wrn_trax import data  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top

  ds = data.load('digits')
  c = train_lib.make_config(TINY, 'digits', 'smoke', steps=10, eval_every=4, checkpoint_every=1000)
  c = train_lib.resolve(c, ds)
  workdir = str(tmp_path / 'run')
  built = train_lib.build_loop(c, ds, workdir)
  losses = {}
  run_one_step = built.loop._run_one_step  # pylint: disable=protected-access

  def step_then_signal(*args, **kwargs):
    loss, metrics = run_one_step(*args, **kwargs)
    losses[built.loop.step] = float(loss)
    if built.loop.step == signal_step:
      os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, mid-chunk
    return loss, metrics

  built.loop._run_one_step = step_then_signal  # pylint: disable=protected-access
  log = train_lib.MetricsLog(os.path.join(workdir, 'metrics.jsonl'), c, built.schedule)
  done = train_lib.train_in_chunks(built, c, workdir, log)
  return done, _train_rows(workdir), losses


def test_a_stop_between_trax_logs_writes_the_train_row_of_its_step(tmp_path):
  # trax logs the training loss at eval steps (1, 4, 8, 10); a stop at step
  # 3 would leave steps 2-3 out of the log although the checkpoint has them.
  done, rows, losses = _stop_at(3, tmp_path)
  assert done.status == record.INTERRUPTED and 'SIGTERM at step 3' in done.reason
  assert [r['step'] for r in rows] == [1, 3]
  assert rows[-1]['loss'] == pytest.approx((losses[2] + losses[3]) / 2, rel=1e-5)
  assert rows[0]['loss'] == pytest.approx(losses[1], rel=1e-5)
  assert runio.load_checkpoint_dict(str(tmp_path / 'run' / 'model.pkl.gz'))['step'] == 3


def test_a_stop_on_a_logged_step_adds_no_second_row(tmp_path):
  done, rows, losses = _stop_at(4, tmp_path)  # the chunk 2-4 ends first
  assert done.status == record.INTERRUPTED and 'SIGTERM at step 4' in done.reason
  assert [r['step'] for r in rows] == [1, 4]
  assert rows[-1]['loss'] == pytest.approx(sum(losses[s] for s in (2, 3, 4)) / 3, rel=1e-5)
