"""The run record: what a run folder's config.json and summary.json hold.

One schema for the run's files, read by `train`, `sweep`, `report` and the
benchmarks (and light: it imports none of TensorFlow, trax or jax).

config.json   a flat JSON object: the run's identity (`IDENTITY_FIELDS`),
              every recipe field (`wrn_trax.recipes`), and the fields
              `train.resolve` adds once the data set and device are known
              (`RESOLVED_FIELDS`). `VOLATILE_FIELDS` may differ between two
              sessions of one run.
summary.json  a `Summary`: written once a session ends, 'done' or
              'diverged' by `train`, 'interrupted' by `train` after SIGTERM
              or Ctrl-C (a checkpoint was saved; rerunning resumes), 'failed'
              by `write_failed_summary` only.
"""
import collections.abc
import dataclasses
import json
import numbers
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Optional, TypedDict, Union

# A folder or file name as the public functions take it.
PathLike = Union[str, 'os.PathLike[str]']

from wrn_trax import recipes
from wrn_trax import runio

# The words a summary.json's status may hold, defined here only.
DONE = 'done'                # trained to its last step and evaluated
DIVERGED = 'diverged'        # stopped at a non-finite loss or weights
FAILED = 'failed'            # an exception ended the session; rerun resumes
INTERRUPTED = 'interrupted'  # SIGTERM or Ctrl-C; checkpoint saved, resumes
RUNNING = 'running'          # a sweep's view of a folder trained elsewhere
STATUSES = (DONE, DIVERGED, FAILED, INTERRUPTED, RUNNING)
# After these a run folder is never trained again.
FINAL_STATUSES = (DONE, DIVERGED)
# What `wrn_trax.report` calls a folder without a (readable) summary.json.
INCOMPLETE = 'incomplete'
# Runs that may go on: counted apart from done, diverged and failed ones.
UNFINISHED_STATUSES = (INCOMPLETE, RUNNING, INTERRUPTED)


class RunConfig(TypedDict):
  """config.json as `train.make_config` builds it, before any data is loaded.

  The run's identity (`IDENTITY_FIELDS`) and every recipe field
  (`wrn_trax.recipes.base`). `new_config` builds one and `check_config`
  checks one; code that reads a config reads it as this flat dict.
  """
  # Identity: who the run is.
  run_name: str
  model: str
  family: str                  # 'paper' or 'stock'
  depth: int
  widen_factor: int
  block: str                   # e.g. 'B(3,3)'
  blocks_per_group: int
  dataset: str
  recipe: str                  # canonical: 'notebook', not 'seed'
  seed: int
  data_dir: Optional[str]
  overrides: dict[str, Any]    # the recipe fields the caller changed
  # The recipe (wrn_trax.recipes.base says what each field means).
  optimizer: str
  lr: float
  weight_decay: float
  momentum: Optional[float]
  batch_size: int
  steps: Optional[int]         # an int once resolved
  epochs: Optional[int]
  lr_milestones: Sequence[float]
  lr_decay: float
  dropout: float
  preprocess: str
  augment: str
  eval_every: int
  eval_batches: int
  eval_bn: str
  precise_bn_batches: int
  checkpoint_every: int
  backend: str
  precision: str
  data_parallel: bool
  loss_scale_period: int


class ResolvedConfig(RunConfig):
  """config.json as written: a `RunConfig` plus what `train.resolve` adds
  once the data set and the device are known (`RESOLVED_FIELDS`)."""
  lr_milestone_steps: list[float]
  n_classes: int
  image_shape: list[int]
  n_train: int
  n_test: int
  versions: dict[str, Any]
  device: str
  n_devices: int
  bn_batch_per_device: int
  precision_used: str
  precision_reason: str


# Who the run is: set by `train.make_config` before anything is loaded.
IDENTITY_FIELDS = ('run_name', 'model', 'family', 'depth', 'widen_factor',
                   'block', 'blocks_per_group', 'dataset', 'recipe', 'seed',
                   'data_dir', 'overrides')

# Added by `train.resolve` once the data set and the device are known.
RESOLVED_FIELDS = ('lr_milestone_steps', 'n_classes', 'image_shape',
                   'n_train', 'n_test', 'versions', 'device', 'n_devices',
                   'bn_batch_per_device', 'precision_used', 'precision_reason')

# Fields that may differ between two sessions of one run without mixing runs
# (a resume on another machine, a moved data dir). 'precision_used' is what
# 'auto' chose on this session's device, and 'precision_reason' why.
VOLATILE_FIELDS = ('versions', 'device', 'n_devices', 'data_dir', 'run_name',
                   'verbose', 'precision_used', 'precision_reason',
                   'bn_batch_per_device')


class ConfigError(ValueError):
  """A config is not a `RunConfig` (or `ResolvedConfig`); says which field."""


def check_config(config: Any, schema: Any = RunConfig) -> Any:
  """`config` if it has exactly the fields of `schema`, each of its type.

  `schema` is `RunConfig` (what `train.make_config` returns) or
  `ResolvedConfig` (what `train.resolve` returns and config.json holds).
  Numbers are checked as Python's numeric tower has them (an int is a
  float; a bool is neither); lists and tuples are both sequences.

  Raises:
    ConfigError: naming the missing, unknown or mistyped fields, and how
      to build a config instead.
  """
  name = schema.__name__
  how = ('build configs with wrn_trax.train.make_config (and '
         'wrn_trax.train.resolve once the data set is loaded), not by hand')
  if not isinstance(config, dict):
    raise ConfigError(f'a {name} is a dict, got {type(config).__name__}; '
                      f'{how}')
  hints = typing.get_type_hints(schema)
  problems = []
  missing = [k for k in hints if k not in config]
  if missing:
    problems.append(f'missing field(s) {missing}')
  unknown = sorted(k for k in config if k not in hints)
  if unknown:
    problems.append(f'unknown field(s) {unknown}')
  for key, hint in hints.items():
    if key in config and not _is_a(config[key], hint):
      problems.append(f'{key} must be {_describe(hint)}, got '
                      f'{config[key]!r}')
  if problems:
    raise ConfigError(f'not a {name}: ' + '; '.join(problems) + f'; {how}')
  return config


def new_config(**fields: Any) -> RunConfig:
  """A `RunConfig` of `fields` (identity and recipe), checked."""
  config: RunConfig = check_config(dict(fields), RunConfig)
  return config


def resolved_config(config: RunConfig, **resolved: Any) -> ResolvedConfig:
  """`config` (a new dict) completed with the `RESOLVED_FIELDS`, checked.

  `resolved` may also change recipe fields that resolving settles (`steps`
  from `epochs`).
  """
  check_config(config, RunConfig)
  c: ResolvedConfig = check_config(dict(config, **resolved), ResolvedConfig)
  return c


def _is_a(value, hint):
  """Whether `value` is of the type `hint` (the forms RunConfig uses)."""
  if hint is Any:
    return True
  if hint is type(None):
    return value is None
  origin = typing.get_origin(hint)
  args = typing.get_args(hint)
  if origin in (Union, types.UnionType):
    return any(_is_a(value, a) for a in args)
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
  if hint is str:
    return isinstance(value, str)
  if origin in (list, tuple, collections.abc.Sequence):
    return (isinstance(value, (list, tuple))
            and all(_is_a(v, args[0]) for v in value))
  if origin is dict:
    return isinstance(value, dict) and all(
        _is_a(k, args[0]) and _is_a(v, args[1]) for k, v in value.items())
  raise TypeError(f'record: no check for the type {hint!r}')


def _describe(hint):
  origin = typing.get_origin(hint)
  args = typing.get_args(hint)
  if origin in (Union, types.UnionType):
    return ' or '.join(_describe(a) for a in args)
  if hint is type(None):
    return 'None'
  words = {bool: 'True or False', int: 'an int', float: 'a number',
           str: 'a string'}
  if hint in words:
    return words[hint]
  if origin in (list, tuple, collections.abc.Sequence):
    return f'a list of {_describe(args[0]).split(" ", 1)[-1]}s'
  if origin is dict:
    return 'a dict'
  return repr(hint)


@dataclasses.dataclass(frozen=True)
class Summary:
  """summary.json. Errors are fractions (0.25 = 25 %), on the test split."""
  status: str                  # one of STATUSES ('running': a sweep's view)
  reason: Optional[str] = None  # why it diverged, failed or stopped
  step: int = 0                # the last step trained
  steps: Optional[int] = None  # the steps the run was to train
  test_error: Optional[float] = None       # precise-BN statistics: headline
  test_loss: Optional[float] = None
  test_bn: Optional[str] = None            # how BatchNorm was normalised
  test_error_running_bn: Optional[float] = None  # trax's running averages
  test_loss_running_bn: Optional[float] = None
  eval_examples: int = 0       # test images counted (the whole split)
  best_eval_error: Optional[float] = None  # the cheap in-training eval
  best_eval_step: Optional[int] = None
  params: Optional[int] = None
  flops: Optional[int] = None  # forward pass of one image
  wall_seconds: Optional[float] = None
  median_step_seconds: Optional[float] = None
  images_per_s: Optional[float] = None
  peak_host_mb: Optional[float] = None
  peak_device_mb: Optional[float] = None  # XLA's peak of the process:
  peak_device_scope: Optional[str] = None  # 'run', or 'process: ...' where
                                           # earlier runs trained in it
  precision: Optional[str] = None  # what ran: 'auto' resolved
  loss_scale: Optional[float] = None  # float16 only
  skipped_steps: Optional[int] = None  # float16 only

  def to_dict(self):
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d, path=None):
    """A Summary from JSON; fields it lacks keep their defaults.

    Fields this version does not know (a newer writer) are dropped. Raises
    runio.CorruptFileError naming `path` if `d` is not an object with a
    known 'status'.
    """
    if not isinstance(d, dict):
      raise runio.CorruptFileError(
          path or 'summary.json', f'a JSON {type(d).__name__}, not an object')
    if d.get('status') not in STATUSES:
      raise runio.CorruptFileError(
          path or 'summary.json',
          f'not a run summary (an object with a status in {STATUSES})')
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})


# summary.json's fields in order, and those that hold text, not numbers.
SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(Summary))
SUMMARY_TEXT_FIELDS = ('status', 'reason', 'test_bn', 'precision',
                       'peak_device_scope')


def summary_path(workdir: PathLike) -> str:
  return os.path.join(workdir, 'summary.json')


def config_path(workdir: PathLike) -> str:
  return os.path.join(workdir, 'config.json')


def read_summary(workdir: PathLike) -> Optional['Summary']:
  """The Summary of a run folder, or None if it has no summary.json.

  The one reader of summary.json: `finished_summary`,
  `runio.finished_summary` and `wrn_trax.report.summary_row` read through
  it. Raises runio.CorruptFileError naming the file if it is unreadable or
  not a summary (no status of `STATUSES`).
  """
  path = summary_path(workdir)
  d = runio.read_json_or_none(path)
  return None if d is None else Summary.from_dict(d, path)


def finished_summary(workdir: PathLike) -> Optional['Summary']:
  """The Summary of a run folder whose run is over (`FINAL_STATUSES`).

  None if the folder has no summary.json or its run may go on ('failed',
  'interrupted'). Raises runio.CorruptFileError for an unreadable one.
  """
  summary = read_summary(workdir)
  if summary is not None and summary.status in FINAL_STATUSES:
    return summary
  return None


def write_summary(workdir: PathLike, summary: 'Summary') -> None:
  runio.write_json(summary_path(workdir), summary.to_dict())


def write_failed_summary(workdir: PathLike, reason: str, *, keep_existing: bool = False,
                         **fields: Any) -> 'Summary':
  """The one place a 'failed' summary.json is written; returns it.

  With `keep_existing`, a 'failed' summary already in the folder (written
  by the session that failed, with its step) is kept and returned instead.
  """
  if keep_existing:
    try:
      old = read_summary(workdir)
    except runio.CorruptFileError:
      old = None
    if old is not None and old.status == FAILED:
      return old
  summary = Summary(status=FAILED, reason=reason, **fields)
  write_summary(workdir, summary)
  return summary


def read_config(workdir: PathLike) -> Optional[dict[str, Any]]:
  """config.json of a run folder as a dict, or None if there is none.

  Raises runio.CorruptFileError naming the file if it is not a JSON object.
  """
  path = config_path(workdir)
  d = runio.read_json_or_none(path)
  if d is not None and not isinstance(d, dict):
    raise runio.CorruptFileError(path,
                                 f'a JSON {type(d).__name__}, not an object')
  return d


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
  """A config.json of an older version in today's terms (a new dict).

  The recipe's old name becomes its name ('seed' -> 'notebook'), so old and
  new runs of one setup compare and group as one.
  """
  config = dict(config)
  recipe = config.get('recipe')
  if isinstance(recipe, str):
    config['recipe'] = recipes.ALIASES.get(recipe, recipe)
  return config


def check_same_run(old: dict[str, Any], new: Mapping[str, Any],
                   workdir: PathLike) -> None:
  """Raises ValueError naming the fields in which two configs differ.

  `old` is what `workdir/config.json` holds; anything but a JSON object
  there raises runio.CorruptFileError naming that file.

  Compares the fields both configs have (less `VOLATILE_FIELDS`); a field
  that `new` leaves as None because it is resolved only after the data set
  is loaded ('steps' from 'epochs') is skipped. A field that `old` lacks
  was added to the recipes after that run was made (e.g.
  precise_bn_batches); the run keeps what it was made with.
  """
  if not isinstance(old, dict):  # JSON, but not what train() writes
    raise runio.CorruptFileError(config_path(workdir),
                                 f'a JSON {type(old).__name__}, not an object')
  old = upgrade_config(old)
  keys = (set(new) & set(old)) - set(VOLATILE_FIELDS)
  if not _asked_for_precision(old) and not _asked_for_precision(new):
    # The recipes' default precision was 'float32' before it became 'auto':
    # a run made with the default still resumes ('auto' picks float32 on
    # the CPU; precision_used records what each session ran).
    keys.discard('precision')
  diff = sorted(k for k in keys
                if not (k == 'steps' and new[k] is None)
                and _jsonable(old.get(k)) != _jsonable(new.get(k)))
  if diff:
    details = '; '.join(f'{k}: {old.get(k)!r} there, {new.get(k)!r} now'
                        for k in diff)
    raise ValueError(
        f'{workdir} holds a run of another config ({details}). Use another '
        'workdir for this config, or delete that folder to start it again.')


def _asked_for_precision(config):
  return 'precision' in (config.get('overrides') or {})


def _jsonable(x):
  return json.loads(json.dumps(x))
