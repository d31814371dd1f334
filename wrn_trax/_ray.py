"""Sweep members as Ray tasks that outlive the loss of a node.

`sweep(executor='ray')` hands its members to `run_members`, which

* checks first that the run root is one storage for every node that may run
  a member (`check_shared_root`): the driver writes a random token into
  `<root>/.ray-sweep-<token>/root-check` and a task pinned to each alive node
  reads it back. A node that cannot see it stops the sweep with
  `RootNotSharedError` before anything trains;
* submits each member with Ray's `max_retries` for system failures only (a
  dead node, a killed worker process; `retry_exceptions=False`). A member's
  own errors (a bad config, a divergence) never reach Ray: the member
  records them as a 'failed' or 'diverged' summary, as it does locally. A
  retried member trains its run folder again, so it resumes from the last
  checkpoint there: a lost node costs at most one checkpoint interval;
* collects results with `ray.wait` as members end, prints each one, and
  rewrites `<root>/sweep.csv` whenever a member starts, is retried or ends
  (members not finished are 'pending', 'running' or 'retrying').

Each attempt of a member appends one JSON line (node, host, pid, the
checkpoint step it starts from) to `<root>/.ray-sweep-<token>/<i>.jsonl`;
the driver reads these files and Ray's list of alive nodes to see that a
member's node is lost and when its retry starts. The folder is removed when
the sweep ends.

A retry may start while the lost attempt's process still holds the run
folder's lock (`runio.RunFolderLock`: a flock, freed by the kernel when its
holder dies, or by an NFS server when the holder's lease runs out). The
retry waits for the lock (`LOCK_WAIT_S`) instead of writing beside it, and
reports the member as 'running' elsewhere if it is still held then.
"""
import json
import logging
import os
import re
import secrets
import socket
import time

from wrn_trax import record
from wrn_trax import runio

STATE_PREFIX = '.ray-sweep-'
MARKER = 'root-check'
# How long the shared-root check waits for every node's answer.
CHECK_TIMEOUT_S = 120.0
# How long a retried member waits for the lost attempt's lock to be freed.
LOCK_WAIT_S = 300.0
# How often the driver looks at the attempt records and the alive nodes.
POLL_S = 1.0


class RootNotSharedError(ValueError):
  """Some node that may run a member does not see the run root's files."""


def check_max_retries(max_retries):
  """`sweep`'s max_retries, checked: a whole number >= 0."""
  if (isinstance(max_retries, bool) or not isinstance(max_retries, int) or
      max_retries < 0):
    raise ValueError(
        f'max_retries must be a whole number >= 0 (the times a member whose '
        f'node or worker is lost is started again), got {max_retries!r}')
  return max_retries


def init_kwargs(verbose):
  """`ray.init` arguments: Ray's own logs stay out of the way unless asked.

  verbose >= 2 forwards the workers' and raylets' output to this process
  and shows Ray's INFO lines; otherwise only Ray's warnings reach it (the
  members' logs stay in Ray's session folder, e.g.
  /tmp/ray/session_latest/logs).
  """
  loud = verbose is not True and verbose >= 2
  return dict(include_dashboard=False, log_to_driver=loud,
              configure_logging=True,
              logging_level=logging.INFO if loud else logging.WARNING)


def new_state_dir(root):
  """A fresh `<root>/.ray-sweep-<token>` folder; (path, token)."""
  token = secrets.token_hex(8)
  state_dir = os.path.join(os.path.abspath(root), STATE_PREFIX + token)
  os.makedirs(state_dir)
  runio.write_text(os.path.join(state_dir, MARKER), token)
  return state_dir, token


def _marker_reader():
  """The check task: what this node finds at the marker's path.

  Built in a closure so that Ray sends it by value: the worker imports
  nothing of wrn_trax (nor jax) to run it.
  """

  def read_marker(path):
    # pylint: disable=g-import-not-at-top,import-outside-toplevel,reimported,redefined-outer-name
    import os
    import socket
    import ray
    found = dict(host=socket.gethostname(),
                 node_id=ray.get_runtime_context().get_node_id())
    try:
      with open(path, encoding='utf-8') as f:
        found['token'] = f.read().strip()
    except OSError as e:
      found['error'] = f'{type(e).__name__}: {e.strerror or e}'
      found['root_exists'] = os.path.isdir(os.path.dirname(
          os.path.dirname(path)))
    return found

  return read_marker


def _fits(resources, options):
  need = dict(CPU=options.get('num_cpus', 1) or 0,
              GPU=options.get('num_gpus', 0) or 0)
  return all(resources.get(k, 0) >= v for k, v in need.items() if v)


def _node_name(node):
  """'10.0.0.3 (id 1a2b3c4d)' for a `ray.nodes()` entry."""
  return (f'{node.get("NodeManagerAddress", "?")} '
          f'(id {node.get("NodeID", "?")[:8]})')


def check_shared_root(ray, root, state_dir, token, options,
                      timeout_s=CHECK_TIMEOUT_S):
  """Refuses a run root that some node able to run a member cannot see.

  Args:
    ray: the `ray` module, initialised.
    root: the sweep's run root (named in the error).
    state_dir: the folder of `new_state_dir`, whose marker holds `token`.
    token: the random token the marker holds.
    options: a member task's Ray options (nodes without the resources a
      member asks for never run one and are not asked).
    timeout_s: how long to wait for the nodes' answers.

  Returns:
    The number of nodes checked.

  Raises:
    RootNotSharedError: a node finds no marker there, another one, or does
      not answer in time; the message names the root, the nodes and the fix.
  """
  # pylint: disable=g-import-not-at-top
  from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
  marker = os.path.join(state_dir, MARKER)
  nodes = [n for n in ray.nodes()
           if n.get('Alive') and _fits(n.get('Resources', {}), options)]
  if not nodes:  # no node fits a member: Ray says so when one is submitted
    return 0
  read = ray.remote(num_cpus=0, max_retries=0)(_marker_reader())
  refs = {read.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
      n['NodeID'], soft=False)).remote(marker): n for n in nodes}
  ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
  problems = []
  for ref in ready:
    node = refs[ref]
    try:
      found = ray.get(ref)
    except ray.exceptions.RayError as e:
      if not any(n['NodeID'] == node['NodeID'] and n.get('Alive')
                 for n in ray.nodes()):
        continue  # the node is gone: it will run nothing
      problems.append(f'{_node_name(node)}: the check failed there '
                      f'({type(e).__name__})')
      continue
    if found.get('token') == token:
      continue
    host = found.get('host', '?')
    if 'error' in found:
      seen = ('no such folder there' if not found.get('root_exists')
              else 'the folder there lacks the marker')
      problems.append(f'{_node_name(node)} on host {host}: {seen} '
                      f'({found["error"]})')
    else:
      problems.append(f'{_node_name(node)} on host {host}: a different '
                      'marker there')
  for ref in late:
    ray.cancel(ref, force=True)
    problems.append(f'{_node_name(refs[ref])}: no answer in {timeout_s:g} s')
  if problems:
    raise RootNotSharedError(
        f'the run root {os.path.abspath(root)} is not the same storage on '
        f'every Ray node that may run a member: the sweep wrote {marker} '
        f'and read it back on each node; ' + '; '.join(problems) + '. A '
        'member trains in its run folder under the root, and one retried '
        'after its node is lost resumes from the checkpoint there, so every '
        'node must see the same files: put the root on a shared file system '
        '(NFS or similar, with file locks) mounted at the same path on every '
        'node, and pass that path as root; or run on one machine '
        "(executor='local').")
  return len(nodes)


def record_attempt(state_dir, index, workdir):
  """Appends this attempt of member `index` to its record; its number (1..).

  The record is `<state_dir>/<index>.jsonl`, one line per attempt: node id,
  host, pid, start time and the checkpoint step the attempt starts from.
  """
  import ray  # pylint: disable=g-import-not-at-top
  path = os.path.join(state_dir, f'{index}.jsonl')
  attempt = len(runio.read_jsonl(path)) + 1
  try:
    step = runio.checkpoint_step(workdir)
  except (runio.RunFolderError, OSError):
    step = None
  runio.append_jsonl(path, [dict(
      attempt=attempt, node_id=ray.get_runtime_context().get_node_id(),
      host=socket.gethostname(), pid=os.getpid(), time=time.time(),
      checkpoint_step=step)])
  return attempt


def read_attempts(state_dir, index):
  """The attempt records of member `index` (see `record_attempt`)."""
  return runio.read_jsonl(os.path.join(state_dir, f'{index}.jsonl'))


def wait_for_run_folder(workdir, timeout_s=LOCK_WAIT_S, poll_s=0.5):
  """Waits until no process holds `workdir`'s lock; True if free in time.

  A retried member calls this first: its lost attempt's process may still
  hold the lock (a flock) for a moment (a worker that has not yet noticed
  its node is gone) or until an NFS server's lease on a dead client runs
  out. Taking the lock and letting it go at once writes nothing but the
  lock file, which `release` removes again.
  """
  deadline = time.time() + timeout_s
  while True:
    try:
      runio.RunFolderLock(workdir).acquire().release()
      return True
    except runio.RunFolderBusyError:
      if time.time() >= deadline:
        return False
      time.sleep(poll_s)


def member_task(run_member_abs, lock_wait_s=LOCK_WAIT_S):
  """The function each member's Ray task runs: checks, records, trains.

  `run_member_abs(cwd, member, verbose)` trains the member (`sweep`'s
  `_run_member_abs`). Before it, the task checks that it sees the root's
  marker (a node that joined after `check_shared_root` may not), records
  its attempt, and, if it is a retry, waits for the lost attempt's lock.
  """

  def task(cwd, member, verbose, ticket):
    workdir = os.path.join(cwd, member['workdir'])
    state_dir = ticket['state_dir']
    try:
      with open(os.path.join(state_dir, MARKER), encoding='utf-8') as f:
        seen = f.read().strip()
    except OSError:
      seen = None
    if seen != ticket['token']:
      return dict(status=record.FAILED, reason=(
          f'RootNotSharedError: the run root {ticket["root"]} is not the '
          f'sweep\'s storage on host {socket.gethostname()} (no marker '
          f'{os.path.join(state_dir, MARKER)} there); mount the shared file '
          'system at the same path on every node'))
    attempt = record_attempt(state_dir, ticket['index'], workdir)
    if attempt > 1 and not wait_for_run_folder(workdir, lock_wait_s):
      holder = _holder(workdir)
      return dict(status=record.RUNNING, reason=(
          f'running elsewhere: retry {attempt - 1} found {workdir} still '
          f'locked after {lock_wait_s:g} s ({holder}); its lost attempt may '
          'still be training it: rerun the sweep once it has stopped'))
    return run_member_abs(cwd, member, verbose)

  return task


def _holder(workdir):
  try:
    holder = json.loads(open(os.path.join(workdir, runio.LOCK_FILE)).read())
    return f'pid {holder.get("pid")} on {holder.get("host")}'
  except (OSError, ValueError, AttributeError):
    return 'holder unknown'


class _Member:
  """What the driver knows of one member while the sweep runs."""

  def __init__(self, index, workdir):
    self.index = index
    self.workdir = workdir
    self.name = os.path.basename(workdir)
    self.attempts = []      # records read from its attempt file
    self.lost_node = None   # the node id of an attempt that was lost
    self.step = 0           # the last step its metrics logged
    self.summary = None     # its result, once it has ended

  def placeholder(self, max_retries):
    """The sweep.csv row of a member still going: status and reason."""
    if not self.attempts:
      return dict(status='pending', reason='waiting for a free node')
    last = self.attempts[-1]
    step = self.step
    if self.lost_node is not None:
      return dict(status='retrying', step=step, reason=(
          f'node {last["host"]} (id {last["node_id"][:8]}) lost; retry '
          f'{len(self.attempts)}/{max_retries} waits for a node, resumes '
          f'from the checkpoint at step {_checkpoint(self.workdir)}'))
    retry = (f', retry {len(self.attempts) - 1}' if len(self.attempts) > 1
             else '')
    return dict(status='running', step=step, reason=(
        f'training on host {last["host"]} (node id {last["node_id"][:8]}'
        f'{retry})'))


def _last_step(workdir):
  rows = runio.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  return max((r.get('step', 0) for r in rows), default=0)


def _checkpoint(workdir):
  try:
    return runio.checkpoint_step(workdir)
  except (runio.RunFolderError, OSError):
    return '?'


def run_members(ray, remote, members, state_dir, token, root, cwd,
                max_retries, write_table, verbose, poll_s=POLL_S,
                dead_nodes=()):
  """Runs member tasks to their ends; their summaries, in member order.

  Args:
    ray: the `ray` module, initialised.
    remote: the member task (`member_task`) as a Ray remote function, with
      its resources, max_retries and retry_exceptions=False.
    members: (workdir, config) pairs, workdirs as the driver names them.
    state_dir, token: from `new_state_dir` (checked by `check_shared_root`).
    root: the sweep's run root (for messages).
    cwd: the driver's working directory (relative workdirs are under it).
    max_retries: the retries each member has (for messages).
    write_table(summaries): writes sweep.csv from one summary per member.
    verbose: print one line per member event.
    poll_s: how often to look at attempts and nodes between results.
    dead_nodes: ids of nodes known dead besides Ray's node table (see
      `RayletReports`); read again at each look.

  A member whose task fails for good (its node or worker lost more than
  `max_retries` times) gets a 'failed' summary saying so; its run folder
  keeps its last checkpoint for the next run of the sweep.
  """
  n = len(members)
  state = [_Member(i, os.path.join(cwd, w)) for i, (w, _) in enumerate(members)]
  refs = {}
  for i, (workdir, config) in enumerate(members):
    ticket = dict(state_dir=state_dir, token=token, index=i,
                  root=os.path.abspath(root))
    refs[remote.remote(cwd, dict(workdir=workdir, config=config), False,
                       ticket)] = i
  say = (lambda text: print(f'== sweep: {text}', flush=True)) if verbose else (
      lambda text: None)
  finished = 0

  def table():
    write_table([m.summary if m.summary is not None else
                 m.placeholder(max_retries) for m in state])

  table()
  pending = list(refs)
  while pending:
    done, pending = ray.wait(pending, num_returns=1, timeout=poll_s)
    changed = False
    for ref in done:
      m = state[refs[ref]]
      try:
        m.summary = ray.get(ref)
      except ray.exceptions.RayError as e:
        m.attempts = read_attempts(state_dir, m.index) or m.attempts
        m.summary = dict(status=record.FAILED, reason=(
            f'{type(e).__name__}: lost its node or worker '
            f'{len(m.attempts)} times (max_retries={max_retries}); rerun '
            f'the sweep to resume from its last checkpoint: '
            f'{str(e).splitlines()[0] if str(e) else ""}'))
      finished += 1
      changed = True
      say(f'member {m.index + 1}/{n} {m.summary.get("status")}: {m.name} '
          f'({finished}/{n} finished)')
    if pending:
      changed |= _follow(ray, [state[refs[r]] for r in pending], state_dir,
                         max_retries, say, n, dead_nodes)
    if changed:
      table()
  return [m.summary for m in state]


def _follow(ray, going, state_dir, max_retries, say, n, dead_nodes):
  """Reads new attempts and lost nodes of the members still going.

  Prints a line when a member's attempt is lost (its node dead, or its
  worker process) and when its retry starts. Returns whether anything
  changed.
  """
  changed = False
  alive = []

  def is_alive(node):
    if not alive:
      alive.append({x['NodeID'] for x in ray.nodes() if x.get('Alive')})
    return node in alive[0] and node not in dead_nodes

  for m in going:
    attempts = read_attempts(state_dir, m.index)
    newer = len(attempts) > len(m.attempts)
    if m.attempts and m.lost_node is None:
      last = m.attempts[-1]
      dead = not is_alive(last['node_id'])
      if dead or newer:  # a retry has started: the attempt before is lost
        m.lost_node = last['node_id']
        changed = True
        left = max_retries - (len(m.attempts) - 1)
        what = (f'retry {len(m.attempts)}/{max_retries} will resume it from '
                f'the checkpoint at step {_checkpoint(m.workdir)}' if left > 0
                else f'no retries left (max_retries={max_retries})')
        lost = ('its node' if dead else
                'its worker process (or its node, not yet known dead) on')
        say(f'member {m.index + 1}/{n} {m.name}: {lost} {last["host"]} '
            f'(id {last["node_id"][:8]}) was lost at step {m.step}; {what}')
      elif m.lost_node is None:
        m.step = _last_step(m.workdir)
    if newer:
      m.attempts = attempts
      m.lost_node = None
      changed = True
      last = attempts[-1]
      if len(attempts) > 1:
        say(f'member {m.index + 1}/{n} {m.name}: retry '
            f'{len(attempts) - 1}/{max_retries} started on host '
            f'{last["host"]} (node id {last["node_id"][:8]}), resuming from '
            f'the checkpoint at step {last.get("checkpoint_step")}')
  return changed


_DEAD_NODE = re.compile(r'node id:? ([0-9a-f]{56})', re.IGNORECASE)


class RayletReports:
  """Reads the raylets' error reports; keeps them off stdout unless verbose.

  A Ray driver prints every error a raylet publishes (a task to be retried
  because its node is dead, a node marked dead, each with a dump of the
  raylet's state: dozens of lines) whatever `log_to_driver` says.
  `run_members` prints one line for each such event, so while it runs
  (unless `verbose` >= 2) the reports are dropped here; they stay in Ray's
  logs. They are also the first news of a lost node (Ray's node table says
  so only after the node misses its health checks, tens of seconds later):
  the ids of the nodes they call dead are gathered in `dead_nodes`.

  Ray has no option for this, so the function that prints the reports
  (`ray._private.worker.print_to_stdstream`) is wrapped while the sweep
  runs, and left as it is by a Ray version that lacks it.
  """

  def __init__(self, verbose):
    self.quiet = not (verbose is not True and verbose >= 2)
    self.dead_nodes = set()
    self._module = self._original = None

  def _read(self, data):
    if not (isinstance(data, dict) and data.get('pid') == 'raylet'):
      return False
    for line in data.get('lines') or ():
      if 'dead' in str(line):
        self.dead_nodes.update(_DEAD_NODE.findall(str(line)))
    return True

  def __enter__(self):
    try:
      from ray._private import worker  # pylint: disable=g-import-not-at-top
    except ImportError:
      return self
    original = getattr(worker, 'print_to_stdstream', None)
    if original is None:
      return self

    def print_to_stdstream(data, *args, **kwargs):
      if self._read(data) and self.quiet:
        return None
      return original(data, *args, **kwargs)

    self._module, self._original = worker, original
    worker.print_to_stdstream = print_to_stdstream
    return self

  def __exit__(self, *exc):
    if self._module is not None:
      self._module.print_to_stdstream = self._original
