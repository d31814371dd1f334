"""Sweeps: the cross product of widths, depths, blocks, dropouts and seeds.

Every member is an ordinary `wrn_trax.train` run in its own folder under
`root`, named from its config, so rerunning a sweep skips finished members,
resumes partial ones from their last checkpoint and runs the rest. Members run
one after another (`executor='local'`) or as Ray tasks, one accelerator each
(`executor='ray'`).
"""
import itertools
import os
import time

import pandas as pd

from wrn_trax import _names
from wrn_trax import runio
from wrn_trax import train as train_lib

EXECUTORS = ('local', 'ray')
# The grid's names are read in `_names`, without trax (the command line checks
# them before importing it): FAMILIES, member_models(widen_factors, depths,
# blocks, family).
FAMILIES = _names.FAMILIES
member_models = _names.member_models
_nonempty = _names.nonempty


def plan(widen_factors=(1, 2, 3, 4), depths=None, blocks=None, dropouts=None,
         seeds=(0,), family='stock', dataset='cifar10', recipe='seed',
         steps=None, root='runs', data_dir=None, **overrides):
  """The members of a sweep as (workdir, train kwargs) pairs, all checked.

  Raises ValueError before anything is trained for an empty or invalid grid,
  an unknown family or recipe, or a folder under `root` that holds a run of
  another config under a member's name.
  """
  names = member_models(widen_factors, depths, blocks, family)
  dropouts = _nonempty('dropouts', dropouts if dropouts is not None else [None])
  seeds = _nonempty('seeds', seeds)
  if family == 'stock' and any(p for p in dropouts):
    raise ValueError("stock WideResnet has no dropout; use family='paper'")
  members = []
  for name, p, s in itertools.product(names, dropouts, seeds):
    kw = dict(overrides)
    if p is not None:
      kw['dropout'] = p
    config = train_lib.make_config(name, dataset, recipe, steps, s, data_dir,
                                   **kw)
    workdir = os.path.join(root, config['run_name'])
    old = runio.read_json_or_none(os.path.join(workdir, 'config.json'))
    if old is not None:
      train_lib.check_same_run(old, config, workdir)
    members.append((workdir, dict(model=name, dataset=dataset, recipe=recipe,
                                  steps=steps, seed=s, data_dir=data_dir,
                                  workdir=workdir, **kw)))
  names = [w for w, _ in members]
  if len(set(names)) != len(names):
    raise ValueError('the grid names the same run twice; remove duplicates')
  return members


def sweep(widen_factors=(1, 2, 3, 4), depths=None, blocks=None, dropouts=None,
          seeds=(0,), family='stock', dataset='cifar10', recipe='seed',
          steps=None, root='runs', executor='local', address=None,
          data_dir=None, verbose=True, **overrides):
  """Trains every member of a grid and returns one row per run.

  The defaults are the seed study (stock trax WideResnet, k = 1..4, the seed
  notebooks' recipe on CIFAR-10), evaluated on the whole test split.

  Args:
    widen_factors: the k of each member.
    depths: network depths (default [22], trax's n_blocks=3).
    blocks: block types for family='paper', e.g. ['B(3,3)', (3, 1, 3)].
    dropouts: dropout rates for family='paper' (default: the recipe's).
    seeds: one run per seed; the report gives median, mean and std over them.
    family: 'stock' (trax's WideResnet) or 'paper' (our WRN-n-k).
    dataset: a name of `wrn_trax.data.DATASETS`.
    recipe: 'seed', 'paper' or 'smoke'.
    steps: training steps per member (default: the recipe's).
    root: the folder holding one run folder per member.
    executor: 'local' (one member at a time) or 'ray'.
    address: with executor='ray', the address of an existing Ray cluster
      (e.g. 'auto' or 'ray://head:10001'); None starts a local one.
    data_dir: where the data set lies.
    verbose: print progress and each member's log.
    **overrides: recipe fields for every member (batch_size, lr, ...).

  Returns:
    A pandas DataFrame, one row per member: config columns and summary
    columns (status, test_error, params, images_per_s, ...). The same table
    is written to `root/sweep.csv`.
  """
  if executor not in EXECUTORS:
    raise ValueError(f'unknown executor {executor!r}; choose one of {EXECUTORS}')
  if executor == 'ray':
    _require_ray()
  members = plan(widen_factors, depths, blocks, dropouts, seeds, family,
                 dataset, recipe, steps, root, data_dir, **overrides)
  os.makedirs(root, exist_ok=True)
  if executor == 'local':
    summaries = _run_local(members, verbose)
  else:
    summaries = _run_ray(members, address, verbose)
  frame = members_frame(members, summaries)
  _write_csv(frame, os.path.join(root, 'sweep.csv'))
  return frame


def _run_member(kwargs, verbose):
  """Trains one member; a failure is recorded, not raised.

  A member that another process is training (its folder is locked) gets
  status 'running' (reason 'running elsewhere: ...'), and one whose folder
  holds an unreadable file gets 'failed' with the file named; neither folder
  is written to.
  """
  try:
    return train_lib.train(verbose=verbose, **kwargs)
  except runio.RunFolderBusyError as e:
    if verbose:
      print(f'{kwargs["workdir"]}: running elsewhere, skipped: {e}')
    return dict(status='running', reason=f'running elsewhere: {e}')
  except runio.RunFolderError as e:
    if verbose:
      print(f'{kwargs["workdir"]}: failed: {e}')
    return dict(status='failed', reason=f'{type(e).__name__}: {e}')
  except Exception as e:  # pylint: disable=broad-except
    summary = runio.read_json_or_none(
        os.path.join(kwargs['workdir'], 'summary.json'))
    if summary is None or summary.get('status') != 'failed':
      summary = dict(status='failed', reason=f'{type(e).__name__}: {e}')
      runio.write_json(os.path.join(kwargs['workdir'], 'summary.json'),
                       summary)
    if verbose:
      print(f'{kwargs["workdir"]}: failed: {summary["reason"]}')
    return summary


def _run_local(members, verbose):
  summaries, durations = [], []
  for i, (workdir, kwargs) in enumerate(members):
    if verbose:
      eta = ''
      if durations:
        left = (sum(durations) / len(durations)) * (len(members) - i)
        eta = f', ETA {_hms(left)}'
      print(f'== sweep: member {i + 1}/{len(members)} '
            f'({i} done{eta}): {os.path.basename(workdir)}', flush=True)
    t0 = time.time()
    summaries.append(_run_member(kwargs, verbose))
    durations.append(time.time() - t0)
  if verbose:
    print(f'== sweep: {len(members)}/{len(members)} members done in '
          f'{_hms(sum(durations))}', flush=True)
  return summaries


def _require_ray():
  try:
    import ray  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    raise ImportError("executor='ray' needs Ray: pip install -e '.[ray]' "
                      "(or pip install 'ray>=2.9')") from e


def _run_ray(members, address, verbose):
  """Runs members as Ray tasks, one accelerator each where there are any."""
  import ray  # pylint: disable=g-import-not-at-top
  started = not ray.is_initialized()
  if started:
    ray.init(address=address, include_dashboard=False,
             log_to_driver=verbose, configure_logging=False)
  try:
    n_gpus = int(ray.cluster_resources().get('GPU', 0))
    remote = ray.remote(num_gpus=1 if n_gpus else 0, num_cpus=1,
                        max_retries=0)(_run_member_abs)
    cwd = os.getcwd()
    refs = [remote.remote(cwd, kwargs, False) for _, kwargs in members]
    if verbose:
      print(f'== sweep: {len(refs)} members on Ray '
            f'({n_gpus} GPUs in the cluster)', flush=True)
    summaries = []
    for i, ref in enumerate(refs):
      summaries.append(ray.get(ref))
      if verbose:
        print(f'== sweep: member {i + 1}/{len(refs)} '
              f'{summaries[-1].get("status")}: '
              f'{os.path.basename(members[i][0])}', flush=True)
    return summaries
  finally:
    if started:
      ray.shutdown()


def _run_member_abs(cwd, kwargs, verbose):
  """A Ray task: relative run folders are taken from the driver's cwd."""
  kwargs = dict(kwargs, workdir=os.path.join(cwd, kwargs['workdir']))
  if kwargs.get('data_dir'):
    kwargs['data_dir'] = os.path.join(cwd, kwargs['data_dir'])
  return _run_member(kwargs, verbose)


def members_frame(members, summaries):
  """One row per run: its config fields, then its summary fields.

  The config is the run folder's config.json, or, for a member that failed
  before writing one, the config it was planned with.
  """
  rows = []
  for (workdir, kwargs), summary in zip(members, summaries):
    try:
      config = runio.read_json_or_none(os.path.join(workdir, 'config.json'))
    except runio.CorruptFileError:  # reported in the member's summary
      config = None
    if config is None:
      config = train_lib.make_config(
          **{k: v for k, v in kwargs.items() if k != 'workdir'})
    row = {k: v for k, v in config.items()
           if not isinstance(v, (dict, list))}
    row['run'] = os.path.basename(workdir)
    row.update(summary)
    error = summary.get('test_error')
    row['error_pct'] = None if error is None else 100.0 * error
    running = summary.get('test_error_running_bn')
    row['error_pct_running_bn'] = None if running is None else 100.0 * running
    rows.append(row)
  return pd.DataFrame(rows)


def _write_csv(frame, path):
  runio.write_text(path, frame.to_csv(index=False))


def _hms(seconds):
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


runio.make_callable(__name__, sweep)
