"""Tests for wrn_trax.models: names, parameter/FLOP counts, forward passes."""
import dataclasses
import math

import jax
import numpy as np
import pytest
from trax import shapes

from wrn_trax import models

SIG32 = shapes.ShapeDtype((1, 32, 32, 3), np.float32)


def _init_shapes(model, signature=SIG32):
  """Weight shapes of a real (abstractly evaluated) trax init."""
  return jax.tree_util.tree_leaves(jax.eval_shape(
      lambda rng: model.init(signature, rng=rng)[0], jax.random.PRNGKey(0)))


def _images(batch, size=32, seed=0):
  return np.random.RandomState(seed).randn(batch, size, size, 3).astype(
      np.float32)


def _assert_log_probs(y, batch, n_classes=10):
  assert y.shape == (batch, n_classes)
  assert np.all(np.isfinite(y))
  np.testing.assert_allclose(np.exp(y).sum(-1), 1.0, rtol=1e-4)


@pytest.fixture(scope='module')
def paper_df():
  return models.paper_networks()


# ---------------------------------------------------------------- counts ----


@pytest.mark.parametrize('name, expected', [
    ('stock-WRN-22-1', 295_866),     # printed by trax in the seed notebooks
    ('stock-WRN-22-2', 1_167_242),   # idem
    ('stock-WRN-28-10', 38_557_770),
])
def test_stock_param_counts(name, expected):
  assert models.count_params(name) == expected


def test_paper_counts_match_tables(paper_df):
  """Our counts equal the paper's to the 0.1M it prints.

  Zagoruyko & Komodakis, Wide Residual Networks, arXiv 1605.07146:
  Table 2 (block types, k=2), Table 3 (deepening factor l of WRN-40-2),
  Table 4 (B(3,3) widths and depths). Every count rounds to the paper's
  figure, which is stricter than |ours - paper| <= 0.1M.
  """
  assert len(paper_df) == 20
  assert list(paper_df.table.value_counts().sort_index()) == [6, 4, 10]
  for row in paper_df.itertuples():
    assert abs(row.params / 1e6 - row.paper_params_m) <= 0.1, row.name
    assert round(row.params / 1e6, 1) == row.paper_params_m, row.name


def test_table3_keeps_params_constant(paper_df):
  """Table 3 varies l at ~2.2M params; the N = 12 / l reading gives exactly."""
  t3 = paper_df[paper_df.table == 3]
  assert list(t3.blocks_per_group) == [12, 6, 4, 3]
  assert t3.params.nunique() == 1
  # The general rule N = (d - 4) / 6 would give a different network.
  general = sum(math.prod(leaf.shape) for leaf in _init_shapes(
      models.WideResnetPaper(6, 2, block=(3,))))
  assert general < 0.7 * t3.params.iloc[0]


def test_paper_networks_columns(paper_df):
  assert list(paper_df.columns) == [
      'table', 'name', 'block', 'depth', 'widen_factor', 'blocks_per_group',
      'paper_params_m', 'params', 'params_m', 'flops', 'paper_cifar10_error',
      'paper_cifar100_error']
  assert paper_df.paper_cifar100_error.isna().sum() == 11
  row = paper_df.set_index('name').loc['WRN-28-10']
  assert (row.paper_cifar10_error, row.paper_cifar100_error) == (4.17, 20.50)


@pytest.mark.parametrize('name, n_classes', [
    ('WRN-10-1', 10), ('WRN-10-2-B(1,3,1)', 100), ('WRN-16-1-B(3,1)', 10),
    ('stock-WRN-10-1', 10), ('stock-WRN-22-2', 100)])
def test_count_params_equals_real_init(name, n_classes):
  model = models.build(name, n_classes=n_classes)
  weights, _ = model.init(SIG32)
  real = sum(x.size for x in jax.tree_util.tree_leaves(weights))
  assert models.count_params(name, n_classes=n_classes) == real


@pytest.mark.parametrize('name', [
    'WRN-10-1', 'WRN-16-2-B(1,3,1)', 'WRN-10-3-B(3,1,3)', 'WRN-10-1-B(3)',
    'stock-WRN-16-2'])
def test_flop_plan_mirrors_the_built_convs(name):
  """`count_flops`'s conv list has exactly the model's conv kernels."""
  spec = models.parse(name)
  convs = models._convs(spec)[:-1]  # pylint: disable=protected-access
  kernels = sorted(tuple(leaf.shape) for leaf in
                   _init_shapes(models.build(name)) if len(leaf.shape) == 4)
  assert kernels == sorted((kh, kw, ci, co) for _, _, kh, kw, ci, co in convs)


# ----------------------------------------------------------------- FLOPs ----


def test_flops_by_hand_wrn_10_1():
  """WRN-10-1 (N=1) on 8x8x3: every multiply-add written out."""
  expected = (
      8 * 8 * 9 * 3 * 16                   # stem
      + 2 * 8 * 8 * 9 * 16 * 16            # group 1: 16->16, identity
      + 4 * 4 * 16 * 32                    # group 2: 1x1 projection, stride 2
      + 4 * 4 * 9 * (16 * 32 + 32 * 32)
      + 2 * 2 * 32 * 64                    # group 3: projection, stride 2
      + 2 * 2 * 9 * (32 * 64 + 64 * 64)
      + 64 * 10)                           # Dense
  assert models.count_flops('WRN-10-1', input_shape=(8, 8, 3)) == expected
  assert expected == 781_952


def test_flops_scale_like_k_squared_and_area():
  ratio = models.count_flops('WRN-28-20') / models.count_flops('WRN-28-10')
  assert 3.95 < ratio < 4.0  # the k-independent stem keeps it just under 4
  assert (models.count_flops('WRN-16-8', input_shape=(64, 64, 3)) /
          models.count_flops('WRN-16-8')) == pytest.approx(4.0, rel=1e-3)
  assert 5.2e9 < models.count_flops('WRN-28-10') < 5.3e9  # ~5.25 GMAC


def test_stock_flops_need_32x32():
  assert models.count_flops('stock-WRN-22-1') > 0
  with pytest.raises(ValueError, match='32x32'):
    models.count_flops('stock-WRN-22-1', input_shape=(24, 24, 3))


# ----------------------------------------------------------------- names ----


def test_parse_rules():
  assert models.parse('WRN-28-10') == models.Spec('paper', 28, 10, (3, 3), 4)
  assert models.parse('wrn-28-10') == models.parse('WRN-28-10-B(3,3)')
  assert models.parse('WRN-22-2-b(3, 1, 3)').blocks_per_group == 3
  assert models.parse('WRN-40-2-B(1,3,1)').blocks_per_group == 6  # Table 2
  assert models.parse('WRN-40-2-B(3)').blocks_per_group == 12     # Table 3
  assert models.parse('WRN-40-2-B(3,3,3)').blocks_per_group == 4
  assert models.parse('WRN-40-2-B(3,3,3,3)').blocks_per_group == 3
  assert models.parse('WRN-40-4-B(3)').blocks_per_group == 6  # general rule
  assert models.parse('STOCK-wrn-22-1') == models.Spec(
      'stock', 22, 1, (3, 3), 3)
  with pytest.raises(dataclasses.FrozenInstanceError):
    models.parse('WRN-28-10').depth = 16  # frozen


def test_names_round_trip():
  assert len(models.names()) == 23
  for name in models.names():
    spec = models.parse(name)
    assert models.parse(spec.name) == spec
    assert models.parse(spec) is spec


def test_preset_partials_build_the_named_network():
  model = models.PRESETS['WRN-40-2-B(3,3,3)'](n_classes=10)
  count = sum(math.prod(leaf.shape) for leaf in _init_shapes(model))
  assert count == models.count_params('WRN-40-2-B(3,3,3)')
  assert 'N=4' in models.describe('WRN-40-2-B(3,3,3)')


def test_markdown_table():
  lines = models.markdown_table().splitlines()
  assert len(lines) == 22
  assert '| 4 | WRN-28-10 | 4 | 36.5M | 36,479,194 | 5.24 |' in lines[16]


@pytest.mark.parametrize('name, match', [
    ('WRN-27-2', r'depth must be 6N\+4.*16, 22, 28, 40'),
    ('WRN-4-1', r'depth must be 6N\+4'),
    ('WRN-28-0', 'widen factor'),
    ('WRN-28--2', 'widen factor'),
    ('WRN-28-10-B(5,5)', r'unknown block.*B\(3,1,3\)'),
    ('WRN-28-10-B(3,x)', 'unknown block'),
    ('WRN-28-10-B()', 'unknown block'),
    ('ResNet-50', 'cannot parse'),
    ('WRN-28', 'cannot parse'),
    ('', 'cannot parse'),
    ('stock-WRN-22-1-B(3,1)', 'stock names take no block'),
    (28, 'must be a string'),
])
def test_bad_names(name, match):
  with pytest.raises(ValueError, match=match):
    models.parse(name)
  with pytest.raises(ValueError, match=match):
    models.count_params(name)


@pytest.mark.parametrize('kwargs, match', [
    (dict(dropout=1.0), r'dropout must be in \[0, 1\)'),
    (dict(dropout=-0.1), r'dropout must be in \[0, 1\)'),
    (dict(n_classes=0), 'n_classes'),
    (dict(mode='test'), 'mode must be one of'),
])
def test_bad_build_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    models.build('WRN-16-1', **kwargs)


def test_stock_has_no_dropout():
  with pytest.raises(ValueError, match='no dropout'):
    models.build('stock-WRN-22-1', dropout=0.3)


@pytest.mark.parametrize('args, match', [
    ((0, 1), 'blocks per group'), ((1, 0), 'widen factor'),
    ((1, 1, (5,)), 'unknown block')])
def test_bad_builder_arguments(args, match):
  with pytest.raises(ValueError, match=match):
    models.WideResnetPaper(*args)


# --------------------------------------------------------------- forward ----


# pylint: disable-next=protected-access
@pytest.mark.parametrize('block', models.BLOCKS, ids=models._block_str)
def test_forward_each_block(block):
  name = models.Spec('paper', 10, 1, block, 1).name
  model = models.build(name, dropout=0.2)
  x = _images(2)
  model.init(shapes.signature(x))
  _assert_log_probs(model(x, rng=jax.random.PRNGKey(0)), 2)


def test_forward_batch_sizes_and_input_sizes():
  model = models.build('WRN-10-1')
  model.init(shapes.ShapeDtype((1, 32, 32, 3), np.float32))
  _assert_log_probs(model(_images(1)), 1)
  _assert_log_probs(model(_images(3)), 3)
  _assert_log_probs(model(_images(3, size=24)), 3)  # global pooling


def test_forward_stock():
  model = models.build('stock-WRN-10-1', n_classes=5)
  x = _images(2)
  model.init(shapes.signature(x))
  _assert_log_probs(model(x), 2, n_classes=5)


def test_dropout_only_in_train_mode():
  x = _images(2)
  rng1, rng2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  train = models.build('WRN-10-1', dropout=0.5, mode='train')
  train.init(shapes.signature(x))
  y1, y2 = train(x, rng=rng1), train(x, rng=rng2)
  assert not np.allclose(y1, y2)
  np.testing.assert_allclose(train(x, rng=rng1), y1, rtol=1e-5, atol=1e-6)

  no_dropout = models.build('WRN-10-1', mode='train')  # control: same net
  no_dropout.init(shapes.signature(x))
  np.testing.assert_allclose(no_dropout(x, rng=rng1), no_dropout(x, rng=rng2))

  evaluation = models.build('WRN-10-1', dropout=0.5, mode='eval')
  evaluation.init(shapes.signature(x))
  evaluation.weights, evaluation.state = train.weights, train.state
  e1, e2 = evaluation(x, rng=rng1), evaluation(x, rng=rng2)
  np.testing.assert_array_equal(e1, e2)
  _assert_log_probs(e1, 2)


def test_paper_convs_are_he_initialised():
  """Kernels ~ N(0, 2 / fan_in), as kaiming_normal_ in the paper's code."""
  conv = models._Conv(64, 3)  # pylint: disable=protected-access
  kernel = conv.init(shapes.ShapeDtype((1, 8, 8, 64), np.float32))[0]
  assert kernel.shape == (3, 3, 64, 64)  # no bias
  assert np.std(kernel) == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.05)
  assert abs(np.mean(kernel)) < 0.005
