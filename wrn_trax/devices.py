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


# ------------------------------------------ the sweep driver's GPU memory


class DriverHoldsGpuError(RuntimeError):
  """The sweep's own process holds GPU memory its member processes need."""


# jax's default XLA_PYTHON_CLIENT_MEM_FRACTION: what a process preallocates.
JAX_DEFAULT_FRACTION = 0.75
_GIB = 2.0**30


def _env_fraction(environ):
  try:
    return float(environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION',
                             JAX_DEFAULT_FRACTION))
  except ValueError:
    return JAX_DEFAULT_FRACTION


def _preallocates(environ):
  return environ.get('XLA_PYTHON_CLIENT_PREALLOCATE', '').strip().lower() not in (
      'false', '0', 'no', 'off')


def _jax_backends_initialized():
  """Whether this process's jax has set up a backend (False: no jax yet)."""
  import sys  # pylint: disable=g-import-not-at-top
  if 'jax' not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge.backends_are_initialized())
  except (ImportError, AttributeError):  # a jax without it: ask no further
    return True


def held_gpu_memory(local_devices=None, backends_initialized=None,
                    environ=None):
  """The GPU memory this process's jax holds, per GPU it sees.

  Reads nothing from a device unless jax has already set up its backend
  here (asking would set it up, and preallocate). Memory comes from each
  device's `memory_stats()`: the allocator's pool (all of `bytes_limit`
  where jax preallocates) or what is in use, whichever is more.

  Args:
    local_devices: jax's devices of this process (default
      `jax.local_devices()`, asked only where a backend is up); fakes with
      `platform` and `memory_stats()` in tests.
    backends_initialized: whether jax has a backend here (default: asks
      `jax._src.xla_bridge`).
    environ: the environment (default os.environ).

  Returns:
    A list with one dict per GPU, in jax's order: `index` (its position
    among this process's GPUs), `held` and `total` in bytes (`total` None
    where the stats do not give it).
  """
  env = os.environ if environ is None else environ
  if backends_initialized is None:
    backends_initialized = _jax_backends_initialized()
  if not backends_initialized:
    return []
  if local_devices is None:
    import jax  # pylint: disable=g-import-not-at-top
    local_devices = jax.local_devices()
  out = []
  gpus = [d for d in local_devices
          if getattr(d, 'platform', 'cpu') not in ('cpu', 'tpu')]
  for index, device in enumerate(gpus):
    try:
      stats = device.memory_stats() or {}
    except Exception:  # pylint: disable=broad-except
      stats = {}
    limit = stats.get('bytes_limit')
    held = max(stats.get('pool_bytes', 0), stats.get('bytes_reserved', 0),
               stats.get('bytes_in_use', 0))
    if _preallocates(env) and limit:
      held = max(held, limit)
    total = limit / _env_fraction(env) if limit else None
    if not stats and _preallocates(env):
      held = None  # unknown, and most likely 75% of it
    out.append(dict(index=index, held=held, total=total))
  return out


def check_driver_gpu_memory(member_fractions, held=None, environ=None):
  """Refuses a sweep whose own process holds GPU memory its members need.

  A local sweep with GPUs, and a Ray sweep on this machine, train their
  members in other processes, each of which preallocates its share of its
  GPU (jax's 75%, or the cap of `sweep.member_env_vars`). Memory this
  process already holds there (something in it ran on the GPU: a model
  built in an earlier notebook cell, jax.devices() with preallocation on)
  would leave them too little: they would fail with out-of-memory errors
  after their imports. This says so before anything starts.

  Args:
    member_fractions: {GPU position: the fraction of that GPU's memory the
      members placed on it at once preallocate}; positions are those of
      this process's GPUs (CUDA_VISIBLE_DEVICES order).
    held: `held_gpu_memory()`'s list (default: asks it).
    environ: the environment (default os.environ).

  Raises:
    DriverHoldsGpuError: naming the GPU, what is held and the fixes.
  """
  env = os.environ if environ is None else environ
  held = held_gpu_memory(environ=env) if held is None else held
  for gpu in held:
    need = member_fractions.get(gpu['index'])
    if not need:
      continue
    if gpu['held'] is None or gpu['total'] is None:
      what = 'memory (preallocated by jax, amount unknown)'
      too_much = gpu['held'] is None or gpu['held'] > 0
    else:
      share = gpu['held'] / gpu['total']
      what = (f'{gpu["held"] / _GIB:.1f} GiB ({share:.0%}) of its '
              f'{gpu["total"] / _GIB:.1f} GiB')
      too_much = share > max(0.0, 1.0 - need)
    if too_much:
      raise DriverHoldsGpuError(
          f'this Python process (the sweep driver) holds GPU '
          f'{gpu["index"]}\'s {what}, which the member processes it would '
          f'start there need ({need:.0%} of it): they would run out of '
          'memory. Something in this process ran jax on the GPU before '
          'the sweep (a model or array in an earlier notebook cell). Fix: '
          'restart the runtime/kernel and call wrn_trax.sweep before '
          'anything else touches the GPU; or set '
          'XLA_PYTHON_CLIENT_PREALLOCATE=false before jax is first used '
          '(notebook: %env XLA_PYTHON_CLIENT_PREALLOCATE=false in the '
          'first cell); or pass gpus=[] to train the members one after '
          'another in this process.')
