"""Mixed precision: convolutions and matmuls in bfloat16 or float16.

The recipe field `precision` selects it:

* 'float32': nothing here is used; every result is what it was before this
  module existed (what 'auto' picks on the CPU).
* 'bfloat16': every `Conv` and `Dense` casts its input and its (float32)
  weights to bfloat16 at use, computes in bfloat16 and casts its output back
  to float32 (`cast_compute`). Everything else runs in float32: BatchNorm's
  statistics and normalisation, ReLU, the residual adds, pooling, the
  log-softmax and the loss. Weights, optimizer slots, the model state and
  the checkpoints stay float32 (the gradient of a cast is the cast back).
* 'float16': the same casts in float16, whose narrow range needs dynamic
  loss scaling (`scaled_update_fn`): the loss is multiplied by a scale
  before the gradient and the gradients divided by it; a step whose
  gradients are not all finite is skipped (weights, slots and model state
  unchanged) and halves the scale; after `loss_scale_period` good steps in
  a row the scale doubles. The scale is checkpointed beside trax's files
  (`save_loss_scale`), so a resumed run goes on with the same scale.
* 'auto' (`resolve`, the default of every recipe): bfloat16 on TPUs and on
  GPUs of compute capability 8.0 or more (A100, L4, H100), float16 with loss
  scaling on 7.x (T4, V100: tensor cores, no fast bfloat16), float32 on 6.x
  (P100: no tensor cores, so float16 gains little and risks skipped steps)
  and on the CPU. Two cases keep float32 where float16 would be picked: raw
  0-255 pixels (the notebook recipe; see `explain`) and several devices.
  The run record (config.json's `precision_used` and `precision_reason`,
  summary.json's `precision`) says which ran and why.

Loss scaling runs in the single-device step of `_compat`; on several devices
float16 is refused (and 'auto' picks float32 there when it would pick
float16).
"""
import json
import os

from wrn_trax.recipes import PRECISIONS

# The first scale (TF's LossScaleOptimizer and apex start near here) and
# the largest one a doubling may reach.
INITIAL_LOSS_SCALE = 2.0**15
MAX_LOSS_SCALE = 2.0**24

# A float16 step whose gradients overflow even at a scale below this has
# diverged (the gradients themselves exceed float16's range).
MIN_LOSS_SCALE = 1.0

# Where the loss scale is kept beside trax's checkpoint, one entry per
# checkpointed step.
LOSS_SCALE_FILE = 'loss_scale.json'
_KEEP_ENTRIES = 4

# Compute capability from which a GPU has fast bfloat16 (Ampere), and from
# which it has float16 tensor cores (Volta, Turing).
_BF16_MIN_CAPABILITY = 8.0
_FP16_MIN_CAPABILITY = 7.0
# Where jax gives no compute_capability: device kinds by name.
_BF16_GPU_KINDS = ('a100', 'a10', 'a30', 'a40', 'a6000', 'l4', 'l40', 'h100',
                   'h200', 'h800', 'gh200', 'b100', 'b200', 'rtx 30',
                   'rtx 40', 'rtx 50', 'rtx pro')
_FP16_GPU_KINDS = ('t4', 'v100', 'titan v', 'rtx 20', 'quadro rtx')


def check(precision):
  """Raises ValueError unless `precision` is one of PRECISIONS."""
  if precision not in PRECISIONS:
    raise ValueError(f'precision must be one of {PRECISIONS}, got '
                     f'{precision!r}')


def _capability(device):
  """The GPU's compute capability as a float, or None where unknown."""
  cc = getattr(device, 'compute_capability', None)
  try:
    return float(cc) if cc is not None else None
  except (TypeError, ValueError):
    return None


def explain(precision, device=None, n_devices=1, raw_inputs=False):
  """The precision `precision` stands for on `device`, and why.

  Args:
    precision: one of PRECISIONS.
    device: a jax device (or anything with its `platform`, `device_kind` and,
      for GPUs, `compute_capability`); default the first local one.
    n_devices: how many devices train. 'auto' picks float32 instead of
      float16 where this is more than one, because loss scaling runs on one
      device only.
    raw_inputs: the network sees unnormalised pixels (preprocess 'raw', the
      notebook recipe). 'auto' picks float32 instead of float16 then: on
      CIFAR-10 (JPEG copy) the notebook recipe's float16 run skipped 95 of
      its first 100 steps as overflowing, with the loss scale down to 8e-25,
      and diverged (README, "Precision"); bfloat16 has float32's range.

  Returns:
    (precision, reason): 'float32', 'bfloat16' or 'float16', and one
    sentence saying why (what config.json records as `precision_reason`).
  """
  check(precision)
  if precision != 'auto':
    return precision, f'asked for ({precision!r})'
  if device is None:
    import jax  # pylint: disable=g-import-not-at-top
    device = jax.local_devices()[0]
  platform = getattr(device, 'platform', 'cpu')
  kind = str(getattr(device, 'device_kind', '') or platform)
  if platform == 'tpu':
    return 'bfloat16', f'auto: TPU ({kind}) computes in bfloat16'
  if platform not in ('gpu', 'cuda', 'rocm'):
    return 'float32', f'auto: {platform} ({kind}) has no fast 16-bit units'
  cc = _capability(device)
  low = kind.lower()
  if cc is None:
    if any(k in low for k in _BF16_GPU_KINDS):
      tier = 'bfloat16'
    elif any(k in low for k in _FP16_GPU_KINDS):
      tier = 'float16'
    else:
      return 'float32', (f'auto: GPU {kind} of unknown compute capability '
                         '(float32 is the safe choice)')
    where = f'GPU {kind} (by name)'
  else:
    tier = ('bfloat16' if cc >= _BF16_MIN_CAPABILITY else
            'float16' if cc >= _FP16_MIN_CAPABILITY else 'float32')
    where = f'GPU {kind}, compute capability {cc:g}'
  if tier == 'bfloat16':
    return 'bfloat16', f'auto: {where} has fast bfloat16'
  if tier == 'float32':
    return 'float32', (f'auto: {where} has no tensor cores (float16 would '
                       'gain little and risk skipped steps)')
  if n_devices != 1:
    return 'float32', (f'auto: {where} would take float16, but loss scaling '
                       f'runs on one device and this run has {n_devices}')
  if raw_inputs:
    return 'float32', (
        f'auto: {where} would take float16, but the inputs are raw 0-255 '
        "pixels (preprocess 'raw'), on which float16 overflows and "
        "diverges; set preprocess='cifar' (or precision='float16') for it")
  return 'float16', f'auto: {where} has float16 tensor cores (loss scaled)'


def resolve(precision, device=None, n_devices=1, raw_inputs=False):
  """The precision `precision` stands for on `device` (`explain`'s first).

  Returns:
    'float32', 'bfloat16' or 'float16'.
  """
  return explain(precision, device, n_devices, raw_inputs)[0]


def compute_dtype(precision):
  """The numpy dtype convolutions and matmuls run in, or None for float32."""
  check(precision)
  if precision == 'auto':
    raise ValueError("resolve 'auto' first (precision.resolve)")
  if precision == 'float32':
    return None
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return {'bfloat16': jnp.bfloat16, 'float16': jnp.float16}[precision]


# ------------------------------------------------ casting Conv and Dense ----

_CAST_CLASSES = {}


class _ComputeIn:
  """Mixin: `forward` runs in `self._compute_dtype`, returns float32.

  The input and the floating weights are cast at use; the layer keeps its
  float32 weights (they are set back before `forward` returns), so weights,
  their gradients and everything trax stores stay float32.
  """

  def forward(self, x):
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    dtype = self._compute_dtype

    def cast(a):
      if hasattr(a, 'dtype') and jnp.issubdtype(a.dtype, jnp.floating):
        return a.astype(dtype)
      return a

    weights = self._weights
    self._weights = jax.tree_util.tree_map(cast, weights)
    try:
      out = super().forward(cast(x))
    finally:
      self._weights = weights
    return out.astype(jnp.float32)


def _cast_class(cls):
  if cls not in _CAST_CLASSES:
    _CAST_CLASSES[cls] = type(cls.__name__, (_ComputeIn, cls),
                              {'__module__': cls.__module__,
                               '__doc__': cls.__doc__})
  return _CAST_CLASSES[cls]


def _walk(layer, seen):
  if id(layer) in seen:
    return
  seen.add(id(layer))
  yield layer
  for sub in layer.sublayers:
    yield from _walk(sub, seen)


def cast_compute(model, precision):
  """Makes every Conv and Dense of `model` compute in `precision`, in place.

  Each such layer's class becomes a subclass whose `forward` casts the input
  and the weights to the compute dtype and the output back to float32
  (`_ComputeIn`); nothing else changes (names, weights, their tree). With
  'float32' the model is left untouched. Call it before the model is
  initialised or traced.

  Args:
    model: a trax layer (e.g. from `wrn_trax.models.build`).
    precision: 'float32', 'bfloat16' or 'float16'.

  Returns:
    `model`.
  """
  from trax.layers import convolution  # pylint: disable=g-import-not-at-top
  from trax.layers import core  # pylint: disable=g-import-not-at-top
  dtype = compute_dtype(precision)
  if dtype is None:
    return model
  for layer in _walk(model, set()):
    if isinstance(layer, _ComputeIn):
      object.__setattr__(layer, '_compute_dtype', dtype)
    elif isinstance(layer, (convolution.Conv, core.Dense)):
      layer.__class__ = _cast_class(type(layer))
      object.__setattr__(layer, '_compute_dtype', dtype)
  return model


# ------------------------------------------------- dynamic loss scaling ----


def initial_loss_scale(scale=INITIAL_LOSS_SCALE):
  """The loss-scale state of a fresh run: a dict of scalar arrays.

  Keys: scale (float32), good_steps (int32; good steps since the last change
  of scale), skipped (int32; steps skipped so far), last_loss (float32; the
  last finite loss, reported in place of a non-finite one).
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  return dict(scale=jnp.asarray(scale, jnp.float32),
              good_steps=jnp.asarray(0, jnp.int32),
              skipped=jnp.asarray(0, jnp.int32),
              last_loss=jnp.asarray(0.0, jnp.float32))


def _all_finite(tree):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  leaves = [jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(tree)
            if hasattr(g, 'dtype') and jnp.issubdtype(g.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def scaled_update_fn(model_with_loss, optimizer, period):
  """trax's single-device update with dynamic loss scaling.

  The step of trax 1.4.1's `_accelerate_update_fn` (n_devices == 1) with the
  loss multiplied by `loss_scale['scale']` before the gradient and the
  gradients divided by it after (scales are powers of two, so the division
  is exact). If any gradient is not finite, the new weights, slots and model
  state are thrown away (the step is skipped), the scale halves and the run
  of good steps restarts; after `period` good steps the scale doubles (up to
  MAX_LOSS_SCALE). A non-finite loss is reported as the last finite one, so
  a skipped step never reads as divergence; divergence is a scale below
  MIN_LOSS_SCALE (`diverged`).

  Args:
    model_with_loss: the trainer's model + loss layer.
    optimizer: the trainer's trax optimizer.
    period: good steps after which the scale doubles.

  Returns:
    f((weights, slots), step, opt_params, batch, state, rng, loss_scale) ->
    ((weights, slots), state, stats, loss_scale); stats as trax's, plus
    `loss_scale` (the scale this step used) and `skipped` (1.0 or 0.0).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  def update(weights_and_slots, step, opt_params, batch, state, rng,
             loss_scale):
    step = jnp.array(step, dtype=jnp.int32)
    weights, slots = weights_and_slots
    scale = loss_scale['scale']

    def scaled_loss(w):
      loss, new_state = model_with_loss.pure_fn(batch, w, state, rng)
      return loss * scale, (loss, new_state)

    (_, (loss, new_state)), grads = jax.value_and_grad(
        scaled_loss, has_aux=True)(weights)
    grads = jax.tree_util.tree_map(lambda g: g / scale, grads)
    ok = _all_finite(grads) & jnp.isfinite(loss)
    new_weights, new_slots, stats = optimizer.tree_update(
        step, grads, weights, slots, opt_params, store_slots=False)

    def keep(new, old):
      return jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, old)

    new_weights = keep(new_weights, weights)
    new_slots = keep(new_slots, slots)
    new_state = keep(new_state, state)
    good = jnp.where(ok, loss_scale['good_steps'] + 1, 0)
    grow = good >= period
    new_scale = jnp.where(
        ok, jnp.where(grow, jnp.minimum(scale * 2, MAX_LOSS_SCALE), scale),
        scale / 2)
    finite_loss = jnp.isfinite(loss)
    reported = jnp.where(finite_loss, loss, loss_scale['last_loss'])
    new_loss_scale = dict(
        scale=new_scale.astype(jnp.float32),
        good_steps=jnp.where(grow, 0, good).astype(jnp.int32),
        skipped=(loss_scale['skipped'] + (~ok).astype(jnp.int32)),
        last_loss=reported.astype(jnp.float32))
    stats = {k: jnp.where(ok, v, 0.0) for k, v in stats.items()}
    stats['loss'] = reported
    stats['loss_scale'] = scale
    stats['skipped'] = (~ok).astype(jnp.float32)
    return (new_weights, new_slots), new_state, stats, new_loss_scale

  return update


def _trainers(loop):
  return loop._trainer_per_task  # pylint: disable=protected-access


def enable_loss_scaling(loop, period, loss_scale=None):
  """Gives the Loop's trainers the loss-scaled step (float16).

  Each trainer gets `_compat._one_step_one_device` as its `one_step` (if it
  has not already) and a compiled `scaled_update_fn` that donates its
  (weights, slots) buffers; its `_wrn_loss_scale` holds the state.

  Args:
    loop: a trax `training.Loop` on one device, with trax's plain Trainer.
    period: good steps after which the scale doubles.
    loss_scale: the state to start from (`initial_loss_scale` or what
      `load_loss_scale` read); default a fresh one.

  Raises:
    ValueError: on several devices or another kind of trainer.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from trax.layers import acceleration  # pylint: disable=g-import-not-at-top
  from trax.optimizers import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  from wrn_trax import _compat  # pylint: disable=g-import-not-at-top
  if loop.n_devices != 1:
    raise ValueError(
        f"precision='float16' (loss scaling) trains on one device; this run "
        f"has {loop.n_devices}. Use precision='float32' (or 'bfloat16' where "
        'the devices support it), or train on one device.')
  for trainer in _trainers(loop):
    if not (type(trainer) is trainer_lib.Trainer and  # pylint: disable=unidiomatic-typecheck
            type(trainer._accelerated_model_with_loss) is acceleration.Accelerate):  # pylint: disable=protected-access,unidiomatic-typecheck
      raise ValueError("precision='float16' needs trax's plain Trainer")
    state = loss_scale if loss_scale is not None else initial_loss_scale()
    device = jax.devices()[0]
    trainer._wrn_loss_scale = jax.tree_util.tree_map(  # pylint: disable=protected-access
        lambda x: jax.device_put(x, device), state)
    # The light step with the loss-scaled update (a patch of `_compat`).
    _compat.install_one_step(trainer, jax.jit(
        scaled_update_fn(trainer.model_with_loss, trainer.optimizer, period),
        donate_argnums=(0,)))


def loss_scale_of(loop):
  """The loss-scale state of the Loop's first trainer as plain numbers.

  Returns:
    dict(scale, good_steps, skipped, last_loss), or None without loss
    scaling.
  """
  state = getattr(_trainers(loop)[0], '_wrn_loss_scale', None)
  if state is None:
    return None
  return dict(scale=float(state['scale']),
              good_steps=int(state['good_steps']),
              skipped=int(state['skipped']),
              last_loss=float(state['last_loss']))


def diverged(loop):
  """True if float16 gradients overflowed even below MIN_LOSS_SCALE."""
  s = loss_scale_of(loop)
  return s is not None and s['scale'] < MIN_LOSS_SCALE


def save_loss_scale(workdir, loop):
  """Records the loop's loss scale at its step in `workdir`/LOSS_SCALE_FILE.

  Call it before trax's checkpoint is saved: a kill between the two leaves
  an entry for a step no checkpoint has, which is never read; the entry for
  the checkpoint's step is always there. Keeps the last few entries.
  """
  from wrn_trax import runio  # pylint: disable=g-import-not-at-top
  s = loss_scale_of(loop)
  if s is None:
    return
  path = os.path.join(workdir, LOSS_SCALE_FILE)
  entries = _read_entries(path)
  entries[str(int(loop.step))] = s
  keep = sorted(entries, key=int)[-_KEEP_ENTRIES:]
  runio.write_json(path, {k: entries[k] for k in keep})


def _read_entries(path):
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    try:
      entries = json.load(f)
    except ValueError:
      return {}
  return entries if isinstance(entries, dict) else {}


def load_loss_scale(workdir, step):
  """The loss-scale state recorded at `step` in `workdir`, or None.

  Returns:
    A state as `initial_loss_scale` returns, or None where none was
    recorded for that step (a fresh run, or one checkpointed in another
    precision).
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  entry = _read_entries(os.path.join(workdir, LOSS_SCALE_FILE)).get(
      str(int(step)))
  if entry is None:
    return None
  return dict(scale=jnp.asarray(entry['scale'], jnp.float32),
              good_steps=jnp.asarray(entry['good_steps'], jnp.int32),
              skipped=jnp.asarray(entry['skipped'], jnp.int32),
              last_loss=jnp.asarray(entry['last_loss'], jnp.float32))
