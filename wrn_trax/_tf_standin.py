"""A minimal stand-in for TensorFlow, TFDS and TF Text where they are missing.

trax 1.4.1 imports `tensorflow`, `tensorflow_datasets` and `tensorflow_text`
when it is imported, although a jax-backed `training.Loop` on numpy batches
(everything `wrn_trax.train` runs) uses only a few of their pieces:
`tf.TensorShape` and `tf.DType` in `isinstance` checks, `tf.random.set_seed`,
`tf.io.gfile` for checkpoints, and TensorBoard's event files for the Loop's
summaries. A machine with jax but no TensorFlow (a bare CUDA image; TF alone
is 1.9 GB installed) can then still train, checkpoint and resume.

`install_if_missing()` registers the stand-in modules in `sys.modules` for
each of the three packages that is NOT installed, and for nothing else: a
real TensorFlow, even a broken one, is always the one imported. It must run
before trax is imported (`wrn_trax._compat` calls it first). `active()` says
which packages are stand-ins, for the run record.

What the stand-in provides is real, not a dummy: `tf.io.gfile` is the local
file system (a `GFile` is a Python file object, so it reports its real `mode`,
which `gzip.GzipFile(fileobj=...)` needs to write trax's checkpoints), and
the summaries are written by TensorBoard's own event writer (where
TensorBoard is missing too, they are dropped with one warning). Any other name is a placeholder that trax can
name at import and that raises a RuntimeError naming the missing piece and
the fix (install TensorFlow) when called: the TFDS loaders and the seed
notebooks' tensorflow-numpy backend need the real packages.
"""
import glob as _glob
import importlib.machinery
import importlib.util
import os
import shutil
import sys
import types
import warnings

# The packages this module can stand in for.
PACKAGES = ('tensorflow', 'tensorflow_datasets', 'tensorflow_text')

STANDIN_VERSION = '0.0+wrn_trax.standin'
_MARK = '_wrn_trax_standin'


def _installed(name):
  """True when `name` can be found on the path (without importing it)."""
  if name in sys.modules:
    return not getattr(sys.modules[name], _MARK, False)
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):  # a blocker on sys.meta_path, a bad spec
    return False


def active():
  """{package: 'real' | 'stand-in' | 'absent'} for TF, TFDS and TF Text.

  'absent': neither imported nor installed (the stand-in not installed yet).
  """
  out = {}
  for name in PACKAGES:
    mod = sys.modules.get(name)
    if mod is not None and getattr(mod, _MARK, False):
      out[name] = 'stand-in'
    elif mod is not None or _installed(name):
      out[name] = 'real'
    else:
      out[name] = 'absent'
  return out


def any_active():
  """True when any of the three packages is the stand-in in this process."""
  return 'stand-in' in active().values()


# ------------------------------------------------------------- the modules


def _message(name):
  top = name.split('.')[0]
  return (f'{name} is not provided: {top} is not installed and wrn_trax\'s '
          'stand-in (wrn_trax/_tf_standin.py) covers only what a jax-backed '
          f'trax Loop needs. Install it: pip install {top.replace("_", "-")}')


class _MissingMeta(type):
  """A placeholder for a piece the stand-in lacks.

  trax reads some TensorFlow names when its modules are imported (tables of
  `tf.nn` functions in its tensorflow-numpy backend) without using them on
  the jax backend. A placeholder can be named, nested and compared (it is a
  class, so `isinstance(x, placeholder)` is False); calling it raises a
  RuntimeError naming the piece and the fix.
  """

  def __getattr__(cls, attr):
    if attr.startswith('__'):
      raise AttributeError(attr)
    return _missing(f'{cls.standin_name}.{attr}')

  def __call__(cls, *args, **kwargs):
    raise RuntimeError(_message(cls.standin_name))

  def __repr__(cls):
    return f'<wrn_trax stand-in: {cls.standin_name} (missing)>'


def _missing(name):
  return _MissingMeta(name.rsplit('.', 1)[-1], (), dict(standin_name=name))


def _missing_attr(module_name):
  def __getattr__(attr):  # pylint: disable=invalid-name
    if attr.startswith('__'):
      raise AttributeError(attr)
    return _missing(f'{module_name}.{attr}')
  return __getattr__


def _module(name, attrs=None, package=True):
  mod = types.ModuleType(name, f'wrn_trax stand-in for {name} (not installed)')
  # A real file name: trax's assert_shape calls inspect.stack(), which reads
  # every frame's module file name.
  mod.__file__ = __file__
  mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=package)
  if package:
    mod.__path__ = []
  mod.__getattr__ = _missing_attr(name)
  setattr(mod, _MARK, True)
  for k, v in (attrs or {}).items():
    setattr(mod, k, v)
  return mod


class TensorShape:
  """tf.TensorShape, enough for `isinstance` and `as_list`."""

  def __init__(self, dims):
    self.dims = None if dims is None else [
        None if d is None else int(d) for d in dims]

  def as_list(self):
    if self.dims is None:
      raise ValueError('as_list() is not defined on an unknown TensorShape.')
    return list(self.dims)

  def __iter__(self):
    return iter(self.dims or ())

  def __len__(self):
    return len(self.dims or ())

  def __getitem__(self, i):
    return self.dims[i]

  def __eq__(self, other):
    return isinstance(other, TensorShape) and self.dims == other.dims

  def __repr__(self):
    return f'TensorShape({self.dims})'


class DType:
  """tf.DType, enough for `isinstance` and `as_numpy_dtype`."""

  def __init__(self, np_dtype):
    import numpy as np  # pylint: disable=g-import-not-at-top
    self.as_numpy_dtype = np.dtype(np_dtype).type
    self.name = np.dtype(np_dtype).name

  def __eq__(self, other):
    return isinstance(other, DType) and self.name == other.name

  def __hash__(self):
    return hash(self.name)

  def __repr__(self):
    return f'tf.{self.name}'


class _Seed:
  """tf.random: `set_seed` keeps the seed (nothing here draws from it)."""
  seed = None

  @classmethod
  def set_seed(cls, seed):
    cls.seed = seed


# ----------------------------------------------------------- tf.io.gfile


def GFile(name, mode='r'):  # pylint: disable=invalid-name
  """A local file object: its `mode` is the real one (gzip reads it)."""
  return open(os.fspath(name), mode)  # pylint: disable=unspecified-encoding


def exists(path):
  return os.path.exists(os.fspath(path))


def isdir(path):
  return os.path.isdir(os.fspath(path))


def makedirs(path):
  os.makedirs(os.fspath(path), exist_ok=True)


def mkdir(path):
  os.mkdir(os.fspath(path))


def listdir(path):
  return os.listdir(os.fspath(path))


def glob(pattern):
  return sorted(_glob.glob(os.fspath(pattern)))


def remove(path):
  os.remove(os.fspath(path))


def rmtree(path):
  shutil.rmtree(os.fspath(path))


def rename(src, dst, overwrite=False):
  """tf.io.gfile.rename: fails on an existing `dst` unless `overwrite`."""
  src, dst = os.fspath(src), os.fspath(dst)
  if not overwrite and os.path.exists(dst):
    raise FileExistsError(f'{dst} exists (rename with overwrite=False)')
  os.replace(src, dst)


def copy(src, dst, overwrite=False):
  src, dst = os.fspath(src), os.fspath(dst)
  if not overwrite and os.path.exists(dst):
    raise FileExistsError(f'{dst} exists (copy with overwrite=False)')
  shutil.copyfile(src, dst)


def walk(top, topdown=True, onerror=None):
  return os.walk(os.fspath(top), topdown=topdown, onerror=onerror)


def stat(path):
  return os.stat(os.fspath(path))


_GFILE = dict(GFile=GFile, exists=exists, isdir=isdir, makedirs=makedirs,
              mkdir=mkdir, listdir=listdir, glob=glob, remove=remove,
              rmtree=rmtree, rename=rename, copy=copy, walk=walk, stat=stat)


# ------------------------------------------------------ summaries (jaxboard)


def _tensorboard(module):
  """A TensorBoard module, or None (warned once) where it is not installed."""
  try:
    return importlib.import_module(module)
  except ImportError:
    if not _tensorboard.warned:
      _tensorboard.warned = True
      warnings.warn(
          'Neither TensorFlow nor TensorBoard is installed: the trax Loop\'s '
          'TensorBoard summaries are not written (metrics.jsonl in the run '
          'folder has the metrics). pip install tensorboard to get them.',
          RuntimeWarning, stacklevel=3)
    return None


_tensorboard.warned = False


class _DiscardMeta(type):
  def __getattr__(cls, attr):
    if attr.startswith('__'):
      raise AttributeError(attr)
    return _Discarded


class _Discarded(metaclass=_DiscardMeta):
  """A summary proto where TensorBoard is missing: takes anything, keeps
  nothing (`Summary(value=[Summary.Value(...)])` builds and is dropped)."""

  def __init__(self, *args, **kwargs):
    del args, kwargs


class EventFileWriter:
  """tensorflow's EventFileWriter(logdir, max_queue, flush_secs, suffix).

  TensorBoard's own writer underneath, imported on first use; where
  TensorBoard is missing too, events are dropped (warned once).
  """

  def __init__(self, logdir, max_queue=10, flush_secs=120,
               filename_suffix=None):
    self._logdir = logdir
    self._writer = None
    writer = _tensorboard('tensorboard.summary.writer.event_file_writer')
    if writer is not None:
      self._writer = writer.EventFileWriter(
          logdir, max_queue_size=max_queue, flush_secs=flush_secs,
          filename_suffix=filename_suffix or '')

  def add_event(self, event):
    if self._writer is not None:
      self._writer.add_event(event)

  def flush(self):
    if self._writer is not None:
      self._writer.flush()

  def close(self):
    if self._writer is not None:
      self._writer.close()

  def get_logdir(self):
    return self._logdir


class _LazyProtos(types.ModuleType):
  """A module whose attributes come from a TensorBoard proto module."""

  def __init__(self, name, source):
    super().__init__(name)
    self.__file__ = __file__
    self.__spec__ = importlib.machinery.ModuleSpec(name, None)
    self._source = source
    setattr(self, _MARK, True)

  def __getattr__(self, attr):
    if attr.startswith('__') or attr == '_source':
      raise AttributeError(attr)
    mod = _tensorboard(self._source)
    return _Discarded if mod is None else getattr(mod, attr)


def _make_tensor_proto(*args, **kwargs):
  tensor_util = _tensorboard('tensorboard.util.tensor_util')
  if tensor_util is None:
    return _Discarded()
  return tensor_util.make_tensor_proto(*args, **kwargs)


class _V1(types.ModuleType):
  """tf.compat.v1: the summary protos (jaxboard's) from TensorBoard's."""

  def __init__(self, name):
    super().__init__(name)
    self.__file__ = __file__
    self.__spec__ = importlib.machinery.ModuleSpec(name, None)
    setattr(self, _MARK, True)

  def __getattr__(self, attr):
    if attr in ('Summary', 'SummaryMetadata', 'SummaryDescription',
                'HistogramProto'):
      summary_pb2 = _tensorboard('tensorboard.compat.proto.summary_pb2')
      return _Discarded if summary_pb2 is None else getattr(summary_pb2, attr)
    return _missing_attr(self.__name__)(attr)


# ---------------------------------------------------------------- install


def _tensorflow_modules():
  """The stand-in modules of `tensorflow`, by full name."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  try:
    import ml_dtypes  # pylint: disable=g-import-not-at-top
    bfloat16 = DType(ml_dtypes.bfloat16)
  except ImportError:
    bfloat16 = None
  dtypes = {n: DType(getattr(np, n)) for n in (
      'float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64',
      'uint8', 'uint16', 'uint32', 'uint64', 'bool_', 'complex64',
      'complex128')}
  dtypes['bool'] = dtypes.pop('bool_')
  if bfloat16 is not None:
    dtypes['bfloat16'] = bfloat16
  gfile = _module('tensorflow.io.gfile', _GFILE, package=False)
  io_mod = _module('tensorflow.io', dict(gfile=gfile))
  random = _module('tensorflow.random', dict(set_seed=_Seed.set_seed),
                   package=False)
  config = _module('tensorflow.config', dict(
      # No TensorFlow, so no device of its own: hiding GPUs from it is a no-op.
      set_visible_devices=lambda devices, device_type=None: None,
      get_visible_devices=lambda device_type=None: [],
      list_physical_devices=lambda device_type=None: [],
      list_logical_devices=lambda device_type=None: []), package=False)
  # trax.tf_numpy (the tensorflow-numpy backend, imported by trax.fastmath)
  # star-imports this, names its `random` and reads four dtype helpers; the
  # backend itself cannot run without TensorFlow.
  tnp_random = _module('tensorflow.experimental.numpy.random',
                       package=False)
  tnp = _module('tensorflow.experimental.numpy',
                dict(__all__=[], random=tnp_random))
  np_dtypes = _module(
      'tensorflow.python.ops.numpy_ops.np_dtypes', dict(
          canonicalize_dtype=np.dtype,
          default_float_type=lambda: np.float32,
          is_allow_float64=lambda: False,
          set_allow_float64=lambda allow: None), package=False)
  numpy_ops = _module('tensorflow.python.ops.numpy_ops',
                      dict(np_dtypes=np_dtypes))
  ops = _module('tensorflow.python.ops', dict(numpy_ops=numpy_ops))
  experimental = _module('tensorflow.experimental', dict(numpy=tnp))
  v1 = _V1('tensorflow.compat.v1')
  common = dict(TensorShape=TensorShape, DType=DType, random=random,
                io=io_mod, config=config, experimental=experimental,
                make_tensor_proto=_make_tensor_proto,
                # trax's tensorflow-numpy backend registers its arrays with
                # TF when imported; nothing converts them without TF.
                register_tensor_conversion_function=lambda *a, **k: None,
                __version__=STANDIN_VERSION, **dtypes)
  v2 = _module('tensorflow.compat.v2', dict(common))
  compat = _module('tensorflow.compat', dict(v1=v1, v2=v2))
  event_pb2 = _LazyProtos('tensorflow.core.util.event_pb2',
                          'tensorboard.compat.proto.event_pb2')
  util = _module('tensorflow.core.util', dict(event_pb2=event_pb2))
  core = _module('tensorflow.core', dict(util=util))
  efw = _module('tensorflow.python.summary.writer.event_file_writer',
                dict(EventFileWriter=EventFileWriter), package=False)
  writer = _module('tensorflow.python.summary.writer',
                   dict(event_file_writer=efw))
  summary = _module('tensorflow.python.summary', dict(writer=writer))
  python = _module('tensorflow.python', dict(summary=summary, ops=ops))
  tf = _module('tensorflow', dict(common, compat=compat, core=core,
                                  python=python))
  mods = [tf, compat, v1, v2, io_mod, gfile, random, config, experimental,
          tnp, tnp_random, core, util, event_pb2, python, summary, writer,
          efw, ops, numpy_ops, np_dtypes]
  return {m.__name__: m for m in mods}


def _simple_modules(name):
  return {name: _module(name, dict(__version__=STANDIN_VERSION))}


def install_if_missing():
  """Registers the stand-in for each of TF, TFDS, TF Text not installed.

  Returns the names stood in for (empty where all three are installed).
  Idempotent. Call before trax is imported.
  """
  done = []
  for name in PACKAGES:
    mod = sys.modules.get(name)
    if mod is not None:
      if getattr(mod, _MARK, False):
        done.append(name)
      continue
    if _installed(name):
      continue
    mods = (_tensorflow_modules() if name == 'tensorflow' else
            _simple_modules(name))
    sys.modules.update(mods)
    done.append(name)
  return done
