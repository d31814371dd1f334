"""Optimizers and learning-rate schedules for the recipes.

trax's `optimizers.Momentum` decays weights as `w <- (1 - a) * w - lr * update`:
the decay is decoupled from the gradient and is not multiplied by the learning
rate. The paper trained with Torch's SGD, where weight decay is an L2 term
added to the gradient before the momentum buffer:

    g' = g + wd * w;  v <- mu * v + g';  w <- w - lr * (g' + mu * v)   (Nesterov)

`SGD` below implements exactly that (it matches `torch.optim.SGD(nesterov=True,
dampening=0, weight_decay=wd)`), applied to every weight as in the official
code (BatchNorm scales and offsets included).
"""
import bisect

from wrn_trax import _compat

_compat.ensure_trax()  # TF and gym quietly, then trax, patched: before trax

# pylint: disable=g-import-not-at-top,wrong-import-position,wrong-import-order
from trax import fastmath
from trax import optimizers
from trax.optimizers import base as optimizers_base
from trax.fastmath import numpy as jnp
# pylint: enable=g-import-not-at-top,wrong-import-position,wrong-import-order


class SGD(optimizers_base.Optimizer):
  """SGD with (Nesterov) momentum and a paper-style L2 weight decay."""

  def __init__(self, learning_rate=0.1, mass=0.9, weight_decay=5e-4,
               nesterov=True):
    super().__init__(learning_rate=learning_rate, mass=mass,
                     l2_weight_decay=weight_decay)
    self._nesterov = nesterov

  def init(self, weights):
    return jnp.zeros_like(weights)

  def update(self, step, grads, weights, velocity, opt_params):
    del step
    mu = opt_params['mass']
    lr = opt_params['learning_rate']
    g = grads + opt_params['l2_weight_decay'] * weights
    new_v = mu * velocity + g
    direction = g + mu * new_v if self._nesterov else new_v
    new_weights = weights - lr * direction
    return new_weights.astype(weights.dtype), new_v


def make_optimizer(recipe):
  """Returns the trax optimizer a recipe names."""
  name = recipe['optimizer']
  if name == 'adam':
    # trax's Adam applies weight_decay_rate as a decoupled decay; the seed
    # notebooks used its default 1e-5.
    return optimizers.Adam(recipe['lr'],
                           weight_decay_rate=recipe['weight_decay'])
  return SGD(recipe['lr'], mass=recipe['momentum'] or 0.0,
             weight_decay=recipe['weight_decay'],
             nesterov=(name == 'sgd_nesterov'))


def piecewise_constant(lr, milestones, decay):
  """Step -> lr: `lr * decay**i` after the i-th milestone step.

  trax calls the schedule with the step about to run (1-based), so a milestone
  at step m applies from step m + 1 on: `m` steps are taken at the old rate.
  """
  milestones = tuple(sorted(milestones))

  def schedule(step):
    return lr * decay ** bisect.bisect_left(milestones, int(step))

  return schedule


def tree_all_finite(tree):
  """True if every leaf of a weight tree is finite (checks for divergence)."""
  leaves = fastmath.tree_flatten(tree)
  return all(bool(jnp.all(jnp.isfinite(x))) for x in leaves
             if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.floating))
