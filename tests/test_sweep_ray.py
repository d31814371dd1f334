"""Sweeps on a Ray cluster of several nodes: a lost node, an unshared root.

The clusters are `ray.cluster_utils.Cluster`s on this machine (a head node
and a worker node, one CPU each). A lost node is one `Cluster.remove_node`
kills (every process of it, with SIGKILL); a node that does not share the run
root is a worker node started in its own mount namespace, where an empty
tmpfs covers the root's path.
"""
import faulthandler
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

import wrn_trax
from wrn_trax import _ray
from wrn_trax import runio
from wrn_trax import sweep as sweep_lib

ray = pytest.importorskip('ray')
cluster_utils = pytest.importorskip('ray.cluster_utils')

# WRN-10-1 and WRN-10-2 on digits; checkpoints every 5 of 40 steps, so that
# a node is lost between two of them.
GRID = dict(widen_factors=[1, 2], depths=[10], family='paper',
            dataset='digits', recipe='smoke', steps=40, eval_every=5,
            checkpoint_every=5)


@pytest.mark.parametrize('value', [-1, 1.5, '3', True, None])
def test_bad_max_retries_fail_before_anything_is_made(tmp_path, value):
  with pytest.raises(ValueError, match='max_retries must be a whole number'):
    wrn_trax.sweep(root=str(tmp_path / 'runs'), executor='ray',
                   max_retries=value, verbose=False, **GRID)
  assert not (tmp_path / 'runs').exists()


def test_ray_logs_reach_the_terminal_only_when_asked():
  import logging  # pylint: disable=g-import-not-at-top
  for verbose in (False, True, 1):
    kw = _ray.init_kwargs(verbose)
    assert not kw['log_to_driver'] and kw['logging_level'] == logging.WARNING
  kw = _ray.init_kwargs(2)
  assert kw['log_to_driver'] and kw['logging_level'] == logging.INFO


_HOLD = """
import sys, time
from wrn_trax import runio
with runio.lock_run_folder(sys.argv[1]):
  print('held', flush=True)
  time.sleep(float(sys.argv[2]))
"""


def test_a_retry_waits_for_the_lost_attempts_lock(tmp_path, python,
                                                  subprocess_env):
  """Another process's lock (a lost attempt still alive) is waited for."""
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  runio.append_jsonl(os.path.join(workdir, 'metrics.jsonl'), [dict(step=5)])
  child = subprocess.Popen([python, '-c', _HOLD, workdir, '3'],
                           env=subprocess_env, stdout=subprocess.PIPE,
                           text=True)
  try:
    assert child.stdout.readline() == 'held\n'
    t0 = time.time()
    # Still held at the end of a short wait: not free, nothing written.
    assert not _ray.wait_for_run_folder(workdir, timeout_s=0.5, poll_s=0.1)
    assert sorted(os.listdir(workdir)) == [runio.LOCK_FILE, 'metrics.jsonl']
    # Free once the holder ends (here by itself; a killed one frees it too).
    assert _ray.wait_for_run_folder(workdir, timeout_s=30, poll_s=0.1)
    assert time.time() - t0 > 1.5
    assert child.wait(timeout=30) == 0
  finally:
    child.kill()
    child.wait()
  # Free: taken and let go at once; the lock file is removed again.
  assert os.listdir(workdir) == ['metrics.jsonl']
  child = subprocess.Popen([python, '-c', _HOLD, workdir, '60'],
                           env=subprocess_env, stdout=subprocess.PIPE,
                           text=True)
  try:
    assert child.stdout.readline() == 'held\n'
    child.kill()  # kill -9: the kernel frees the lock
    child.wait()
    assert _ray.wait_for_run_folder(workdir, timeout_s=5, poll_s=0.1)
  finally:
    child.kill()
    child.wait()


def _can_unshare():
  cmd = (['unshare', '-m', 'true'] if os.geteuid() == 0 else
         ['unshare', '-Urm', 'true'])
  if shutil.which('unshare') is None:
    return None
  ok = subprocess.run(cmd, capture_output=True, check=False).returncode == 0
  return cmd[:-1] if ok else None


@pytest.fixture
def hard_timeout():
  """Ends the test run with every thread's traceback after 15 minutes."""
  faulthandler.dump_traceback_later(900, exit=True, file=sys.__stderr__)
  yield
  faulthandler.cancel_dump_traceback_later()


def _alive_nodes():
  return [n for n in ray.nodes() if n['Alive']]


def test_a_root_one_node_cannot_see_is_refused_before_training(
    tmp_path, subprocess_env, hard_timeout):
  del hard_timeout
  unshare = _can_unshare()
  if unshare is None:
    pytest.skip('needs unshare(1) with mount namespaces to give a node a '
                'storage of its own at the root path')
  root = tmp_path / 'runs'
  root.mkdir()
  cluster = cluster_utils.Cluster(initialize_head=True, head_node_args=dict(
      num_cpus=1, include_dashboard=False))
  # The worker node's processes see an empty tmpfs at the root's path: the
  # same path, another storage (as a node whose disk is not the shared one).
  worker = subprocess.Popen(
      unshare + ['sh', '-c', 'mount -t tmpfs tmpfs "$0" && exec "$1" -c '
                 '"from ray.scripts.scripts import main; main()" start '
                 '--address="$2" --num-cpus=1 --block --disable-usage-stats',
                 str(root), sys.executable, cluster.address],
      env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
      text=True)
  try:
    ray.init(address=cluster.address, include_dashboard=False,
             log_to_driver=False, logging_level='warning')
    deadline = time.time() + 120
    while len(_alive_nodes()) < 2:
      assert worker.poll() is None, worker.stderr.read()
      assert time.time() < deadline, 'the worker node did not join'
      time.sleep(0.5)
    worker_id = [n['NodeID'] for n in _alive_nodes()
                 if n['NodeID'] != cluster.head_node.node_id][0]
    t0 = time.time()
    with pytest.raises(_ray.RootNotSharedError) as e:
      wrn_trax.sweep(root=str(root), executor='ray', verbose=False, **GRID)
    message = str(e.value)
    print(f'refused in {time.time() - t0:.1f} s: {message}')
    assert f'the run root {root} is not the same storage' in message
    assert f'(id {worker_id[:8]})' in message
    assert f'(id {cluster.head_node.node_id[:8]})' not in message
    assert 'the folder there lacks the marker' in message
    assert 'shared file system' in message and 'same path' in message
    # Nothing trained, nothing left behind: no run folder, no marker.
    assert os.listdir(root) == []
  finally:
    ray.shutdown()
    worker.terminate()
    try:
      worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
      worker.kill()
      worker.wait()
    cluster.shutdown()


def _attempts(root):
  """{member index: attempt records} of the sweep running under `root`."""
  found = {}
  for state in os.listdir(root):
    if state.startswith(_ray.STATE_PREFIX):
      for i in range(2):
        rows = _ray.read_attempts(os.path.join(root, state), i)
        if rows:
          found[i] = rows
  return found


@pytest.mark.slow
def test_a_lost_node_costs_one_checkpoint_interval(tmp_path, capsys,
                                                   hard_timeout):
  del hard_timeout
  root = str(tmp_path / 'runs')
  workdirs = [w for w, _ in sweep_lib.plan(root=root, **GRID)]
  cluster = cluster_utils.Cluster(initialize_head=True, head_node_args=dict(
      num_cpus=1, include_dashboard=False))
  worker = cluster.add_node(num_cpus=1)
  cluster.wait_for_nodes()
  head_id = cluster.head_node.node_id
  killed = {}

  def kill_the_worker_node_mid_training():
    deadline = time.time() + 600
    while time.time() < deadline:
      for i, rows in _attempts(root).items() if os.path.isdir(root) else ():
        if rows[-1]['node_id'] != worker.node_id:
          continue
        workdir = workdirs[i]
        try:
          step = runio.checkpoint_step(workdir)
        except runio.RunFolderError:  # being written: look again
          continue
        if step >= 5 and not os.path.exists(
            os.path.join(workdir, 'summary.json')):
          cluster.remove_node(worker, allow_graceful=False)
          killed.update(
              member=i, checkpoint=runio.checkpoint_step(workdir),
              logged=max(r['step'] for r in runio.read_jsonl(
                  os.path.join(workdir, 'metrics.jsonl'))))
          return
      time.sleep(0.1)

  killer = threading.Thread(target=kill_the_worker_node_mid_training)
  killer.start()
  t0 = time.time()
  try:
    frame = wrn_trax.sweep(root=root, executor='ray', address=cluster.address,
                           verbose=True, **GRID)
  finally:
    killer.join()
    cluster.shutdown()
  out, err = capsys.readouterr()
  with capsys.disabled():
    print(f'\nsweep with a lost node: {time.time() - t0:.1f} s; {killed}\n'
          f'{out}\nstderr: {len(err.splitlines())} lines\n{err[-3000:]}')
  assert killed, 'the member on the worker node was never caught training'
  assert list(frame['status']) == ['done', 'done'], list(frame['reason'])
  i = killed['member']
  name = os.path.basename(workdirs[i])
  # The driver saw the loss and the retry, and said so.
  assert re.search(rf'member {i + 1}/2 {re.escape(name)}: its node \S+ '
                   rf'\(id {worker.node_id[:8]}\) was lost at step \d+; '
                   r'retry 1/3 will resume it', out), out
  started = re.search(rf'member {i + 1}/2 {re.escape(name)}: retry 1/3 '
                      r'started on host \S+ \(node id (\w+)\), resuming from '
                      r'the checkpoint at step (\d+)', out)
  assert started, out
  assert started.group(1) == head_id[:8]
  # Quiet: the raylets' reports (a retried task, a dead node, each with a
  # dump of the raylet's state) stay in Ray's logs.
  assert '(raylet)' not in out + err
  # It resumed from the last checkpoint written before the loss: at most
  # one checkpoint interval of training was lost.
  resumed = int(started.group(2))
  assert resumed == killed['checkpoint'] >= 5
  assert killed['logged'] - resumed <= GRID['checkpoint_every']
  # Its metrics hold every logged step once, as the member that was never
  # interrupted does, and the training time goes on from the checkpoint.
  rows = {}
  for w in workdirs:
    rows[w] = runio.read_jsonl(os.path.join(w, 'metrics.jsonl'))
  keys = [(r['step'], r['split']) for r in rows[workdirs[i]]]
  other = [(r['step'], r['split']) for r in rows[workdirs[1 - i]]]
  assert len(keys) == len(set(keys))
  assert keys == other
  assert keys[-1] == (40, 'test')
  seconds = [r['seconds'] for r in rows[workdirs[i]] if r['split'] == 'train']
  assert seconds == sorted(seconds)
  # sweep.csv is the final table; the sweep's own folder is gone.
  assert list(pd.read_csv(os.path.join(root, 'sweep.csv'))['status']) == [
      'done', 'done']
  assert not [f for f in os.listdir(root) if f.startswith(_ray.STATE_PREFIX)]


def test_raylet_reports_name_dead_nodes_and_stay_off_stdout(capsys):
  from ray._private import worker  # pylint: disable=g-import-not-at-top
  dead = 'ba1e8ac42cade3e15a20a8497dc0cec7c009e0b61763695aef2dd3f8'
  # What Ray 2.60's raylet reported when a node was removed under a task.
  report = dict(pid='raylet', is_err=False, lines=[
      'Task task failed. There are 3 retries remaining, so the task will be '
      'retried. Error: Task failed because the node it was running on is '
      f'dead or unavailable. Node IP: 192.0.2.2, node ID: {dead}. This can '
      'happen if the node was preempted'])
  other = dict(pid='raylet', is_err=False, lines=[
      'Some warning about node id: ' + 'a' * 56])
  original = worker.print_to_stdstream
  for verbose, shown in ((True, False), (2, True)):
    with _ray.RayletReports(verbose) as reports:
      worker.print_to_stdstream(report, ignore_prefix=False)
      worker.print_to_stdstream(other, ignore_prefix=False)
    assert reports.dead_nodes == {dead}
    assert worker.print_to_stdstream is original
    assert ('will be retried' in capsys.readouterr().out) == shown


def _table_watcher(root, seen_dir):
  """A member in place of `sweep._run_member_abs`: waits to see itself
  'running' in sweep.csv, saves the statuses it saw, and ends 'done'.

  Built in a closure, so that Ray sends it by value.
  """

  def member(cwd, kwargs, verbose):
    # pylint: disable=g-import-not-at-top,import-outside-toplevel,redefined-outer-name,reimported
    import csv
    import json
    import os
    import time
    del cwd, verbose
    name = os.path.basename(kwargs['workdir'])
    deadline = time.time() + 60
    statuses = None
    while time.time() < deadline:
      try:
        with open(os.path.join(root, 'sweep.csv')) as f:
          rows = list(csv.DictReader(f))
      except OSError:
        rows = []
      mine = [r for r in rows if r['run'] == name]
      if mine and mine[0]['status'] == 'running':
        statuses = [(r['status'], r['reason']) for r in rows]
        break
      time.sleep(0.1)
    with open(os.path.join(seen_dir, name + '.json'), 'w') as f:
      json.dump(statuses, f)
    return dict(status='done', test_error=0.5)

  return member


def test_sweep_csv_shows_members_pending_running_and_done(
    tmp_path, monkeypatch, capsys, hard_timeout):
  del hard_timeout
  root = str(tmp_path / 'runs')
  seen = tmp_path / 'seen'
  seen.mkdir()
  monkeypatch.setattr(sweep_lib, '_run_member_abs',
                      _table_watcher(root, str(seen)))
  ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
           logging_level='warning')
  try:  # one CPU: one member at a time
    frame = wrn_trax.sweep(root=root, executor='ray', verbose=True, **GRID)
  finally:
    ray.shutdown()
  assert list(frame['status']) == ['done', 'done']
  names = list(frame['run'])
  first = json.load(open(seen / f'{names[0]}.json'))
  second = json.load(open(seen / f'{names[1]}.json'))
  assert [s for s, _ in first] == ['running', 'pending']
  assert first[0][1].startswith('training on host ')
  assert first[1][1] == 'waiting for a free node'
  assert [s for s, _ in second] == ['done', 'running']
  out = capsys.readouterr().out
  assert f'member 1/2 done: {names[0]} (1/2 finished)' in out
  assert f'member 2/2 done: {names[1]} (2/2 finished)' in out
  assert list(pd.read_csv(os.path.join(root, 'sweep.csv'))['status']) == [
      'done', 'done']
