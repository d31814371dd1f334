"""A sweep whose own process holds GPU memory refuses to start its members.

No GPU is needed: jax's devices are replaced by fakes with `memory_stats()`
as jax's GPU allocator fills it in, and the sweep's member launcher by a
recorder that must stay unused.
"""
import os
import subprocess
import sys

import pytest

from wrn_trax import cli
from wrn_trax import devices
from wrn_trax import sweep as sweep_lib

GIB = 2**30
PREALLOCATE = 'XLA_PYTHON_CLIENT_PREALLOCATE'


class FakeGpu:
  platform = 'gpu'

  def __init__(self, **stats):
    self.stats = stats

  def memory_stats(self):
    return self.stats


class FakeCpu:
  platform = 'cpu'

  def memory_stats(self):
    raise AssertionError('a CPU device is never asked')


def _held(devices_, **env):
  return devices.held_gpu_memory(devices_, backends_initialized=True,
                                 environ=env)


def _preallocated(total=16 * GIB, fraction=0.75):
  pool = int(total * fraction)
  return FakeGpu(bytes_limit=pool, pool_bytes=pool, bytes_in_use=2**20)


def test_nothing_is_asked_where_jax_has_no_backend():
  def boom():
    raise AssertionError('asking for the devices would start the backend')

  assert devices.held_gpu_memory(boom, backends_initialized=False) == []
  devices.check_driver_gpu_memory({0: 0.75}, held=devices.held_gpu_memory(
      boom, backends_initialized=False))


def test_held_memory_read_from_the_allocator_stats():
  [gpu] = _held([FakeCpu(), _preallocated()])
  assert gpu == dict(index=0, held=12 * GIB, total=16 * GIB)
  # Grown on demand (preallocation off): what is in use or reserved.
  [gpu] = _held([FakeGpu(bytes_limit=12 * GIB, bytes_in_use=GIB // 5)],
                **{PREALLOCATE: 'false'})
  assert gpu['held'] == GIB // 5 and gpu['total'] == 16 * GIB
  # No stats with preallocation on: unknown, counted as held.
  [gpu] = _held([FakeGpu()])
  assert gpu['held'] is None


def test_a_preallocating_driver_is_refused_with_the_fix():
  held = _held([_preallocated()])
  with pytest.raises(devices.DriverHoldsGpuError) as e:
    devices.check_driver_gpu_memory({0: 0.75}, held=held)
  message = str(e.value)
  assert "GPU 0's 12.0 GiB (75%) of its 16.0 GiB" in message
  assert 'XLA_PYTHON_CLIENT_PREALLOCATE=false' in message
  assert 'gpus=[]' in message and 'restart' in message
  # A GPU no member uses is not a reason to refuse.
  devices.check_driver_gpu_memory({1: 0.75}, held=held)


def test_the_threshold_is_what_the_members_leave_free():
  env = {PREALLOCATE: 'false'}
  small = _held([FakeGpu(bytes_limit=12 * GIB, bytes_in_use=GIB // 5)], **env)
  devices.check_driver_gpu_memory({0: 0.75}, held=small)  # 1%: fine
  devices.check_driver_gpu_memory({0: 0.9}, held=small)
  third = _held([FakeGpu(bytes_limit=12 * GIB, bytes_in_use=5 * GIB)], **env)
  with pytest.raises(devices.DriverHoldsGpuError):
    devices.check_driver_gpu_memory({0: 0.75}, held=third)  # 31% > 25%
  devices.check_driver_gpu_memory({0: 0.45}, held=third)  # two of 0.225


def test_slot_fractions_add_up_per_gpu_and_follow_cuda_visible_devices():
  four = sweep_lib.local_slots(0.25, gpus=['0', '1'])
  assert sweep_lib.slot_fractions(four, environ={}) == pytest.approx(
      {0: 0.9, 1: 0.9})
  whole = sweep_lib.local_slots(None, gpus=['2', '3'])
  # The driver sees GPUs 2 and 3 as its positions 0 and 1.
  assert sweep_lib.slot_fractions(
      whole, environ={'CUDA_VISIBLE_DEVICES': '2,3'}) == {0: 0.75, 1: 0.75}
  assert sweep_lib.slot_fractions(whole, environ={}) == {2: 0.75, 3: 0.75}
  pairs = sweep_lib.local_slots(2, gpus=['0', '1'])
  assert sweep_lib.slot_fractions(
      pairs, environ={'XLA_PYTHON_CLIENT_MEM_FRACTION': '0.5'}) == {
          0: 0.5, 1: 0.5}


def _refusing_sweep(monkeypatch, tmp_path):
  launched = []
  monkeypatch.setattr(sweep_lib, '_launch_member',
                      lambda *a, **k: launched.append(a))
  held = _held([_preallocated()])
  monkeypatch.setattr(devices, 'held_gpu_memory', lambda environ=None: held)
  monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
  monkeypatch.chdir(tmp_path)
  return launched


def test_sweep_refuses_before_anything_is_written(monkeypatch, tmp_path):
  launched = _refusing_sweep(monkeypatch, tmp_path)
  with pytest.raises(devices.DriverHoldsGpuError, match='GPU 0'):
    sweep_lib.sweep(widen_factors=[1, 2], dataset='digits', recipe='smoke',
                    family='paper', depths=[10], root='runs', gpus=['0'],
                    live=False)
  assert launched == [] and not os.path.exists('runs')
  # gpus=[] trains in this process, where the held memory is its own.
  assert sweep_lib.local_slots(None, gpus=[]) == []


def test_the_cli_prints_one_error_line(monkeypatch, tmp_path, capsys):
  launched = _refusing_sweep(monkeypatch, tmp_path)
  with pytest.raises(SystemExit) as e:
    cli.main(['sweep', '--family', 'paper', '--depths', '10',
              '--widen-factors', '1', '--dataset', 'digits', '--recipe',
              'smoke', '--gpus', '0', '--root', 'runs'])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('wrn-trax sweep: error: '), err
  assert 'XLA_PYTHON_CLIENT_PREALLOCATE=false' in err[0]
  assert launched == [] and not os.path.exists('runs')


def test_asking_starts_no_backend():
  """With jax imported and nothing run, nothing is held and nothing starts."""
  code = ('import jax; from jax._src import xla_bridge; '
          'from wrn_trax import devices; '
          'assert devices.held_gpu_memory() == []; '
          'devices.check_driver_gpu_memory({0: 0.9}); '
          'assert not xla_bridge.backends_are_initialized(); print("ok")')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, timeout=120, check=False)
  assert out.returncode == 0 and out.stdout.strip() == 'ok', out.stderr
