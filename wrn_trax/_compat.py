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

import jax
import numpy as np


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
