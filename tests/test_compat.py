"""The contract of every trax/jax patch in wrn_trax._compat (`PATCHES`).

One section per patch, each testing what the patch guarantees, then the
guard: the table, a fake trax or jax version outside the verified range
(warned once; installed anyway or refused, as the row says) and installing
twice.
"""
import inspect
import json
import os
import re
import subprocess
import warnings

import jax
import numpy as np
import pytest

from wrn_trax import _compat


def _jax_version():
  return tuple(int(p) for p in re.findall(r'\d+', jax.__version__)[:3])


def _tiny_loop(output_dir=None, optimizer=None):
  """A trax Loop on a Dense model with Momentum slots (arrays)."""
  import trax  # pylint: disable=g-import-not-at-top
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax.supervised import training  # pylint: disable=g-import-not-at-top

  def batches():
    rng = np.random.default_rng(0)
    while True:
      yield (rng.normal(size=(4, 3)).astype(np.float32),
             rng.integers(0, 2, 4).astype(np.int32), np.ones((4,), np.float32))

  task = training.TrainTask(batches(), tl.CrossEntropyLoss(),
                            optimizer or trax.optimizers.Momentum(0.1))
  return training.Loop(tl.Serial(tl.Dense(2), tl.LogSoftmax()), [task],
                       output_dir=output_dir, random_seed=0)


# -------------------------------------------------------------- the table


def test_every_patch_has_a_row_and_this_stack_is_verified():
  names = [p.name for p in _compat.PATCHES]
  assert names == ['shallow_inspect_stack', 'device_put_replicated',
                   'tree_unflatten', 'slots_on_device', 'checkpoint_readers',
                   'loop_device_count', 'light_one_step']
  for patch in _compat.PATCHES:
    assert (patch.trax, patch.jax_min, patch.jax_max) == ('1.4.1', '0.5.3',
                                                          '0.12.0')
    assert patch.outside in ('warn', 'refuse') and patch.fixes
    # Every stack the tests run on (ours, Colab, Kaggle, jax 0.11.2 and the
    # newest, 0.12.0.1) is verified: the patches install silently there.
    assert _compat.verified(patch.name), (patch.name, _compat.versions())
  assert set(_compat.installed()) <= set(names)


@pytest.mark.parametrize('found, ok', [
    (('1.4.1', '0.5.3'), True), (('1.4.1', '0.7.2'), True),
    (('1.4.1', '0.10.2'), True), (('1.4.1', '0.10.2.dev20260101'), True),
    (('1.4.1', '0.11.2'), True), (('1.4.1', '0.12.0.1'), True),
    (('1.4.1', '0.5.2'), False), (('1.4.1', '0.12.1'), False),
    (('1.4.1', '0.13.0'), False), (('1.4.0', '0.7.2'), False),
    (('2.0.0', '0.7.2'), False), (('not installed', '0.7.2'), False),
])
def test_verified_is_trax_1_4_1_and_jax_0_5_3_to_0_12_0(found, ok):
  for patch in _compat.PATCHES:
    assert _compat.verified(patch.name, found) is ok


def test_the_process_wide_patches_are_installed_where_needed():
  """conftest ran `ensure_trax`: each needed patch is in, the others not."""
  names = _compat.installed()
  assert 'tree_unflatten' in names  # trax's raises on every jax we support
  ours = jax.device_put_replicated is _compat._device_put_replicated  # pylint: disable=protected-access
  assert ('device_put_replicated' in names) == ours
  assert ours == (_jax_version() >= (0, 8, 0))  # removed in jax 0.8
  if os.environ.get(_compat.SLOW_IMPORT_ENV, '') in ('', '0'):
    assert 'shallow_inspect_stack' in names


# ---------------------------------------------------- the guard


@pytest.fixture
def fake_versions(monkeypatch):
  """Sets the (trax, jax) versions the guard sees; a fresh warned set and a
  copy of the installed list, both undone after the test."""
  monkeypatch.setattr(_compat, '_WARNED', set())
  monkeypatch.setattr(_compat, '_INSTALLED', list(_compat._INSTALLED))  # pylint: disable=protected-access
  monkeypatch.setattr(_compat, '_DECISIONS', dict(_compat._DECISIONS))  # pylint: disable=protected-access
  monkeypatch.setattr(_compat, '_SELF_TESTS', {})
  monkeypatch.delenv(_compat.SELF_TEST_ENV, raising=False)

  def set_(trax_version, jax_version):
    monkeypatch.setattr(_compat, 'versions',
                        lambda: (trax_version, jax_version))
  return set_


def _no_warnings(fn, *args):
  with warnings.catch_warnings(record=True) as log:
    warnings.simplefilter('always')
    out = fn(*args)
  assert not [w for w in log
              if issubclass(w.category, _compat.UnverifiedPatchWarning)], (
                  [str(w.message) for w in log])
  return out


def test_installing_twice_is_a_no_op():
  before = (_compat.installed(), jax.__dict__.get('device_put_replicated'),
            __import__('trax').fastmath.tree_unflatten)
  _no_warnings(_compat.install)
  _no_warnings(_compat.ensure_trax)
  after = (_compat.installed(), jax.__dict__.get('device_put_replicated'),
           __import__('trax').fastmath.tree_unflatten)
  assert before[0] == after[0]
  assert before[1] is after[1] and before[2] is after[2]


def test_unverified_jax_warns_once_then_installs_a_needed_patch(
    fake_versions, monkeypatch):
  """A 'warn' patch (without it trax fails) on jax 0.13: warned, installed."""
  monkeypatch.delattr(jax, 'device_put_replicated', raising=False)
  monkeypatch.setattr(_compat, '_INSTALLED',
                      [n for n in _compat._INSTALLED  # pylint: disable=protected-access
                       if n != 'device_put_replicated'])
  fake_versions('1.4.1', '0.13.0')
  with pytest.warns(_compat.UnverifiedPatchWarning) as log:
    _compat.install()
  message, = [str(w.message) for w in log]
  assert "patch 'device_put_replicated'" in message
  assert 'verified on trax 1.4.1 with jax 0.5.3 to 0.12.0' in message
  assert 'found trax 1.4.1, jax 0.13.0' in message
  assert 'installed anyway' in message
  assert jax.device_put_replicated is _compat._device_put_replicated  # pylint: disable=protected-access
  assert _compat.installed().count('device_put_replicated') == 1
  _no_warnings(_compat.install)  # once: installed, warned, nothing more
  _no_warnings(_compat.allowed, 'device_put_replicated')


def test_unverified_trax_refuses_the_light_step(fake_versions):
  """A 'refuse' patch (it copies trax 1.4.1 internals) on another trax:
  warned once, trax's own one_step kept; the float16 path that needs it
  raises instead of training with it."""
  loop = _tiny_loop()
  trainer = loop._trainer_per_task[0]  # pylint: disable=protected-access
  fake_versions('1.5.0', '0.10.2')
  with pytest.warns(_compat.UnverifiedPatchWarning,
                    match=r"'light_one_step'.*found trax 1\.5\.0, jax 0\.10\.2"
                    r".*not installed: trax's own code is used"):
    _compat.lighten_steps(loop)
  assert not _compat._has_light_step(trainer)  # pylint: disable=protected-access
  _no_warnings(_compat.lighten_steps, loop)  # warned once only
  with pytest.raises(_compat.UnverifiedPatchError, match='light_one_step'):
    _compat.install_one_step(trainer, trainer._accelerated_update_fn)  # pylint: disable=protected-access
  assert not _compat._has_light_step(trainer)  # pylint: disable=protected-access


def test_unverified_trax_imports_with_the_stdlib_stack(fake_versions):
  fake_versions('1.5.0', '0.7.2')
  full = inspect.stack
  with pytest.warns(_compat.UnverifiedPatchWarning,
                    match="'shallow_inspect_stack'"):
    with _compat.shallow_inspect_stack():
      assert inspect.stack is full
  fake_versions('1.4.1', '0.7.2')
  with _compat.shallow_inspect_stack():
    assert inspect.stack.__wrapped__ is full
  assert inspect.stack is full


# ----------------------------------------- nothing on a device at import

_NO_BACKEND = """
import importlib, pkgutil, sys
import wrn_trax
from jax._src import xla_bridge
names = sorted(m.name for m in pkgutil.walk_packages(wrn_trax.__path__,
                                                      'wrn_trax.'))
for name in names:
  importlib.import_module(name)
from wrn_trax import sweep
members = sweep.plan(widen_factors=[1, 2], dataset='digits', recipe='smoke',
                     root=sys.argv[1])
print(len(names), len(members), 'trax' in sys.modules,
      'tree_unflatten' in wrn_trax._compat.installed(),
      xla_bridge.backends_are_initialized())
"""


@pytest.mark.slow
def test_importing_every_module_and_planning_a_sweep_start_no_backend(
    tmp_path, python, subprocess_env):
  """No jax backend (on a GPU: no memory preallocated) until a training:
  every module of wrn_trax imported, the process-wide patches installed
  and a sweep planned."""
  r = subprocess.run([python, '-c', _NO_BACKEND, str(tmp_path / 'runs')],
                     env=subprocess_env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  n_modules, n_members, trax, patched, backends = (
      r.stdout.split()[-5:])
  assert int(n_modules) >= 15 and int(n_members) == 2
  assert (trax, patched) == ('True', 'True')
  assert backends == 'False', 'a jax backend was started before training'


# ------------------------------------ the self-tests of the speed patches


def test_the_patch_report_of_this_stack(fake_versions, monkeypatch):
  """On a listed jax no self-test runs; the report says why each patch is
  in, and is JSON (train puts it in config.json, under versions)."""
  fake_versions(*_compat.versions())  # no self-test forced
  # A fresh guard: a Loop built earlier in this process (another test) has
  # decided the per-Loop patches already.
  monkeypatch.setattr(_compat, '_DECISIONS', {})
  report = _compat.patch_report(run_self_tests=True)
  assert list(report) == [p.name for p in _compat.PATCHES]
  assert json.loads(json.dumps(report)) == report
  for name, row in report.items():
    assert row['verified'] and row['self_test'] is None, name
  for name in ('shallow_inspect_stack', 'light_one_step'):
    assert report[name]['allowed'] is True
    assert report[name]['why'] == 'verified on these versions'
  assert report['tree_unflatten']['installed']
  assert report['slots_on_device']['allowed'] is None  # asked per Loop


def test_an_unlisted_jax_gets_the_light_step_when_its_self_test_passes(
    fake_versions):
  loop = _tiny_loop()
  trainer = loop._trainer_per_task[0]  # pylint: disable=protected-access
  fake_versions('1.4.1', '0.13.0')
  _no_warnings(_compat.lighten_steps, loop)
  assert _compat._has_light_step(trainer)  # pylint: disable=protected-access
  row = _compat.patch_report()['light_one_step']
  assert (row['verified'], row['allowed'], row['why']) == (
      False, True, 'its self-test passed')
  result = row['self_test']
  assert result['passed'] and 0 < result['seconds'] < 300
  assert result['detail'].endswith('bitwise the same') == BITWISE_LIGHT_STEP
  first = _compat._SELF_TESTS['light_one_step']  # pylint: disable=protected-access
  _no_warnings(_compat.lighten_steps, _tiny_loop())  # once per process
  assert _compat._SELF_TESTS['light_one_step'] is first  # pylint: disable=protected-access


@pytest.mark.slow
def test_the_light_steps_self_test_catches_a_step_that_trains_differently(
    fake_versions, monkeypatch):
  """A light step 1 % off in its learning rate fails its self-test on an
  unlisted jax: warned, trax's own step kept, float16's path raises."""
  real = _compat._one_step_one_device  # pylint: disable=protected-access

  def off(self, batch, rng, step=0, learning_rate=None):
    return real(self, batch, rng, step, learning_rate * 1.01)

  monkeypatch.setattr(_compat, '_one_step_one_device', off)
  fake_versions('1.4.1', '0.13.0')
  loop = _tiny_loop()
  trainer = loop._trainer_per_task[0]  # pylint: disable=protected-access
  with warnings.catch_warnings(record=True) as log:
    warnings.simplefilter('always', _compat.UnverifiedPatchWarning)
    _compat.lighten_steps(loop)
  message, = [str(w.message) for w in log
              if issubclass(w.category, _compat.UnverifiedPatchWarning)]
  assert re.search(r"'light_one_step'.*failed its self-test on trax 1\.4\.1, "
                   r'jax 0\.13\.0: .*largest difference', message), message
  assert 'one_step' not in trainer.__dict__
  row = _compat.patch_report()['light_one_step']
  assert (row['allowed'], row['why']) == (False, 'its self-test failed')
  assert row['self_test']['passed'] is False
  with pytest.raises(_compat.UnverifiedPatchError, match='self-test failed'):
    _compat.install_one_step(trainer, trainer._accelerated_update_fn)  # pylint: disable=protected-access


def test_an_unlisted_jax_imports_trax_quickly_only_if_the_self_test_passes(
    fake_versions, monkeypatch):
  fake_versions('1.4.1', '0.13.0')
  full = inspect.stack
  with warnings.catch_warnings():
    warnings.simplefilter('error', _compat.UnverifiedPatchWarning)
    with _compat.shallow_inspect_stack():
      assert inspect.stack.__wrapped__ is full
  assert inspect.stack is full
  row = _compat.patch_report()['shallow_inspect_stack']
  assert (row['allowed'], row['why']) == (True, 'its self-test passed')
  assert row['self_test']['seconds'] < 60
  # A shallow stack that hands assert_shape the wrong frames fails it.
  monkeypatch.setattr(_compat, '_SELF_TESTS', {})
  good = _compat._shallow_stack_for  # pylint: disable=protected-access
  monkeypatch.setattr(_compat, '_shallow_stack_for',
                      lambda whole: lambda context=1: good(whole)(context)[1:])
  with pytest.warns(_compat.UnverifiedPatchWarning,
                    match="'shallow_inspect_stack'.*failed its self-test"):
    with _compat.shallow_inspect_stack():
      assert inspect.stack is full
  row = _compat.patch_report()['shallow_inspect_stack']
  assert (row['allowed'], row['why']) == (False, 'its self-test failed')


def test_with_the_env_variable_the_self_test_decides_on_a_listed_jax(
    fake_versions, monkeypatch):
  fake_versions('1.4.1', '0.10.2')
  assert _compat.allowed('shallow_inspect_stack')
  assert _compat.patch_report()['shallow_inspect_stack']['self_test'] is None
  monkeypatch.setenv(_compat.SELF_TEST_ENV, '1')
  assert _compat.allowed('shallow_inspect_stack')
  row = _compat.patch_report()['shallow_inspect_stack']
  assert row['why'] == 'its self-test passed' and row['self_test']['passed']


# ----------------------------------------------- device_put_replicated
_TWO_DEVICES = """
import os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
import jax, numpy as np, wrn_trax
wrn_trax._compat.ensure_trax()  # the jax shims, as train() installs them
assert jax.local_device_count() == 2
devices = jax.local_devices()
x = np.arange(6.0).reshape(2, 3)
for put in {jax.device_put_replicated, wrn_trax._compat._device_put_replicated}:
  y = put(x, devices)  # jax's own where it has one, and ours
  assert y.shape == (2, 2, 3) and y.sharding.device_set == set(devices)
  shards = sorted(y.addressable_shards, key=lambda s: devices.index(s.device))
  assert [s.device for s in shards] == devices
  for s in shards:
    assert s.data.shape == (1, 2, 3)
    np.testing.assert_array_equal(np.asarray(s.data)[0], x)
s = wrn_trax.train(model='WRN-10-1', dataset='digits', recipe='smoke', steps=4,
                   eval_every=2, checkpoint_every=2, workdir=sys.argv[1],
                   verbose=False)
print(s['status'], s['step'], s['eval_examples'])
"""


@pytest.mark.slow
def test_loop_trains_data_parallel_on_two_devices(tmp_path, python,
                                                   subprocess_env):
  """One copy per device, each shard the whole array; then trax's pmapped
  Loop trains on the two devices."""
  r = subprocess.run([python, '-c', _TWO_DEVICES, str(tmp_path / 'run')],
                     env=subprocess_env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.strip().splitlines()[-1] == 'done 4 360'


def test_device_put_replicated_lays_out_one_copy_per_device():
  devices = jax.local_devices()
  x = np.arange(8.0).reshape(2, 4)
  ours = _compat._device_put_replicated(x, devices)  # pylint: disable=protected-access
  assert ours.shape == (len(devices), 2, 4)
  assert ours.sharding.device_set == set(devices)
  for shard in ours.addressable_shards:
    np.testing.assert_array_equal(np.asarray(shard.data)[0], x)
  jaxs = jax.__dict__.get('device_put_replicated')
  if jaxs is not None and jaxs is not _compat._device_put_replicated:  # pylint: disable=protected-access
    # jax < 0.8 still has its own: ours gives what it gives.
    theirs = jaxs(x, devices)
    assert theirs.shape == ours.shape
    assert theirs.sharding.device_set == ours.sharding.device_set
    np.testing.assert_array_equal(np.asarray(theirs), np.asarray(ours))


# -------------------------------------------------------- tree_unflatten


def test_tree_unflatten_with_arrays_in_the_tree():
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  tree = (jax.numpy.zeros(2), (), [jax.numpy.ones(3), None])
  flat = [np.full(2, 5.0), np.full(3, 7.0)]
  out, rest = fastmath.tree_unflatten(flat, tree, copy_from_tree=[None, ()])
  assert rest == []
  np.testing.assert_array_equal(out[0], flat[0])
  assert out[1] == () and out[2][1] is None
  np.testing.assert_array_equal(out[2][0], flat[1])


def test_a_loop_resumes_its_optimizer_slots(tmp_path, monkeypatch):
  """Loop.load_checkpoint restores Momentum slots (arrays) through
  tree_unflatten; with trax's own it raises on this jax."""
  loop = _tiny_loop(str(tmp_path))
  loop.run(2)
  loop.save_checkpoint('model')
  resumed = _tiny_loop(str(tmp_path))
  assert resumed.step == 2
  for a, b in ((loop._trainer_per_task[0].slots,  # pylint: disable=protected-access
                resumed._trainer_per_task[0].slots),  # pylint: disable=protected-access
               (loop.model.weights, resumed.model.weights)):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert la and len(la) == len(lb)
    for x, y in zip(la, lb):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert any(np.any(np.asarray(s) != 0)
             for s in jax.tree_util.tree_leaves(
                 resumed._trainer_per_task[0].slots))  # pylint: disable=protected-access
  if 'tree_unflatten' in _compat.installed():
    import sys  # pylint: disable=g-import-not-at-top
    from trax import fastmath  # pylint: disable=g-import-not-at-top
    original = _compat._ORIGINALS['tree_unflatten']  # pylint: disable=protected-access
    monkeypatch.setattr(sys.modules['trax.fastmath.numpy'], 'tree_unflatten',
                        original)
    monkeypatch.setattr(fastmath, 'tree_unflatten', original)
    with pytest.raises(TypeError):
      _tiny_loop(str(tmp_path))


# ----------------------------------------------------- checkpoint_readers


def test_a_loop_reads_its_checkpoint_through_the_readers_given(tmp_path):
  """While the body runs, trax's Loop reads its checkpoint (the pickle and
  the weight arrays) with the readers given; after it, with trax's own."""
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax.supervised import training  # pylint: disable=g-import-not-at-top
  original = training.unpickle_from_file, tl.np_from_file
  loop = _tiny_loop(str(tmp_path))
  loop.run(1)
  loop.save_checkpoint('model')
  calls = []

  def unpickle(*args, **kwargs):
    calls.append('pickle')
    return original[0](*args, **kwargs)

  def arrays(*args, **kwargs):
    calls.append('arrays')
    return original[1](*args, **kwargs)

  with _compat.checkpoint_readers(unpickle, arrays):
    assert _tiny_loop(str(tmp_path)).step == 1
  assert 'pickle' in calls and 'arrays' in calls
  assert (training.unpickle_from_file, tl.np_from_file) == original
  with pytest.raises(RuntimeError, match='in the body'):
    with _compat.checkpoint_readers(unpickle, arrays):
      raise RuntimeError('in the body')
  assert (training.unpickle_from_file, tl.np_from_file) == original
  assert 'checkpoint_readers' in _compat.installed()


# -------------------------------------------------------- slots_on_device


def test_optimizer_slots_move_to_the_training_device():
  """trax pins slots to the host CPU; on a GPU the step would run there."""
  import trax  # pylint: disable=g-import-not-at-top
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax.supervised import training  # pylint: disable=g-import-not-at-top

  def batches():
    while True:
      yield (np.ones((4, 3), np.float32), np.zeros((4,), np.int32),
             np.ones((4,), np.float32))

  task = training.TrainTask(batches(), tl.CrossEntropyLoss(),
                            trax.optimizers.Momentum(0.1))
  loop = training.Loop(tl.Serial(tl.Dense(2), tl.LogSoftmax()), [task],
                       random_seed=0)
  trainer = loop._trainer_per_task[0]  # pylint: disable=protected-access
  leaves = jax.tree_util.tree_leaves(trainer._slots)  # pylint: disable=protected-access
  assert leaves and all(x.devices() == {jax.devices('cpu')[0]} for x in leaves)
  _compat.spread_optimizer_state(loop)
  for x in jax.tree_util.tree_leaves(
      (trainer._slots, trainer._opt_params)):  # pylint: disable=protected-access
    assert x.devices() == {jax.devices()[0]}
  # Weights committed before step 1 as they are after it: one compile.
  step_fn = trainer._accelerated_update_fn  # pylint: disable=protected-access
  loop.run(3)
  assert loop.step == 3
  assert step_fn._cache_size() == 1  # pylint: disable=protected-access
  assert 'slots_on_device' in _compat.installed()


# ------------------------------------------- the lighter single-device step


def _layers(layer):
  yield layer
  for sub in layer.sublayers:
    yield from _layers(sub)


def _same_tree(a, b, rtol=0.0, atol=0.0):
  la, ta = jax.tree_util.tree_flatten(a)
  lb, tb = jax.tree_util.tree_flatten(b)
  assert ta == tb
  for x, y in zip(la, lb):
    if rtol or atol:
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                                 atol=atol)
    else:
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# What the light step's donated update (`donate_argnums=(0,)`) gives against
# trax's own step: bitwise the same weights, state, slots and losses on jax >=
# 0.7.2 (verified on 0.7.2 and 0.10.2); on jax 0.5.3 XLA compiles the donated
# update a little differently and some elements differ by 1 ulp (~1.5e-8 after
# 3 steps; trax's step re-jitted with donation alone does the same), so there
# the contract is allclose within 1e-6.
BITWISE_LIGHT_STEP = _jax_version() >= (0, 7, 2)
LIGHT_STEP_TOL = {} if BITWISE_LIGHT_STEP else {'rtol': 1e-6, 'atol': 1e-6}


def _shared_dense_model():
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  dense = tl.Dense(4)
  return tl.Serial(tl.Dense(4), tl.BatchNorm(axis=(0,)), dense, tl.Relu(), dense,
                   tl.Residual(tl.Dense(4), tl.Dropout(0.5)), tl.LogSoftmax())


@pytest.mark.parametrize('build', [
    _shared_dense_model,
    lambda: __import__('wrn_trax').models.build('WRN-10-1', n_classes=3,
                                                mode='train'),
    lambda: __import__('wrn_trax').models.build('stock-WRN-10-1', n_classes=3,
                                                mode='train'),
], ids=['shared-weights', 'paper', 'stock'])
@pytest.mark.parametrize('name', ['weights', 'state'])
def test_assign_leaves_every_layer_as_traxs_setter_does(build, name):
  from trax import shapes  # pylint: disable=g-import-not-at-top
  from trax.layers import base  # pylint: disable=g-import-not-at-top
  shape = (2, 32, 32, 3) if build is not _shared_dense_model else (2, 4)
  sig = shapes.ShapeDtype(shape, np.float32)
  by_trax, by_ours = build(), build()
  by_trax.init(sig, rng=jax.random.PRNGKey(0))
  by_ours.init(sig, rng=jax.random.PRNGKey(0))
  if build is _shared_dense_model and name == 'weights':  # trax's fallback
    assert base.GET_WEIGHTS_FROM_CACHE in by_trax._weights  # pylint: disable=protected-access
  new = jax.tree_util.tree_map(lambda x: x + 1,
                               getattr(by_trax, name))
  setattr(by_trax, name, new)
  _compat._assign(by_ours, name, new)  # pylint: disable=protected-access
  attr = '_' + name
  pairs = list(zip(_layers(by_trax), _layers(by_ours)))
  assert len(pairs) > 5
  for a, b in pairs:
    _same_tree(getattr(a, attr), getattr(b, attr))
  _same_tree(getattr(by_trax, name), getattr(by_ours, name))


def test_light_step_trains_exactly_as_traxs_one_step():
  import trax  # pylint: disable=g-import-not-at-top
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax.supervised import training  # pylint: disable=g-import-not-at-top
  from wrn_trax import models  # pylint: disable=g-import-not-at-top

  def batches():
    rng = np.random.default_rng(0)
    while True:
      yield (rng.normal(size=(4, 32, 32, 3)).astype(np.float32),
             rng.integers(0, 3, 4).astype(np.int32), np.ones(4, np.float32))

  def loop(light):
    task = training.TrainTask(batches(), tl.CrossEntropyLoss(),
                              trax.optimizers.Momentum(0.05),
                              lr_schedule=lambda step: 0.05 / step)
    lp = training.Loop(models.build('WRN-10-1', n_classes=3, dropout=0.3,
                                    mode='train'), [task], random_seed=7)
    _compat.spread_optimizer_state(lp)
    if light:
      _compat.lighten_steps(lp)
    return lp

  stock, light = loop(False), loop(True)
  trainer = light._trainer_per_task[0]  # pylint: disable=protected-access
  update = trainer._accelerated_update_fn  # pylint: disable=protected-access
  _compat.lighten_steps(light)  # a second time changes nothing
  assert trainer._accelerated_update_fn is update  # pylint: disable=protected-access
  assert 'light_one_step' in _compat.installed()
  assert trainer.one_step.__func__ is _compat._one_step_one_device  # pylint: disable=protected-access
  assert stock._trainer_per_task[0].one_step.__func__ is not (  # pylint: disable=protected-access
      _compat._one_step_one_device)  # pylint: disable=protected-access
  before = jax.tree_util.tree_leaves(light.model.weights)[0]
  stock.run(3)
  light.run(3)
  assert before.is_deleted()  # donated to the compiled update
  assert not jax.tree_util.tree_leaves(light.model.weights)[0].is_deleted()
  _same_tree(stock.model.weights, light.model.weights, **LIGHT_STEP_TOL)
  _same_tree(stock.model.state, light.model.state, **LIGHT_STEP_TOL)
  _same_tree(stock._trainer_per_task[0].slots, trainer.slots,  # pylint: disable=protected-access
             **LIGHT_STEP_TOL)
  _same_tree(stock.history.get('train', 'metrics/CrossEntropyLoss'),
             light.history.get('train', 'metrics/CrossEntropyLoss'),
             **LIGHT_STEP_TOL)
  assert trainer._accelerated_update_fn._cache_size() == 1  # pylint: disable=protected-access


# -------------------------------------------------- shallow_inspect_stack


def _shallow_and_full_stack():
  """inspect.stack() as trax's assert_shape calls it: shallow and stdlib."""
  namespace = {'__name__': 'trax.layers.assert_shape', 'inspect': inspect}
  exec(compile('def call(shallow, full):\n  return shallow(), full()\n',  # pylint: disable=exec-used
               'assert_shape.py', 'exec'), namespace)
  return namespace['call'](_compat._shallow_stack_for(inspect.stack),  # pylint: disable=protected-access
                           inspect.stack)


def test_shallow_stack_gives_assert_shape_what_the_full_one_does():
  shallow, full = _shallow_and_full_stack()
  assert len(shallow) == 2 and len(full) > 2
  for a, b in zip(shallow, full):
    assert a.frame is b.frame
    assert a == b  # filename, lineno, function, code_context, index
  # [1] is what assert_shape reads: its caller, here this test's line.
  assert getattr(shallow[1], 'positions', None) == getattr(
      full[1], 'positions', None)
  caller = inspect.getframeinfo(shallow[1][0])
  assert caller.filename == __file__
  # Any other caller gets the stdlib's whole stack.
  ours, stdlib = _compat._shallow_stack_for(inspect.stack)(), inspect.stack()  # pylint: disable=protected-access
  assert [(i.filename, i.function) for i in ours] == [
      (i.filename, i.function) for i in stdlib]


def _line_of(text):
  for number, line in enumerate(open(__file__), 1):
    if text in line and '_line_of' not in line:
      return number
  raise AssertionError(text)


def test_trax_shape_assertions_work_after_our_import():
  """The shallow inspect.stack of our trax import is gone, and trax's shape
  assertions still raise on a wrong shape and pass a right one."""
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax import shapes  # pylint: disable=g-import-not-at-top
  from trax.layers import base  # pylint: disable=g-import-not-at-top
  assert inspect.stack.__module__ == 'inspect'
  assert not hasattr(inspect.stack, '__wrapped__')

  layer = tl.AssertShape('ab')
  assert layer._message == f'Defined at {__file__}:{_line_of("tl.AssertShape(")}'  # pylint: disable=protected-access
  x = np.zeros((2, 3), np.float32)
  layer.init(shapes.signature(x))
  np.testing.assert_array_equal(layer(x), x)
  with pytest.raises(base.LayerError, match='Defined at'):
    tl.AssertShape('aa')(x)

  @tl.assert_shape('ab->a')
  def row_sum():
    return tl.Fn('RowSum', lambda t: t.sum(axis=-1))

  np.testing.assert_array_equal(row_sum()(x), np.zeros(2))
  with pytest.raises(base.LayerError, match='function output'):
    tl.assert_shape('ab->ab')(row_sum)()(x)

  # trax's own layers, decorated while trax was imported through us, name
  # the line of their decorator.
  relu = tl.Relu()
  message = relu.sublayers[0]._message  # pylint: disable=protected-access
  path, line = re.match(r'Defined at (.*):(\d+) function input$',
                        message).groups()
  assert path.endswith(os.path.join('trax', 'layers', 'activation_fns.py'))
  source = open(path).read().splitlines()
  assert '@assert_shape' in source[int(line) - 1] + source[int(line)]


def test_loop_device_count_answers_n_devices_while_a_loop_is_built(
    monkeypatch):
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  two = lambda: 2
  monkeypatch.setattr(fastmath, 'local_device_count', two)
  with _compat.loop_device_count(1):
    assert fastmath.local_device_count() == 1
  assert fastmath.local_device_count is two
  with pytest.raises(RuntimeError, match='boom'):
    with _compat.loop_device_count(1):
      raise RuntimeError('boom')
  assert fastmath.local_device_count is two  # restored after an error too
  with _compat.loop_device_count(2):  # all of them: nothing to change
    assert fastmath.local_device_count is two
