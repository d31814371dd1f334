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
