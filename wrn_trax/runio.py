"""Reading and writing the run folder: atomic JSON, JSON lines, checkpoints.

A kill at any moment must leave every file either as it was or complete:
JSON files are written to a temp file and renamed; metrics.jsonl is appended
line by line and a torn last line is ignored when read.

One process at a time trains a run folder: `lock_run_folder` holds an OS file
lock on `<workdir>/.lock` for the whole session, which the kernel releases when
the process ends, even by kill -9. A file that cannot be read (garbage JSON, a
truncated checkpoint) raises `CorruptFileError`, which names the file and says
how to continue; nothing is written or deleted on the way.
"""
import contextlib
import datetime
import gzip
import json
import os
import pickle
import socket
import sys
import tempfile
import types
import warnings
import zlib

from wrn_trax import _pickle

try:
  import fcntl  # pylint: disable=g-import-not-at-top
except ImportError:  # Windows: run folders are not locked there.
  fcntl = None

LOCK_FILE = '.lock'


def __getattr__(name):
  # FINAL_STATUSES (the statuses after which a run folder is never trained
  # again) is defined in wrn_trax.record, which imports this module.
  if name == 'FINAL_STATUSES':
    from wrn_trax import record  # pylint: disable=g-import-not-at-top
    return record.FINAL_STATUSES
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


class RunFolderError(ValueError):
  """A run folder cannot be used as it is; the message says what to do."""


class CorruptFileError(RunFolderError):
  """A file of a run folder is truncated, garbage or missing.

  Attributes:
    path: the file.
    reason: what went wrong when reading it.
  """

  def __init__(self, path, reason, advice=None):
    self.path = os.fspath(path)
    self.reason = reason
    name = os.path.basename(self.path)
    folder = os.path.dirname(self.path) or '.'
    if advice is None:
      advice = _advice(name)
    super().__init__(f'{name} in {folder} is truncated or unreadable '
                     f'({reason}); {advice}')


def _advice(name):
  if name == 'model.pkl.gz':
    return ('continue by deleting it (the run restarts from step 0 in that '
            'folder) or train into another workdir')
  if name.startswith('model.'):
    return ('continue by deleting model.pkl.gz (the run restarts from step 0 '
            'in that folder) or train into another workdir')
  if name == 'config.json':
    return ('restore it, or train into another workdir (deleting the folder '
            'starts the run again)')
  if name == 'summary.json':
    return ('delete it to continue: training resumes from the last '
            'checkpoint and writes it again')
  return 'restore or delete it to continue'


class RunFolderBusyError(RunFolderError):
  """Another process holds the run folder's lock.

  Attributes:
    workdir: the run folder.
    holder: dict(pid, host, since) of the holder, or None if it has not
      written them yet.
  """

  def __init__(self, workdir, holder=None):
    self.workdir = os.fspath(workdir)
    self.holder = holder
    if holder:
      who = (f'pid {holder.get("pid")} on {holder.get("host")}, since '
             f'{holder.get("since")}')
    else:
      who = 'a process that has not written its pid yet'
    super().__init__(
        f'{self.workdir} is being trained by another process ({who}); wait '
        'for it to finish, or train into another workdir. The lock is freed '
        'when that process ends, even if it is killed.')


def write_json(path, obj):
  """Writes `obj` as JSON to `path` atomically (temp file + rename)."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + '\n')


def read_json(path):
  """The parsed JSON of `path`.

  Raises:
    FileNotFoundError: there is no such file.
    CorruptFileError: the file is not JSON (it names the file and says how
      to continue).
  """
  try:
    with open(path, 'rb') as f:
      return json.loads(f.read().decode('utf-8'))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CorruptFileError(path, f'not JSON: {e}') from None
  except IsADirectoryError:
    raise CorruptFileError(path, 'a folder, not a file') from None


def read_json_object(path):
  """The JSON object of `path`, as config.json and summary.json hold.

  Raises:
    FileNotFoundError: there is no such file.
    CorruptFileError: the file is not JSON, or JSON but not an object (it
      names the file and says how to continue).
  """
  obj = read_json(path)
  if not isinstance(obj, dict):
    raise CorruptFileError(path, f'a JSON {type(obj).__name__}, not an object')
  return obj


def read_json_or_none(path):
  """Like `read_json`, but None where there is no such file."""
  try:
    return read_json(path)
  except FileNotFoundError:
    return None


def finished_summary(workdir):
  """`record.finished_summary` as a dict (kept by its old name).

  The summary of a run folder whose run is over ('done' or 'diverged');
  None if the folder has no summary.json or its run may go on. Raises
  CorruptFileError for a garbage summary.json.
  """
  from wrn_trax import record  # pylint: disable=g-import-not-at-top
  summary = record.finished_summary(workdir)
  return None if summary is None else summary.to_dict()


def read_jsonl(path):
  """The rows of a JSON-lines file; [] if there is none.

  Training appends one line per logged step, so a process killed mid-write
  leaves a truncated last line: it is dropped silently. An unparseable line
  elsewhere is dropped with a warning.
  """
  try:
    with open(path, encoding='utf-8', errors='replace') as f:
      lines = [line for line in f.read().splitlines() if line.strip()]
  except FileNotFoundError:
    return []
  rows = []
  for i, line in enumerate(lines):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      if i != len(lines) - 1:
        warnings.warn(f'{path}: skipping unparsable line {i + 1}')
  return rows


def write_jsonl(path, rows):
  """Replaces a JSON-lines file atomically."""
  write_text(path, ''.join(_line(r) for r in rows))


def append_jsonl(path, rows):
  """Appends rows, flushed and synced, so a kill loses at most a torn line."""
  if not rows:
    return
  with open(path, 'a') as f:
    f.write(''.join(_line(r) for r in rows))
    f.flush()
    os.fsync(f.fileno())


def _line(row):
  return json.dumps(row, sort_keys=True, default=_default) + '\n'


def _default(x):
  if hasattr(x, 'tolist'):
    return x.tolist()
  if isinstance(x, tuple):
    return list(x)
  raise TypeError(f'not JSON serialisable: {type(x).__name__}')


def _umask():
  """The process's umask, read without changing it where Linux allows."""
  try:
    with open('/proc/self/status', encoding='ascii') as f:
      for line in f:
        if line.startswith('Umask:'):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe)
  os.umask(mask)
  return mask


def file_mode(path):
  """The mode a file written at `path` gets: that of the file it replaces,
  else what `open()` would give a new one (0o666 less the umask: 0o644 under
  the usual 022), so teammates and web servers can read a shared run root.
  `tempfile.mkstemp` alone would give 0o600."""
  try:
    return os.stat(path).st_mode & 0o777
  except OSError:
    return 0o666 & ~_umask()


def write_atomic(path, write):
  """Calls write(binary file) on a temp file beside `path`, then renames it.

  Readers never see a half-written file, and a failed write leaves the old
  one in place. The file gets the mode `file_mode(path)` says (the umask is
  honoured, as for a file opened for writing). Returns `path` as a string.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  mode = file_mode(path)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path),
                             suffix='.tmp')
  try:
    os.fchmod(fd, mode)
    with os.fdopen(fd, 'wb') as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise
  return path


def write_text(path, text):
  """Writes `text` to `path` atomically (temp file + rename)."""
  return write_atomic(path, lambda f: f.write(text.encode('utf-8')))


# trax's model.pkl.gz is a pickle: a dict of the step, the history, flattened
# BatchNorm state and the input signature. Weights and optimizer slots live in
# separate .npy.gz files that trax reads with allow_pickle=False. A run folder
# copied from elsewhere is untrusted, so the pickle is read with an unpickler
# that builds only what that dict is made of.
_ALLOWED_GLOBALS = {
    ('numpy', 'dtype'),
    ('numpy', 'ndarray'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy.dtypes', 'Float32DType'),
    ('numpy.dtypes', 'Float64DType'),
    ('numpy.dtypes', 'Int32DType'),
    ('numpy.dtypes', 'Int64DType'),
    ('numpy.dtypes', 'UInt8DType'),
    ('numpy.dtypes', 'BoolDType'),
    ('trax.shapes', 'ShapeDtype'),
    # Rebuilds a jax array from a numpy one; its `fun` argument is itself
    # unpickled through find_class, so it can only be one of these globals.
    ('jax._src.array', '_reconstruct_array'),
    ('collections', 'OrderedDict'),
    ('collections', 'defaultdict'),
    ('builtins', 'list'),
    ('builtins', 'slice'),
}


class UntrustedPickleError(RunFolderError, pickle.UnpicklingError):
  """A pickle asked for something a checkpoint never holds."""


class _RestrictedUnpickler(_pickle.RestrictedUnpickler):
  """Reads trax's checkpoint pickle: only `_ALLOWED_GLOBALS`, as pickle would."""

  allowed = dict.fromkeys(_ALLOWED_GLOBALS)

  def refusal(self, module, name):
    return UntrustedPickleError(
        f'{self.path}: refusing to load {module}.{name}; a trax checkpoint '
        'holds only numpy arrays, numbers, strings, dicts, lists and '
        'trax.shapes.ShapeDtype. Delete the file if you did not write it.')


# What reading a truncated or garbage gzip, pickle or .npy file raises.
_READ_ERRORS = (EOFError, OSError, zlib.error, pickle.UnpicklingError,
                ValueError, TypeError, AttributeError, IndexError, KeyError,
                MemoryError)


def load_checkpoint_dict(path):
  """Reads trax's model.pkl.gz with the restricted unpickler.

  Raises:
    UntrustedPickleError: the pickle asks for something else.
    CorruptFileError: the file is truncated or not a checkpoint.
  """
  try:
    with gzip.open(path, 'rb') as f:
      d = _RestrictedUnpickler(f, path).load()
  except (UntrustedPickleError, FileNotFoundError):
    raise
  except _READ_ERRORS as e:
    raise CorruptFileError(path, _why(e)) from None
  if not isinstance(d, dict) or 'step' not in d:
    raise CorruptFileError(path, 'not a trax checkpoint: no step')
  return d


def _why(e):
  return f'{type(e).__name__}: {e}' if str(e) else type(e).__name__


def checkpoint_step(workdir, name='model'):
  """The step of trax's checkpoint in `workdir`; 0 if there is none.

  Reads only `<name>.pkl.gz` (small), with the restricted unpickler; raises
  CorruptFileError if it is truncated or unreadable.
  """
  path = os.path.join(workdir, name + '.pkl.gz')
  if not os.path.exists(path):
    return 0
  return _step(load_checkpoint_dict(path), path)


def _step(d, path):
  try:
    return int(d['step'])
  except (TypeError, ValueError):
    raise CorruptFileError(
        path, f'its step {d["step"]!r} is not a number') from None


def check_checkpoint(workdir, name='model'):
  """Checks that trax can restore the checkpoint in `workdir`; its step.

  Reads `<name>.pkl.gz` and streams its weight and optimizer-slot files to
  their end, which checks their gzip length and CRC (about a second per
  100 MB), so a truncated or missing file fails before anything is trained
  or written.

  Returns:
    The checkpoint's step; 0 if there is none.

  Raises:
    CorruptFileError: a checkpoint file is truncated, unreadable or missing.
  """
  pkl = os.path.join(workdir, name + '.pkl.gz')
  if not os.path.exists(pkl):
    return 0
  d = load_checkpoint_dict(pkl)
  step = _step(d, pkl)
  parts = []
  if isinstance(d.get('flat_weights'), int):
    parts.append(f'{name}.weights.npy.gz')
  if isinstance(d.get('slots_per_task'), int):
    parts.append(f'{name}.opt_slots0.npy.gz')
    i = 1
    while os.path.exists(os.path.join(workdir, f'{name}.opt_slots{i}.npy.gz')):
      parts.append(f'{name}.opt_slots{i}.npy.gz')
      i += 1
  for part in parts:
    path = os.path.join(workdir, part)
    try:
      with gzip.open(path, 'rb') as f:
        while f.read(1 << 22):
          pass
    except FileNotFoundError:
      raise CorruptFileError(path, f'missing beside {name}.pkl.gz') from None
    except _READ_ERRORS as e:
      raise CorruptFileError(path, _why(e)) from None
  return step


def _unpickle_from_file(file_path, gzip=False):  # pylint: disable=redefined-outer-name
  if gzip:
    return load_checkpoint_dict(file_path)
  try:
    with open(file_path, 'rb') as f:
      return _RestrictedUnpickler(f, file_path).load()
  except (UntrustedPickleError, FileNotFoundError):
    raise
  except _READ_ERRORS as e:
    raise CorruptFileError(file_path, _why(e)) from None


def _np_from_file(file_path, compresslevel=None):
  """trax.layers.np_from_file, but a truncated file raises, naming it.

  trax's own reads arrays until the first error, so a truncated file gives
  fewer arrays and a puzzling error far from the cause.
  """
  del compresslevel  # only for writing
  import numpy as np  # pylint: disable=g-import-not-at-top
  arrays = []
  try:
    with gzip.open(file_path, 'rb') as f:
      while f.peek(1):
        arrays.append(np.load(f, allow_pickle=False))
  except FileNotFoundError:
    raise CorruptFileError(file_path, 'missing') from None
  except _READ_ERRORS as e:
    raise CorruptFileError(file_path, _why(e)) from None
  return arrays


@contextlib.contextmanager
def restricted_checkpoints():
  """Makes trax's Loop read checkpoints through the restricted unpickler.

  Its weight and slot files are read strictly as well: a truncated or
  unreadable file raises CorruptFileError.
  """
  from wrn_trax import _compat  # pylint: disable=g-import-not-at-top
  with _compat.checkpoint_readers(_unpickle_from_file, _np_from_file):
    yield


class RunFolderLock:
  """One writer per run folder: an OS lock on `<workdir>/.lock`.

  `acquire` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on the lock file and
  writes the holder's pid, host and start time into it, or raises
  RunFolderBusyError naming the holder without writing anything. The kernel
  frees the lock when the holder's process ends, however it ends, so a
  kill -9 leaves no stale lock: the file may stay, but the next `acquire`
  takes it over. `release` removes the file (and the folder, if `acquire`
  made it and nothing else was written there).

  Where there are no such locks (Windows: no fcntl; a file system that
  refuses them) the folder is used unlocked, as before, with a warning for
  the file system case.
  """

  def __init__(self, workdir):
    self.workdir = os.fspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)
    self._fd = None
    self._made_folder = False

  @property
  def held(self):
    return self._fd is not None

  def acquire(self):
    """Takes the lock; raises RunFolderBusyError if another process has it."""
    if fcntl is None or self._fd is not None:
      return self
    if not os.path.isdir(self.workdir):
      os.makedirs(self.workdir, exist_ok=True)
      self._made_folder = True
    while True:
      try:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      except FileNotFoundError:  # the folder was removed meanwhile
        os.makedirs(self.workdir, exist_ok=True)
        continue
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise RunFolderBusyError(self.workdir, holder) from None
      except OSError as e:  # e.g. ENOLCK on a network file system
        os.close(fd)
        warnings.warn(f'{self.workdir}: the file system refuses file locks '
                      f'({e}); training without the one-writer check')
        return self
      # The previous holder removes the file before it lets go, so a file
      # opened just before that is no longer the lock file: open it again.
      try:
        current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        current = False
      if current:
        break
      os.close(fd)
    since = datetime.datetime.now(datetime.timezone.utc)
    holder = dict(pid=os.getpid(), host=socket.gethostname(),
                  since=since.isoformat(timespec='seconds').replace('+00:00',
                                                                    'Z'))
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + '\n').encode('utf-8'), 0)
    self._fd = fd
    return self

  def release(self):
    """Removes the lock file and lets go of the lock."""
    if self._fd is None:
      return
    with contextlib.suppress(OSError):
      os.remove(self.path)  # while still holding it: see acquire
    os.close(self._fd)
    self._fd = None
    if self._made_folder:
      with contextlib.suppress(OSError):
        os.rmdir(self.workdir)  # only if empty: nothing was written there

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()


def _read_holder(fd):
  try:
    data = os.pread(fd, 4096, 0)
    holder = json.loads(data.decode('utf-8'))
    return holder if isinstance(holder, dict) else None
  except (OSError, ValueError):
    return None


def lock_run_folder(workdir):
  """`with lock_run_folder(workdir):` trains `workdir` alone (see RunFolderLock)."""
  return RunFolderLock(workdir)


def make_callable(module_name, fn):
  """Lets `wrn_trax.<module>(...)` call `fn`, the module's main function.

  `wrn_trax.train` and `wrn_trax.sweep` are both a module (with helpers such
  as `train.evaluate`) and the function users call; a module whose class has
  `__call__` is both without a second name to remember.
  """
  module = sys.modules[module_name]

  class _CallableModule(types.ModuleType):
    __call__ = staticmethod(fn)

  module.__class__ = _CallableModule
