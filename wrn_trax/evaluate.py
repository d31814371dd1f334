"""Evaluation of a model apart from the training loop.

`final_eval` is the end of a run: the whole test split, once with BatchNorm
statistics recomputed for the final weights (`precise_bn_state`, the "precise
BN" of pycls and detectron2) and once with trax's running averages;
`test_row` is its metrics.jsonl row. `evaluate` is the exact loss and error on
the whole test split, and `load_checkpoint` reads a run folder's model back
to evaluate it again. `wrn_trax.train` re-exports every name, as they lived
there before.
"""
import os

import numpy as np

from wrn_trax import _compat

_compat.ensure_trax()  # TF and gym quietly, then trax, patched: before trax

# pylint: disable=g-import-not-at-top,wrong-import-position
from wrn_trax import augment as augment_lib
from wrn_trax import data as data_lib
from wrn_trax import models
from wrn_trax import runio
# pylint: enable=g-import-not-at-top,wrong-import-position


def final_eval(built, config, ds):
  """The full-test-split evaluation of the final weights, two ways.

  Returns:
    (test, running): `evaluate` results with BatchNorm statistics
    recomputed over `precise_bn_batches` training batches (the headline;
    equal to `running` when that field is 0), and with the running
    averages trax kept during training (what the checkpoint holds). The
    weights and state of the loop are left as they are.
  """
  c, loop = config, built.loop
  weights, state = loop.model.weights, loop.model.state
  running = evaluate(built.eval_model, weights, state, ds, c['batch_size'],
                     augment_lib.host_preprocess(c))
  n = c.get('precise_bn_batches', 0)
  if not n:
    return dict(running, bn='running'), running
  batches = data_lib.train_batches(
      ds, c['batch_size'], preprocess=augment_lib.host_preprocess(c),
      seed=c['seed'] * 1_000_003 + _PRECISE_BN_STREAM)
  exact = precise_bn_state(built.bn_model, weights, state, batches, n,
                           seed=c['seed'])
  test = evaluate(built.eval_model, weights, exact, ds, c['batch_size'],
                  augment_lib.host_preprocess(c))
  return dict(test, bn=f'precise ({n} train batches)'), running


def test_row(step, test, running, seconds):
  """The metrics.jsonl row of the final evaluation."""
  return dict(step=step, split='test', loss=test['loss'],
              accuracy=test['accuracy'], lr=None, seconds=seconds,
              images_per_s=None, bn=test['bn'],
              loss_running_bn=running['loss'],
              accuracy_running_bn=running['accuracy'])


# Offset of the precise-BN batch stream from the training stream's seeds.
_PRECISE_BN_STREAM = 999_983


def _sublayers(layer):
  yield layer
  for sub in layer.sublayers:
    yield from _sublayers(sub)


def precise_bn_state(train_model, weights, state, batches, n_batches, seed=0):
  """BatchNorm statistics of the given weights, averaged over training batches.

  The "precise BN" of pycls and detectron2: trax's running averages (momentum
  0.9) trail weights that move at every step, so the final eval would use
  statistics of earlier weights. Here each of `n_batches` batches goes through
  the train-mode model with the final weights, no gradient; every BatchNorm's
  batch mean and variance are averaged over the batches (all batches have one
  size, so the mean of means is the mean over all their images).

  Args:
    train_model: a model built with mode='train' that nothing else uses (its
      BatchNorm layers are set to momentum 0 here, so their state output is the
      batch's own statistics).
    weights: the model's trained weights (not changed).
    state: the model's state (not changed).
    batches: an iterator of (images, labels, weights), e.g. `train_batches`
      with the recipe's preprocessing.
    n_batches: how many batches to average over (> 0).
    seed: seeds the rng that dropout layers (if any) draw from.

  Returns:
    A state tree like `state` whose BatchNorm means and variances are the
    averages; integer leaves (BatchNorm's batch counters) keep their values.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  # tl.BatchNorm is gin's configurable wrapper, not the class of the layers.
  from trax.layers import normalization  # pylint: disable=g-import-not-at-top
  if n_batches <= 0:
    raise ValueError(f'n_batches must be > 0, got {n_batches}')
  found = False
  for layer in _sublayers(train_model):
    if isinstance(layer, normalization.BatchNorm):
      found = True
      layer._momentum = 0.0  # pylint: disable=protected-access
  if not found:
    raise ValueError('precise_bn_state: the model has no BatchNorm layer')

  def new_state(x, weights, state, rng):
    return train_model.pure_fn(x, weights, state, rng)[1]

  fn = fastmath.jit(new_state)
  rng = fastmath.random.get_prng(seed)
  total = None
  for _ in range(n_batches):
    x = next(batches)[0]
    rng, sub = fastmath.random.split(rng)
    out = fn(x, weights, state, sub)
    total = out if total is None else jax.tree_util.tree_map(
        lambda a, b: a + b, total, out)

  def average(total_leaf, old_leaf):
    if np.issubdtype(np.asarray(old_leaf).dtype, np.floating):
      return total_leaf / n_batches
    return old_leaf

  return jax.tree_util.tree_map(average, total, state)


def evaluate(eval_model, weights, state, ds, batch_size, preprocess):
  """Exact loss and error of a model on the whole test split, once.

  The last partial batch is padded and masked by its loss weights, so every
  test image counts exactly once.

  Returns:
    dict(loss, accuracy, error, examples).
  """
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  from trax.fastmath import numpy as jnp  # pylint: disable=g-import-not-at-top
  rng = fastmath.random.get_prng(0)

  def batch_sums(x, y, w, weights, state):
    logp, _ = eval_model.pure_fn(x, weights, state, rng)
    nll = -jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1)[:, 0]
    correct = (jnp.argmax(logp, axis=-1) == y).astype(jnp.float32)
    return jnp.sum(nll * w), jnp.sum(correct * w), jnp.sum(w)

  fn = fastmath.jit(batch_sums)
  loss = correct = count = 0.0
  for x, y, w in data_lib.test_batches(ds, batch_size, preprocess=preprocess):
    l, a, n = fn(x, y, w, weights, state)
    loss, correct, count = loss + float(l), correct + float(a), count + float(n)
  count = int(round(count))
  return dict(loss=loss / count, accuracy=correct / count,
              error=1.0 - correct / count, examples=count)


def load_checkpoint(workdir, mode='eval'):
  """The model of a run folder with its last checkpoint's weights and state.

  Reads `config.json` and trax's `model.pkl.gz` (through the restricted
  unpickler) and `model.weights.npy.gz`; nothing is trained or written.

  Args:
    workdir: a run folder written by `train`.
    mode: the mode to build the model in ('eval', or 'train' for
      `precise_bn_state`).

  Returns:
    dict(model, weights, state, step, config): the trax model, its weights
    and state (BatchNorm running averages as trax kept them) and the
    checkpoint's step. The model is the network alone, whatever the run's
    `augment` (`DevicePreprocess` has no weights): feed it batches with the
    host preprocessing ``config['preprocess']``.
  """
  import trax  # pylint: disable=g-import-not-at-top
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  config = runio.read_json(os.path.join(workdir, 'config.json'))
  path = os.path.join(workdir, 'model.pkl.gz')
  d = runio.load_checkpoint_dict(path)
  flat_weights = d['flat_weights']
  if isinstance(flat_weights, int):  # trax keeps the arrays beside the pickle
    flat_weights = runio._np_from_file(  # pylint: disable=protected-access
        os.path.join(workdir, 'model.weights.npy.gz'))
  model = models.build(config['model'], n_classes=config['n_classes'],
                       dropout=config['dropout'], mode=mode,
                       precision=config.get('precision_used', 'float32'))
  signature = trax.shapes.ShapeDtype((1, *config['image_shape']), np.float32)
  weights, state = tl.unflatten_weights_and_state(
      flat_weights, d['flat_state'],
      model.weights_and_state_signature(signature))
  return dict(model=model, weights=weights, state=state, step=int(d['step']),
              config=config)
