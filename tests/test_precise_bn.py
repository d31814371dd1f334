"""Exact BatchNorm statistics for the reported test error, and the two eval modes."""
import os

import numpy as np
import pytest

from wrn_trax import data
from wrn_trax import models
from wrn_trax import recipes
from wrn_trax import runio
from wrn_trax import train as train_lib

TINY = 'WRN-10-1'


def _batches(arrays):
  for x in arrays:
    yield x, np.zeros(len(x), np.int32), np.ones(len(x), np.float32)


def _init(model, shape):
  import trax  # pylint: disable=g-import-not-at-top
  model.init(trax.shapes.ShapeDtype(shape, np.float32))
  return model.weights, model.state


def test_precise_bn_averages_batch_statistics_of_the_first_bn():
  import trax  # pylint: disable=g-import-not-at-top
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  model = tl.Serial(tl.BatchNorm(momentum=0.9), tl.Relu(),
                    tl.BatchNorm(momentum=0.9))
  rng = np.random.default_rng(0)
  xs = [rng.normal(3.0 * i, 1.0 + i, size=(8, 4, 4, 2)).astype(np.float32)
        for i in range(3)]
  weights, state = _init(model, xs[0].shape)
  state_before = trax.fastmath.nested_map(np.asarray, state)
  exact = train_lib.precise_bn_state(model, weights, state, _batches(xs), 3)
  mean, var, count = exact[0]
  np.testing.assert_allclose(
      np.ravel(mean), np.mean([x.mean(axis=(0, 1, 2)) for x in xs], axis=0),
      rtol=1e-5)
  np.testing.assert_allclose(
      np.ravel(var), np.mean([x.var(axis=(0, 1, 2)) for x in xs], axis=0),
      rtol=1e-4)
  # Not trax's exponential average, and the batch counter keeps its value.
  assert not np.allclose(np.ravel(mean), np.ravel(state_before[0][0]))
  assert int(count) == int(state_before[0][2])
  # The caller's state is left as it was.
  np.testing.assert_array_equal(np.asarray(state[0][0]), state_before[0][0])


def test_eval_modes_differ_with_stale_statistics_and_agree_with_exact_ones():
  """Train-mode BN (batch stats) and eval-mode BN (stored stats) on one batch."""
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3)).astype(
      np.float32)
  train_model = models.build(TINY, n_classes=10, mode='train')
  eval_model = models.build(TINY, n_classes=10, mode='eval')
  weights, state = _init(train_model, x.shape)
  rng = fastmath.random.get_prng(0)
  batch_mode = np.asarray(train_model.pure_fn(x, weights, state, rng)[0])
  stale = np.asarray(eval_model.pure_fn(x, weights, state, rng)[0])
  # Fresh statistics (mean 0, var 1) against raw pixels: far apart.
  assert np.abs(batch_mode - stale).max() > 1.0
  # Statistics of exactly this batch make eval mode equal train mode.
  bn_model = models.build(TINY, n_classes=10, mode='train')
  exact = train_lib.precise_bn_state(bn_model, weights, state,
                                     _batches([x]), 1)
  matched = np.asarray(eval_model.pure_fn(x, weights, exact, rng)[0])
  np.testing.assert_allclose(matched, batch_mode, atol=2e-3)


def test_recipes_choose_eval_modes_and_precise_bn():
  assert recipes.get('seed')['eval_bn'] == 'batch'  # as the notebooks
  assert recipes.get('paper', 'cifar10')['eval_bn'] == 'running'
  assert recipes.get('smoke')['eval_bn'] == 'running'
  assert recipes.get('paper', 'cifar10')['precise_bn_batches'] > 0
  with pytest.raises(ValueError, match='eval_bn must be one of'):
    recipes.get('smoke', eval_bn='train')
  with pytest.raises(ValueError, match='precise_bn_batches must be an int'):
    recipes.get('smoke', precise_bn_batches=-1)


def _train(workdir, **overrides):
  return train_lib.train(model=TINY, dataset='digits', recipe='smoke',
                         steps=20, workdir=str(workdir), verbose=False,
                         eval_every=10, checkpoint_every=10, **overrides)


@pytest.mark.slow
def test_batch_mode_eval_is_labelled_and_leaves_training_unchanged(tmp_path):
  batch = _train(tmp_path / 'batch', eval_bn='batch', precise_bn_batches=5)
  running = _train(tmp_path / 'running', eval_bn='running',
                   precise_bn_batches=0)
  rows_b = runio.read_jsonl(os.path.join(tmp_path / 'batch', 'metrics.jsonl'))
  rows_r = runio.read_jsonl(os.path.join(tmp_path / 'running',
                                         'metrics.jsonl'))
  assert {r['bn'] for r in rows_b if r['split'] == 'eval'} == {'batch'}
  assert {r['bn'] for r in rows_r if r['split'] == 'eval'} == {'running'}
  # The eval model never feeds back: training is the same step for step.
  train_b = [r['loss'] for r in rows_b if r['split'] == 'train']
  train_r = [r['loss'] for r in rows_r if r['split'] == 'train']
  assert train_b == train_r
  # The two modes give other eval figures on the same weights.
  eval_b = [r['accuracy'] for r in rows_b if r['split'] == 'eval']
  eval_r = [r['accuracy'] for r in rows_r if r['split'] == 'eval']
  assert eval_b != eval_r
  # Same final weights and running statistics: one headline is exact BN.
  assert batch['test_error_running_bn'] == pytest.approx(
      running['test_error_running_bn'], abs=1e-9)
  assert batch['test_bn'] == 'precise (5 train batches)'
  assert running['test_bn'] == 'running'
  assert running['test_error'] == running['test_error_running_bn']
  test_row = rows_b[-1]
  assert test_row['split'] == 'test' and test_row['bn'] == batch['test_bn']
  assert test_row['accuracy'] == pytest.approx(1 - batch['test_error'])
  assert test_row['accuracy_running_bn'] == pytest.approx(
      1 - batch['test_error_running_bn'])
  # The checkpoint holds trax's running averages: read back, they give the
  # running-BN figure again.
  ckpt = train_lib.load_checkpoint(str(tmp_path / 'batch'))
  assert ckpt['step'] == 20
  again = train_lib.evaluate(ckpt['model'], ckpt['weights'], ckpt['state'],
                             data.load('digits'), 32, 'standardize')
  assert again['error'] == pytest.approx(batch['test_error_running_bn'])
