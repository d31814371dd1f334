"""Which GPUs a machine has, without jax; and what a run does about them.

Light: imports neither jax nor TensorFlow, so the sweep driver can count
the GPUs without initialising a backend (which would preallocate 75% of a
GPU's memory in the driver, memory the members need).

* `local_gpus`: the GPU ids of this machine as CUDA numbers them for child
  processes: CUDA_VISIBLE_DEVICES where it is set, else nvidia-smi's list.
  The local sweep gives each member its own (`sweep.local_slots`).
* `warn_if_gpu_unused`: a machine with an NVIDIA GPU whose jax runs on the
  CPU (jax installed without CUDA, or a CUDA/driver mismatch: jax falls back
  with one log line) gets a `GpuUnusedWarning` naming the fix.
* `enable_compilation_cache`: jax's persistent compilation cache in the run
  root, so the seeds and members of a sweep compile each network once.
"""
import os
import shutil
import subprocess
import warnings

# The folder under a run root that holds jax's compilation cache (hidden:
# `report` reads only folders with a config.json).
COMPILATION_CACHE_DIR = '.jax_cache'
# Set to 0 to keep wrn_trax from turning the cache on.
CACHE_ENV = 'WRN_TRAX_COMPILATION_CACHE'


class GpuUnusedWarning(UserWarning):
  """This machine has a GPU, but jax runs on the CPU."""


def _jax_platforms_exclude_gpu(environ):
  platforms = environ.get('JAX_PLATFORMS', '').strip().lower()
  if not platforms:
    return False
  return not any(p in platforms for p in ('cuda', 'gpu', 'rocm'))


def nvidia_smi_gpus(which=shutil.which, run=subprocess.run):
  """The GPU indices nvidia-smi lists ([] without nvidia-smi or on error)."""
  smi = which('nvidia-smi')
  if smi is None:
    return []
  try:
    r = run([smi, '--query-gpu=index', '--format=csv,noheader'],
            capture_output=True, text=True, timeout=30, check=False)
  except (OSError, subprocess.SubprocessError):
    return []
  if r.returncode != 0:
    return []
  return [line.strip() for line in r.stdout.splitlines()
          if line.strip().isdigit()]


def local_gpus(environ=None, which=shutil.which, run=subprocess.run):
  """The GPUs jax could use here, as ids for a child's CUDA_VISIBLE_DEVICES.

  Args:
    environ: the environment to read (default os.environ).
    which, run: `shutil.which` and `subprocess.run`, replaceable in tests.

  Returns:
    A list of str: CUDA_VISIBLE_DEVICES's entries where it is set (up to the
    first negative one, as CUDA reads it; '' is none), else nvidia-smi's
    indices; [] where JAX_PLATFORMS names no GPU platform (e.g. 'cpu').
  """
  env = os.environ if environ is None else environ
  if _jax_platforms_exclude_gpu(env):
    return []
  visible = env.get('CUDA_VISIBLE_DEVICES')
  if visible is not None:
    ids = []
    for item in visible.split(','):
      item = item.strip()
      if not item or item.startswith('-'):
        break
      ids.append(item)
    return ids
  return nvidia_smi_gpus(which, run)


def warn_if_gpu_unused(platform=None, environ=None, gpus=None):
  """Warns where the machine has a GPU but jax trains on the CPU.

  Args:
    platform: jax's default backend ('cpu', 'gpu', 'tpu'); default: asks
      jax (initialising its backend: call it where training starts).
    environ: the environment (default os.environ). JAX_PLATFORMS=cpu is a
      choice, not a fallback: no warning then.
    gpus: the GPUs found (default: `nvidia_smi_gpus`, not limited by
      CUDA_VISIBLE_DEVICES, which may hide GPUs on purpose).

  Returns:
    True if it warned.
  """
  env = os.environ if environ is None else environ
  if _jax_platforms_exclude_gpu(env):
    return False
  visible = env.get('CUDA_VISIBLE_DEVICES')
  if visible is not None and not local_gpus({'CUDA_VISIBLE_DEVICES':
                                             visible}):
    return False  # the GPUs are hidden from this process on purpose
  if platform is None:
    import jax  # pylint: disable=g-import-not-at-top
    platform = jax.default_backend()
  if platform != 'cpu':
    return False
  gpus = nvidia_smi_gpus() if gpus is None else list(gpus)
  if not gpus:
    return False
  warnings.warn(
      f'this machine has {len(gpus)} NVIDIA GPU(s) (nvidia-smi lists them) '
      'but jax runs on the CPU: training will be 10-100x slower. jax was '
      'installed without CUDA, or its CUDA does not match the driver. Fix: '
      'pip install -U "jax[cuda12]" (or the jax[cuda13] the driver '
      'supports), restart Python, and check that jax.devices() lists a '
      'CUDA device. To train on the CPU on purpose, set JAX_PLATFORMS=cpu.',
      GpuUnusedWarning, stacklevel=2)
  return True


def compilation_cache_dir(root, environ=None):
  """Where `enable_compilation_cache` puts the cache for `root`, or None.

  None where CACHE_ENV is '0' (off); the user's own JAX_COMPILATION_CACHE_DIR
  where set; else `root`/COMPILATION_CACHE_DIR.
  """
  env = os.environ if environ is None else environ
  if env.get(CACHE_ENV, '1').strip().lower() in ('0', 'false', 'no', 'off'):
    return None
  if env.get('JAX_COMPILATION_CACHE_DIR'):
    return env['JAX_COMPILATION_CACHE_DIR']
  return os.path.join(os.path.abspath(root), COMPILATION_CACHE_DIR)


def enable_compilation_cache(root):
  """Turns on jax's persistent compilation cache under the run root `root`.

  A process that trains (a `train`, a sweep member) then reads the compiled
  step, eval and precise-BN functions of a network another process compiled
  (same network, batch shape, precision, jax and device) instead of
  compiling them again. jax reads the setting at its first compilation: a
  process that compiled before keeps what it had; a cache directory the
  user set (jax.config or JAX_COMPILATION_CACHE_DIR) is kept.

  Returns:
    The cache directory in use, or None (off: CACHE_ENV=0).
  """
  import jax  # pylint: disable=g-import-not-at-top
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  path = compilation_cache_dir(root)
  if path is None:
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  return path
