"""Makes trax 1.4.1 work on the jax we install (0.10.x).

trax 1.4.1 (2021) calls jax APIs that newer jax renamed or removed. Each shim
below is added only where jax lacks the name, so an older jax is untouched.

- `jax.device_put_replicated(x, devices)`: removed in jax 0.8. trax's
  `tl.for_n_devices` calls it to copy weights to every device whenever
  `Loop` trains data-parallel (n_devices > 1: a Kaggle 2xT4, a TPU).
- `trax.fastmath.tree_unflatten(..., copy_from_tree=[None, ()])`, which
  `Loop.load_checkpoint` calls to restore optimizer slots, tests `tree in
  copy_from_tree`; that compares a jax Array with `()`, which jax >= 0.4.3x
  rejects with a TypeError. Resuming any run hits it.
- `jax.host_count()`: still an alias of `jax.process_count()` that warns;
  `_quiet` filters that warning.
"""
import sys

from wrn_trax import _quiet

# TF, gym and trax are imported quietly (trax with a cheap inspect.stack)
# before jax is imported here: whoever imports trax through us gets the
# silencing first.
_quiet.silence_imports()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

_PATCHED = False


def ensure_trax():
  """Imports TF, gym and trax quietly and installs the patches; once.

  The one entry point of the heavy imports: `import wrn_trax` imports none of
  TensorFlow, trax or jax, and every module of ours that needs them
  (`models`, `data`'s pipelines, `optim`, `train`, `sweep`) calls this first,
  so the silencing (`_quiet.silence_imports`) always runs before trax is
  imported and the shims of `patch_jax` are in place before trax is used.
  Importing this module already does the silencing; calling this again is
  free.
  """
  global _PATCHED
  if not _PATCHED:
    patch_jax()
    _PATCHED = True


def _device_put_replicated(x, devices):
  """x stacked n times along a new leading axis, one copy per device.

  The result is laid out across `devices` by a pmap sharding, as
  `device_put_replicated` used to return, so trax's pmapped train step takes
  it without a copy.
  """
  x = np.asarray(x)
  mesh = jax.sharding.Mesh(np.array(devices), ('batch',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))
  return jax.device_put(
      np.broadcast_to(x[None], (len(devices),) + x.shape), sharding)


def _in(tree, candidates):
  """`tree in candidates` without asking a jax Array to compare with ()."""
  if hasattr(tree, 'shape'):
    return any(tree is c for c in candidates)
  return tree in candidates


def _safe_tree_unflatten(flat, tree, copy_from_tree=None):
  """trax.fastmath.numpy.tree_unflatten with an array-safe membership test."""
  if copy_from_tree is not None and _in(tree, copy_from_tree):
    return tree, flat
  if isinstance(tree, (list, tuple)):
    new_tree, rest = [], flat
    for t in tree:
      new_t, rest = _safe_tree_unflatten(rest, t, copy_from_tree)
      new_tree.append(new_t)
    return (tuple(new_tree) if isinstance(tree, tuple) else new_tree), rest
  if isinstance(tree, dict):
    new_tree, rest = {}, flat
    for k in tree:
      new_tree[k], rest = _safe_tree_unflatten(rest, tree[k], copy_from_tree)
    return new_tree, rest
  return flat[0], flat[1:]


def patch_jax():
  """Installs the shims above; each only where it is needed."""
  if not hasattr(jax, 'device_put_replicated'):
    jax.device_put_replicated = _device_put_replicated
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  # The module file, not the `fastmath.numpy` backend proxy of the same name.
  trax_numpy = sys.modules['trax.fastmath.numpy']
  try:
    trax_numpy.tree_unflatten(
        [], jax.numpy.zeros(()), copy_from_tree=[None, ()])
  except TypeError:
    trax_numpy.tree_unflatten = _safe_tree_unflatten
    fastmath.tree_unflatten = _safe_tree_unflatten


def _pmap_sharding(n_devices):
  devices = jax.local_devices()[:n_devices]
  mesh = jax.sharding.Mesh(np.array(devices), ('batch',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))


def spread_optimizer_state(loop):
  """Moves a Loop's optimizer slots and params onto the devices it trains on.

  trax's Trainer builds the slots (and optimizer params such as the learning
  rate) and pins them to the host with `tl.on_cpu`. On today's jax an array
  pinned to a device is "committed", and a jitted step runs where its
  committed arguments are: with one GPU the whole train step would run on
  the CPU. With several devices, jax 0.10's pmap is a jit with fixed input
  shardings and refuses the host-pinned arrays outright. Placing them once,
  before the first step, on the default device (one device) or with the
  pmap's sharding (several) is what the old jax did on the first call.
  """
  n = loop.n_devices
  if n > 1:
    target = _pmap_sharding(n)
  else:
    target = jax.devices()[0]  # the default backend: the GPU/TPU if any
  put = lambda x: jax.device_put(x, target) if hasattr(x, 'shape') else x
  for trainer in loop._trainer_per_task:  # pylint: disable=protected-access
    trainer._slots = jax.tree_util.tree_map(put, trainer._slots)  # pylint: disable=protected-access
    trainer._opt_params = jax.tree_util.tree_map(put, trainer._opt_params)  # pylint: disable=protected-access
    # The weights and state come out of the first step committed to the
    # device; fresh from init they are not, and jit compiles the step once
    # for each placement. Committing them now saves that second compile.
    model = trainer.accelerated_model_with_loss
    model.weights = jax.tree_util.tree_map(put, model.weights)
    model.state = jax.tree_util.tree_map(put, model.state)


# ------------------------------------------------- per-step host work (speed)
#
# These change no result; they only take work off the host between device
# steps (see bench/host_overhead.py for the figures).


def _assign(layer, name, value):
  """`layer.<name> = value` for 'weights' or 'state', without the overhead.

  trax's `Layer.weights`/`Layer.state` setters recurse through every
  sublayer, each assignment passing through `Layer.__setattr__`'s typo check
  and rebuilding the combinator's cache-marker list; per training step that
  costs about as much host time as the rest of the Loop together. This walk
  does the same writes directly. Layers whose class overrides the setter,
  and values carrying trax's weight-sharing cache markers, go through trax's
  own setter, so the result is always what trax's setter leaves.
  """
  from trax.layers import base  # pylint: disable=g-import-not-at-top
  prop = getattr(base.Layer, name)
  marker = (base.GET_WEIGHTS_FROM_CACHE if name == 'weights'
            else base.GET_STATE_FROM_CACHE)
  attr = '_' + name
  set_ = object.__setattr__

  def walk(layer, value):
    if getattr(type(layer), name) is not prop:
      setattr(layer, name, value)  # an overriding setter: trax's own path
      return
    if isinstance(value, dict) and value == marker:
      return
    subs = layer._sublayers  # pylint: disable=protected-access
    if not subs:
      set_(layer, attr, value)
      return
    if (not isinstance(value, (list, tuple)) or len(value) != len(subs) or
        any(isinstance(v, dict) and v == marker for v in value)):
      prop.fset(layer, value)  # shared weights or a bad length: trax's path
      return
    set_(layer, attr, [None] * len(subs))
    for sub, v in zip(subs, value):
      walk(sub, v)

  walk(layer, value)


def _one_step_one_device(self, batch, rng, step=0, learning_rate=None):
  """trax `Trainer.one_step` for one device, with `_assign` for the writes.

  The same calls in the same order as trax 1.4.1's `one_step` with
  n_devices == 1 (where `for_n_devices`, `reshape_by_device` and
  `_unreplicate` are identities), less its vlog-only logging.

  A trainer with a `_wrn_loss_scale` (float16, `precision.enable_loss_scaling`)
  passes that state to its update and keeps the new one it returns.
  """
  if learning_rate is not None:
    self._opt_params['learning_rate'] = learning_rate  # pylint: disable=protected-access
  acc = self._accelerated_model_with_loss  # pylint: disable=protected-access
  args = ((acc.weights, self._slots), step, self._opt_params, batch,  # pylint: disable=protected-access
          acc.state, rng)
  loss_scale = getattr(self, '_wrn_loss_scale', None)
  if loss_scale is None:
    (new_weights, new_slots), new_state, stats = self._accelerated_update_fn(  # pylint: disable=protected-access
        *args)
  else:
    (new_weights, new_slots), new_state, stats, self._wrn_loss_scale = (  # pylint: disable=protected-access
        self._accelerated_update_fn(*args, loss_scale))  # pylint: disable=protected-access
  # tl.Accelerate's setters with one device: keep the value, then set the
  # wrapped model (whose layers are the Loop's model).
  object.__setattr__(acc, '_weights', new_weights)
  _assign(acc.sublayer, 'weights', new_weights)
  object.__setattr__(acc, '_state', new_state)
  _assign(acc.sublayer, 'state', new_state)
  self._slots = new_slots  # pylint: disable=protected-access
  self._optimizer.slots = new_slots  # pylint: disable=protected-access
  return stats['loss'], stats


def lighten_steps(loop):
  """Gives each of the Loop's single-device trainers `_one_step_one_device`,
  and a compiled update that donates its (weights, slots) buffers.

  Only trax's plain `Trainer` on one device is changed (the data-parallel
  and memory-efficient trainers keep their own `one_step`; trax's pmapped
  update already donates).
  """
  from trax.layers import acceleration  # pylint: disable=g-import-not-at-top
  from trax.optimizers import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  if loop.n_devices != 1:
    return
  for trainer in loop._trainer_per_task:  # pylint: disable=protected-access
    if (type(trainer) is trainer_lib.Trainer and  # pylint: disable=unidiomatic-typecheck
        trainer._n_devices == 1 and  # pylint: disable=protected-access
        type(trainer._accelerated_model_with_loss) is acceleration.Accelerate):  # pylint: disable=protected-access,unidiomatic-typecheck
      trainer.one_step = _one_step_one_device.__get__(trainer)
      # trax jits the update without donating the (weights, slots) buffers
      # (a TODO in its source). Donating them lets XLA write the new values
      # in place: no second copy of weights and slots on the device, and on
      # the CPU 11% less time per step for WRN-22-1 (bench/README.md).
      # `_one_step_one_device` replaces every reference to the old arrays
      # (the layer tree, the trainer's and the optimizer's slots) with the
      # new ones; run_evals and checkpoints read those.
      update = trainer._accelerated_update_fn  # pylint: disable=protected-access
      if hasattr(update, '__wrapped__'):
        trainer._accelerated_update_fn = jax.jit(update.__wrapped__,  # pylint: disable=protected-access
                                                 donate_argnums=(0,))
