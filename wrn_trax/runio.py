"""Reading and writing the run folder: atomic JSON, JSON lines, checkpoints.

A kill at any moment must leave every file either as it was or complete:
JSON files are written to a temp file and renamed; metrics.jsonl is appended
line by line and a torn last line is ignored when read.
"""
import contextlib
import gzip
import json
import os
import pickle
import sys
import tempfile
import types
import warnings


def write_json(path, obj):
  """Writes `obj` as JSON to `path` atomically (temp file + rename)."""
  write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_default) + '\n')


def read_json(path):
  with open(path) as f:
    return json.load(f)


def read_json_or_none(path):
  try:
    return read_json(path)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


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


def write_atomic(path, write):
  """Calls write(binary file) on a temp file beside `path`, then renames it.

  Readers never see a half-written file, and a failed write leaves the old
  one in place. Returns `path` as a string.
  """
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(path),
                             suffix='.tmp')
  try:
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


class UntrustedPickleError(pickle.UnpicklingError):
  """A pickle asked for something a checkpoint never holds."""


class _RestrictedUnpickler(pickle.Unpickler):

  def __init__(self, f, path):
    super().__init__(f)
    self._path = path

  def find_class(self, module, name):
    if (module, name) in _ALLOWED_GLOBALS:
      return super().find_class(module, name)
    raise UntrustedPickleError(
        f'{self._path}: refusing to load {module}.{name}; a trax checkpoint '
        'holds only numpy arrays, numbers, strings, dicts, lists and '
        'trax.shapes.ShapeDtype. Delete the file if you did not write it.')


def load_checkpoint_dict(path):
  """Reads trax's model.pkl.gz with the restricted unpickler."""
  with gzip.open(path, 'rb') as f:
    return _RestrictedUnpickler(f, path).load()


def _unpickle_from_file(file_path, gzip=False):  # pylint: disable=redefined-outer-name
  if gzip:
    return load_checkpoint_dict(file_path)
  with open(file_path, 'rb') as f:
    return _RestrictedUnpickler(f, file_path).load()


@contextlib.contextmanager
def restricted_checkpoints():
  """Makes trax's Loop read checkpoints through the restricted unpickler."""
  from trax.supervised import training  # pylint: disable=g-import-not-at-top
  original = training.unpickle_from_file
  training.unpickle_from_file = _unpickle_from_file
  try:
    yield
  finally:
    training.unpickle_from_file = original


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
