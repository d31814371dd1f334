"""Mixed precision: what runs in which dtype, loss scaling, runs and records."""
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trax
from trax import layers as tl

from wrn_trax import models
from wrn_trax import optim
from wrn_trax import precision as precision_lib
from wrn_trax import recipes
from wrn_trax import runio
from wrn_trax import train as train_lib

TINY = 'WRN-10-1'  # one B(3,3) block per group: compiles in seconds on a CPU
LOW = {'bfloat16': jnp.bfloat16, 'float16': jnp.float16}

# What may produce a low-precision value: the conv/matmul, the casts at use,
# the bias add of a Conv/Dense and shape-only ops. BatchNorm's reductions,
# the log-softmax and the loss must not appear here.
_LOW_PRIMITIVES = {'conv_general_dilated', 'dot_general',
                   'convert_element_type', 'add', 'broadcast_in_dim',
                   'reshape', 'transpose', 'squeeze', 'expand_dims'}


def _eqns(jaxpr):
  """Every equation of a jaxpr, nested ones (pjit, custom_jvp) included."""
  for eqn in jaxpr.eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        if hasattr(sub, 'eqns'):  # a Jaxpr
          yield from _eqns(sub)
        elif hasattr(getattr(sub, 'jaxpr', None), 'eqns'):  # a ClosedJaxpr
          yield from _eqns(sub.jaxpr)


def _tiny_batch(n=8, size=8, n_classes=3, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(n, size, size, 3).astype(np.float32)
  y = rng.randint(0, n_classes, size=n).astype(np.int32)
  return x, y, np.ones(n, np.float32)


def _model_with_loss(precision, model=TINY, n_classes=3):
  net = models.build(model, n_classes=n_classes, precision=precision)
  mwl = tl.Serial(net, tl.CrossEntropyLoss())
  batch = _tiny_batch(n_classes=n_classes)
  weights, state = mwl.init(trax.shapes.signature(batch),
                            rng=jax.random.PRNGKey(0))
  return mwl, batch, weights, state


def _leaf_dtypes(tree):
  return {str(np.asarray(x).dtype) for x in jax.tree_util.tree_leaves(tree)
          if hasattr(x, 'dtype')}


# ------------------------------------------------------------- compute ----


@pytest.mark.parametrize('model', [TINY, 'stock-WRN-10-1'])
def test_float32_builds_the_model_unchanged(model):
  default = models.build(model, n_classes=3)
  explicit = models.build(model, n_classes=3, precision='float32')
  for layer in precision_lib._walk(explicit, set()):  # pylint: disable=protected-access
    assert not isinstance(layer, precision_lib._ComputeIn)  # pylint: disable=protected-access
  x = _tiny_batch(size=32)[0]
  sig = trax.shapes.signature(x)
  outs = []
  for m in (default, explicit):
    w, s = m.init(sig, rng=jax.random.PRNGKey(0))
    jaxpr = jax.make_jaxpr(lambda x, w, s, m=m: m.pure_fn(
        x, w, s, jax.random.PRNGKey(1)))(x, w, s)
    outs.append((str(jaxpr), np.asarray(m.pure_fn(
        x, w, s, jax.random.PRNGKey(1))[0])))
  assert outs[0][0] == outs[1][0]
  np.testing.assert_array_equal(outs[0][1], outs[1][1])
  assert 'bf16' not in outs[0][0] and 'f16' not in outs[0][0]


@pytest.mark.parametrize('precision', ['bfloat16', 'float16'])
@pytest.mark.parametrize('model', [TINY, 'stock-WRN-10-1'])
def test_convs_and_dense_run_low_bn_softmax_and_loss_float32(model, precision):
  size = 32 if model.startswith('stock') else 8
  net = models.build(model, n_classes=3, precision=precision)
  mwl = tl.Serial(net, tl.CrossEntropyLoss())
  batch = _tiny_batch(size=size)
  weights, state = mwl.init(trax.shapes.signature(batch),
                            rng=jax.random.PRNGKey(0))
  assert _leaf_dtypes(weights) == {'float32'}
  closed = jax.make_jaxpr(lambda b, w, s: mwl.pure_fn(
      b, w, s, jax.random.PRNGKey(1)))(batch, weights, state)
  low = LOW[precision]
  eqns = list(_eqns(closed.jaxpr))
  matmuls = [e for e in eqns
             if e.primitive.name in ('conv_general_dilated', 'dot_general')]
  n_convs = sum(e.primitive.name == 'conv_general_dilated' for e in matmuls)
  assert n_convs >= 9 and any(e.primitive.name == 'dot_general'
                              for e in matmuls)
  for e in matmuls:  # operands and result in the low dtype
    assert {v.aval.dtype for v in e.invars} == {np.dtype(low)}, e
    assert e.outvars[0].aval.dtype == np.dtype(low), e
  for e in eqns:
    if any(getattr(v.aval, 'dtype', None) == np.dtype(low)
           for v in e.outvars):
      assert e.primitive.name in _LOW_PRIMITIVES, e
  # BatchNorm's statistics (reduce_sum, integer_pow) and its sqrt, the
  # log-softmax's reduce_max/exp/log and the loss: all float32.
  for name in ('reduce_sum', 'integer_pow', 'sqrt', 'reduce_max', 'exp',
               'log'):
    found = [e for e in eqns if e.primitive.name == name]
    assert found, name
    for e in found:
      assert e.outvars[0].aval.dtype == np.float32, e
  loss, new_state = mwl.pure_fn(batch, weights, state, jax.random.PRNGKey(1))
  assert loss.dtype == jnp.float32 and np.isfinite(loss)
  assert _leaf_dtypes(new_state) <= {'float32', 'int32'}
  # The layers kept their float32 weights after the cast at use.
  assert _leaf_dtypes(net.weights) == {'float32'}


def test_low_precision_forward_is_close_to_float32():
  x = _tiny_batch(size=8)[0]
  sig = trax.shapes.signature(x)
  out = {}
  for p in ('float32', 'bfloat16', 'float16'):
    m = models.build(TINY, n_classes=3, mode='eval', precision=p)
    w, s = m.init(sig, rng=jax.random.PRNGKey(0))
    out[p] = np.asarray(m(x, weights=w, state=s))
    assert out[p].dtype == np.float32
  np.testing.assert_allclose(out['bfloat16'], out['float32'], atol=0.1)
  np.testing.assert_allclose(out['float16'], out['float32'], atol=0.02)


# -------------------------------------------------------- loss scaling ----


def _scaled_step(precision='float16', scale=2.0**10, period=3):
  mwl, batch, weights, state = _model_with_loss(precision)
  opt = optim.make_optimizer(recipes.get('smoke'))
  slots, opt_params = opt.tree_init(weights)
  update = jax.jit(precision_lib.scaled_update_fn(mwl, opt, period))
  ls = precision_lib.initial_loss_scale(scale)
  return update, (weights, slots), opt_params, batch, state, ls


def _same(a, b):
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_an_overflowing_step_is_skipped_and_halves_the_scale():
  # At 2**60 the scaled float16 cotangents overflow: inf gradients.
  update, ws, opt_params, batch, state, ls = _scaled_step(scale=2.0**60)
  w0, s0 = jax.tree_util.tree_map(np.array, ws), jax.tree_util.tree_map(
      np.array, state)
  (w1, slots1), state1, stats, ls1 = update(
      ws, 1, opt_params, batch, state, jax.random.PRNGKey(1), ls)
  _same(w1, w0[0])        # weights unchanged
  _same(slots1, w0[1])    # optimizer slots unchanged
  _same(state1, s0)       # BatchNorm statistics unchanged
  assert float(ls1['scale']) == 2.0**59
  assert int(ls1['skipped']) == 1 and int(ls1['good_steps']) == 0
  assert float(stats['skipped']) == 1.0
  assert np.isfinite(float(stats['loss']))  # not read as divergence
  assert _leaf_dtypes(w1) == {'float32'} and _leaf_dtypes(slots1) == {
      'float32'}


def test_the_scale_doubles_after_period_good_steps():
  update, ws, opt_params, batch, state, ls = _scaled_step(scale=2.0**10,
                                                          period=3)
  w_start = jax.tree_util.tree_map(np.array, ws[0])
  scales = []
  for step in range(1, 8):
    ws, state, stats, ls = update(ws, step, opt_params, batch, state,
                                  jax.random.PRNGKey(step), ls)
    assert float(stats['skipped']) == 0.0
    scales.append(float(ls['scale']))
  assert scales == [2.0**10, 2.0**10, 2.0**11, 2.0**11, 2.0**11, 2.0**12,
                    2.0**12]
  assert int(ls['good_steps']) == 1 and int(ls['skipped']) == 0
  moved = [not np.array_equal(a, np.asarray(b)) for a, b in zip(
      jax.tree_util.tree_leaves(w_start), jax.tree_util.tree_leaves(ws[0]))]
  assert any(moved)
  assert _leaf_dtypes(ws) == {'float32'}


def test_unscaled_gradients_match_float32_scaling_free_gradients():
  # Scale 1 and scale 2**12 give the same update up to float16 rounding:
  # the scale is divided out exactly.
  outs = []
  for scale in (2.0**4, 2.0**12):
    update, ws, opt_params, batch, state, ls = _scaled_step(scale=scale,
                                                            period=1000)
    (w1, _), _, _, _ = update(ws, 1, opt_params, batch, state,
                              jax.random.PRNGKey(1), ls)
    outs.append(jax.tree_util.tree_leaves(w1))
  for a, b in zip(*outs):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-3)


def test_loss_scale_round_trips_through_its_file(tmp_path):
  loop = types.SimpleNamespace(step=40, _trainer_per_task=[
      types.SimpleNamespace(_wrn_loss_scale=dict(
          scale=jnp.float32(2.0**13), good_steps=jnp.int32(7),
          skipped=jnp.int32(3), last_loss=jnp.float32(0.25)))])
  precision_lib.save_loss_scale(str(tmp_path), loop)
  loop.step = 80
  loop._trainer_per_task[0]._wrn_loss_scale['good_steps'] = jnp.int32(47)  # pylint: disable=protected-access
  precision_lib.save_loss_scale(str(tmp_path), loop)
  back = precision_lib.load_loss_scale(str(tmp_path), 40)
  assert {k: float(v) for k, v in back.items()} == dict(
      scale=2.0**13, good_steps=7, skipped=3, last_loss=0.25)
  assert back['good_steps'].dtype == jnp.int32
  assert int(precision_lib.load_loss_scale(str(tmp_path), 80)['good_steps']) == 47
  assert precision_lib.load_loss_scale(str(tmp_path), 60) is None
  assert precision_lib.load_loss_scale(str(tmp_path / 'none'), 40) is None


# ------------------------------------------------------ auto and recipe ----


def _dev(platform, cc=None, kind=''):
  d = types.SimpleNamespace(platform=platform, device_kind=kind)
  if cc is not None:
    d.compute_capability = cc
  return d


@pytest.mark.parametrize('device, n, want', [
    (_dev('cpu'), 1, 'float32'),
    (_dev('tpu', kind='TPU v4'), 1, 'bfloat16'),
    (_dev('gpu', '8.0', 'NVIDIA A100-SXM4-40GB'), 1, 'bfloat16'),
    (_dev('gpu', '8.9', 'NVIDIA L4'), 2, 'bfloat16'),
    (_dev('gpu', '7.5', 'Tesla T4'), 1, 'float16'),
    (_dev('gpu', '6.0', 'Tesla P100-PCIE-16GB'), 1, 'float32'),  # no TCs
    (_dev('gpu', '7.0', 'Tesla V100-SXM2-16GB'), 1, 'float16'),
    (_dev('gpu', '9.0', 'NVIDIA H100 80GB HBM3'), 1, 'bfloat16'),
    (_dev('gpu', '12.0', 'NVIDIA RTX PRO 6000'), 1, 'bfloat16'),
    (_dev('gpu', None, 'Tesla P100-PCIE-16GB'), 1, 'float32'),
    (_dev('gpu', None, 'Some Future GPU'), 1, 'float32'),
    (_dev('gpu', '7.5', 'Tesla T4'), 2, 'float32'),  # no multi-device scaling
    (_dev('gpu', None, 'NVIDIA L4'), 1, 'bfloat16'),
    (_dev('gpu', None, 'Tesla V100-SXM2-16GB'), 1, 'float16'),
])
def test_auto_picks_per_device(device, n, want):
  assert precision_lib.resolve('auto', device, n_devices=n) == want
  assert precision_lib.resolve('bfloat16', device) == 'bfloat16'


@pytest.mark.parametrize('device, kw, want, because', [
    (_dev('cpu', kind='cpu'), {}, 'float32', 'cpu (cpu) has no fast 16-bit'),
    (_dev('tpu', kind='TPU v4'), {}, 'bfloat16', 'TPU (TPU v4)'),
    (_dev('gpu', '8.0', 'A100'), {}, 'bfloat16',
     'compute capability 8 has fast bfloat16'),
    (_dev('gpu', '7.5', 'Tesla T4'), {}, 'float16', 'float16 tensor cores'),
    (_dev('gpu', '7.5', 'Tesla T4'), dict(raw_inputs=True), 'float32',
     'raw 0-255 pixels'),
    (_dev('gpu', '7.5', 'Tesla T4'), dict(n_devices=2), 'float32',
     'this run has 2'),
    (_dev('gpu', '6.0', 'Tesla P100'), {}, 'float32', 'no tensor cores'),
    (_dev('gpu', None, 'Mystery'), {}, 'float32', 'unknown compute'),
])
def test_auto_says_why(device, kw, want, because):
  used, reason = precision_lib.explain('auto', device, **kw)
  assert used == want and because in reason and reason.startswith('auto: ')
  assert precision_lib.explain('float16', device, **kw) == (
      'float16', "asked for ('float16')")


def test_auto_avoids_float16_on_raw_pixels():
  t4, a100 = _dev('gpu', '7.5', 'Tesla T4'), _dev('gpu', '8.0', 'A100')
  assert precision_lib.resolve('auto', t4, raw_inputs=True) == 'float32'
  assert precision_lib.resolve('auto', a100, raw_inputs=True) == 'bfloat16'
  # Asked for by name, float16 is what runs.
  assert precision_lib.resolve('float16', t4, raw_inputs=True) == 'float16'


def test_precision_is_a_checked_recipe_field():
  for name in recipes.RECIPES:
    r = recipes.get(name, 'cifar10')
    assert r['precision'] == 'auto' and r['loss_scale_period'] == 2000
  assert recipes.get('smoke', precision='bfloat16')['precision'] == 'bfloat16'
  with pytest.raises(ValueError, match='precision must be one of'):
    recipes.get('smoke', precision='fp16')
  with pytest.raises(ValueError, match='loss_scale_period'):
    recipes.get('smoke', loss_scale_period=0)
  with pytest.raises(ValueError, match='runs on jax only'):
    recipes.get('smoke', precision='bfloat16', backend='tensorflow-numpy')


def test_cli_set_precision_reaches_the_recipe():
  from wrn_trax import cli  # pylint: disable=g-import-not-at-top
  assert cli._overrides(['precision=bfloat16']) == {'precision': 'bfloat16'}  # pylint: disable=protected-access


# --------------------------------------------------------------- runs ----


def _checkpoint_arrays(workdir, name):
  return runio._np_from_file(os.path.join(workdir, name))  # pylint: disable=protected-access


@pytest.mark.slow
def test_the_default_run_is_auto_and_on_cpu_the_float32_run(tmp_path):
  kw = dict(model=TINY, dataset='digits', recipe='smoke', steps=8,
            verbose=False, eval_every=4, checkpoint_every=4,
            precise_bn_batches=2)
  f32 = train_lib.train(workdir=str(tmp_path / 'a'), precision='float32', **kw)
  auto = train_lib.train(workdir=str(tmp_path / 'b'), **kw)
  for name in ('model.weights.npy.gz', 'model.opt_slots0.npy.gz'):
    for a, b in zip(_checkpoint_arrays(str(tmp_path / 'a'), name),
                    _checkpoint_arrays(str(tmp_path / 'b'), name)):
      np.testing.assert_array_equal(a, b)
  assert f32['test_loss'] == auto['test_loss']
  assert f32['precision'] == auto['precision'] == 'float32'
  assert f32['loss_scale'] is None
  config = runio.read_json(str(tmp_path / 'b' / 'config.json'))
  assert config['precision'] == 'auto'
  assert config['precision_used'] == 'float32'
  assert config['precision_reason'].startswith('auto: cpu')
  assert runio.read_json(str(tmp_path / 'a' / 'config.json'))[
      'precision_reason'] == "asked for ('float32')"
  assert not os.path.exists(str(tmp_path / 'a' / precision_lib.LOSS_SCALE_FILE))


@pytest.mark.slow
@pytest.mark.parametrize('precision', ['bfloat16', 'float16'])
def test_low_precision_learns_digits_and_checkpoints_float32(
    tmp_path, monkeypatch, precision):
  if precision == 'float16':
    # Start at 2**40: the first ~25 steps overflow and are skipped, which
    # must not stop the run as diverged.
    fresh = precision_lib.initial_loss_scale
    monkeypatch.setattr(precision_lib, 'initial_loss_scale',
                        lambda: fresh(2.0**40))
  workdir = str(tmp_path / 'run')
  summary = train_lib.train(model=TINY, dataset='digits', recipe='smoke',
                            steps=80, workdir=workdir, verbose=False,
                            precision=precision)
  assert summary['status'] == 'done', summary['reason']
  assert summary['test_error'] < 0.3  # chance is 0.9
  assert summary['precision'] == precision
  config = runio.read_json(os.path.join(workdir, 'config.json'))
  assert config['precision'] == config['precision_used'] == precision
  for name in ('model.weights.npy.gz', 'model.opt_slots0.npy.gz'):
    arrays = _checkpoint_arrays(workdir, name)
    assert arrays and {a.dtype for a in arrays if a.dtype.kind == 'f'} == {
        np.dtype(np.float32)}
  loaded = train_lib.load_checkpoint(workdir)
  assert _leaf_dtypes(loaded['weights']) == {'float32'}
  if precision == 'float16':
    # Each skip halved the scale (no doubling within 2000 steps).
    assert 15 <= summary['skipped_steps'] <= 40
    assert summary['loss_scale'] == 2.0**(40 - summary['skipped_steps'])
  else:
    assert summary['skipped_steps'] is None


@pytest.mark.slow
def test_float16_resume_continues_with_the_checkpointed_scale(
    tmp_path, monkeypatch):
  from trax.supervised import training  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  kw = dict(model=TINY, dataset='digits', recipe='smoke', steps=12,
            workdir=workdir, verbose=False, precision='float16',
            loss_scale_period=4, eval_every=6, checkpoint_every=6,
            precise_bn_batches=2)
  save = training.Loop.save_checkpoint

  def save_then_stop(self, basename):
    save(self, basename)
    if self.step == 6:
      raise KeyboardInterrupt  # a kill right after the step-6 checkpoint

  monkeypatch.setattr(training.Loop, 'save_checkpoint', save_then_stop)
  with pytest.raises(KeyboardInterrupt):
    train_lib.train(**kw)
  monkeypatch.setattr(training.Loop, 'save_checkpoint', save)
  at6 = runio.read_json(os.path.join(workdir, precision_lib.LOSS_SCALE_FILE))
  assert at6['6']['good_steps'] == 2 and at6['6']['scale'] == 2.0**16
  passed = []
  enable = precision_lib.enable_loss_scaling
  monkeypatch.setattr(
      precision_lib, 'enable_loss_scaling',
      lambda loop, period, ls: passed.append(
          {k: float(v) for k, v in ls.items()}) or enable(loop, period, ls))
  summary = train_lib.train(**kw)
  assert summary['status'] == 'done'
  assert passed == [{k: float(v) for k, v in at6['6'].items()}]
  at12 = runio.read_json(os.path.join(workdir, precision_lib.LOSS_SCALE_FILE))
  # 12 good steps at period 4 from 2**15: three doublings, as in an
  # uninterrupted run (a fresh scale at the resume would give 2**16).
  assert summary['skipped_steps'] == 0
  assert summary['loss_scale'] == at12['12']['scale'] == 2.0**18
