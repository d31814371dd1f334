"""Sweeps: the cross product of widths, depths, blocks, dropouts and seeds.

Every member is an ordinary `wrn_trax.train` run in its own folder under
`root`, named from its config, so rerunning a sweep skips finished members,
resumes partial ones from their last checkpoint and runs the rest.

`executor='local'` (no Ray needed): on a machine with GPUs, one member per
GPU at once, each in its own process that sees only its GPU
(CUDA_VISIBLE_DEVICES), or a share of one (`gpus_per_member=0.25`: four
members per GPU, each with its share of the GPU's memory); without a GPU,
one member after another in this process. `executor='ray'`: Ray tasks, one
accelerator (or share) each.
"""
import concurrent.futures
import itertools
import math
import numbers
import os
import queue
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from wrn_trax import _names
from wrn_trax import devices as devices_lib
from wrn_trax import live as live_lib
from wrn_trax import record
from wrn_trax import runio
from wrn_trax import train as train_lib

if TYPE_CHECKING:
  import pandas as pd

EXECUTORS = ('local', 'ray')
# The grid's names are read in `_names`, without trax (the command line checks
# them before importing it): FAMILIES, member_models(widen_factors, depths,
# blocks, family).
FAMILIES = _names.FAMILIES
member_models = _names.member_models
_nonempty = _names.nonempty

# A member given a share g < 1 of a GPU may use MEMORY_HEADROOM * g of the
# GPU's memory (XLA_PYTHON_CLIENT_MEM_FRACTION, see `member_env_vars`): 0.225
# for g = 0.25. The rest is room for what lies outside each process's XLA
# pool: a CUDA context and the cuDNN/cuBLAS handles, a few hundred MB per
# process.
MEMORY_HEADROOM = 0.9


def plan(widen_factors: Iterable[int] = (1, 2, 3, 4),
         depths: Optional[Iterable[int]] = None,
         blocks: Optional[Iterable[Union[str, Sequence[int]]]] = None,
         dropouts: Optional[Iterable[Optional[float]]] = None,
         seeds: Iterable[int] = (0,), family: str = 'stock',
         dataset: str = 'cifar10', recipe: str = 'notebook',
         steps: Optional[int] = None, root: str = 'runs',
         data_dir: Optional[str] = None,
         **overrides: Any) -> list[tuple[str, record.RunConfig]]:
  """The members of a sweep as (workdir, config) pairs, all checked.

  Each config is `train.make_config`'s, built and checked once here; the
  member trains it through `train.train_config`. The workdir is the run's
  folder under `root` (or the folder an older version named it, see
  `train.default_workdir`).

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
    workdir = train_lib.default_workdir(config, root)
    old = runio.read_json_or_none(os.path.join(workdir, 'config.json'))
    if old is not None:
      train_lib.check_same_run(old, config, workdir)
    members.append((workdir, config))
  names = [w for w, _ in members]
  if len(set(names)) != len(names):
    raise ValueError('the grid names the same run twice; remove duplicates')
  return members


def sweep(widen_factors: Iterable[int] = (1, 2, 3, 4),
          depths: Optional[Iterable[int]] = None,
          blocks: Optional[Iterable[Union[str, Sequence[int]]]] = None,
          dropouts: Optional[Iterable[Optional[float]]] = None,
          seeds: Iterable[int] = (0,), family: str = 'stock',
          dataset: str = 'cifar10', recipe: str = 'notebook',
          steps: Optional[int] = None, root: str = 'runs',
          executor: str = 'local', address: Optional[str] = None,
          data_dir: Optional[str] = None, verbose: Union[bool, int] = True,
          gpus_per_member: Optional[float] = None,
          gpus: Optional[Iterable[Union[str, int]]] = None,
          max_retries: int = 3, live: Union[str, bool] = 'auto',
          **overrides: Any) -> 'pd.DataFrame':
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
    recipe: 'notebook' (the seed notebooks'; 'seed' is its old name),
      'paper' or 'smoke'.
    steps: training steps per member (default: the recipe's).
    root: the folder holding one run folder per member.
    executor: 'local' (one member per GPU at once, each in its own
      process; without GPUs one member at a time in this process) or
      'ray'.
    address: with executor='ray', the address of an existing Ray cluster
      (e.g. 'auto' or 'ray://head:10001'); None starts a local one.
    data_dir: where the data set lies.
    verbose: print progress and each member's log (with executor='ray',
      a line per member event; verbose=2 also shows Ray's own logs).
    gpus_per_member: the GPUs each member gets: a share 0 < g <= 1 of one
      GPU (0.25: four members per GPU) or a whole number of GPUs. A member
      with a share g < 1 may use `MEMORY_HEADROOM` * g of the GPU's memory
      (`member_env_vars`); with Ray it also asks for g of a CPU (so that a
      Colab's two vCPUs do not cap it at two members). None (the default):
      one GPU each where there are GPUs, else (Ray) one CPU each or (local)
      one member at a time in this process. A member given several GPUs
      still trains on one unless `data_parallel=True`.
    gpus: with executor='local', the GPU ids to run members on (as
      CUDA_VISIBLE_DEVICES numbers them); default `devices.local_gpus()`
      (CUDA_VISIBLE_DEVICES, else nvidia-smi); [] trains the members one
      after another in this process.
    max_retries: with executor='ray', how many times a member whose node
      or worker process is lost is started again; it resumes from its last
      checkpoint. A member's own errors are not retried.
    live: with `verbose`, print an estimate of the sweep's time on this
      device before training, then a progress line with the time left and
      every member's curves as they are logged: 'auto' (one figure updated
      in place in a notebook, text lines elsewhere), 'notebook', 'text', or
      False (see `wrn_trax.live`).
    **overrides: recipe fields for every member (batch_size, lr, ...).

  Returns:
    A pandas DataFrame, one row per member: config columns and summary
    columns (status, test_error, params, images_per_s, ...). The same table
    is written to `root/sweep.csv`.
  """
  if executor not in EXECUTORS:
    raise ValueError(f'unknown executor {executor!r}; choose one of {EXECUTORS}')
  gpus_per_member = check_gpus_per_member(gpus_per_member, executor)
  slots = None
  if executor == 'ray':
    _require_ray()
    if gpus is not None:
      raise ValueError("gpus= is for executor='local'; Ray places members "
                       'on the GPUs of its cluster')
    from wrn_trax import _ray  # pylint: disable=g-import-not-at-top
    max_retries = _ray.check_max_retries(max_retries)
  else:
    slots = local_slots(gpus_per_member, gpus)
  members = plan(widen_factors, depths, blocks, dropouts, seeds, family,
                 dataset, recipe, steps, root, data_dir, **overrides)
  if slots:
    devices_lib.check_driver_gpu_memory(slot_fractions(slots))
  elif executor == 'ray' and address in (None, 'auto', 'local'):
    devices_lib.check_driver_gpu_memory(
        _ray_local_fractions(gpus_per_member))
  os.makedirs(root, exist_ok=True)
  monitor = live_lib.start(members, live if verbose else False)
  try:
    if executor == 'local':
      summaries = _run_local(members, verbose, slots, root,
                             monitor.member_done)
    else:
      summaries = _run_ray(members, address, verbose, gpus_per_member, root,
                           max_retries)
  finally:
    monitor.close()
  frame = members_frame(members, summaries)
  _write_csv(frame, os.path.join(root, 'sweep.csv'))
  return frame


def _run_member(member, verbose):
  """Trains one member; a failure is recorded, not raised.

  A member that another process is training (its folder is locked) gets
  status 'running' (reason 'running elsewhere: ...'), and one whose folder
  holds an unreadable file gets 'failed' with the file named; neither folder
  is written to.
  """
  try:
    return train_lib.train_config(member['config'], member['workdir'],
                                  verbose)
  except runio.RunFolderBusyError as e:
    if verbose:
      print(f'{member["workdir"]}: running elsewhere, skipped: {e}')
    return dict(status=record.RUNNING, reason=f'running elsewhere: {e}')
  except runio.RunFolderError as e:
    if verbose:
      print(f'{member["workdir"]}: failed: {e}')
    return dict(status=record.FAILED, reason=f'{type(e).__name__}: {e}')
  except Exception as e:  # pylint: disable=broad-except
    # The session's own 'failed' summary (with its step) if it wrote one;
    # else (it failed before training, e.g. on the data) one is written.
    summary = record.write_failed_summary(
        member['workdir'], f'{type(e).__name__}: {e}',
        keep_existing=True).to_dict()
    if verbose:
      print(f'{member["workdir"]}: failed: {summary["reason"]}')
    return summary


def _run_local(members, verbose, slots=None, root='runs',
               member_done=lambda i, summary: None):
  """Trains the members here, one after another, or in `slots` at once."""
  if slots:
    return _run_local_processes(members, verbose, slots, root)
  summaries, durations = [], []
  for i, (workdir, config) in enumerate(members):
    if verbose:
      eta = ''
      if durations:
        left = (sum(durations) / len(durations)) * (len(members) - i)
        eta = f', ETA {_hms(left)}'
      print(f'== sweep: member {i + 1}/{len(members)} '
            f'({i} done{eta}): {os.path.basename(workdir)}', flush=True)
    t0 = time.time()
    summaries.append(_run_member(dict(workdir=workdir, config=config),
                                 verbose))
    durations.append(time.time() - t0)
    member_done(i, summaries[-1])
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


def check_gpus_per_member(gpus_per_member: Optional[float], executor: str
                          ) -> Optional[float]:
  """`sweep`'s gpus_per_member, checked: None, a float in (0, 1] or an int.

  Raises ValueError for anything else (0, a negative number, 1.5, a string,
  a bool). Both executors take it (the local one checks it against the
  machine's GPUs in `local_slots`).
  """
  g = gpus_per_member
  if g is None:
    return None
  if (isinstance(g, bool) or not isinstance(g, numbers.Real) or
      not math.isfinite(g) or g <= 0 or (g > 1 and g != int(g))):
    raise ValueError(
        f'gpus_per_member must be a share of one GPU (0 < g <= 1, e.g. 0.25 '
        f'for four members per GPU) or a whole number of GPUs, got {g!r}')
  del executor  # both executors take it
  return float(g) if g < 1 else int(g)


# ------------------------------------------- local: one process per GPU ----


def local_slots(gpus_per_member: Optional[float] = None,
                gpus: Optional[Iterable[Union[str, int]]] = None
                ) -> list[dict[str, str]]:
  """Where the local executor runs members: one env-var dict per slot.

  A slot is a place for one member at a time: a GPU (the default), a share
  of one (g < 1: round(1 / g) slots per GPU, each with the memory cap of
  `member_env_vars`) or a group of g GPUs (whole g; GPUs left over stay
  idle). Slots alternate between GPUs, so the first members spread over
  all of them.

  Args:
    gpus_per_member: checked by `check_gpus_per_member`, or None (1).
    gpus: GPU ids (str or int); default `devices.local_gpus()`.

  Returns:
    A list of dicts of environment variables (CUDA_VISIBLE_DEVICES and, for
    a share, XLA_PYTHON_CLIENT_MEM_FRACTION); [] where there is no GPU:
    the members then train one after another in this process.

  Raises:
    ValueError: gpus_per_member given without GPUs, or more GPUs per member
      than there are.
  """
  ids: list[str] = (devices_lib.local_gpus() if gpus is None
                    else [str(g) for g in gpus])
  g = gpus_per_member
  if not ids:
    if g is not None:
      raise ValueError(
          f'gpus_per_member={g:g} but this machine shows no GPU to the local '
          'executor (CUDA_VISIBLE_DEVICES, nvidia-smi); leave it out to train '
          'the members one after another here, or pass gpus=[...]')
    return []
  if g is None or g == 1:
    return [{'CUDA_VISIBLE_DEVICES': gpu} for gpu in ids]
  if g < 1:
    per_gpu = max(1, int(round(1 / g)))
    env = member_env_vars(g)
    return [dict(env, CUDA_VISIBLE_DEVICES=gpu)
            for _ in range(per_gpu) for gpu in ids]
  n = int(g)  # a whole number of GPUs (check_gpus_per_member)
  if n > len(ids):
    raise ValueError(f'gpus_per_member={g} but the local executor has '
                     f'{len(ids)} GPU(s): {",".join(ids)}')
  return [{'CUDA_VISIBLE_DEVICES': ','.join(ids[i:i + n])}
          for i in range(0, len(ids) - n + 1, n)]


# Where a local sweep keeps each member process's spec, result and log.
MEMBERS_DIR = '.members'


def _member_files(root, workdir):
  base = os.path.join(root, MEMBERS_DIR, os.path.basename(workdir))
  return base + '.spec.json', base + '.result.json', base + '.log'


def _child_env(slot, root):
  """The environment of a member process: ours, its slot's, the cache's."""
  env = dict(os.environ)
  env.update(slot)
  cache = devices_lib.compilation_cache_dir(root)
  if cache:
    env.setdefault('JAX_COMPILATION_CACHE_DIR', cache)
  # The child imports this wrn_trax, wherever it was imported from.
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env['PYTHONPATH'] = os.pathsep.join(
      p for p in (here, env.get('PYTHONPATH')) if p)
  env['PYTHONUNBUFFERED'] = '1'
  return env


def _launch_member(index, member, slot, root, verbose):
  """Trains one member in a new Python process with `slot`'s variables.

  The member's output goes to `root`/.members/<run>.log; it writes its
  summary (and what it saw: its CUDA_VISIBLE_DEVICES, memory cap, pid and
  start and end times) to <run>.result.json. A process that dies without
  one (killed, out of host memory) gets a 'failed' summary naming the log.

  Returns:
    The member's summary (a dict).
  """
  del index, verbose
  spec_path, result_path, log_path = _member_files(root, member['workdir'])
  os.makedirs(os.path.dirname(spec_path), exist_ok=True)
  if os.path.exists(result_path):
    os.remove(result_path)
  runio.write_json(spec_path, dict(workdir=member['workdir'],
                                   config=member['config'],
                                   result=result_path))
  with open(log_path, 'w') as log:
    proc = subprocess.run(
        [sys.executable, '-m', 'wrn_trax._member', spec_path],
        env=_child_env(slot, root), stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, check=False)
  result = runio.read_json_or_none(result_path)
  if result is None:
    return record.write_failed_summary(
        member['workdir'],
        f'the member process exited with status {proc.returncode} before '
        f'writing its result; see {log_path}', keep_existing=True).to_dict()
  return result['summary']


def _run_local_processes(members, verbose, slots, root):
  """Runs the members in processes, one per slot at a time (`local_slots`).

  The driver (this process) only starts members and waits: it trains
  nothing and needs no GPU memory.
  """
  free = queue.Queue()
  for slot in slots:
    free.put(slot)
  summaries = [None] * len(members)
  done = []
  t0 = time.time()
  if verbose:
    where = sorted({s['CUDA_VISIBLE_DEVICES'] for s in slots})
    print(f'== sweep: {len(members)} members, up to {len(slots)} at once on '
          f'GPU(s) {", ".join(where)} (logs in '
          f'{os.path.join(root, MEMBERS_DIR)})', flush=True)

  def job(i):
    workdir, config = members[i]
    slot = free.get()
    try:
      if verbose:
        print(f'== sweep: member {i + 1}/{len(members)} started on GPU '
              f'{slot["CUDA_VISIBLE_DEVICES"]}: {os.path.basename(workdir)}',
              flush=True)
      summary = _launch_member(i, dict(workdir=workdir, config=config), slot,
                               root, verbose)
    finally:
      free.put(slot)
    summaries[i] = summary
    done.append(i)
    if verbose:
      print(f'== sweep: member {i + 1}/{len(members)} '
            f'{summary.get("status")} ({len(done)}/{len(members)} done, '
            f'{_hms(time.time() - t0)}): {os.path.basename(workdir)}',
            flush=True)

  with concurrent.futures.ThreadPoolExecutor(len(slots)) as pool:
    for future in [pool.submit(job, i) for i in range(len(members))]:
      future.result()
  return summaries


def _gpu_position(gpu_id, environ=None):
  """Where GPU `gpu_id` (a child's CUDA_VISIBLE_DEVICES entry) sits among
  this process's GPUs, or None where this process does not see it."""
  env = os.environ if environ is None else environ
  visible = env.get('CUDA_VISIBLE_DEVICES')
  if visible is None:
    return int(gpu_id) if str(gpu_id).isdigit() else None
  ids = devices_lib.local_gpus({'CUDA_VISIBLE_DEVICES': visible})
  return ids.index(str(gpu_id)) if str(gpu_id) in ids else None


def _slot_fraction(slot, environ=None):
  env = os.environ if environ is None else environ
  value = slot.get('XLA_PYTHON_CLIENT_MEM_FRACTION',
                   env.get('XLA_PYTHON_CLIENT_MEM_FRACTION'))
  try:
    return float(value) if value else devices_lib.JAX_DEFAULT_FRACTION
  except ValueError:
    return devices_lib.JAX_DEFAULT_FRACTION


def slot_fractions(slots, environ=None):
  """{this process's GPU position: the memory fraction members take there}.

  The members of `local_slots` on one GPU run at once, so their shares add
  up (four of 0.225); `devices.check_driver_gpu_memory` reads this.
  """
  out = {}
  for slot in slots:
    share = _slot_fraction(slot, environ)
    for gpu in slot['CUDA_VISIBLE_DEVICES'].split(','):
      position = _gpu_position(gpu.strip(), environ)
      if position is not None:
        out[position] = out.get(position, 0.0) + share
  return out


def _ray_local_fractions(gpus_per_member, environ=None):
  """`slot_fractions` for Ray members on this machine: every GPU it sees."""
  n = len(devices_lib.local_gpus(environ))
  if gpus_per_member is not None and gpus_per_member < 1:
    per_gpu = max(1, int(round(1 / gpus_per_member)))
    share = per_gpu * float(
        member_env_vars(gpus_per_member)['XLA_PYTHON_CLIENT_MEM_FRACTION'])
  else:
    share = _slot_fraction({}, environ)
  return {i: share for i in range(n)}


def member_env_vars(gpus_per_member):
  """The environment variables a Ray member process starts with.

  Ray's GPU shares are bookkeeping only: four tasks of 0.25 GPU share one
  GPU with nothing keeping each to a quarter of it. jax, left alone,
  preallocates 75% of the memory of the GPU it sees, so the second member
  on a GPU would find too little memory. A member given a share g < 1
  therefore gets XLA_PYTHON_CLIENT_MEM_FRACTION = `MEMORY_HEADROOM` * g
  (0.225 for g = 0.25), a cap on its XLA memory pool that holds whether the
  pool is preallocated (jax's default) or grown on demand.

  XLA_PYTHON_CLIENT_PREALLOCATE=false alone would not do: it lifts no cap
  (each member could still grow to 75% of the GPU), and XLA's allocator
  keeps what it has grown to, so one member's peak would take memory
  another member needs and make that member fail at some later step,
  depending on the others' timing. With the cap each member has a fixed
  budget: one that needs more than its share runs out of memory in its own
  process, whatever its neighbours do, and a preallocated pool costs no
  allocation time after the start.

  The variables are set through Ray's runtime_env, so Ray starts the member's
  worker process with them, before anything (jax included) is imported
  there; jax reads them when it creates its GPU client. Ray sets
  CUDA_VISIBLE_DEVICES for the task itself.

  Args:
    gpus_per_member: a share checked by `check_gpus_per_member`, or None.

  Returns:
    A dict of str to str; empty for None and for whole GPUs (a member that
    has its GPUs to itself keeps jax's defaults, as without the option).
  """
  if gpus_per_member is None or gpus_per_member >= 1:
    return {}
  fraction = MEMORY_HEADROOM * gpus_per_member
  return {'XLA_PYTHON_CLIENT_MEM_FRACTION': f'{fraction:.4g}'}


def _largest_node_gpus(nodes):
  """The most GPUs one alive node of `ray.nodes()` has (a task's limit)."""
  return max([n.get('Resources', {}).get('GPU', 0) for n in nodes
              if n.get('Alive', True)] or [0])


def _warn_if_this_process_holds_gpus():
  """Warns where this process's jax may hold most of a GPU's memory.

  Importing `wrn_trax.sweep` imports jax (trax needs it), and on a GPU
  machine jax then preallocates 75% of every GPU's memory in this process,
  the driver, unless XLA_PYTHON_CLIENT_PREALLOCATE is false here. Members
  sharing those GPUs would not fit beside it.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE', '').lower() in (
      'false', '0'):
    return
  if any(d.platform != 'cpu' for d in jax.local_devices()):
    warnings.warn(
        'this process (the sweep driver) sees a GPU and jax may have '
        'preallocated 75% of its memory here, which members sharing it '
        'would lack; set XLA_PYTHON_CLIENT_PREALLOCATE=false before '
        'importing wrn_trax.sweep (in a notebook: %env '
        'XLA_PYTHON_CLIENT_PREALLOCATE=false in its first cell), or run '
        '`wrn-trax sweep --gpus-per-member ...`, which does so')


def _ray_options(gpus_per_member, n_gpus):
  """The Ray resources and runtime_env of a member task."""
  if gpus_per_member is None:  # as before the option: one GPU or one CPU
    return dict(num_gpus=1 if n_gpus else 0, num_cpus=1)
  options = dict(num_gpus=gpus_per_member, num_cpus=min(1, gpus_per_member))
  env_vars = member_env_vars(gpus_per_member)
  if env_vars:
    options['runtime_env'] = {'env_vars': env_vars}
  return options


def _run_ray(members, address, verbose, gpus_per_member=None, root='runs',
             max_retries=3):
  """Runs members as Ray tasks, one accelerator (or share) each.

  Without `gpus_per_member`, one GPU each where there are any, else one CPU
  each; with it, see `sweep`. The run root is checked to be shared by every
  node first, and a member whose node or worker is lost is retried (up to
  `max_retries` times) and resumes from its last checkpoint: see
  `wrn_trax._ray`.
  """
  import ray  # pylint: disable=g-import-not-at-top
  from wrn_trax import _ray  # pylint: disable=g-import-not-at-top
  started = not ray.is_initialized()
  if started:
    ray.init(address=address, **_ray.init_kwargs(verbose))
  state_dir = None
  try:
    n_gpus = int(ray.cluster_resources().get('GPU', 0))
    if gpus_per_member is not None:
      largest = _largest_node_gpus(ray.nodes())
      if largest < gpus_per_member:
        raise ValueError(
            f'gpus_per_member={gpus_per_member} but no node of the Ray '
            f'cluster has that many GPUs (the most on one node: {largest:g})')
      if gpus_per_member < 1:
        _warn_if_this_process_holds_gpus()
    options = _ray_options(gpus_per_member, n_gpus)
    state_dir, token = _ray.new_state_dir(root)
    n_nodes = _ray.check_shared_root(ray, root, state_dir, token, options)
    remote = ray.remote(max_retries=max_retries, retry_exceptions=False,
                        **options)(_ray.member_task(_run_member_abs))
    if verbose:
      share = ('' if gpus_per_member is None else
               f', {gpus_per_member:g} GPU per member')
      print(f'== sweep: {len(members)} members on Ray ({n_gpus} GPUs in the '
            f'cluster{share}; run root shared by its {n_nodes} nodes; '
            f'{max_retries} retries each for a lost node)', flush=True)
    csv = os.path.join(root, 'sweep.csv')
    with _ray.RayletReports(verbose) as reports:
      return _ray.run_members(
          ray, remote, members, state_dir, token, root, os.getcwd(),
          max_retries, lambda s: _write_csv(members_frame(members, s), csv),
          verbose, dead_nodes=reports.dead_nodes)
  finally:
    if state_dir is not None:
      shutil.rmtree(state_dir, ignore_errors=True)
    if started:
      ray.shutdown()


def _run_member_abs(cwd, member, verbose):
  """A Ray task: relative run folders are taken from the driver's cwd.

  `member` is dict(workdir, config) of one planned member.
  """
  config = member['config']
  if config.get('data_dir'):  # volatile: the run stays the same run
    config = dict(config, data_dir=os.path.join(cwd, config['data_dir']))
  return _run_member(dict(workdir=os.path.join(cwd, member['workdir']),
                          config=config), verbose)


def members_frame(members: Sequence[tuple[str, Mapping[str, Any]]],
                  summaries: Sequence[Mapping[str, Any]]) -> 'pd.DataFrame':
  """One row per member, in member order, as `report.load_runs` makes rows.

  The config is the run folder's config.json, or, for a member that failed
  before writing one, the config it was planned with; the summary is what
  the member returned (status 'running' for one trained elsewhere).
  """
  from wrn_trax.report import io as report_io  # pylint: disable=g-import-not-at-top
  rows = []
  for (workdir, planned), summary in zip(members, summaries):
    try:
      config = runio.read_json_or_none(os.path.join(workdir, 'config.json'))
    except runio.CorruptFileError:  # reported in the member's summary
      config = None
    rows.append(report_io.run_row(planned if config is None else config,
                                  summary, workdir))
  return report_io.runs_frame(rows, sort=False)


def _write_csv(frame, path):
  runio.write_text(path, frame.to_csv(index=False))


def _hms(seconds):
  seconds = int(seconds)
  return f'{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


runio.make_callable(__name__, sweep)
