"""Keeps the import-time chatter of TensorFlow, gym and trax out of our output.

Each source is silenced on its own, at the place it speaks; the user's own
warnings and logs are left alone. Nothing here patches trax or jax: the quick
trax import (a shallow `inspect.stack` while trax is imported) and every other
patch live in `_compat`, which calls `silence_imports` before importing trax.
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


# The TF_CPP_MIN_LOG_LEVEL `silence_imports` sets where the user set none:
# 2 hides INFO and WARNING and keeps ERROR (3 would keep FATAL only).
TF_CPP_MIN_LOG_LEVEL = '2'


def import_tensorflow_quietly():
  """`_tf.import_tensorflow` (TF, its GPUs hidden) with its C++ chatter dropped.

  Runs whether or not TF was imported before (the GPUs are hidden, or a
  `_tf.TensorFlowOnGpuWarning` says they could not be). That warning is
  issued after the fd-2 capture, so it reaches the user; TF's own Python
  warnings during the import are dropped with its C++ lines, as before.
  """
  from wrn_trax import _tf  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always', _tf.TensorFlowOnGpuWarning)
    with _capture_fd2():
      _tf.import_tensorflow()
  for w in caught:
    if issubclass(w.category, _tf.TensorFlowOnGpuWarning):
      warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def silence_imports():
  """Imports TF and gym quietly and filters trax's known warnings.

  Run before trax is imported (`_compat` imports trax right after).
  """
  # TF's C++ INFO and WARNING lines after the import. Not '3': jaxlib's C++
  # logging reads the same variable, and its ERROR lines (an out-of-memory
  # dump, a cuDNN failure) must stay visible.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', TF_CPP_MIN_LOG_LEVEL)
  import_tensorflow_quietly()
  # gym prints an "unmaintained" notice to sys.stderr on import; trax.rl
  # imports gym, so trax does too.
  if 'gym' not in sys.modules:
    with contextlib.redirect_stderr(io.StringIO()):
      import gym  # pylint: disable=unused-import,g-import-not-at-top
  add_warning_filters()


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
