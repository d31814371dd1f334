"""Keeps the import-time chatter of TensorFlow, gym and trax out of our output.

Each source is silenced on its own, at the place it speaks; the user's own
warnings and logs are left alone.
"""
import contextlib
import io
import os
import sys
import tempfile
import warnings


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
  # trax 1.4.1 calls jax.host_count(), which jax 0.4.3x+ keeps as a warning
  # alias of jax.process_count(); see _compat for the calls that would break.
  warnings.filterwarnings(
      'ignore', message=r'jax\.process_count has been renamed',
      category=UserWarning)
  # trax writes checkpoints with gzip.GzipFile(fileobj=...) and no mode.
  warnings.filterwarnings(
      'ignore', message=r'GzipFile was opened for writing, but this will change',
      category=FutureWarning)
  # jax warns when trax asks for float64/int64 arrays with x64 disabled.
  warnings.filterwarnings(
      'ignore', message=r'Explicitly requested dtype .* requested in .* is not available',
      category=UserWarning)
