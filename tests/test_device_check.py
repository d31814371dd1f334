"""bench/device/check.py: each item's pass condition fails on a planted fault
(a slow step, a wrong error, memory held at import, no GPU, a member that
crashed or packing that loses speed), and passes on the healthy figures."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'bench', 'device'))
import check  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position


def test_device_needs_a_gpu_unless_allowed():
  assert check.judge_device(dict(platform='gpu'), allow_cpu=False)[0]
  ok, why = check.judge_device(dict(platform='cpu'), allow_cpu=False)
  assert not ok and why == 'no GPU found'
  assert check.judge_device(dict(platform='cpu'), allow_cpu=True)[0]


def test_import_holding_memory_fails():
  assert check.judge_import(False, 0.0)[0]
  assert check.judge_import(False, None)[0]
  ok, why = check.judge_import(True, 0.0)
  assert not ok and 'backend was initialised' in why
  ok, why = check.judge_import(False, 61_000.0)
  assert not ok and '61000 MiB' in why


def test_tf_holding_the_gpu_fails_and_the_stand_in_is_not_applicable():
  assert check.judge_tf(True, None, None)[0] is None
  assert check.judge_tf(False, 0, None)[0] is True
  assert check.judge_tf(False, 1, 0.0)[0] is True
  assert check.judge_tf(False, 1, 500.0)[0] is False


def test_a_slow_step_fails_the_ratio():
  ok, ratio = check.judge_ratio(ours_ips=950.0, limit_ips=1000.0)
  assert ok and ratio == pytest.approx(0.95)
  ok, ratio = check.judge_ratio(ours_ips=600.0, limit_ips=1000.0)
  assert not ok and ratio == pytest.approx(0.6)


def test_a_wrong_error_fails_the_real_data_item():
  assert check.judge_real_data(0.62, 0.60)[0]
  ok, why = check.judge_real_data(0.70, 0.60)
  assert not ok and 'gap 10.00 points' in why
  assert not check.judge_real_data(None, 0.60)[0]
  assert not check.judge_real_data(0.6, None)[0]


def test_members_fail_on_a_crash_or_on_packing_that_loses_speed():
  one = [dict(images_per_s=1000.0, peak_device_mb=900.0)]
  four = [dict(images_per_s=400.0, peak_device_mb=900.0)] * 4
  assert check.judge_members({1: one, 4: four})[0]
  slow = [dict(images_per_s=150.0, peak_device_mb=900.0)] * 4
  ok, why = check.judge_members({1: one, 4: slow})
  assert not ok and '0.60x' in why
  crashed = four[:3] + [dict(error='RESOURCE_EXHAUSTED: out of memory')]
  ok, why = check.judge_members({1: one, 4: crashed})
  assert not ok and 'RESOURCE_EXHAUSTED' in why


def test_the_throughput_item_fails_on_a_planted_slow_step(monkeypatch):
  """The item itself, with our Loop replaced by one 2x slower than the
  limit step it is compared with."""
  import _common  # pylint: disable=g-import-not-at-top

  class Fake:
    def __init__(self, per_step):
      self.per_step = per_step

    def chunk(self, n):
      return n * self.per_step

  monkeypatch.setattr(_common, 'synthetic_dataset', lambda **k: None)
  monkeypatch.setattr(_common, 'LimitStep', lambda *a, **k: Fake(0.01))
  monkeypatch.setattr(_common, 'OurPath', lambda *a, **k: Fake(0.02))
  monkeypatch.setattr(_common, 'peak_device_mb', lambda: None)
  rec = {}
  cfg = dict(precisions=('float32',), models=(('WRN-10-1', 8),),
             augments=('host', 'device'), warmup=1, chunk=2, chunks=2)
  check.item_throughput(rec, cfg, None, lambda: None)
  assert not rec['ok']
  assert [r['ratio'] for r in rec['rows']] == [pytest.approx(0.5)] * 2
  monkeypatch.setattr(_common, 'OurPath', lambda *a, **k: Fake(0.0101))
  rec = {}
  check.item_throughput(rec, cfg, None, lambda: None)
  assert rec['ok'], rec


@pytest.mark.slow
def test_the_import_item_fails_where_an_import_starts_jax(
    tmp_path, subprocess_env):
  """A planted module that starts jax's backend on import fails the probe;
  the probe is a child process, as the check runs it."""
  (tmp_path / 'planted.py').write_text(
      'import jax.numpy as jnp\nZERO = jnp.zeros(())\n')
  code = ('import json, sys; import planted; '
          'from jax._src import xla_bridge; '
          'print(json.dumps(xla_bridge.backends_are_initialized()))')
  env = dict(subprocess_env, PYTHONPATH=str(tmp_path) + os.pathsep +
             subprocess_env['PYTHONPATH'])
  out = subprocess.run([sys.executable, '-c', code], env=env,
                       capture_output=True, text=True, check=True,
                       timeout=300).stdout
  initialized = json.loads(out.strip().splitlines()[-1])
  assert initialized is True
  assert not check.judge_import(initialized, None)[0]


def test_markdown_and_status_of_a_record():
  rec = dict(commit='abc', tensorflow='stand-in', total_s=3.0, items=dict(
      device=dict(status='ok', summary='a GPU', seconds=1, budget_s=40),
      throughput=dict(status='failed', summary='1 measured', rows=[dict(
          model='WRN-10-1', batch=8, precision='float32', augment='host',
          images_per_s=10.0, limit_images_per_s=20.0, ratio=0.5)])))
  md = check.markdown(rec)
  assert '| throughput | failed |' in md and '| 0.50 |' in md
  assert check.status_of(dict(skipped='x')) == 'skipped'
  assert check.status_of(dict(ok=False)) == 'failed'
  assert check.status_of(dict(ok=True)) == 'ok'


def test_the_committed_cpu_reference_is_the_run_the_gpu_item_trains():
  import cpu_reference  # pylint: disable=g-import-not-at-top
  ref = check._reference()  # pylint: disable=protected-access
  assert ref is not None and ref['status'] == 'done'
  assert all(ref[k] == v for k, v in cpu_reference.REAL_DATA.items())
  assert check.FULL['real_data']['steps'] == ref['steps']
  assert 0.0 < ref['test_error'] < 0.9 and ref['eval_examples'] == 10_000
