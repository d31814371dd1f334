"""GPUs on CPU: TensorFlow kept off them, one device per run, one member per GPU.

No GPU here: TensorFlow's device API, nvidia-smi, jax's platform and the
GPU list are replaced by fakes, and the local sweep's members run as real
processes whose CUDA_VISIBLE_DEVICES names GPUs that do not exist (jax runs
on the CPU in them, as in every test).
"""
import json
import os
import subprocess
import sys
import threading
import time
import types

import pytest

import wrn_trax
from wrn_trax import _quiet
from wrn_trax import _tf
from wrn_trax import cli
from wrn_trax import devices
from wrn_trax import recipes
from wrn_trax import record
from wrn_trax import runio
from wrn_trax import sweep as sweep_lib
from wrn_trax import train as train_lib

TINY = 'WRN-10-1'  # one B(3,3) block per group: compiles in seconds
FRACTION = 'XLA_PYTHON_CLIENT_MEM_FRACTION'


# ------------------------------------------------ TensorFlow off the GPU ----


class FakeConfig:
  """tf.config with GPUs: records set_visible_devices, or raises as TF does."""

  def __init__(self, gpus=('/physical_device:GPU:0',), initialized=False):
    self.gpus = [types.SimpleNamespace(name=g) for g in gpus]
    self.initialized = initialized
    self.calls = []

  def list_physical_devices(self, kind=None):
    return list(self.gpus) if kind == 'GPU' else []

  def set_visible_devices(self, devices_, kind=None):
    if self.initialized:
      raise RuntimeError('Visible devices cannot be modified after being '
                         'initialized')
    self.calls.append((list(devices_), kind))


def _fake_tf(**kw):
  return types.SimpleNamespace(config=FakeConfig(**kw))


def test_gpus_are_hidden_from_tensorflow():
  tf = _fake_tf(gpus=('/physical_device:GPU:0', '/physical_device:GPU:1'))
  assert _tf.hide_gpus(tf) == 'hidden'
  assert tf.config.calls == [([], 'GPU')]


def test_no_gpu_and_no_device_api_are_left_alone():
  tf = _fake_tf(gpus=())
  assert _tf.hide_gpus(tf) == 'no gpu' and tf.config.calls == []
  # A TF without GPU APIs (a stand-in, or a stripped build).
  assert _tf.hide_gpus(types.SimpleNamespace()) == 'no api'
  assert _tf.hide_gpus(types.SimpleNamespace(
      config=types.SimpleNamespace())) == 'no api'


def test_a_gpu_tensorflow_had_initialised_is_a_loud_warning_with_the_fix():
  tf = _fake_tf(initialized=True)
  with pytest.warns(_tf.TensorFlowOnGpuWarning) as caught:
    assert _tf.hide_gpus(tf) == 'too late'
  text = str(caught[0].message)
  assert '/physical_device:GPU:0' in text and 'already initialised' in text
  assert 'import wrn_trax before TensorFlow' in text
  assert 'Visible devices cannot be modified' in text


def test_the_warning_gets_through_the_quiet_import(monkeypatch):
  # `_quiet` sends fd 2 to a temp file while TF is imported; the warning
  # must still reach the user, and a hide that works must be done.
  tf = _fake_tf(initialized=True)
  monkeypatch.setitem(sys.modules, 'tensorflow', tf)
  with pytest.warns(_tf.TensorFlowOnGpuWarning, match='Fix: restart'):
    _quiet.import_tensorflow_quietly()
  tf = _fake_tf()
  monkeypatch.setitem(sys.modules, 'tensorflow', tf)
  assert _tf.import_tensorflow() is tf
  assert tf.config.calls == [([], 'GPU')]


def test_train_hides_the_gpus_through_the_same_function(monkeypatch):
  tf = _fake_tf()
  monkeypatch.setitem(sys.modules, 'tensorflow', tf)
  train_lib._hide_gpus_from_tensorflow()  # pylint: disable=protected-access
  assert tf.config.calls == [([], 'GPU')]


_TF_PATH = """
import os, sys
os.environ.pop('TF_CPP_MIN_LOG_LEVEL', None)
import tensorflow as tf
calls = []
tf.config.list_physical_devices = (
    lambda kind=None: ['/physical_device:GPU:0'] if kind == 'GPU' else [])
tf.config.set_visible_devices = lambda d, kind=None: calls.append(kind)
{entry}
print('CALLS', calls, os.environ['TF_CPP_MIN_LOG_LEVEL'])
"""


@pytest.mark.slow
@pytest.mark.parametrize('entry', [
    'from wrn_trax import data; data._import_tfds()',  # TFDS, svhn, cli data
    'import wrn_trax; wrn_trax.train',                 # train, notebooks
    'from wrn_trax import sweep',                      # sweep
])
def test_every_path_to_tensorflow_hides_the_gpus(entry, python,
                                                 subprocess_env):
  out = subprocess.run([python, '-c', _TF_PATH.format(entry=entry)],
                       env=subprocess_env, capture_output=True, text=True,
                       timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  # Hidden (at least once), and TF's C++ log level keeps ERROR lines
  # (jaxlib's out-of-memory dumps and cuDNN failures read the same one).
  line = [l for l in out.stdout.splitlines() if l.startswith('CALLS')][-1]
  assert "'GPU'" in line and line.split()[-1] in ('1', '2')  # not '3'


def test_quiet_keeps_error_lines():
  assert _quiet.TF_CPP_MIN_LOG_LEVEL == '2'


# ------------------------------------------------------------ the GPUs ----


def _smi(stdout, returncode=0):
  def run(cmd, **kw):
    del kw
    assert cmd[1:] == ['--query-gpu=index', '--format=csv,noheader']
    return types.SimpleNamespace(stdout=stdout, returncode=returncode)
  return run


def test_local_gpus_from_cuda_visible_devices_or_nvidia_smi():
  which = lambda name: '/usr/bin/' + name
  smi = _smi('0\n1\n')
  assert devices.local_gpus({}, which, smi) == ['0', '1']
  assert devices.local_gpus({}, lambda n: None, smi) == []
  assert devices.local_gpus({}, which, _smi('', 9)) == []
  env = {'CUDA_VISIBLE_DEVICES': '2,3'}
  assert devices.local_gpus(env, which, smi) == ['2', '3']
  assert devices.local_gpus({'CUDA_VISIBLE_DEVICES': ''}, which, smi) == []
  assert devices.local_gpus({'CUDA_VISIBLE_DEVICES': '1,-1,2'}, which,
                            smi) == ['1']
  assert devices.local_gpus({'JAX_PLATFORMS': 'cpu'}, which, smi) == []
  assert devices.local_gpus({'JAX_PLATFORMS': 'cuda,cpu'}, which,
                            smi) == ['0', '1']


def test_a_gpu_machine_training_on_the_cpu_is_warned_about():
  with pytest.warns(devices.GpuUnusedWarning, match=r'2 NVIDIA GPU\(s\).*'
                    r'jax runs on the CPU.*jax\[cuda12\]'):
    assert devices.warn_if_gpu_unused('cpu', {}, gpus=['0', '1'])
  assert not devices.warn_if_gpu_unused('gpu', {}, gpus=['0'])
  assert not devices.warn_if_gpu_unused('cpu', {}, gpus=[])
  # CPU on purpose: JAX_PLATFORMS=cpu, or the GPUs hidden from the process.
  assert not devices.warn_if_gpu_unused('cpu', {'JAX_PLATFORMS': 'cpu'},
                                        gpus=['0'])
  assert not devices.warn_if_gpu_unused(
      'cpu', {'CUDA_VISIBLE_DEVICES': ''}, gpus=['0'])
  # The tests' own process (CPU, GPUs hidden): no warning.
  assert not devices.warn_if_gpu_unused()


def test_local_slots_one_member_per_gpu_or_a_share_or_a_group():
  assert sweep_lib.local_slots(None, []) == []
  assert sweep_lib.local_slots(None, ['0', '1']) == [
      {'CUDA_VISIBLE_DEVICES': '0'}, {'CUDA_VISIBLE_DEVICES': '1'}]
  assert sweep_lib.local_slots(1, [3]) == [{'CUDA_VISIBLE_DEVICES': '3'}]
  quarter = sweep_lib.local_slots(0.25, ['0', '1'])
  assert [s['CUDA_VISIBLE_DEVICES'] for s in quarter] == ['0', '1'] * 4
  assert {s[FRACTION] for s in quarter} == {'0.225'}
  assert sweep_lib.local_slots(2, list('01234')) == [
      {'CUDA_VISIBLE_DEVICES': '0,1'}, {'CUDA_VISIBLE_DEVICES': '2,3'}]
  with pytest.raises(ValueError, match='gpus_per_member=4 but the local '
                     'executor has 2 GPU'):
    sweep_lib.local_slots(4, ['0', '1'])
  with pytest.raises(ValueError, match='shows no GPU'):
    sweep_lib.local_slots(0.5, [])
  # The tests hide the GPUs: no slot, the members run here one by one.
  assert sweep_lib.local_slots() == []


GRID = dict(widen_factors=[1], depths=[10], family='paper', dataset='digits',
            recipe='smoke', steps=6, eval_every=3, checkpoint_every=3,
            precise_bn_batches=2)


class FakeLaunch:
  """`sweep._launch_member` in place: records each member's slot and times."""

  def __init__(self, seconds=0.4):
    self.seconds = seconds
    self.seen = {}
    self.lock = threading.Lock()
    self.running = 0
    self.most = 0

  def __call__(self, index, member, slot, root, verbose):
    del root, verbose
    with self.lock:
      self.running += 1
      self.most = max(self.most, self.running)
    start = time.time()
    time.sleep(self.seconds)
    end = time.time()
    with self.lock:
      self.running -= 1
      self.seen[index] = dict(slot=dict(slot), start=start, end=end,
                              run=os.path.basename(member['workdir']))
    return dict(status='done', test_error=0.5, step=6, steps=6)


def _overlap(a, b):
  return a['start'] < b['end'] and b['start'] < a['end']


def test_local_sweep_runs_one_member_per_gpu_at_once(tmp_path, monkeypatch):
  launch = FakeLaunch()
  monkeypatch.setattr(sweep_lib, '_launch_member', launch)
  frame = wrn_trax.sweep(root=str(tmp_path / 'runs'), gpus=['0', '1'],
                         verbose=False, **dict(GRID, seeds=[0, 1, 2, 3]))
  assert list(frame['status']) == ['done'] * 4
  assert list(frame['seed']) == [0, 1, 2, 3]
  seen = [launch.seen[i] for i in range(4)]
  assert launch.most == 2  # two GPUs: two at once, never more
  assert [s['slot']['CUDA_VISIBLE_DEVICES'] for s in seen[:2]] == ['0', '1']
  assert all(FRACTION not in s['slot'] for s in seen)  # whole GPUs
  assert _overlap(seen[0], seen[1])


def test_local_sweep_packs_members_per_gpu_when_asked(tmp_path, monkeypatch):
  launch = FakeLaunch()
  monkeypatch.setattr(sweep_lib, '_launch_member', launch)
  wrn_trax.sweep(root=str(tmp_path / 'runs'), gpus=['0'], gpus_per_member=0.5,
                 verbose=False, **dict(GRID, seeds=[0, 1, 2, 3]))
  seen = [launch.seen[i] for i in range(4)]
  assert launch.most == 2  # two halves of the one GPU
  assert {s['slot']['CUDA_VISIBLE_DEVICES'] for s in seen} == {'0'}
  assert {s['slot'][FRACTION] for s in seen} == {'0.45'}
  assert _overlap(seen[0], seen[1])


def test_cli_sweep_takes_gpus_and_data_parallel(tmp_path, monkeypatch, capsys):
  launch = FakeLaunch(0.0)
  monkeypatch.setattr(sweep_lib, '_launch_member', launch)
  monkeypatch.chdir(tmp_path)
  cli.main(['sweep', '--widen-factors', '1', '--depths', '10', '--family',
            'paper', '--seeds', '0', '1', '--steps', '2', '--gpus', '5', '7',
            '--data-parallel', '--quiet'])
  assert 'WRN-10-1' in capsys.readouterr().out
  assert sorted(s['slot']['CUDA_VISIBLE_DEVICES']
                for s in launch.seen.values()) == ['5', '7']
  assert all('_data_parallelTrue' in s['run']
             for s in launch.seen.values())


def _member_results(root):
  folder = os.path.join(root, sweep_lib.MEMBERS_DIR)
  return {name[:-len('.result.json')]:
          json.load(open(os.path.join(folder, name)))
          for name in sorted(os.listdir(folder))
          if name.endswith('.result.json')}


@pytest.mark.slow
def test_members_in_processes_per_gpu_equal_one_device_runs(tmp_path,
                                                            monkeypatch):
  """Two real members, a process each on its (fake) GPU, at once."""
  monkeypatch.delenv(devices.CACHE_ENV, raising=False)  # as users run it
  grid = dict(GRID, seeds=[0, 1])
  one_by_one = wrn_trax.sweep(root=str(tmp_path / 'here'), gpus=[],
                              verbose=False, **grid)
  root = str(tmp_path / 'procs')
  frame = wrn_trax.sweep(root=root, gpus=['0', '1'], verbose=False, **grid)
  assert list(frame['status']) == ['done', 'done'], list(frame['reason'])
  # The same runs as in this process, one after another: same error.
  assert list(frame['test_error']) == list(one_by_one['test_error'])
  assert list(frame['test_loss']) == list(one_by_one['test_loss'])
  seen = _member_results(root)
  assert len(seen) == 2
  envs = [r['member']['env'] for r in seen.values()]
  assert sorted(e['CUDA_VISIBLE_DEVICES'] for e in envs) == ['0', '1']
  assert all(e[FRACTION] is None for e in envs)
  assert all(e['JAX_COMPILATION_CACHE_DIR'] == os.path.join(
      os.path.abspath(root), '.jax_cache') for e in envs)
  a, b = (r['member'] for r in seen.values())
  assert a['pid'] != b['pid'] and _overlap(
      dict(start=a['started'], end=a['ended']),
      dict(start=b['started'], end=b['ended']))
  for run in frame['run']:
    config = runio.read_json(os.path.join(root, run, 'config.json'))
    assert config['n_devices'] == 1 and config['data_parallel'] is False
    summary = runio.read_json(os.path.join(root, run, 'summary.json'))
    assert summary['peak_device_scope'] == 'run'  # a process of its own


def test_a_member_process_that_dies_is_a_failed_member(tmp_path, monkeypatch):
  # A Python that cannot start (no standard library) dies at once.
  monkeypatch.setattr(sweep_lib, '_child_env', lambda slot, root: dict(
      os.environ, PYTHONPATH='', PYTHONHOME='/nonexistent'))
  root = str(tmp_path / 'runs')
  frame = wrn_trax.sweep(root=root, gpus=['0'], verbose=False, **GRID)
  assert list(frame['status']) == ['failed']
  assert 'the member process exited with status' in frame['reason'][0]
  assert '.log' in frame['reason'][0]


# ------------------------------------------- one device unless asked ----


_TWO_DEVICES = """
import json, sys
from wrn_trax import train
kw = dict(model='WRN-10-1', dataset='digits', recipe='smoke', steps=4,
          eval_every=2, checkpoint_every=2, precise_bn_batches=2,
          verbose=False)
one = train.train(workdir=sys.argv[1] + '/one', **kw)
dp = train.train(workdir=sys.argv[1] + '/dp', data_parallel=True, **kw)
print('RESULT', json.dumps([one['test_error'], dp['test_error']]))
"""


@pytest.mark.slow
def test_a_train_uses_one_device_unless_data_parallel(tmp_path, python,
                                                      subprocess_env):
  env = dict(subprocess_env,
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  out = subprocess.run([python, '-c', _TWO_DEVICES, str(tmp_path)], env=env,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  one = runio.read_json(str(tmp_path / 'one' / 'config.json'))
  dp = runio.read_json(str(tmp_path / 'dp' / 'config.json'))
  assert one['n_devices'] == 1 and one['data_parallel'] is False
  assert one['bn_batch_per_device'] == 32
  assert dp['n_devices'] == 2 and dp['data_parallel'] is True
  assert dp['bn_batch_per_device'] == 16


def test_data_parallel_is_a_checked_recipe_field():
  assert all(recipes.get(name)['data_parallel'] is False
             for name in recipes.RECIPES)
  assert recipes.get('smoke', data_parallel=True)['data_parallel'] is True
  with pytest.raises(ValueError, match='data_parallel must be True or False'):
    recipes.get('smoke', data_parallel=1)
  config = train_lib.make_config(TINY, 'digits', 'smoke', data_parallel=True)
  assert config['run_name'].endswith('_data_parallelTrue')


# --------------------------------------------------- the run record ----


def test_a_run_made_with_the_old_float32_default_still_resumes(tmp_path):
  new = train_lib.make_config(TINY, 'digits', 'smoke')
  assert new['precision'] == 'auto'
  old = dict(new, precision='float32')  # the default before 'auto'
  record.check_same_run(old, new, str(tmp_path))  # no error
  asked = train_lib.make_config(TINY, 'digits', 'smoke', precision='bfloat16')
  with pytest.raises(ValueError, match='precision'):
    record.check_same_run(dict(asked, precision='float16'), asked,
                          str(tmp_path))


def test_peak_device_memory_says_what_it_covers(monkeypatch):
  monkeypatch.setattr(train_lib, '_SESSIONS', [1])
  assert train_lib._peak_device_scope() == 'run'  # pylint: disable=protected-access
  monkeypatch.setattr(train_lib, '_SESSIONS', [3])
  assert train_lib._peak_device_scope().startswith(  # pylint: disable=protected-access
      'process: the peak since this process started, 2 earlier run(s)')


# ------------------------------------------------ compilation cache ----


def test_compilation_cache_goes_under_the_run_root(tmp_path, monkeypatch):
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  monkeypatch.delenv(devices.CACHE_ENV, raising=False)
  assert devices.compilation_cache_dir('runs', {}) == os.path.abspath(
      'runs/.jax_cache')
  assert devices.compilation_cache_dir('runs', {devices.CACHE_ENV: '0'}) is None
  assert devices.compilation_cache_dir(
      'runs', {'JAX_COMPILATION_CACHE_DIR': '/c'}) == '/c'
  import jax  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(jax.config, 'update', lambda *a: calls.append(a))
  calls = []
  if jax.config.jax_compilation_cache_dir is None:
    root = str(tmp_path / 'runs')
    assert devices.enable_compilation_cache(root) == os.path.join(
        root, '.jax_cache')
    assert calls == [('jax_compilation_cache_dir',
                      os.path.join(root, '.jax_cache'))]


if __name__ == '__main__':
  sys.exit(pytest.main([__file__]))
