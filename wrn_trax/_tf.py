"""TensorFlow for the data pipelines only: imported once, with no GPU.

wrn_trax trains with jax; TensorFlow only reads data (TFDS, trax's
`trax.data.TFDS` and tf.data). Left alone, TF maps nearly all free memory of
every GPU it sees the first time it initialises its runtime, and jax then
finds the GPU full. `import_tensorflow` is the one place wrn_trax imports TF
(`_quiet.silence_imports` calls it, and every path reaches TF through there:
TFDS loading, svhn, `wrn-trax data`, train, sweep, the notebooks, bench), and
it hides the GPUs from TF right after the import, before TF can touch them.

TF can only be told so before its runtime has initialised. If something
(the user's own `import tensorflow` and a TF op, in a notebook) initialised
it earlier, the GPUs cannot be hidden any more: a `TensorFlowOnGpuWarning`
says so and names the fix, instead of the failure passing silently.

A TensorFlow without GPU device APIs in `tf.config` (a CPU-only build, or
the stand-in wrn_trax installs where TF is missing) is left as it is.
"""
import importlib
import sys
import warnings


class TensorFlowOnGpuWarning(UserWarning):
  """TensorFlow initialised a GPU before wrn_trax could hide it from TF."""


FIX = ('restart the Python process (in a notebook: the runtime) and import '
       'wrn_trax before TensorFlow, or run tf.config.set_visible_devices([], '
       "'GPU') before any TensorFlow op")


def hide_gpus(tf):
  """Hides every GPU from the TensorFlow module `tf`; returns what it did.

  Args:
    tf: the imported `tensorflow` module (or a stand-in with its
      `config.list_physical_devices` and `config.set_visible_devices`).

  Returns:
    'hidden' (TF saw GPUs and now sees none), 'no gpu' (TF sees none),
    'no api' (this TF has no device API: nothing to hide) or 'too late'
    (TF had initialised its runtime: a `TensorFlowOnGpuWarning` was issued).
  """
  config = getattr(tf, 'config', None)
  list_physical = getattr(config, 'list_physical_devices', None)
  set_visible = getattr(config, 'set_visible_devices', None)
  if list_physical is None or set_visible is None:
    return 'no api'
  gpus = list_physical('GPU')  # physical devices: initialises nothing
  if not gpus:
    return 'no gpu'
  try:
    set_visible([], 'GPU')
  except RuntimeError as e:  # "Visible devices cannot be modified after ..."
    warnings.warn(
        f'TensorFlow had already initialised its runtime, with the GPU(s) '
        f'{[getattr(g, "name", str(g)) for g in gpus]} visible, before '
        f'wrn_trax could hide them: TF may hold most of their memory, '
        f'which jax then lacks (out-of-memory errors, or a slow run). Fix: '
        f'{FIX}. ({type(e).__name__}: {e})', TensorFlowOnGpuWarning,
        stacklevel=2)
    return 'too late'
  return 'hidden'


def import_tensorflow():
  """Imports TensorFlow (or returns it) with its GPUs hidden; see the module.

  Safe to call any number of times: hiding is repeated only while TF has not
  initialised its runtime, and warns (once per process, as warnings do) if
  that had happened with a GPU visible.

  Returns:
    The `tensorflow` module.

  Raises:
    ImportError: TensorFlow is not installed (and no stand-in is).
  """
  tf = sys.modules.get('tensorflow') or importlib.import_module('tensorflow')
  hide_gpus(tf)
  return tf
