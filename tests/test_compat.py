"""trax 1.4.1 on jax 0.10: the shims in wrn_trax._compat, exercised for real."""
import subprocess

import jax
import numpy as np
import pytest

from wrn_trax import _compat

_TWO_DEVICES = """
import os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
import jax, wrn_trax
wrn_trax._compat.ensure_trax()  # the jax shims, as train() installs them
assert jax.local_device_count() == 2
x = jax.device_put_replicated(jax.numpy.arange(3.0), jax.local_devices())
assert x.shape == (2, 3) and len(x.sharding.device_set) == 2
s = wrn_trax.train(model='WRN-10-1', dataset='digits', recipe='smoke', steps=4,
                   eval_every=2, checkpoint_every=2, workdir=sys.argv[1],
                   verbose=False)
print(s['status'], s['step'], s['eval_examples'])
"""


@pytest.mark.slow
def test_loop_trains_data_parallel_on_two_devices(tmp_path, python,
                                                   subprocess_env):
  r = subprocess.run([python, '-c', _TWO_DEVICES, str(tmp_path / 'run')],
                     env=subprocess_env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.strip().splitlines()[-1] == 'done 4 360'


def test_tree_unflatten_with_arrays_in_the_tree():
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  tree = (jax.numpy.zeros(2), (), [jax.numpy.ones(3), None])
  flat = [np.full(2, 5.0), np.full(3, 7.0)]
  out, rest = fastmath.tree_unflatten(flat, tree, copy_from_tree=[None, ()])
  assert rest == []
  np.testing.assert_array_equal(out[0], flat[0])
  assert out[1] == () and out[2][1] is None
  np.testing.assert_array_equal(out[2][0], flat[1])


def test_device_put_replicated_shim():
  x = _compat._device_put_replicated(np.arange(4.0), jax.local_devices()[:1])  # pylint: disable=protected-access
  assert x.shape == (1, 4)
  np.testing.assert_array_equal(np.asarray(x)[0], np.arange(4.0))


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


def _jax_version():
  return tuple(int(p) for p in jax.__version__.split('.')[:3])


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
