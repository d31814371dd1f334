"""Training: learning, the run folder, resume after SIGKILL, faults, recipes."""
import gzip
import json
import os
import pickle
import signal
import subprocess
import time

import numpy as np
import pytest

from wrn_trax import optim
from wrn_trax import recipes
from wrn_trax import runio
from wrn_trax import train as train_lib

TINY = 'WRN-10-1'  # one B(3,3) block per group: compiles in seconds on a CPU


def _rows(workdir):
  return runio.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))


def test_smoke_recipe_learns_digits_and_writes_the_record(tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  summary = train_lib.train(model=TINY, dataset='digits', recipe='smoke',
                            steps=60, workdir=workdir)
  # Ten classes: chance is 90% error. 60 Adam steps reach ~6% here; 30% is
  # "well below chance" with room for noise across machines.
  assert summary['status'] == 'done'
  assert summary['step'] == 60
  assert summary['test_error'] < 0.30
  assert summary['eval_examples'] == 360  # the whole digits test split
  assert summary['params'] == 77850
  assert summary['flops'] > 0 and summary['images_per_s'] > 0
  assert summary == runio.read_json(os.path.join(workdir, 'summary.json'))
  config = runio.read_json(os.path.join(workdir, 'config.json'))
  assert config['model'] == TINY and config['steps'] == 60
  assert config['versions']['trax'] == '1.4.1'
  assert config['versions']['patches']['light_one_step']['allowed']
  rows = _rows(workdir)
  assert [(r['step'], r['split']) for r in rows] == [
      (1, 'train'), (1, 'eval'), (40, 'train'), (40, 'eval'), (60, 'train'),
      (60, 'eval'), (60, 'test')]
  test_row = rows[-1]
  assert test_row['accuracy'] == pytest.approx(1 - summary['test_error'])
  assert os.path.exists(os.path.join(workdir, 'model.pkl.gz'))
  out = capsys.readouterr().out
  # The seed notebooks' log format, line for line.
  assert 'Step      1: Total number of trainable weights: 77850' in out
  assert 'Step      1: Ran 1 train steps in' in out
  assert 'Step     40: train CrossEntropyLoss |' in out
  assert 'Step     40: eval          Accuracy |' in out
  assert 'test  error' in out and 'on all 360 test images' in out

  # A finished run returns its summary without training.
  mtime = os.path.getmtime(os.path.join(workdir, 'model.pkl.gz'))
  again = train_lib.train(model=TINY, dataset='digits', recipe='smoke',
                          steps=60, workdir=workdir, verbose=False)
  assert again == summary
  assert os.path.getmtime(os.path.join(workdir, 'model.pkl.gz')) == mtime

  # Same folder, another config: a clear error naming the field, nothing lost.
  with pytest.raises(ValueError, match=r'lr: 0\.003 there, 0\.01 now'):
    train_lib.train(model=TINY, dataset='digits', recipe='smoke', steps=60,
                    workdir=workdir, lr=0.01)
  assert runio.read_json(os.path.join(workdir, 'summary.json')) == summary


_CHILD = """
import sys, wrn_trax
wrn_trax.train(model='{model}', dataset='digits', recipe='smoke', steps=40,
               workdir=sys.argv[1], eval_every=5, checkpoint_every=5)
"""


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_with_continuous_metrics(
    tmp_path, python, subprocess_env):
  workdir = str(tmp_path / 'run')
  child = subprocess.Popen(
      [python, '-c', _CHILD.format(model=TINY), workdir],
      env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  ckpt = os.path.join(workdir, 'model.pkl.gz')
  deadline = time.time() + 300
  try:
    # Wait for a checkpoint past the first one, then kill without warning.
    while time.time() < deadline:
      if os.path.exists(ckpt) and runio.load_checkpoint_dict(ckpt)['step'] >= 10:
        break
      assert child.poll() is None, child.stdout.read().decode()
      time.sleep(0.2)
    else:
      pytest.fail('no checkpoint within 300 s')
  finally:
    child.send_signal(signal.SIGKILL)
    child.wait()
  killed_at = runio.load_checkpoint_dict(ckpt)['step']
  assert 10 <= killed_at < 40
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))

  out = subprocess.run([python, '-c', _CHILD.format(model=TINY), workdir],
                       env=subprocess_env, capture_output=True, text=True,
                       check=True).stdout
  assert 'resuming from the checkpoint at step' in out
  summary = runio.read_json(os.path.join(workdir, 'summary.json'))
  assert summary['status'] == 'done' and summary['step'] == 40
  keys = [(r['step'], r['split']) for r in _rows(workdir)]
  assert len(keys) == len(set(keys)), 'duplicate metrics rows'
  logged = [1] + list(range(5, 41, 5))
  assert [s for s, split in keys if split == 'train'] == logged
  assert [s for s, split in keys if split == 'test'] == [40]
  # Seconds keep counting across the kill.
  seconds = [r['seconds'] for r in _rows(workdir) if r['split'] == 'train']
  assert seconds == sorted(seconds)


@pytest.mark.slow
def test_nan_loss_stops_the_run_as_diverged(tmp_path):
  workdir = str(tmp_path / 'run')
  summary = train_lib.train(model=TINY, dataset='digits', recipe='smoke',
                            steps=200, workdir=workdir, verbose=False,
                            optimizer='sgd', momentum=0.9, lr=1e8,
                            eval_every=10, checkpoint_every=10)
  assert summary['status'] == 'diverged'
  assert summary['step'] < 200
  assert 'lower lr' in summary['reason']
  assert summary['test_error'] is None
  assert runio.read_json(os.path.join(workdir, 'summary.json')) == summary


@pytest.mark.parametrize('kwargs, match', [
    (dict(model='WRN-27-2'), r'6N\+4|6n\+4|depth'),
    (dict(model='WRN-16-0'), 'widen'),
    (dict(dataset='imagenet'), 'unknown dataset'),
    (dict(recipe='fast'), 'unknown recipe'),
    (dict(steps=0), 'steps must be a positive int'),
    (dict(batch_size=0), 'batch_size must be a positive int'),
    (dict(learning_rate=0.1), 'unknown recipe field'),
    (dict(model='stock-WRN-22-1', dropout=0.3), 'no dropout'),
    (dict(dropout=1.0), 'dropout'),
])
def test_bad_input_fails_before_anything_is_written(tmp_path, kwargs, match):
  args = dict(model=TINY, dataset='digits', recipe='smoke',
              workdir=str(tmp_path / 'run'), verbose=False)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    train_lib.train(**args)
  assert not os.path.exists(tmp_path / 'run')


def test_checkpoint_pickle_of_unknown_origin_is_refused(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()

  class Evil:

    def __reduce__(self):
      return (os.system, ('touch ' + str(tmp_path / 'pwned'),))

  with gzip.open(workdir / 'model.pkl.gz', 'wb') as f:
    pickle.dump({'step': 3, 'x': Evil()}, f)
  with pytest.raises(runio.UntrustedPickleError, match='posix.system|os.system'):
    runio.load_checkpoint_dict(str(workdir / 'model.pkl.gz'))
  with pytest.raises(runio.UntrustedPickleError):
    train_lib.train(model=TINY, dataset='digits', recipe='smoke', steps=5,
                    workdir=str(workdir), verbose=False)
  assert not (tmp_path / 'pwned').exists()


def test_sgd_weight_decay_is_the_papers_l2_term():
  """Three steps of our SGD equal torch.optim.SGD(nesterov, wd) by hand."""
  rng = np.random.default_rng(0)
  w0 = rng.normal(size=(4, 3)).astype(np.float32)
  grads = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3)]
  lr, mu, wd = 0.1, 0.9, 5e-4
  opt = optim.SGD(lr, mass=mu, weight_decay=wd, nesterov=True)
  params = {k: np.asarray(v) for k, v in opt._init_opt_params.items()}  # pylint: disable=protected-access
  w, v = w0, np.asarray(opt.init(w0))
  w_ref, buf = w0.copy(), np.zeros_like(w0)
  for g in grads:
    w, v = opt.update(0, g, w, v, params)
    d = g + wd * w_ref          # L2 term added to the gradient
    buf = mu * buf + d          # momentum buffer, dampening 0
    w_ref = w_ref - lr * (d + mu * buf)  # Nesterov
  np.testing.assert_allclose(np.asarray(w), w_ref, rtol=1e-6, atol=1e-7)
  # trax's own Momentum decays (1 - wd) * w with no lr factor: not the same.
  from trax import optimizers  # pylint: disable=g-import-not-at-top
  m = optimizers.Momentum(lr, mass=mu, weight_decay_rate=wd, nesterov=True)
  mp = {k: np.asarray(x) for k, x in m._init_opt_params.items()}  # pylint: disable=protected-access
  wt, _ = m.update(0, grads[0], w0, np.zeros_like(w0), mp)
  w1, _ = opt.update(0, grads[0], w0, np.zeros_like(w0), params)
  assert not np.allclose(np.asarray(wt), np.asarray(w1), rtol=0, atol=1e-6)


def test_paper_recipe_schedule_in_steps():
  r = recipes.get('paper', 'cifar10')
  steps, milestones = recipes.resolve_steps(r, 50_000)
  assert steps == 200 * 391  # ceil(50,000 / 128) = 391 steps per epoch
  assert milestones == (60 * 391, 120 * 391, 160 * 391)
  schedule = optim.piecewise_constant(r['lr'], milestones, r['lr_decay'])
  assert schedule(1) == pytest.approx(0.1)
  assert schedule(60 * 391) == pytest.approx(0.1)
  assert schedule(60 * 391 + 1) == pytest.approx(0.02)
  assert schedule(steps) == pytest.approx(0.1 * 0.2**3)
  svhn = recipes.get('paper', 'svhn')
  assert (svhn['lr'], svhn['epochs'], svhn['lr_milestones'], svhn['lr_decay'],
          svhn['dropout']) == (0.01, 160, (80, 120), 0.1, 0.4)
  # An explicit step count keeps the shape of the schedule.
  steps, milestones = recipes.resolve_steps(dict(r, steps=1000), 50_000)
  assert steps == 1000 and milestones == (300, 600, 800)


def test_seed_recipe_is_the_notebooks():
  r = recipes.get('seed', 'cifar10')
  assert (r['optimizer'], r['lr'], r['batch_size'], r['steps'],
          r['eval_every'], r['eval_batches'], r['preprocess']) == (
              'adam', 0.01, 64, 5000, 1000, 20, 'raw')


def test_run_names_are_readable_stable_and_unique():
  a = train_lib.default_run_name('WRN-40-2-B(3,1,3)', 'cifar10', 'paper', 1)
  assert a == 'WRN-40-2-B3.1.3_cifar10_paper_s1'
  b = train_lib.default_run_name('WRN-16-4', 'digits', 'smoke', 0,
                                 {'dropout': 0.3, 'batch_size': 64})
  assert b == 'WRN-16-4_digits_smoke_s0_batch_size64_dropout0.3'
  assert json.dumps(b) == json.dumps(train_lib.default_run_name(
      'WRN-16-4', 'digits', 'smoke', 0, {'batch_size': 64, 'dropout': 0.3}))
