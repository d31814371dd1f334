"""Training recipes: one base and three variants of it.

A recipe is a dict of the fields `wrn_trax.train` needs besides the model and
data set. `base()` sets every field once, with the reason for each value;
each recipe is the base with the fields it changes (as big_vision's and
flax's configs are). `get(name, dataset)` returns a fresh copy;
`train(**overrides)` changes single fields. Epoch-based fields (`epochs`,
`lr_milestones`) become steps in `resolve_steps` once the size of the
training split is known.
"""
import copy
import numbers
from collections.abc import Callable, Mapping
from typing import Any

RECIPES = ('notebook', 'paper', 'smoke')

# Old names that still work (a run folder or a script may use them). The
# recipe of the seed notebooks was called 'seed', beside the `seed=`
# argument; it is 'notebook' now, and config.json of a new run says so.
ALIASES = {'seed': 'notebook'}

# Where the crop, flip and normalisation of the preprocessing run: 'host' (the
# numpy pipeline of `wrn_trax.data`, float32 batches) or 'device' (uint8
# batches; `wrn_trax.augment.DevicePreprocess` in the compiled step).
AUGMENT = ('host', 'device')

# Every reported test error uses BatchNorm statistics recomputed with the
# final weights over this many training batches ("precise BN", as pycls and
# detectron2 do); trax's running averages trail the weights (see
# bench/precise_bn.py for the error against the number of batches).
_PRECISE_BN_BATCHES = 50

# How BatchNorm normalises in the cheap in-training eval: 'running' (eval
# mode, trax's running averages) or 'batch' (train mode, each eval batch's own
# statistics, as the seed notebooks' Loop without an eval_model did). Neither
# changes the training state.
EVAL_BN = ('running', 'batch')

# The dtype convolutions and matmuls run in (`wrn_trax.precision`): weights,
# optimizer slots, checkpoints, BatchNorm and the loss stay float32.
PRECISIONS = ('float32', 'bfloat16', 'float16', 'auto')

# float16's dynamic loss scale doubles after this many good steps in a row.
_LOSS_SCALE_PERIOD = 2000


def base() -> dict[str, Any]:
  """Every recipe field, with the values the variants share."""
  return dict(
      optimizer='adam',        # 'adam', 'sgd' or 'sgd_nesterov' (optim.py).
      lr=0.01,
      weight_decay=0.0,
      momentum=None,           # SGD only.
      batch_size=64,
      steps=None,              # one of steps or epochs;
      epochs=None,             # epochs become steps in resolve_steps.
      lr_milestones=(),        # epochs (or steps) where lr is multiplied
      lr_decay=1.0,            # by lr_decay; () = constant.
      dropout=0.0,             # stock WideResnet has no dropout.
      preprocess=None,         # None: per data set (data.default_preprocess).
      augment='host',          # or 'device': the same crop/flip/standardise in
                               # the compiled step, from uint8 batches.
      eval_every=1000,         # the cheap in-training eval, every n steps,
      eval_batches=20,         # on this many test batches (the notebooks'
                               # n_eval_batches=20); the reported figure is
                               # always the whole test split.
      eval_bn='running',       # that eval in eval mode (EVAL_BN).
      precise_bn_batches=_PRECISE_BN_BATCHES,
      checkpoint_every=1000,
      backend='jax',           # the only backend `train` runs.
      precision='auto',        # per device (precision.explain): bfloat16 on
                               # cc >= 8 and TPUs, float16 on 7.x, float32 on
                               # 6.x and CPUs; or 'float32', 'bfloat16', ...
      data_parallel=False,     # True: batches split over all local devices
                               # (pmap; BatchNorm per device). False: one
                               # device, whatever the machine has.
      loss_scale_period=_LOSS_SCALE_PERIOD,  # float16 only.
  )


def notebook() -> dict[str, Any]:
  """The seed notebooks exactly (Kaggle, trax WideResnet k=1..4 on CIFAR-10)."""
  return dict(
      base(),
      optimizer='adam',        # trax.optimizers.Adam(0.01) as in the notebooks,
      lr=0.01,                 # with trax's default weight_decay_rate=1e-5.
      weight_decay=1e-5,       # Adam's decoupled decay (trax default), not L2.
      batch_size=64,           # the notebooks' Batch(64).
      steps=5000,              # training_loop.run(5000); constant lr.
      preprocess='raw',        # raw uint8 pixels, no augmentation.
      eval_every=1000,         # n_steps_per_checkpoint=1000, evals at 1 and n*1000.
      eval_batches=20,         # n_eval_batches=20.
      eval_bn='batch',         # that eval ran the train-mode model (the notebooks'
                               # Loop had no eval_model): BatchNorm on batch stats.
      checkpoint_every=1000,
  )


def paper(dataset: str = 'cifar10') -> dict[str, Any]:
  """Zagoruyko & Komodakis (2016), Sec. 3: SGD+Nesterov, lr 0.1, wd 5e-4."""
  r = dict(
      base(),
      optimizer='sgd_nesterov',  # "SGD with Nesterov momentum", dampening 0.
      lr=0.1,
      momentum=0.9,
      weight_decay=5e-4,       # an L2 term on every weight (added to the
                               # gradient), as Torch's SGD does; see optim.py.
      batch_size=128,
      epochs=200,              # CIFAR: 200 epochs,
      lr_milestones=(60, 120, 160),  # lr x0.2 at epochs 60, 120 and 160.
      lr_decay=0.2,
      dropout=0.0,             # Table 6 adds dropout 0.3 on CIFAR (override).
  )
  if dataset in ('svhn', 'svhn_extra'):
    # SVHN: lr 0.01, x0.1 at epochs 80 and 120 of 160, dropout 0.4.
    r.update(lr=0.01, epochs=160, lr_milestones=(80, 120), lr_decay=0.1,
             dropout=0.4)
  return r


def smoke() -> dict[str, Any]:
  """Minutes on a 2-core CPU on `digits`: the tests, CI and the README job."""
  return dict(
      base(),
      optimizer='adam',        # converges in few steps without a schedule.
      lr=0.003,
      batch_size=32,           # small batches keep a CPU step well under 1 s.
      steps=120,               # ~2.7 epochs of the 1,437 digits images.
      eval_every=40,
      eval_batches=4,
      precise_bn_batches=20,   # ~half an epoch of digits: keeps the tests quick.
      checkpoint_every=40,
  )


# Kept by its old name: code that called recipes.seed() still works.
seed = notebook

_BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    'notebook': notebook, 'paper': paper, 'smoke': smoke}


def canonical(name: str) -> str:
  """The recipe name `name` stands for ('seed' -> 'notebook'); checked."""
  name = ALIASES.get(name, name)
  if name not in _BUILDERS:
    raise ValueError(f'unknown recipe {name!r}; choose one of {RECIPES}')
  return name


def get(name: str, dataset: str = 'digits', **overrides: Any) -> dict[str, Any]:
  """Returns the recipe `name` for `dataset` with `overrides` applied.

  Args:
    name: one of RECIPES (or an old name of `ALIASES`).
    dataset: the data set name; the paper recipe differs for SVHN.
    **overrides: recipe fields to change, e.g. batch_size=128, lr=0.05.

  Returns:
    A dict with every recipe field.
  """
  name = canonical(name)
  r = _BUILDERS[name](dataset) if name == 'paper' else _BUILDERS[name]()
  unknown = sorted(set(overrides) - set(r))
  if unknown:
    raise ValueError(f'unknown recipe field(s) {unknown}; '
                     f'known fields: {sorted(r)}')
  for key, value in overrides.items():
    _check_type(key, value, name, r[key])
  r.update(copy.deepcopy(overrides))
  if isinstance(r['lr_milestones'], list):
    r['lr_milestones'] = tuple(r['lr_milestones'])
  if r['steps'] is None and r['epochs'] is None:
    raise ValueError(f'the {name} recipe needs steps or epochs; both are None')
  _check(r)
  return r


def _kind(value):
  if value is None:
    return None
  if isinstance(value, bool):
    return bool
  if isinstance(value, numbers.Integral):
    return int
  if isinstance(value, numbers.Real):
    return float
  if isinstance(value, (tuple, list)):
    return tuple
  return type(value)


def _field_kinds():
  """What each field takes: the kinds of value the recipes give it."""
  kinds = {}
  for r in (notebook(), paper('cifar10'), paper('svhn'), smoke()):
    for key, value in r.items():
      kinds.setdefault(key, set()).add(_kind(value))
  return kinds


def _is_number(x):
  return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_type(key, value, recipe, default):
  """Raises ValueError if `value` is not of a kind the field `key` takes.

  Numbers where the recipes have numbers (an int where they all have
  ints), strings where they have strings, a tuple of numbers for
  lr_milestones, and None only where some recipe has None.
  """
  kinds = _field_kinds().get(key, set())
  allowed = kinds - {None}
  if value is None:
    ok = None in kinds or not allowed
  elif not allowed:
    ok = True
  elif float in allowed:
    ok = _is_number(value)
  elif int in allowed:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
  elif tuple in allowed:
    ok = isinstance(value, (tuple, list)) and all(_is_number(v) for v in value)
  else:
    ok = isinstance(value, tuple(allowed))
  if ok:
    return
  words = {float: 'a number', int: 'an int', str: 'a string',
           bool: 'True or False', tuple: 'a tuple of numbers, e.g. (60, 120)'}
  want = ' or '.join(sorted(words.get(k, k.__name__) for k in allowed))
  if None in kinds:
    want += ' or None'
  raise ValueError(f'recipe field {key} must be {want} (the {recipe} recipe '
                   f'has {default!r}), got {value!r}')


def _check(r):
  if not isinstance(r['batch_size'], int) or r['batch_size'] <= 0:
    raise ValueError(f'batch_size must be a positive int, got {r["batch_size"]!r}')
  if not r['lr'] > 0:
    raise ValueError(f'lr must be > 0, got {r["lr"]!r}')
  if r['optimizer'] not in ('adam', 'sgd_nesterov', 'sgd'):
    raise ValueError(f'optimizer must be adam, sgd or sgd_nesterov, '
                     f'got {r["optimizer"]!r}')
  if not 0.0 <= r['dropout'] < 1.0:
    raise ValueError(f'dropout must be in [0, 1), got {r["dropout"]!r}')
  if r['eval_bn'] not in EVAL_BN:
    raise ValueError(f'eval_bn must be one of {EVAL_BN}, got {r["eval_bn"]!r}')
  if r['augment'] not in AUGMENT:
    raise ValueError(f'augment must be one of {AUGMENT}, got {r["augment"]!r}')
  if r['augment'] == 'device' and r['preprocess'] == 'raw':
    raise ValueError("augment='device' needs a preprocess that does something "
                     "('cifar', 'standardize' or 'svhn'), got 'raw'")
  if (not isinstance(r['precise_bn_batches'], int)
      or isinstance(r['precise_bn_batches'], bool)
      or r['precise_bn_batches'] < 0):
    raise ValueError('precise_bn_batches must be an int >= 0 (0: report '
                     "trax's running BatchNorm averages), got "
                     f'{r["precise_bn_batches"]!r}')
  for key in ('eval_every', 'eval_batches', 'checkpoint_every'):
    if not isinstance(r[key], int) or r[key] <= 0:
      raise ValueError(f'{key} must be a positive int, got {r[key]!r}')
  if r['backend'] != 'jax':
    # trax's tensorflow-numpy backend (the seed notebooks') trains through
    # none of our jax patches, precise BN or light step, untested: refused.
    # bench/seed_speed.py still times the notebooks' own Loop on it.
    raise ValueError(
        f"backend={r['backend']!r} is not supported: train() runs on jax "
        "only (backend='jax'). The seed notebooks' 'tensorflow-numpy' Loop "
        'is timed beside ours by bench/seed_speed.py.')
  if r['precision'] not in PRECISIONS:
    raise ValueError(f'precision must be one of {PRECISIONS}, got '
                     f'{r["precision"]!r}')
  if not isinstance(r['data_parallel'], bool):
    raise ValueError('data_parallel must be True or False, got '
                     f'{r["data_parallel"]!r}')
  if (not isinstance(r['loss_scale_period'], int)
      or isinstance(r['loss_scale_period'], bool)
      or r['loss_scale_period'] <= 0):
    raise ValueError('loss_scale_period must be a positive int, got '
                     f'{r["loss_scale_period"]!r}')


def resolve_steps(r: Mapping[str, Any], n_train: int) -> tuple[int, tuple[int, ...]]:
  """Turns epochs into steps for a training split of `n_train` images.

  Returns:
    (steps, milestone_steps): total steps and the steps at which the learning
    rate is multiplied by `lr_decay`.
  """
  steps_per_epoch = -(-n_train // r['batch_size'])  # ceil
  if r['steps'] is not None:
    steps = int(r['steps'])
    if r['epochs'] is not None and r['lr_milestones']:
      # An explicit step count scales the epoch milestones with it, so a short
      # run keeps the shape of the paper's schedule.
      scale = steps / (r['epochs'] * steps_per_epoch)
      milestones = tuple(int(round(m * steps_per_epoch * scale))
                         for m in r['lr_milestones'])
    else:
      milestones = tuple(int(m) for m in r['lr_milestones'])
  else:
    steps = r['epochs'] * steps_per_epoch
    milestones = tuple(m * steps_per_epoch for m in r['lr_milestones'])
  if steps <= 0:
    raise ValueError(f'steps must be > 0, got {steps}')
  return steps, milestones
