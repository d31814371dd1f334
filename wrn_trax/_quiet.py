"""Keeps the import-time chatter of TensorFlow, gym and trax out of our output.

Each source is silenced on its own, at the place it speaks; the user's own
warnings and logs are left alone.
"""
import contextlib
import inspect
import io
import os
import sys
import tempfile
import warnings

# Set to 1 to import trax with the stdlib's full inspect.stack() (for
# bench/import_time.py's "before" column).
SLOW_IMPORT_ENV = 'WRN_TRAX_SLOW_IMPORT'
_ASSERT_SHAPE = 'trax.layers.assert_shape'


@contextlib.contextmanager
def _capture_fd2():
  """Sends file descriptor 2 to a temp file; replays it if the body raises.

  TensorFlow's C++ runtime writes "I0000 ... port.cc" and "cudart_stub" lines
  through absl before its log level can be set, so only an fd-level redirect
  keeps them away. On an exception the captured text is written back so a
  failing import still explains itself.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode='w+b') as tmp:
    os.dup2(tmp.fileno(), 2)
    try:
      yield
    except BaseException:
      os.dup2(saved, 2)
      tmp.seek(0)
      sys.stderr.write(tmp.read().decode(errors='replace'))
      raise
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def _frame_info(frame, context):
  """inspect.FrameInfo for one frame, built as inspect.getouterframes does."""
  info = inspect.getframeinfo(frame, context)
  positions = getattr(info, 'positions', None)
  if positions is not None or sys.version_info >= (3, 11):
    return inspect.FrameInfo(frame, *info, positions=positions)
  return inspect.FrameInfo(frame, *info)  # Python 3.10: no positions


def _shallow_stack_for(full_stack):
  """An inspect.stack for trax's assert_shape that looks at two frames only.

  trax/layers/assert_shape.py runs `inspect.getframeinfo(inspect.stack()[1][0])`
  each time `@assert_shape`, `AssertFunction` or `AssertShape` is used
  (~65 times while trax imports itself). `inspect.stack()` builds a FrameInfo
  for every frame up to the interpreter, and each of those looks its module
  up in `sys.modules` and reads its source: 24-33 s of the import. assert_shape
  uses entry [1] alone (its caller's frame, for "Defined at FILE:LINE"), so
  for calls from that module this returns the same first two FrameInfos,
  built the same way, and nothing deeper. Any other caller gets the stdlib's.
  """

  def stack(context=1):
    frame = sys._getframe(1)  # pylint: disable=protected-access
    if frame.f_globals.get('__name__') != _ASSERT_SHAPE:
      return full_stack(context)
    infos = []
    while frame is not None and len(infos) < 2:
      infos.append(_frame_info(frame, context))
      frame = frame.f_back
    return infos

  stack.__wrapped__ = full_stack
  return stack


@contextlib.contextmanager
def shallow_inspect_stack():
  """Makes trax's assert_shape cheap for the body; restores inspect.stack."""
  if os.environ.get(SLOW_IMPORT_ENV, '') not in ('', '0'):
    yield
    return
  full_stack = inspect.stack
  inspect.stack = _shallow_stack_for(full_stack)
  try:
    yield
  finally:
    inspect.stack = full_stack


def import_trax():
  """Imports trax (once) with assert_shape's inspect.stack() made shallow."""
  if 'trax' in sys.modules:
    return
  with shallow_inspect_stack():
    import trax  # pylint: disable=unused-import,g-import-not-at-top


def silence_imports():
  """Imports TF and gym quietly and filters trax's known warnings."""
  # Python-side TF logging (tf_logging) and the C++ logs after absl init.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  if 'tensorflow' not in sys.modules:
    with _capture_fd2():
      import tensorflow  # pylint: disable=unused-import,g-import-not-at-top
  # gym prints an "unmaintained" notice to sys.stderr on import; trax.rl
  # imports gym, so trax does too.
  if 'gym' not in sys.modules:
    with contextlib.redirect_stderr(io.StringIO()):
      import gym  # pylint: disable=unused-import,g-import-not-at-top
  add_warning_filters()
  import_trax()


# The known warnings, each named by category and by the module that the
# warning is attributed to (warnings' `module` regex is matched against the
# module of the frame at the warning's stacklevel), with only the start of the
# message that every jax version shares. setup.cfg's pytest `filterwarnings`
# names the same three, since pytest applies its own inside tests.
KNOWN_WARNINGS = (
    # trax 1.4.1 calls jax.host_count() (trax/supervised/training.py). jax
    # 0.4.30-0.9.0 warn "jax.host_count has been renamed to
    # jax.process_count" attributed to trax's line; jax >= 0.9.1 warn
    # "jax.process_count has been renamed ..." attributed to
    # jax._src.xla_bridge.
    (UserWarning, r'(trax|jax)\.', r'jax\.\w+ has been renamed'),
    # trax asks for int64 zeros (trax/layers/normalization.py) with jax's
    # x64 off; jax truncates them to int32, which is what trax uses anyway.
    (UserWarning, r'trax\.', r'Explicitly requested dtype'),
    # trax writes checkpoints with gzip.GzipFile(fileobj=...) and no mode
    # (trax/layers/base.py, trax/supervised/training.py).
    (FutureWarning, r'trax\.', r'GzipFile was opened for writing'),
)


def add_warning_filters():
  """Ignores the KNOWN_WARNINGS, and nothing else."""
  for category, module, message in KNOWN_WARNINGS:
    warnings.filterwarnings('ignore', message=message, category=category,
                            module=module)
