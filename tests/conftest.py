"""Shared fixtures. Tests run offline on data they make or on `digits`."""
import os
import sys

import pytest

# Tests pin TF/jax to the CPU and keep XLA to the cores it is given.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# No persistent compilation cache in the tests' runs (wrn_trax.devices): each
# test compiles what it runs, as it did before the cache. Tests of the cache
# unset it.
os.environ.setdefault('WRN_TRAX_COMPILATION_CACHE', '0')

# `import wrn_trax` alone imports no trax; the tests run with TF, gym and trax
# imported through it (quietly, patched), as after a user's first training.
from wrn_trax import _compat  # pylint: disable=g-import-not-at-top,wrong-import-position

_compat.ensure_trax()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def subprocess_env():
  """The environment for a child Python that imports this checkout."""
  env = dict(os.environ)
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  env['PYTHONUNBUFFERED'] = '1'
  return env


@pytest.fixture
def python():
  return sys.executable


@pytest.fixture
def run_cli(capsys):
  """Runs `wrn-trax ARGV` in this process, as a user would on the command line.

  Returns a function of argv giving (exit status, stdout, stderr); the exit
  status is 0 where `cli.main` returns, else its SystemExit's code.
  """
  from wrn_trax import cli  # pylint: disable=g-import-not-at-top

  def run(argv):
    try:
      cli.main(argv)
      code = 0
    except SystemExit as e:
      code = 0 if e.code is None else e.code
    out, err = capsys.readouterr()
    return code, out, err

  return run
