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
import dataclasses
import json
import os
from typing import Any, Optional, Union

# A folder or file name as the public functions take it.
PathLike = Union[str, 'os.PathLike[str]']

from wrn_trax import recipes
from wrn_trax import runio

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

STATUSES = ('done', 'diverged', 'failed', 'interrupted', 'running')


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
    if not isinstance(d, dict) or d.get('status') not in STATUSES:
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

  Raises runio.CorruptFileError naming the file if it is unreadable.
  """
  path = summary_path(workdir)
  d = runio.read_json_or_none(path)
  return None if d is None else Summary.from_dict(d, path)


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
    if old is not None and old.status == 'failed':
      return old
  summary = Summary(status='failed', reason=reason, **fields)
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


def check_same_run(old: dict[str, Any], new: dict[str, Any], workdir: PathLike) -> None:
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
