"""Several members per GPU: sweep(executor='ray', gpus_per_member=0.25).

The GPU is one that Ray is told about (`ray.init(num_gpus=1)` on this
CPU-only machine), and the members are a stub in place of the training, so
that what is checked is what Ray is asked for: how many members run at once,
the resources each is given and the environment each process starts with.
"""
import json
import os
import sys
import warnings

import pytest

import wrn_trax
from wrn_trax import cli
from wrn_trax import sweep as sweep_lib

ray = pytest.importorskip('ray')

# Four tiny paper-family members (never trained here: see `_stub`).
GRID = dict(widen_factors=[1, 2, 3, 4], depths=[10], family='paper',
            dataset='digits', recipe='smoke', steps=2)
FRACTION = 'XLA_PYTHON_CLIENT_MEM_FRACTION'
PREALLOCATE = 'XLA_PYTHON_CLIENT_PREALLOCATE'


def _unset_for_this_test(monkeypatch, name):
  """Unsets `name`; it is as it was again after the test, even if set then."""
  monkeypatch.setenv(name, 'x')
  monkeypatch.delenv(name)


@pytest.fixture(scope='module')
def one_gpu_ray():
  """A local Ray instance with 2 CPUs and one (declared) GPU.

  Ray refuses a declared GPU that CUDA_VISIBLE_DEVICES (empty in the tests)
  hides, so the variable is unset while Ray starts; the members' processes
  get it from Ray, for the GPU they are given. `sweep` uses this instance
  and leaves it running.
  """
  saved = {k: os.environ.pop(k, None)
           for k in ('CUDA_VISIBLE_DEVICES', FRACTION)}
  try:
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
  finally:
    for k, v in saved.items():
      if v is not None:
        os.environ[k] = v
  yield
  ray.shutdown()


def _stub(record_dir, wait_for, patience=60.0):
  """A member task in place of `sweep._run_member_abs`.

  It records what its process was given and how many members were running
  when it started, then waits (up to `patience` seconds) until `wait_for`
  members have started: that many can only do so if they run at once. A
  short patience with more members than may run at once checks the
  opposite: a second member that started while the first waited would
  find it still running.
  Defined in a closure, so that Ray sends it by value to its workers.
  """

  def member(cwd, kwargs, verbose):
    # pylint: disable=g-import-not-at-top,import-outside-toplevel,redefined-outer-name,reimported
    import json
    import os
    import sys
    import time
    import ray
    # pylint: enable=g-import-not-at-top,import-outside-toplevel,redefined-outer-name,reimported
    del cwd, verbose
    name = os.path.basename(kwargs['workdir'])
    with open('/proc/self/environ', 'rb') as f:  # as the process started
      initial = dict(item.split(b'=', 1) for item in f.read().split(b'\0')
                     if b'=' in item)
    running = os.path.join(record_dir, name + '.running')
    open(running, 'w').close()
    running_at_start = len(
        [f for f in os.listdir(record_dir) if f.endswith('.running')])
    open(os.path.join(record_dir, name + '.started'), 'w').close()
    deadline = time.time() + patience
    while time.time() < deadline:
      n = len([f for f in os.listdir(record_dir) if f.endswith('.started')])
      if n >= wait_for:
        break
      time.sleep(0.05)
    record = dict(
        pid=os.getpid(), started_together=n,
        running_at_start=running_at_start,
        initial_fraction=initial.get(FRACTION.encode(), b'').decode() or None,
        fraction=os.environ.get(FRACTION),
        jax_imported='jax' in sys.modules,
        cuda_visible_devices=os.environ.get('CUDA_VISIBLE_DEVICES'),
        resources=ray.get_runtime_context().get_assigned_resources())
    with open(os.path.join(record_dir, name + '.json'), 'w') as f:
      json.dump(record, f)
    os.remove(running)
    return dict(status='done', test_error=0.5)

  return member


def _records(record_dir):
  return {name[:-len('.json')]: json.load(open(os.path.join(record_dir, name)))
          for name in sorted(os.listdir(record_dir)) if name.endswith('.json')}


def test_four_members_share_one_gpu_each_with_its_memory_fraction(
    tmp_path, monkeypatch, one_gpu_ray):
  del one_gpu_ray
  records = tmp_path / 'records'
  records.mkdir()
  monkeypatch.setattr(sweep_lib, '_run_member_abs', _stub(str(records), 4))
  frame = wrn_trax.sweep(root=str(tmp_path / 'runs'), executor='ray',
                         gpus_per_member=0.25, verbose=False, **GRID)
  assert list(frame['status']) == ['done'] * 4
  assert list(frame['widen_factor']) == [1, 2, 3, 4]
  seen = _records(str(records))
  assert len(seen) == 4 and len({r['pid'] for r in seen.values()}) == 4
  for r in seen.values():
    # All four ran at once on the one GPU, a quarter of it (and of a CPU)
    # each.
    assert r['started_together'] == 4
    assert r['resources'] == {'GPU': 0.25, 'CPU': 0.25}
    assert r['cuda_visible_devices'] == '0'
    # The process started with its memory cap, before any import (the
    # stub's process imports no jax; a member's imports it after this).
    assert r['initial_fraction'] == r['fraction'] == '0.225'
    assert not r['jax_imported']


@pytest.mark.parametrize('gpus_per_member', [None, 1])
def test_without_a_share_members_keep_a_whole_gpu_and_jax_defaults(
    tmp_path, monkeypatch, one_gpu_ray, gpus_per_member):
  del one_gpu_ray
  records = tmp_path / 'records'
  records.mkdir()
  # Each member waits up to 3 s for the other to start: on one whole GPU
  # the other cannot, so each finds itself the only one running.
  monkeypatch.setattr(sweep_lib, '_run_member_abs',
                      _stub(str(records), 2, patience=3.0))
  frame = wrn_trax.sweep(root=str(tmp_path / 'runs'), executor='ray',
                         gpus_per_member=gpus_per_member, verbose=False,
                         **dict(GRID, widen_factors=[1, 2]))
  assert list(frame['status']) == ['done'] * 2
  seen = _records(str(records))
  assert len(seen) == 2
  for r in seen.values():
    assert r['resources'] == {'GPU': 1.0, 'CPU': 1.0}
    assert r['running_at_start'] == 1  # one GPU: one member at a time
    assert r['initial_fraction'] is None and r['fraction'] is None
  # The first to start waited alone (the second started after it ended).
  assert sorted(r['started_together'] for r in seen.values()) == [1, 2]


def test_a_share_no_node_has_is_an_error_not_a_hang(tmp_path, one_gpu_ray):
  del one_gpu_ray
  with pytest.raises(ValueError, match=r'gpus_per_member=2 but no node of the '
                     r'Ray cluster has that many GPUs \(the most on one node: '
                     r'1\)'):
    wrn_trax.sweep(root=str(tmp_path / 'runs'), executor='ray',
                   gpus_per_member=2, verbose=False, **GRID)
  assert not os.listdir(tmp_path / 'runs')
  assert sweep_lib._largest_node_gpus([]) == 0  # pylint: disable=protected-access
  assert sweep_lib._largest_node_gpus([  # pylint: disable=protected-access
      dict(Alive=False, Resources=dict(GPU=8.0)),
      dict(Alive=True, Resources=dict(GPU=2.0)), dict(Alive=True)]) == 2


@pytest.mark.slow
def test_two_real_members_train_on_half_a_gpu_each(tmp_path, one_gpu_ray):
  """The members' own code (not the stub) under a share: both train, at once."""
  del one_gpu_ray
  root = str(tmp_path / 'runs')
  frame = wrn_trax.sweep(root=root, executor='ray', gpus_per_member=0.5,
                         verbose=False, **dict(
                             GRID, widen_factors=[1, 2], eval_every=2,
                             checkpoint_every=2))
  assert list(frame['status']) == ['done', 'done'], list(frame['reason'])
  assert (frame['eval_examples'] == 360).all()
  spans = [(os.path.getmtime(os.path.join(root, run, 'config.json')),
            os.path.getmtime(os.path.join(root, run, 'summary.json')))
           for run in frame['run']]
  (s0, e0), (s1, e1) = spans
  assert s0 < e1 and s1 < e0


@pytest.mark.parametrize('value, expected', [
    (0.25, 0.25), (0.5, 0.5), (1, 1), (1.0, 1), (2, 2), (4.0, 4), (None, None)])
def test_good_shares(value, expected):
  got = sweep_lib.check_gpus_per_member(value, 'ray')
  assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize('value', [0, -0.25, 1.5, 2.5, float('nan'),
                                   float('inf'), True, '0.25'])
def test_bad_shares_fail_before_anything_is_made(tmp_path, value):
  with pytest.raises(ValueError, match='gpus_per_member must be a share of one '
                     'GPU .* or a whole number of GPUs, got'):
    wrn_trax.sweep(root=str(tmp_path / 'runs'), executor='ray',
                   gpus_per_member=value, verbose=False, **GRID)
  assert not (tmp_path / 'runs').exists()


def test_a_share_without_gpus_is_an_error_on_the_local_executor(tmp_path):
  # The tests hide the GPUs (CUDA_VISIBLE_DEVICES=''): the local executor
  # has none to share.
  with pytest.raises(ValueError, match='gpus_per_member=0.25 but this '
                     'machine shows no GPU to the local executor'):
    wrn_trax.sweep(root=str(tmp_path / 'runs'), gpus_per_member=0.25,
                   verbose=False, **GRID)
  assert not (tmp_path / 'runs').exists()


def test_member_env_vars():
  assert sweep_lib.member_env_vars(0.25) == {FRACTION: '0.225'}
  assert sweep_lib.member_env_vars(0.5) == {FRACTION: '0.45'}
  assert sweep_lib.member_env_vars(1 / 3) == {FRACTION: '0.3'}
  assert sweep_lib.member_env_vars(1) == sweep_lib.member_env_vars(None) == {}


def _warnings_of(fn):
  """The warnings `fn()` issues, each recorded (filters set to 'always')."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    fn()
  return [(w.category, str(w.message)) for w in caught]


def test_a_driver_holding_a_gpu_is_warned_about(monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top

  class Gpu:
    platform = 'gpu'

  warn = sweep_lib._warn_if_this_process_holds_gpus  # pylint: disable=protected-access
  advice = 'set XLA_PYTHON_CLIENT_PREALLOCATE=false before importing wrn_trax.sweep'
  # A GPU here and preallocation on (jax's default): one warning, the fix.
  monkeypatch.setattr(jax, 'local_devices', lambda: [Gpu()])
  _unset_for_this_test(monkeypatch, PREALLOCATE)
  caught = _warnings_of(warn)
  assert len(caught) == 1, caught
  assert caught[0][0] is UserWarning and advice in caught[0][1]
  # The same GPU with preallocation off: no warning at all.
  monkeypatch.setenv(PREALLOCATE, 'false')
  assert _warnings_of(warn) == []
  # Preallocation on again, but no GPU in this process: none either.
  monkeypatch.setattr(jax, 'local_devices', lambda: [])
  monkeypatch.delenv(PREALLOCATE)
  assert _warnings_of(warn) == []


def test_cli_gpus_per_member(tmp_path, monkeypatch, capsys, one_gpu_ray):
  del one_gpu_ray
  records = tmp_path / 'records'
  records.mkdir()
  monkeypatch.setattr(sweep_lib, '_run_member_abs', _stub(str(records), 4))
  _unset_for_this_test(monkeypatch, PREALLOCATE)
  monkeypatch.chdir(tmp_path)
  cli.main(['sweep', '--widen-factors', '1', '2', '3', '4', '--depths', '10',
            '--family', 'paper', '--steps', '2', '--executor', 'ray',
            '--gpus-per-member', '0.25', '--quiet'])
  assert 'WRN-10-4' in capsys.readouterr().out
  seen = _records(str(records))
  assert [r['started_together'] for r in seen.values()] == [4] * 4
  assert {r['fraction'] for r in seen.values()} == {'0.225'}
  # The command's own jax keeps to what it uses (see `sweep`'s warning).
  assert os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'] == 'false'


@pytest.mark.parametrize('argv, error', [
    (['--gpus-per-member', '0.25'], 'shows no GPU to the local executor'),
    (['--executor', 'ray', '--gpus-per-member', '0'],
     'gpus_per_member must be a share of one GPU'),
    (['--executor', 'ray', '--gpus-per-member', '1.5'],
     'or a whole number of GPUs, got 1.5'),
])
def test_cli_bad_gpus_per_member_is_one_error_line(tmp_path, monkeypatch,
                                                   capsys, argv, error):
  _unset_for_this_test(monkeypatch, PREALLOCATE)
  monkeypatch.chdir(tmp_path)
  with pytest.raises(SystemExit) as e:
    cli.main(['sweep', '--depths', '10', '--family', 'paper'] + argv)
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith('wrn-trax sweep: error: ') and error in err
  assert 'Traceback' not in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / 'runs').exists()


def test_cli_gpus_per_member_not_a_number(capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(['sweep', '--executor', 'ray', '--gpus-per-member', 'half'])
  assert e.value.code == 2
  assert "argument --gpus-per-member: invalid float value: 'half'" in (
      capsys.readouterr().err)


if __name__ == '__main__':
  sys.exit(pytest.main([__file__]))
