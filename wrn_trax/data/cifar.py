"""The CIFAR "python version" batch files (``cifar-10-batches-py``, ``cifar-100-python``)."""
import dataclasses
import glob
import importlib
import os
import pickle

import numpy as np

from wrn_trax import _pickle
from wrn_trax.data.dataset import _N_CLASSES, UnsafePickleError, from_arrays

# The CIFAR "python version": folder name, training files, test file, label key.
_CIFAR_PY = {
    'cifar10': ('cifar-10-batches-py',
                tuple(f'data_batch_{i}' for i in range(1, 6)), 'test_batch',
                b'labels'),
    'cifar100': ('cifar-100-python', ('train',), 'test', b'fine_labels'),
}


# ----------------------------------------------- CIFAR "python version" files


def _numpy_core(module, name):
  """numpy's `module.name` from numpy._core (numpy 2) or numpy.core (1.x).

  numpy 2 moved numpy.core to numpy._core; take whichever exists without
  importing the deprecated alias.
  """
  try:
    return getattr(importlib.import_module(f'numpy._core.{module}'), name)
  except ImportError:
    return getattr(importlib.import_module(f'numpy.core.{module}'), name)


def _latin1_encode(text, encoding='utf-8', errors='strict'):
  """`_codecs.encode`, as Python 3 pickles bytes at protocol < 3: latin-1 only.

  ``pickle.dumps(b'...', protocol=2)`` writes ``_codecs.encode(str,
  'latin1')``; no other encoding, and nothing but a str, is accepted.
  """
  if (not isinstance(text, str) or encoding not in ('latin1', 'latin-1') or
      errors != 'strict'):
    raise UnsafePickleError(
        f'refusing _codecs.encode({type(text).__name__}, {encoding!r}); '
        f'pickled bytes only need _codecs.encode(str, \'latin1\').')
  return text.encode('latin1')


def _empty_bytes(*args):
  """`bytes()`, as Python 3 pickles b'' at protocol < 3; nothing else."""
  if args:
    raise UnsafePickleError(
        f'refusing bytes{args!r}; pickled b\'\' only needs bytes().')
  return b''


class _CifarUnpickler(_pickle.RestrictedUnpickler):
  """Unpickles CIFAR batch files, refusing every global they do not need.

  The batch files are dicts of bytes, str, lists and numpy arrays, so the only
  globals they may name are the helpers that numpy and Python use to rebuild
  those, at any pickle protocol (`allowed`):

  * numpy arrays: ``numpy[._]core.multiarray._reconstruct`` with
    ``numpy.ndarray`` and ``numpy.dtype`` (protocols 2-4), or
    ``numpy[._]core.numeric._frombuffer`` (protocol 5, which stores the data
    in-band as a BYTEARRAY8); numpy scalars (e.g. labels as a list of
    np.int64): ``numpy[._]core.multiarray.scalar``.
  * bytes under Python 3 at protocol 2: ``_codecs.encode(str, 'latin1')``
    (latin-1 only) and, for b'', ``bytes()`` (``__builtin__.bytes``).
    The original Python 2 files store bytes as STRING opcodes (no global).

  Anything else (os.system, builtins.eval, ...) raises `UnsafePickleError`
  before it is looked up, so nothing runs. Out-of-band buffers (protocol 5's
  NEXT_BUFFER) cannot be in a file and are refused by `pickle` itself.
  """

  allowed = {
      ('numpy.core.multiarray', '_reconstruct'):
          lambda: _numpy_core('multiarray', '_reconstruct'),
      ('numpy._core.multiarray', '_reconstruct'):
          lambda: _numpy_core('multiarray', '_reconstruct'),
      ('numpy.core.multiarray', 'scalar'):
          lambda: _numpy_core('multiarray', 'scalar'),
      ('numpy._core.multiarray', 'scalar'):
          lambda: _numpy_core('multiarray', 'scalar'),
      ('numpy.core.numeric', '_frombuffer'):
          lambda: _numpy_core('numeric', '_frombuffer'),
      ('numpy._core.numeric', '_frombuffer'):
          lambda: _numpy_core('numeric', '_frombuffer'),
      ('numpy', 'ndarray'): lambda: np.ndarray,
      ('numpy', 'dtype'): lambda: np.dtype,
      ('_codecs', 'encode'): lambda: _latin1_encode,
      ('__builtin__', 'bytes'): lambda: _empty_bytes,
      ('builtins', 'bytes'): lambda: _empty_bytes,
  }

  def __init__(self, file, path):
    super().__init__(file, path, encoding='bytes')

  def refusal(self, module, name):
    return UnsafePickleError(
        f'{self.path}: refusing to load global {module}.{name}; CIFAR batch '
        f'files only need numpy array reconstruction '
        f'({sorted(".".join(a) for a in self.allowed)}). This file is not a '
        f'CIFAR batch file or has been tampered with.')


def _unpickle(path):
  """Reads one CIFAR batch file with `_CifarUnpickler`.

  Raises:
    UnsafePickleError: the file names a global that CIFAR files never need.
    ValueError: the file is not a readable pickle (truncated, not a pickle,
      out-of-band buffers).
  """
  with open(path, 'rb') as f:
    try:
      return _CifarUnpickler(f, path).load()
    except UnsafePickleError as e:
      if str(path) in str(e):
        raise
      raise UnsafePickleError(f'{path}: {e} This file is not a CIFAR batch '
                              f'file or has been tampered with.') from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, MemoryError) as e:
      raise ValueError(
          f'{path}: not a readable CIFAR batch file ({type(e).__name__}: {e}); '
          f'download the "python version" again.') from None


def _find_cifar_python(name, data_dir, looked):
  """Returns the CIFAR batch folder inside data_dir, or None; notes where."""
  folder, train_files, test_file, _ = _CIFAR_PY[name]
  candidates = [data_dir, os.path.join(data_dir, folder)]
  candidates += sorted(
      glob.glob(os.path.join(glob.escape(data_dir), '*', folder)))
  for candidate in candidates:
    looked.append(os.path.join(candidate, test_file))
    if all(os.path.isfile(os.path.join(candidate, f))
           for f in train_files + (test_file,)):
      return candidate
  return None


def _load_cifar_python(name, folder):
  """Loads a CIFAR "python version" folder (N x 3072 channel-first rows)."""
  _, train_files, test_file, label_key = _CIFAR_PY[name]

  def read(files):
    images, labels = [], []
    for f in files:
      path = os.path.join(folder, f)
      batch = _unpickle(path)
      if isinstance(batch, dict):  # str keys, as a Python 3 re-pickle has.
        batch = {k.encode('latin1') if isinstance(k, str) else k: v
                 for k, v in batch.items()}
      if not isinstance(batch, dict) or b'data' not in batch or (
          label_key not in batch):
        raise ValueError(f'{path}: not a {name} batch file (expected a dict '
                         f'with keys b\'data\' and {label_key!r}, as bytes '
                         f'or str).')
      data = np.asarray(batch[b'data'], dtype=np.uint8)
      if data.ndim == 4 and data.shape[1:] == (32, 32, 3):  # Already NHWC.
        images.append(data)
        labels.append(np.asarray(batch[label_key], dtype=np.int32))
        continue
      if data.ndim == 4 and data.shape[1:] == (3, 32, 32):
        data = data.reshape(len(data), 3072)
      if data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f'{path}: b\'data\' must be N x 3072 (or N x 32 x 32 '
                         f'x 3), got {data.shape}.')
      images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
      labels.append(np.asarray(batch[label_key], dtype=np.int32))
    return (np.ascontiguousarray(np.concatenate(images)),
            np.concatenate(labels))

  x_train, y_train = read(train_files)
  x_test, y_test = read((test_file,))
  ds = from_arrays(x_train, y_train, x_test, y_test,
                   n_classes=_N_CLASSES[name], name=name)
  return dataclasses.replace(
      ds, source=f'{_CIFAR_PY[name][0]} @ {os.path.abspath(folder)}')
