"""Sweeps: grids, resume after SIGKILL, failures recorded, Ray, bad input."""
import os
import signal
import subprocess
import time

import pandas as pd
import pytest

import wrn_trax
from wrn_trax import runio
from wrn_trax import sweep as sweep_lib

# Two tiny paper-family members on digits: WRN-10-1 and WRN-10-2.
GRID = dict(widen_factors=[1, 2], depths=[10], family='paper',
            dataset='digits', recipe='smoke', steps=12, eval_every=6,
            checkpoint_every=6)


def test_member_models_and_names():
  assert sweep_lib.member_models([1, 2]) == ['stock-WRN-22-1', 'stock-WRN-22-2']
  assert sweep_lib.member_models([2], [28, 40], ['B(3,3)', (3, 1, 3)],
                                 family='paper') == [
                                     'WRN-28-2', 'WRN-28-2-B(3,1,3)',
                                     'WRN-40-2', 'WRN-40-2-B(3,1,3)']
  members = sweep_lib.plan(seeds=[0, 1], root='r', **GRID)
  assert [os.path.basename(w) for w, _ in members] == [
      f'WRN-10-{k}_digits_smoke_s{s}_checkpoint_every6_eval_every6_steps12'
      for k in (1, 2) for s in (0, 1)]


@pytest.mark.parametrize('kwargs, error', [
    (dict(widen_factors=[]), 'widen_factors must name at least one'),
    (dict(widen_factors=[0]), 'widen factor'),
    (dict(depths=[27]), '6N\\+4'),
    (dict(family='resnet'), 'unknown family'),
    (dict(recipe='fast'), 'unknown recipe'),
    (dict(executor='slurm'), 'unknown executor'),
    (dict(dataset='mnist'), 'unknown dataset'),
    (dict(seeds=[]), 'seeds must name at least one'),
    (dict(blocks=['B(5,5)']), 'unknown block'),
    (dict(family='stock', blocks=['B(3,1)']), "needs family='paper'"),
    (dict(family='stock', dropouts=[0.3]), 'no dropout'),
    (dict(lr_warmup=5), 'unknown recipe field'),
])
def test_bad_grids_fail_before_training(tmp_path, kwargs, error):
  args = dict(GRID, root=str(tmp_path / 'runs'), verbose=False)
  args.update(kwargs)
  with pytest.raises(ValueError, match=error):
    wrn_trax.sweep(**args)
  assert not (tmp_path / 'runs').exists()


def test_ray_missing_is_a_clear_error(tmp_path, monkeypatch):
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def no_ray(name, *args, **kwargs):
    if name == 'ray':
      raise ImportError('No module named ray')
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', no_ray)
  with pytest.raises(ImportError, match=r"pip install -e '\.\[ray\]'"):
    wrn_trax.sweep(executor='ray', root=str(tmp_path / 'runs'), **GRID)
  assert not (tmp_path / 'runs').exists()


def test_root_holding_another_config_under_a_members_name(tmp_path):
  root = tmp_path / 'runs'
  (workdir,), = [[w for w, _ in sweep_lib.plan(root=str(root), **dict(
      GRID, widen_factors=[1]))]]
  os.makedirs(workdir)
  runio.write_json(os.path.join(workdir, 'config.json'),
                   dict(dataset='cifar10', model='WRN-10-1', recipe='smoke'))
  with pytest.raises(ValueError, match="dataset: 'cifar10' there, 'digits' now"):
    wrn_trax.sweep(root=str(root), verbose=False, **GRID)
  # Nothing of what was there is lost.
  assert runio.read_json(os.path.join(workdir, 'config.json'))['dataset'] == 'cifar10'


_CHILD = """
import sys, wrn_trax
wrn_trax.sweep(widen_factors=[1, 2], depths=[10], family='paper',
               dataset='digits', recipe='smoke', steps=12, eval_every=6,
               checkpoint_every=6, root=sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_finishes_only_what_is_missing(
    tmp_path, python, subprocess_env):
  root = str(tmp_path / 'runs')
  members = [w for w, _ in sweep_lib.plan(root=root, **GRID)]
  first, second = members
  child = subprocess.Popen([python, '-c', _CHILD, root], env=subprocess_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  ckpt = os.path.join(second, 'model.pkl.gz')
  deadline = time.time() + 400
  try:
    while time.time() < deadline and not os.path.exists(ckpt):
      assert child.poll() is None, 'the sweep ended before it was killed'
      time.sleep(0.2)
  finally:
    child.send_signal(signal.SIGKILL)
    child.wait()
  assert os.path.exists(ckpt), 'no checkpoint of the second member in time'
  first_summary = runio.read_json(os.path.join(first, 'summary.json'))
  assert first_summary['status'] == 'done'
  assert not os.path.exists(os.path.join(second, 'summary.json'))
  mtime = os.path.getmtime(os.path.join(first, 'summary.json'))

  out = subprocess.run([python, '-c', _CHILD, root], env=subprocess_env,
                       capture_output=True, text=True, check=True).stdout
  assert 'already done' in out                 # the finished member: skipped
  assert 'resuming from the checkpoint at step 6' in out  # the killed one
  assert os.path.getmtime(os.path.join(first, 'summary.json')) == mtime
  table = pd.read_csv(os.path.join(root, 'sweep.csv'))
  assert list(table['status']) == ['done', 'done']
  assert list(table['widen_factor']) == [1, 2]
  assert (table['eval_examples'] == 360).all()
  rows = runio.read_jsonl(os.path.join(second, 'metrics.jsonl'))
  keys = [(r['step'], r['split']) for r in rows]
  assert len(keys) == len(set(keys))
  assert [s for s, split in keys if split == 'train'] == [1, 6, 12]


@pytest.mark.slow
def test_a_failing_member_is_recorded_and_the_sweep_goes_on(tmp_path,
                                                            monkeypatch):
  real_train = sweep_lib.train_lib.train_config

  def flaky(config, workdir, verbose):
    if config['model'] == 'WRN-10-1':
      raise RuntimeError('out of memory (simulated)')
    return real_train(config, workdir, verbose)

  monkeypatch.setattr(sweep_lib.train_lib, 'train_config', flaky)
  frame = wrn_trax.sweep(root=str(tmp_path / 'runs'), verbose=False,
                         **dict(GRID, steps=2, eval_every=2,
                                checkpoint_every=2))
  assert list(frame['status']) == ['failed', 'done']
  assert 'out of memory (simulated)' in frame['reason'][0]
  assert frame['test_error'][1] < 1.0
  # The sweep's frame feeds the report as load_runs' frame does.
  table = wrn_trax.report.summarize(frame, paper=False)
  counts = {row.model: (row.n_done, row.n_failed) for row in table.itertuples()}
  assert counts == {'WRN-10-1': (0, 1), 'WRN-10-2': (1, 0)}
  assert 'WRN-10-2' in wrn_trax.report.format_table(table)


@pytest.mark.slow
def test_ray_executor_runs_two_members_in_parallel(tmp_path):
  pytest.importorskip('ray')
  root = str(tmp_path / 'runs')
  frame = wrn_trax.sweep(root=root, executor='ray', verbose=False,
                         **dict(GRID, steps=4, eval_every=2,
                                checkpoint_every=2))
  assert list(frame['status']) == ['done', 'done']
  assert list(frame['model']) == ['WRN-10-1', 'WRN-10-2']
  # The same table form as the local executor.
  assert {'run', 'test_error', 'eval_examples', 'params', 'widen_factor'} <= set(
      frame.columns)
  assert (frame['eval_examples'] == 360).all()
  # They really overlapped: each started before the other finished.
  spans = []
  for run in frame['run']:
    rows = runio.read_jsonl(os.path.join(root, run, 'metrics.jsonl'))
    config = os.path.getmtime(os.path.join(root, run, 'config.json'))
    done = os.path.getmtime(os.path.join(root, run, 'summary.json'))
    spans.append((config, done))
    assert rows[-1]['split'] == 'test'
  (s0, e0), (s1, e1) = spans
  assert s0 < e1 and s1 < e0


@pytest.mark.slow
def test_a_member_running_elsewhere_is_reported_and_the_others_train(
    tmp_path):
  root = str(tmp_path / 'runs')
  grid = dict(GRID, steps=2, eval_every=2, checkpoint_every=2)
  busy, free = [w for w, _ in sweep_lib.plan(root=root, **grid)]
  # Another session holds the first member's folder (flock is per open file,
  # so a lock taken here is another writer to the sweep as well).
  with runio.lock_run_folder(busy):
    frame = wrn_trax.sweep(root=root, verbose=False, **grid)
    assert os.listdir(busy) == [runio.LOCK_FILE]  # nothing written there
  assert list(frame['status']) == ['running', 'done']
  assert frame['reason'][0].startswith('running elsewhere: ')
  assert f'pid {os.getpid()} on ' in frame['reason'][0]
  assert runio.read_json(os.path.join(free, 'summary.json'))['status'] == 'done'
  table = wrn_trax.report.summarize(frame, paper=False)
  counts = {row.model: (row.n_done, row.n_incomplete)
            for row in table.itertuples()}
  assert counts == {'WRN-10-1': (0, 1), 'WRN-10-2': (1, 0)}


def test_a_garbage_config_stops_the_plan_and_a_garbage_summary_the_member(
    tmp_path):
  root = str(tmp_path / 'runs')
  grid = dict(GRID, widen_factors=[1])
  (workdir,), = [[w for w, _ in sweep_lib.plan(root=root, **grid)]]
  os.makedirs(workdir)
  config = os.path.join(workdir, 'config.json')
  with open(config, 'w') as f:
    f.write('{"model": "WRN-10')
  with pytest.raises(runio.CorruptFileError,
                     match=f'config.json in {workdir} is truncated'):
    wrn_trax.sweep(root=root, verbose=False, **grid)
  assert open(config).read() == '{"model": "WRN-10'
  assert os.listdir(root) == [os.path.basename(workdir)]

  os.remove(config)
  summary = os.path.join(workdir, 'summary.json')
  with open(summary, 'w') as f:
    f.write('garbage')
  frame = wrn_trax.sweep(root=root, verbose=False, **grid)
  assert list(frame['status']) == ['failed']
  assert frame['reason'][0].startswith(
      f'CorruptFileError: summary.json in {workdir} is truncated')
  assert os.listdir(workdir) == ['summary.json']
  assert open(summary).read() == 'garbage'
