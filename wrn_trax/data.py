# coding=utf-8
"""Data sets and trax.data input pipelines for Wide Residual Networks.

Sources, picked by `load`:

* ``digits``: scikit-learn's bundled 8x8 digits, upscaled to 32x32x3. A smoke /
  demo set that needs no download; not a benchmark.
* ``cifar10`` / ``cifar100``: the CIFAR "python version" batch folders
  (``cifar-10-batches-py``, ``cifar-100-python``, as on Kaggle; pickled by
  Python 2 or 3 at any protocol, read with a restricted unpickler) when
  ``data_dir`` holds one, else image folders (``train/<class>/*.png|jpg``,
  ``test/<class>/...``), else a prepared TensorFlow Datasets directory, else
  a TFDS download (after a quick connectivity probe; ``download=False``
  never downloads).
* ``svhn``: TFDS ``svhn_cropped`` (optionally with the ``extra`` split, as the
  paper trains on it), prepared or downloaded.
* ``folder``: image folders with any classes (labels = sorted folder names).
  Image folders are decoded once, in threads, and cached as a ``.npz``.
* `from_arrays`: numpy arrays the caller already has.

Whole splits are loaded into memory once, as numpy. The pipelines are
`trax.data.Serial` compositions, as in the seed notebooks, but the stock
per-example ``TFDS -> Shuffle -> Batch`` front is replaced, for in-memory data,
by `BatchArrays`, which slices whole batches out of the arrays by a seeded
per-epoch permutation: an exact shuffle (every example once per epoch, unlike
trax's 1024-slot buffer `Shuffle` over a file-ordered stream), no copy of the
split, and no per-example `np.pad` (trax's `Batch` calls `pad_to_max_dims`,
which pads every example even when all shapes agree). The augmentation of
Zagoruyko & Komodakis (2016), Sec. 3 ("random crops from image padded by 4
pixels on each side, filling missing pixels with reflections of original
image", and horizontal flips) is done batched in numpy by `RandomCropFlip`.
"""
import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import importlib
import math
import os
import pickle
import socket
import sys
import tempfile
import threading
import time
import urllib.parse

import numpy as np

from wrn_trax import _pickle
from wrn_trax import runio



DATASETS = ('digits', 'cifar10', 'cifar100', 'svhn', 'svhn_extra', 'folder')
# 'svhn_extra' is SVHN with its 531,131-image `extra` split appended to the
# training split, as the paper trained (`load('svhn', svhn_extra=True)`).
PREPROCESS = ('raw', 'standardize', 'cifar', 'svhn')

# Pixels of reflection padding before the random 32x32 crop (paper, Sec. 3).
CIFAR_PAD = 4

_TFDS_NAMES = {'cifar10': 'cifar10', 'cifar100': 'cifar100',
               'svhn': 'svhn_cropped'}
# The sites TFDS downloads each data set from (when its GCS mirror misses),
# and how long the connectivity probe before a download may take.
_DOWNLOAD_HOSTS = {'cifar10': ('www.cs.toronto.edu', 443),
                   'cifar100': ('www.cs.toronto.edu', 443),
                   'svhn': ('ufldl.stanford.edu', 80)}
_PROBE_TIMEOUT_S = 3.0
_N_CLASSES = {'digits': 10, 'cifar10': 10, 'cifar100': 100, 'svhn': 10}
# The CIFAR "python version": folder name, training files, test file, label key.
_CIFAR_PY = {
    'cifar10': ('cifar-10-batches-py',
                tuple(f'data_batch_{i}' for i in range(1, 6)), 'test_batch',
                b'labels'),
    'cifar100': ('cifar-100-python', ('train',), 'test', b'fine_labels'),
}
# Label names in each data set's official label order (CIFAR-100: the fine
# labels). Image folders named so are read with these labels.
_CLASS_NAMES = {
    'cifar10': ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog',
                'horse', 'ship', 'truck'),
    'cifar100': tuple('''
        apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl
        boy bridge bus butterfly camel can castle caterpillar cattle chair
        chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur
        dolphin elephant flatfish forest fox girl hamster house kangaroo
        keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree
        motorcycle mountain mouse mushroom oak_tree orange orchid otter
        palm_tree pear pickup_truck pine_tree plain plate poppy porcupine
        possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
        skyscraper snail snake spider squirrel streetcar sunflower
        sweet_pepper table tank telephone television tiger tractor train trout
        tulip turtle wardrobe whale willow_tree wolf woman worm'''.split()),
}
# Image folders: file types read, the cache file name beside the data, the
# cache format version (part of the fingerprint) and the most decoding threads
# (at most 2 per core: PIL releases the GIL while decoding, and reads wait on
# the disk).
_IMAGE_EXTS = ('.png', '.jpg', '.jpeg')
_CACHE_NAME = '.wrn_trax_cache.npz'
_CACHE_VERSION = 1
_DECODE_THREADS = 8
# Number of images per chunk when computing channel statistics, so that the
# float64 temporaries stay small (~6 MB) however big the split is.
_STATS_CHUNK = 256


class DataNotFoundError(FileNotFoundError):
  """A data set is neither in `data_dir` nor in a prepared TFDS directory."""


class UnsafePickleError(pickle.UnpicklingError):
  """A pickle asked for a global that the CIFAR batch files never need."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A whole image-classification data set, held in memory once.

  ``eq=False`` keeps identity equality and hashing: comparing the arrays
  field by field would be ambiguous and slow.

  Attributes:
    name: 'digits', 'cifar10', 'cifar100', 'svhn', 'arrays', ...
    train_images: uint8, N x H x W x C.
    train_labels: int32, N.
    test_images: uint8, M x H x W x C.
    test_labels: int32, M.
    n_classes: number of classes; labels lie in [0, n_classes).
    source: where the data came from, for humans, e.g. 'sklearn digits',
      'tfds:cifar10 @ /path', 'cifar-10-batches-py @ /path', 'arrays',
      'image folder @ /path (cache /path/.wrn_trax_cache.npz)'.
    class_names: the name of each label, when known (image folders), else ().
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  n_classes: int
  source: str
  class_names: tuple = ()

  @property
  def image_shape(self):
    """(H, W, C) of every image."""
    return tuple(self.train_images.shape[1:])

  @functools.cached_property
  def channel_stats(self):
    """Per-channel (mean, std) of the training split, float32 arrays (C,).

    Computed once per Dataset (cached), in float64 over chunks of images.
    """
    return _channel_stats(self.train_images)

  def __repr__(self):
    return (f'Dataset(name={self.name!r}, train={self.train_images.shape}, '
            f'test={self.test_images.shape}, n_classes={self.n_classes}, '
            f'source={self.source!r})')


# ------------------------------------------------------------------ loading


def load(name='digits', data_dir=None, download=None, *, svhn_extra=False):
  """Loads a whole data set into memory, from the first source that has it.

  * ``digits``: scikit-learn's bundled digits (`load_digits`, no download).
  * ``cifar10`` / ``cifar100``, in this order: the CIFAR "python version"
    batch folder if ``data_dir`` holds it (``data_dir`` itself,
    ``data_dir/cifar-10-batches-py`` or ``data_dir/cifar-100-python``, or one
    level deeper, as Kaggle mounts ``/kaggle/input/<slug>/...``); image
    folders ``train/<class>/`` and ``test/<class>/`` in ``data_dir`` or one
    level deeper (class folders named as the data set's labels); a prepared
    TFDS ``cifar10`` / ``cifar100``; else a TFDS download (see ``download``).
  * ``svhn``: TFDS ``svhn_cropped`` (prepared, else downloaded); with
    ``svhn_extra`` its 531,131-image ``extra`` split is appended to ``train``
    (as the paper did). ``svhn_extra`` is also a name: the same.
  * ``folder``: image folders ``train/<class>/*.png|jpg`` and
    ``test/<class>/...`` in ``data_dir`` (or one level deeper); labels are the
    sorted class folder names; images of another size than the first are
    resized to it (bilinear); greyscale becomes 3 channels.

  Image folders are decoded once (in threads) and cached as a ``.npz``:
  ``data_dir/.../.wrn_trax_cache.npz`` beside the data if writable, else in
  ``~/.cache/wrn_trax`` (``$XDG_CACHE_HOME/wrn_trax``); ``$WRN_TRAX_CACHE``,
  when set, is used instead of both. The cache is keyed by the file list,
  sizes and modification times, so a changed folder is read again.

  TFDS is read from ``data_dir`` (or TFDS's default directory when None).

  Args:
    name: one of `DATASETS`.
    data_dir: a folder holding the CIFAR batch folder, image folders or a
      TFDS data dir (downloads go there too).
    download: None (auto) or True: when no local source has the data set,
      probe the network (at most ~3 s) and let TFDS download and prepare it,
      with its progress bars; offline or on failure, `DataNotFoundError`.
      False: never download. 'digits' and 'folder' never download.
    svhn_extra: for 'svhn', append the `extra` split to the training split.

  Returns:
    A `Dataset`.

  Raises:
    ValueError: ``name`` is not one of `DATASETS`, a bad argument, or image
      folders / batch files that cannot be read (the message says why).
    DataNotFoundError: the data set is not where we looked and was not
      downloaded (the message says where we looked and how to provide it).
  """
  if name not in DATASETS:
    raise ValueError(f'name={name!r} is not a known data set; expected one of '
                     f'{DATASETS} (or build one with from_arrays).')
  if download not in (None, True, False):
    raise ValueError(f'download must be None (auto), True or False, got '
                     f'{download!r}.')
  if name == 'svhn_extra':  # the name train, sweep and the CLI take
    name, svhn_extra = 'svhn', True
  if svhn_extra and name != 'svhn':
    raise ValueError(f'svhn_extra=True applies only to name=\'svhn\', '
                     f'not {name!r}.')
  if data_dir is not None:
    data_dir = os.path.expanduser(os.fspath(data_dir))
  if name == 'digits':
    return _load_digits()
  looked = []
  if name == 'folder':
    if data_dir is None:
      raise ValueError("name='folder' needs data_dir= a folder holding "
                       'train/<class>/*.png|jpg and test/<class>/*.png|jpg.')
    folder = _find_image_folder(name, data_dir, looked)
    if folder is None:
      where = '\n'.join(f'  - {p}' for p in looked)
      raise DataNotFoundError(
          f'No image folders in {data_dir}. Looked for:\n{where}\nFix: pass '
          f'data_dir= a folder holding train/ and test/, each with one '
          f'subfolder of PNG or JPEG images per class.')
    return _load_image_folder(name, folder)
  if name in _CIFAR_PY and data_dir is not None:
    folder = _find_cifar_python(name, data_dir, looked)
    if folder is not None:
      return _load_cifar_python(name, folder)
    folder = _find_image_folder(name, data_dir, looked)
    if folder is not None:
      return _load_image_folder(name, folder)
  return _load_tfds(name, data_dir, svhn_extra, looked, download)


def from_arrays(train_images, train_labels, test_images, test_labels,
                n_classes=None, name='arrays'):
  """Wraps numpy arrays the caller already has into a checked `Dataset`.

  Images must be uint8, N x H x W x C; N x H x W (grayscale) is accepted and
  gets a trailing channel axis of 1. Labels must be integers, shape (N,) or
  (N, 1) (as `keras.datasets.cifar10.load_data` returns them), in
  [0, n_classes). Arrays that already have the right dtype and layout are
  used without copying.

  Args:
    train_images: uint8 training images.
    train_labels: integer training labels.
    test_images: uint8 test images, same H x W x C as the training ones.
    test_labels: integer test labels.
    n_classes: number of classes; default 1 + the largest label seen.
    name: a name for the data set.

  Returns:
    A `Dataset` with source 'arrays'.

  Raises:
    ValueError: on wrong rank, dtype, sizes or label range.
  """
  train_images = _check_images(train_images, 'train_images')
  test_images = _check_images(test_images, 'test_images')
  if train_images.shape[1:] != test_images.shape[1:]:
    raise ValueError(
        f'train_images are {train_images.shape[1:]} (H, W, C) but test_images '
        f'are {test_images.shape[1:]}; both splits need the same image shape.')
  train_labels = _check_labels(train_labels, 'train_labels', len(train_images))
  test_labels = _check_labels(test_labels, 'test_labels', len(test_images))
  top = int(max(train_labels.max(), test_labels.max()))
  if n_classes is None:
    n_classes = top + 1
  if (isinstance(n_classes, bool) or
      not isinstance(n_classes, (int, np.integer))):
    raise ValueError(f'n_classes must be an int, got {n_classes!r}.')
  n_classes = int(n_classes)
  if n_classes < 1:
    raise ValueError(f'n_classes must be >= 1, got {n_classes}.')
  for labels, arg in ((train_labels, 'train_labels'),
                      (test_labels, 'test_labels')):
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
      raise ValueError(
          f'{arg} must lie in [0, n_classes={n_classes}); found '
          f'{labels[bad][:5].tolist()} at indices '
          f'{np.flatnonzero(bad)[:5].tolist()}.')
  return Dataset(name=str(name), train_images=train_images,
                 train_labels=train_labels, test_images=test_images,
                 test_labels=test_labels, n_classes=n_classes, source='arrays')


def default_preprocess(name):
  """The paper's preprocessing recipe for a data set name.

  Args:
    name: a data set name.

  Returns:
    'cifar' for cifar10/100, 'svhn' for svhn(_extra), 'standardize' otherwise
    (digits, folder, arrays).
  """
  if name in ('cifar10', 'cifar100'):
    return 'cifar'
  if name in ('svhn', 'svhn_extra'):
    return 'svhn'
  return 'standardize'


def _check_images(images, arg):
  """Returns images as uint8 N x H x W x C, or raises a ValueError."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise ValueError(
        f'{arg} must be uint8 (0..255), got dtype {images.dtype}; convert '
        f'with e.g. np.clip(x * 255, 0, 255).astype(np.uint8).')
  if images.ndim == 3:  # Grayscale N x H x W.
    images = images[..., None]
  if images.ndim != 4:
    raise ValueError(f'{arg} must be N x H x W x C (or N x H x W grayscale), '
                     f'got shape {images.shape}.')
  if min(images.shape) < 1:
    raise ValueError(f'{arg} must be non-empty, got shape {images.shape}.')
  return np.ascontiguousarray(images)


def _check_labels(labels, arg, n):
  """Returns labels as int32 (n,), or raises a ValueError."""
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  if labels.ndim != 1 or len(labels) != n:
    raise ValueError(f'{arg} must have shape ({n},) to match the images, '
                     f'got {labels.shape}.')
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'{arg} must be integers, got dtype {labels.dtype}.')
  return labels.astype(np.int32, copy=False)


def _load_digits():
  """scikit-learn's 1,797 8x8 digits as 32x32x3 uint8, split 1,437 / 360.

  0..16 is scaled to 0..255, each pixel is repeated 4x4 (exact nearest
  neighbour) and the gray channel copied to 3. The split is stratified with a
  fixed seed, so it is the same everywhere.
  """
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  images = images.repeat(4, axis=1).repeat(4, axis=2)
  images = np.repeat(images[..., None], 3, axis=-1)
  labels = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      images, labels, test_size=360, stratify=labels, random_state=0)
  return Dataset('digits', np.ascontiguousarray(x_train), y_train,
                 np.ascontiguousarray(x_test), y_test, 10, 'sklearn digits')


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


# ------------------------------------------------------------ image folders


def _norm_class(name):
  """A class folder name as compared with a data set's label names."""
  return name.strip().lower().replace(' ', '_').replace('-', '_')


def _is_image(name):
  return (not name.startswith('.') and
          os.path.splitext(name)[1].lower() in _IMAGE_EXTS)


def _class_dirs(split_dir):
  """Sorted names of the (non-hidden) subfolders of a split folder."""
  try:
    entries = list(os.scandir(split_dir))
  except OSError:
    return []
  return sorted(e.name for e in entries
                if e.is_dir() and not e.name.startswith('.'))


def _find_image_folder(name, data_dir, looked):
  """Returns the folder holding train/<class>/ and test/<class>/, or None.

  Looks at ``data_dir`` and one level deeper (Kaggle mounts data sets as
  ``/kaggle/input/<slug>/...``). For cifar10/cifar100, a candidate whose
  class folders match that data set's labels is preferred.
  """
  candidates = [data_dir] + sorted(
      p for p in glob.glob(os.path.join(glob.escape(data_dir), '*'))
      if os.path.isdir(p) and os.path.basename(p) not in ('train', 'test'))
  looked.append(os.path.join(data_dir, 'train', '<class>', '*.png|jpg'))
  if len(candidates) > 1:
    looked.append(os.path.join(data_dir, '*', 'train', '<class>', '*.png|jpg'))
  found = []
  for candidate in candidates:
    if (_class_dirs(os.path.join(candidate, 'train')) and
        _class_dirs(os.path.join(candidate, 'test'))):
      found.append(candidate)
  if name in _CLASS_NAMES:
    want = set(_CLASS_NAMES[name])
    for candidate in found:
      got = {_norm_class(c)
             for c in _class_dirs(os.path.join(candidate, 'train'))}
      if got == want:
        return candidate
  return found[0] if found else None


def _list_images(folder):
  """The images of folder/train and folder/test, by class folder.

  Returns:
    (class_names, files): class_names, the sorted class folder names of
    ``train/``; files, {'train': [(relpath, class_index, size, mtime_ns)],
    'test': [...]}, sorted by class then file name.

  Raises:
    ValueError: a split has no class folders or a class folder no images,
      or test/ has a class that train/ lacks.
  """
  classes = _class_dirs(os.path.join(folder, 'train'))
  files = {}
  for split in ('train', 'test'):
    split_dir = os.path.join(folder, split)
    split_classes = _class_dirs(split_dir)
    extra = sorted(set(split_classes) - set(classes))
    if extra:
      raise ValueError(
          f'{split_dir}: class folders {extra} are not in '
          f'{os.path.join(folder, "train")}; train/ and test/ need the same '
          f'class folders.')
    rows = []
    for label, cls in enumerate(classes):
      cls_dir = os.path.join(split_dir, cls)
      if cls not in split_classes:  # Only in test/: a class without tests.
        continue
      entries = sorted((e for e in os.scandir(cls_dir)
                        if _is_image(e.name) and e.is_file()),
                       key=lambda e: e.name)
      if not entries:
        raise ValueError(
            f'{cls_dir}: no images (expected files ending in '
            f'{", ".join(_IMAGE_EXTS)}); remove the folder or add its images.')
      for e in entries:
        st = e.stat()
        rows.append((f'{split}/{cls}/{e.name}', label, st.st_size,
                     st.st_mtime_ns))
    if not rows:
      raise ValueError(f'{split_dir}: no class folders with images.')
    files[split] = rows
  return classes, files


def _fingerprint(classes, files):
  """A hash of the file list, sizes and mtimes (and the cache format)."""
  h = hashlib.sha256(f'wrn_trax image folder cache v{_CACHE_VERSION}\n'
                     .encode())
  h.update(('\n'.join(classes) + '\n').encode())
  for split in ('train', 'test'):
    for rel, label, size, mtime in files[split]:
      h.update(f'{rel}\t{label}\t{size}\t{mtime}\n'.encode())
  return h.hexdigest()


def _cache_paths(folder):
  """Cache files to try, in order: beside the data, then the cache dir.

  ``$WRN_TRAX_CACHE``, when set, is the only place (so a read-only or shared
  data folder is never written to).
  """
  base = 'image-folder-' + hashlib.sha256(
      os.path.abspath(folder).encode()).hexdigest()[:16] + '.npz'
  env = os.environ.get('WRN_TRAX_CACHE')
  if env:
    return [os.path.join(os.path.expanduser(env), base)]
  home = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return [os.path.join(folder, _CACHE_NAME),
          os.path.join(home, 'wrn_trax', base)]


def _read_cache(path, fingerprint):
  """The cached arrays at path if they match fingerprint, else None.

  A missing file is None quietly; an unreadable or corrupt one is None with a
  one-line notice on stderr (it will be rebuilt).
  """
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      if str(z['fingerprint']) != fingerprint:
        return None
      out = {k: z[k] for k in ('train_images', 'train_labels', 'test_images',
                               'test_labels', 'class_names')}
    for k in ('train', 'test'):
      if (out[f'{k}_images'].dtype != np.uint8 or
          out[f'{k}_images'].ndim != 4 or
          len(out[f'{k}_images']) != len(out[f'{k}_labels'])):
        raise ValueError(f'bad {k} arrays')
    return out
  except Exception as e:  # pylint: disable=broad-except
    print(f'wrn_trax.data: ignoring unreadable image cache {path} '
          f'({type(e).__name__}: {e}); rebuilding it.', file=sys.stderr)
    return None


def _write_cache(paths, arrays):
  """Writes the cache atomically to the first writable path; returns it."""
  for path in paths:
    tmp = None
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.npz',
                                 dir=os.path.dirname(path))
      os.fchmod(fd, runio.file_mode(path))  # the umask, not mkstemp's 0600
      with os.fdopen(fd, 'wb') as f:
        np.savez(f, **arrays)
      os.replace(tmp, path)
      return path
    except OSError:
      if tmp is not None and os.path.exists(tmp):
        try:
          os.remove(tmp)
        except OSError:
          pass
  print(f'wrn_trax.data: could not write the image cache to any of {paths} '
        f'(set WRN_TRAX_CACHE to a writable folder); the next load decodes '
        f'again.', file=sys.stderr)
  return None


def _decode_images(name, folder, rows, size, resize):
  """Decodes rows' images into one uint8 N x H x W x 3 array, in threads.

  Args:
    name: the data set name, for messages.
    folder: the root the relative paths start from.
    rows: [(relpath, label, size, mtime)].
    size: (W, H) every image must have (or is resized to).
    resize: resize other sizes (bilinear); else raise ValueError.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  w, h = size
  out = np.empty((len(rows), h, w, 3), np.uint8)

  def decode(start, stop):
    for i in range(start, stop):
      path = os.path.join(folder, rows[i][0])
      try:
        with Image.open(path) as im:
          if im.mode != 'RGB':
            im = im.convert('RGB')  # Greyscale, palette, RGBA, CMYK -> RGB.
          if im.size != (w, h):
            if not resize:
              raise ValueError(
                  f'{path}: {im.size[0]}x{im.size[1]} pixels, but {name} '
                  f'images must all be {w}x{h}; resize the folder to {w}x{h} '
                  f'or use dataset=\'folder\', which resizes.')
            im = im.resize((w, h), Image.BILINEAR)
          out[i] = np.asarray(im)
      except (OSError, SyntaxError) as e:  # PIL's errors for bad files.
        raise ValueError(f'{path}: not a readable PNG/JPEG image ({e}); '
                         f'remove or replace the file.') from None

  n = len(rows)
  workers = max(1, min(_DECODE_THREADS, 2 * (os.cpu_count() or 1)))
  chunk = max(256, -(-n // (workers * 8)))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futures = [pool.submit(decode, i, min(i + chunk, n))
               for i in range(0, n, chunk)]
    try:
      for fut in futures:
        fut.result()
    except BaseException:
      for fut in futures:  # A bad file: stop the chunks not yet started.
        fut.cancel()
      raise
  return out


def _first_size(folder, rows):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = os.path.join(folder, rows[0][0])
  try:
    with Image.open(path) as im:
      return im.size
  except (OSError, SyntaxError) as e:
    raise ValueError(f'{path}: not a readable PNG/JPEG image ({e}); remove or '
                     f'replace the file.') from None


def _load_image_folder(name, folder):
  """Loads train/<class>/* and test/<class>/* images, through the cache."""
  folder = os.path.abspath(folder)
  classes, files = _list_images(folder)
  if name in _CLASS_NAMES:
    official = _CLASS_NAMES[name]
    got = [_norm_class(c) for c in classes]
    if sorted(got) != sorted(official):
      missing = sorted(set(official) - set(got))
      unknown = sorted(set(got) - set(official))
      raise ValueError(
          f'{os.path.join(folder, "train")}: the class folders do not match '
          f'{name}\'s {len(official)} labels (missing: {missing[:10]}, '
          f'unknown: {unknown[:10]}). Name the folders as {name}\'s labels '
          f'({", ".join(official[:5])}, ...) or use dataset=\'folder\'.')
  fingerprint = _fingerprint(classes, files)
  paths = _cache_paths(folder)
  cached, cache_path = None, None
  for path in paths:
    cached = _read_cache(path, fingerprint)
    if cached is not None:
      cache_path = path
      break
  if cached is None:
    size = _first_size(folder, files['train'])
    resize = name not in _CLASS_NAMES
    if not resize and size != (32, 32):
      raise ValueError(
          f'{os.path.join(folder, files["train"][0][0])}: {size[0]}x{size[1]} '
          f'pixels, but {name} images are 32x32; use dataset=\'folder\' for '
          f'other sizes.')
    decode = functools.partial(_decode_images, name, folder, size=size,
                               resize=resize)
    cached = {
        'train_images': decode(files['train']),
        'train_labels': np.array([r[1] for r in files['train']], np.int32),
        'test_images': decode(files['test']),
        'test_labels': np.array([r[1] for r in files['test']], np.int32),
        'class_names': np.array(classes, dtype=str),
        'fingerprint': np.array(fingerprint),
    }
    cache_path = _write_cache(paths, cached)
  folder_classes = [str(c) for c in cached['class_names']]
  if name in _CLASS_NAMES:  # Folder order (sorted) -> the data set's order.
    index = {c: i for i, c in enumerate(_CLASS_NAMES[name])}
    remap = np.array([index[_norm_class(c)] for c in folder_classes],
                     np.int32)
    class_names = _CLASS_NAMES[name]
  else:
    remap = np.arange(len(folder_classes), dtype=np.int32)
    class_names = tuple(folder_classes)
  ds = from_arrays(cached['train_images'], remap[cached['train_labels']],
                   cached['test_images'], remap[cached['test_labels']],
                   n_classes=len(class_names), name=name)
  source = f'image folder @ {folder}'
  if cache_path:
    source += f' (cache {cache_path})'
  return dataclasses.replace(ds, source=source, class_names=class_names)


# --------------------------------------------------------------------- TFDS


def _not_found(name, data_dir, looked, tfds_name, reason):
  """Builds the DataNotFoundError for a data set found nowhere.

  Args:
    name: the data set.
    data_dir: the data_dir given, or None.
    looked: every place looked, in order.
    tfds_name: the TFDS name.
    reason: why nothing was downloaded, e.g. 'download=False'.
  """
  where = '\n'.join(f'  - {p}' for p in looked)
  fixes = []
  if name in _CIFAR_PY:
    fixes.append(
        f'  1. Attach the Kaggle CIFAR data set ("python version") and pass '
        f'data_dir= the folder holding {_CIFAR_PY[name][0]}/ (or that folder '
        f'itself), or image folders (train/<class>/*.png|jpg and '
        f'test/<class>/...), or a prepared TFDS data dir.')
  else:
    fixes.append(f'  1. Pass data_dir= a TFDS data dir holding a prepared '
                 f'{tfds_name}.')
  target = data_dir or '~/tensorflow_datasets'
  split = ', split=[\'train\', \'test\', \'extra\']' if name == 'svhn' else ''
  dir_arg = f', data_dir={data_dir!r}' if data_dir else ''
  fixes.append(
      f'  2. With internet, data.load({name!r}{dir_arg}) downloads and '
      f'prepares it (TFDS {tfds_name}), or once by hand: python -c "import '
      f'tensorflow_datasets as tfds; tfds.load(\'{tfds_name}\', '
      f'data_dir=\'{target}\'{split})"')
  return DataNotFoundError(
      f'Data set {name!r} not found and not downloaded ({reason}). '
      f'Looked in:\n{where}\nFixes:\n' + '\n'.join(fixes))


def _probe(addresses, timeout=_PROBE_TIMEOUT_S):
  """Whether any of the (host, port) addresses accepts a TCP connection.

  Each connection (name lookup included) runs in a daemon thread, so the
  probe takes at most ``timeout`` seconds (plus a little) even where DNS
  hangs.

  Returns:
    None if one connected, else a short reason for humans.
  """
  results = {}

  def connect(address):
    try:
      socket.create_connection(address, timeout=timeout).close()
      results[address] = None
    except OSError as e:
      results[address] = f'{type(e).__name__}: {e}'

  threads = [threading.Thread(target=connect, args=(a,), daemon=True)
             for a in addresses]
  for t in threads:
    t.start()
  deadline = time.monotonic() + timeout + 0.5
  for t in threads:
    t.join(max(0.0, deadline - time.monotonic()))
  if any(results.get(a, 'x') is None for a in addresses):
    return None
  silent = f'no answer within {timeout:g} s'
  return 'no network: ' + '; '.join(
      f'{host}:{port}: {results.get((host, port)) or silent}'
      for host, port in addresses)


def _download_addresses(name):
  """Where a TFDS download of `name` goes first: a proxy, or GCS and the source.

  TFDS tries its GCS mirror (storage.googleapis.com) before the data set's
  own site; with $HTTPS_PROXY / $HTTP_PROXY set, the proxy is what must
  answer.
  """
  for var in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'):
    proxy = os.environ.get(var)
    if proxy:
      parsed = urllib.parse.urlsplit(proxy if '://' in proxy
                                     else f'http://{proxy}')
      if parsed.hostname:
        return [(parsed.hostname, parsed.port or 80)]
  return [('storage.googleapis.com', 443), _DOWNLOAD_HOSTS[name]]


def _trax():
  """trax, imported through `_compat.ensure_trax`: quietly, patched.

  This module imports neither trax nor TensorFlow when it is imported (the
  command line reads `DATASETS` before anything heavy, and `digits` loads
  without them); the pipelines and the TFDS reader get them from here.
  """
  from wrn_trax import _compat  # pylint: disable=g-import-not-at-top
  _compat.ensure_trax()
  import trax  # pylint: disable=g-import-not-at-top
  return trax


def _import_tfds():
  """Imports tensorflow_datasets, or says which pin fixes a broken import.

  TFDS imports tensorflow-metadata, whose generated protobuf code must match
  the protobuf that TensorFlow keeps: tensorflow-metadata 1.21 needs protobuf
  >= 6.31, TF 2.19 keeps protobuf < 6, and pip cannot see the clash. The
  import then fails deep inside with "cannot import name 'runtime_version'".
  """
  _trax()  # TF quietly first, as everywhere (TFDS imports TF)
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    if 'runtime_version' not in str(e):
      raise
    raise ImportError(
        'tensorflow_datasets cannot be imported: its tensorflow-metadata was '
        'generated for a newer protobuf than this TensorFlow keeps (TF 2.19 '
        "keeps protobuf < 6). Fix: pip install 'tensorflow-metadata<1.18' "
        f'(README, "Supported stacks"). The error was: {e}') from e
  return tfds


def _download_tfds(name, tfds_name, data_dir, looked):
  """Downloads and prepares a TFDS data set, with TFDS's progress bars.

  Probes the network first (`_probe`, ~3 s at most) so that an offline
  machine gets the `DataNotFoundError` at once instead of a hang.
  """
  tfds = _import_tfds()
  offline = _probe(_download_addresses(name))
  if offline is not None:
    raise _not_found(name, data_dir, looked, tfds_name, offline)
  where = data_dir or 'the TFDS default data dir (~/tensorflow_datasets)'
  print(f'wrn_trax.data: {name!r} not found locally; downloading TFDS '
        f'{tfds_name} into {where} ...', file=sys.stderr)
  try:
    tfds.builder(tfds_name, data_dir=data_dir).download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    raise _not_found(name, data_dir, looked, tfds_name,
                     f'the download failed: {type(e).__name__}: {e}') from e


def _load_tfds(name, data_dir, svhn_extra, looked, download):
  """Loads whole TFDS splits into memory through `trax.data.TFDS`.

  `trax.data.TFDS` is used with a `tfds_preprocess_fn` that batches the whole
  split, so its first yield is the split as numpy. Three things it cannot do
  are done with tfds directly: checking that the data set is prepared
  (`trax.data.TFDS` downloads when `data_dir` is None, and its `tfds.load`
  call uses download=True), downloading only when asked to (and after a
  connectivity probe), and reading SVHN's ``extra`` split (it only picks
  train or validation/test).
  """
  tfds = _import_tfds()
  trax = _trax()
  tfds_name = _TFDS_NAMES[name]

  def prepared():
    """A prepared builder from data_dir (or TFDS's default dir), or None."""
    if data_dir is not None and not os.path.isdir(
        os.path.join(data_dir, tfds_name)):
      # Nothing to ask TFDS about (and it would log a warning for the miss).
      return None
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    return builder if builder.is_prepared() else None

  builder = prepared()
  if builder is None:
    if data_dir is not None and not os.path.isdir(data_dir):
      looked.append(f'{data_dir} (does not exist)')
    looked.append(f'TFDS {tfds_name} in '
                  f'{data_dir or "the TFDS default data dir"} (not prepared)')
    if download is False:
      raise _not_found(name, data_dir, looked, tfds_name, 'download=False')
    _download_tfds(name, tfds_name, data_dir, looked)
    builder = prepared()
    if builder is None:
      raise _not_found(name, data_dir, looked, tfds_name,
                       'TFDS reported success but the data set is still not '
                       'prepared')
  root = getattr(builder, '_data_dir_root', None) or data_dir
  root = os.fspath(root)
  splits = builder.info.splits

  def whole_split(train):
    n = splits['train' if train else 'test'].num_examples
    stream = trax.data.TFDS(
        tfds_name, data_dir=root, keys=('image', 'label'), train=train,
        shuffle_train=False, host_id=0, n_hosts=1,
        tfds_preprocess_fn=lambda ds: ds.batch(n))()
    images, labels = next(stream)
    return np.asarray(images), np.asarray(labels)

  x_train, y_train = whole_split(True)
  x_test, y_test = whole_split(False)
  source = f'tfds:{tfds_name} @ {root}'
  if svhn_extra:
    if 'extra' not in splits:
      raise _not_found(name, data_dir, looked + [f'{root}: no extra split'],
                       tfds_name, 'TFDS has no extra split there')
    extra = tfds.as_numpy(tfds.load(
        tfds_name, split='extra', data_dir=root, batch_size=-1,
        download=False, as_supervised=True))
    x_train = np.concatenate([x_train, extra[0]])
    y_train = np.concatenate([y_train, extra[1]])
    source += ' (train+extra)'
  ds = from_arrays(x_train, y_train, x_test, y_test,
                   n_classes=_N_CLASSES[name], name=name)
  return dataclasses.replace(ds, source=source)


# ------------------------------------------------------------- statistics


def _channel_stats(images):
  """Per-channel mean and std of uint8 images, without a float copy."""
  c = images.shape[-1]
  total = np.zeros(c, np.float64)
  total_sq = np.zeros(c, np.float64)
  for i in range(0, len(images), _STATS_CHUNK):
    chunk = images[i:i + _STATS_CHUNK].reshape(-1, c).astype(np.float64)
    total += chunk.sum(axis=0)
    total_sq += np.square(chunk).sum(axis=0)
  count = images.size // c
  mean = total / count
  std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
  std = np.where(std > 0, std, 1.0)  # A constant channel stays finite.
  return mean.astype(np.float32), std.astype(np.float32)


# ------------------------------------------------------- trax.data steps


def _check_batch_size(batch_size):
  if (isinstance(batch_size, bool) or
      not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
    raise ValueError(f'batch_size must be a positive int, got {batch_size!r}.')
  return int(batch_size)


def _check_preprocess(preprocess):
  if preprocess not in PREPROCESS:
    raise ValueError(f'preprocess={preprocess!r} is unknown; expected one of '
                     f'{PREPROCESS}.')
  return preprocess


def BatchArrays(  # pylint: disable=invalid-name
    images, labels, batch_size, *, shuffle=True, seed=0, repeat=True,
    pad_last=False):
  """A trax.data source of whole batches sliced from in-memory arrays.

  Replaces ``TFDS -> Shuffle -> Batch`` for data held in memory. With
  ``shuffle``, every epoch is a fresh permutation from a seeded numpy
  Generator (an exact shuffle; trax's `Shuffle` only mixes within a 1024-slot
  buffer), and batches run across epoch boundaries, as
  ``shuffle().repeat().batch()`` would. Batches are gathered with one fancy
  index, so the arrays are never copied and nothing is padded per example.

  Args:
    images: N x ... array.
    labels: N array.
    batch_size: examples per batch.
    shuffle: permute each epoch; else keep the stored order.
    seed: seed of the permutations.
    repeat: loop forever; else stop after one epoch (the last batch is then
      partial, or padded if ``pad_last``).
    pad_last: (only with repeat=False) pad the last batch to batch_size with
      zero images, label 0 and weight 0, and yield (images, labels, weights)
      triples, weights 1 for real examples.

  Returns:
    A function that takes no input stream and returns the batch iterator.
  """
  batch_size = _check_batch_size(batch_size)
  n = len(images)
  if n == 0:
    raise ValueError('BatchArrays needs at least one example.')

  def epochs(rng):
    while True:
      yield rng.permutation(n) if shuffle else np.arange(n)
      if not repeat:
        return

  def batches(generator=None):
    del generator
    rng = np.random.default_rng(seed)
    pending = np.zeros(0, np.int64)
    for order in epochs(rng):
      pending = np.concatenate([pending, order]) if len(pending) else order
      while len(pending) >= batch_size:
        idx, pending = pending[:batch_size], pending[batch_size:]
        x, y = images[idx], labels[idx]  # One gather: a fresh batch array.
        if pad_last:
          yield x, y, np.ones(batch_size, np.float32)
        else:
          yield x, y
    if len(pending):  # Only reached when not repeating.
      x, y = images[pending], labels[pending]
      if not pad_last:
        yield x, y
        return
      k = batch_size - len(pending)
      x = np.concatenate([x, np.zeros((k,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(k, y.dtype)])
      w = np.concatenate([np.ones(len(pending), np.float32),
                          np.zeros(k, np.float32)])
      yield x, y, w

  return batches


def crop_flip_draws(rng, n, pad=CIFAR_PAD):
  """Draws per-example crop offsets and flips for `crop_flip_batch`.

  Args:
    rng: a numpy Generator.
    n: number of examples.
    pad: reflection padding; offsets lie in [0, 2 * pad].

  Returns:
    (offsets_y, offsets_x, flips): int arrays (n,) and a bool array (n,).
  """
  offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
  flips = rng.random(n) < 0.5
  return offsets[:, 0], offsets[:, 1], flips


def crop_flip_example(image, offset_y, offset_x, flip, pad=CIFAR_PAD):
  """The per-example definition: reflect-pad, crop at an offset, maybe flip.

  Args:
    image: H x W x C array.
    offset_y: top row of the crop in the padded image, in [0, 2 * pad].
    offset_x: left column of the crop in the padded image, in [0, 2 * pad].
    flip: flip left-right after cropping.
    pad: pixels of reflection padding on each side.

  Returns:
    H x W x C array, same dtype.
  """
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
  crop = padded[offset_y:offset_y + h, offset_x:offset_x + w]
  return np.ascontiguousarray(crop[:, ::-1] if flip else crop)


@functools.lru_cache(maxsize=16)
def _reflect_index(size, pad):
  """Source index of each position of a reflect-padded axis (np.pad reflect)."""
  return np.concatenate([np.arange(pad, 0, -1), np.arange(size),
                         np.arange(size - 2, size - 2 - pad, -1)])


def crop_flip_batch(images, offsets_y, offsets_x, flips, pad=CIFAR_PAD):
  """`crop_flip_example` on a whole batch, in one gather and without padding.

  The padded image is never built: each output pixel's source pixel is found
  through the reflection index, and all pixels (C bytes each) are fetched
  with one `np.take`.

  Args:
    images: N x H x W x C array.
    offsets_y: int array (N,), in [0, 2 * pad].
    offsets_x: int array (N,), in [0, 2 * pad].
    flips: bool array (N,).
    pad: pixels of reflection padding; must be < H and < W.

  Returns:
    N x H x W x C array, same dtype.
  """
  n, h, w, c = images.shape
  if not 0 <= pad < min(h, w):
    raise ValueError(f'pad must be in [0, {min(h, w)}) for {h}x{w} images, '
                     f'got {pad}.')
  rows = _reflect_index(h, pad)[offsets_y[:, None] + np.arange(h)]
  cols = offsets_x[:, None] + np.arange(w)
  cols = np.where(flips[:, None], cols[:, ::-1], cols)
  cols = _reflect_index(w, pad)[cols]
  pixel = (np.arange(n)[:, None, None] * (h * w) + rows[:, :, None] * w +
           cols[:, None, :])
  pixels = np.ascontiguousarray(images).reshape(n * h * w, c)
  return np.take(pixels, pixel.reshape(-1), axis=0).reshape(n, h, w, c)


def RandomCropFlip(pad=CIFAR_PAD, seed=0):  # pylint: disable=invalid-name
  """Batched CIFAR augmentation: reflect-pad, random crop, random flip.

  Zagoruyko & Komodakis (2016), Sec. 3: "random crops from image padded by 4
  pixels on each side, filling missing pixels with reflections of original
  image" plus horizontal flips. (trax's own `cifar10_augmentation_preprocess`
  pads with zeros and works one image at a time in tf.data.) Draws come from
  a numpy Generator seeded with ``seed``, so a stream is reproducible.

  Args:
    pad: pixels of reflection padding on each side.
    seed: seed of the draws.

  Returns:
    A trax.data step mapping (images, labels, ...) batches to augmented ones.
  """
  def augment(generator):
    rng = np.random.default_rng(seed)
    for images, *rest in generator:
      oy, ox, flips = crop_flip_draws(rng, len(images), pad)
      yield (crop_flip_batch(images, oy, ox, flips, pad), *rest)
  return augment


def Standardize(mean, std):  # pylint: disable=invalid-name
  """Maps uint8 image batches to float32 (x - mean) / std per channel.

  Uses a 256-entry lookup table per channel, which is faster than float
  arithmetic on the whole batch and gives the same float32 values.

  Args:
    mean: per-channel means (C,).
    std: per-channel standard deviations (C,).

  Returns:
    A trax.data step mapping (images, labels, ...) batches.
  """
  mean = np.asarray(mean, np.float64)
  std = np.asarray(std, np.float64)
  table = ((np.arange(256, dtype=np.float64)[None, :] - mean[:, None]) /
           std[:, None]).astype(np.float32)  # C x 256.
  return _LookupStep(table)


def Rescale(scale=1.0 / 255.0):  # pylint: disable=invalid-name
  """Maps uint8 image batches to float32 x * scale (SVHN: pixels / 255).

  Args:
    scale: the factor.

  Returns:
    A trax.data step mapping (images, labels, ...) batches.
  """
  table = (np.arange(256, dtype=np.float64) * scale).astype(np.float32)
  return _LookupStep(table[None, :])


def _LookupStep(table):  # pylint: disable=invalid-name
  """A step mapping uint8 pixels through a C x 256 (or 1 x 256) float table."""
  def lookup(generator):
    for images, *rest in generator:
      if images.dtype != np.uint8:
        raise ValueError(f'expected uint8 images, got {images.dtype}.')
      out = np.empty(images.shape, np.float32)
      for ch in range(images.shape[-1]):
        np.take(table[min(ch, len(table) - 1)], images[..., ch],
                out=out[..., ch])
      yield (out, *rest)
  return lookup


def _preprocess_steps(ds, preprocess, training, seed):
  """The trax.data steps of a preprocessing recipe, in order."""
  if preprocess == 'raw':
    return []
  if preprocess == 'svhn':
    return [Rescale(1.0 / 255.0)]
  steps = []
  if preprocess == 'cifar' and training:
    steps.append(RandomCropFlip(CIFAR_PAD, seed=seed))
  steps.append(Standardize(*ds.channel_stats))
  return steps


def _seeds(seed):
  """Independent (shuffle, augmentation) seeds from one user seed."""
  children = np.random.SeedSequence(seed).spawn(2)
  return [int(c.generate_state(1)[0]) for c in children]


# ---------------------------------------------------------------- pipelines


def train_batches(ds, batch_size, *, preprocess='raw', seed=0):
  """Infinite, shuffled, augmented training batches.

  The pipeline is ``trax.data.Serial(BatchArrays, [RandomCropFlip],
  [Standardize | Rescale], trax.data.AddLossWeights())``; see `PREPROCESS`.

  Args:
    ds: a `Dataset`.
    batch_size: examples per batch (> 0).
    preprocess: one of `PREPROCESS`: 'raw' (uint8, no augmentation, as the
      seed notebooks), 'standardize' (float32, train-split channel stats),
      'cifar' (standardize + reflect-pad-4 random crop + random flip),
      'svhn' (float32 pixels / 255).
    seed: makes the stream reproducible.

  Returns:
    An iterator of (images, labels, weights): images uint8 (raw) or float32,
    labels int32, weights float32 ones.
  """
  trax = _trax()
  batch_size = _check_batch_size(batch_size)
  preprocess = _check_preprocess(preprocess)
  shuffle_seed, augment_seed = _seeds(seed)
  return trax.data.Serial(
      BatchArrays(ds.train_images, ds.train_labels, batch_size,
                  seed=shuffle_seed),
      _preprocess_steps(ds, preprocess, True, augment_seed),
      trax.data.AddLossWeights(),
  )()


def test_batches(ds, batch_size, *, preprocess='raw'):
  """The whole test split, exactly once, in stored order, for exact accuracy.

  The last batch is padded to ``batch_size`` (zero images, label 0) with
  weight 0, so ``sum(correct * w) / sum(w)`` is the exact test accuracy and
  every batch has one shape (one XLA compilation). There are
  `n_test_batches` batches. Eval never augments ('cifar' only standardizes).
  (Called `eval_batches` before; that name still works. The recipe field
  `eval_batches` is something else: the size of the cheap in-training eval.)

  Args:
    ds: a `Dataset`.
    batch_size: examples per batch (> 0).
    preprocess: one of `PREPROCESS`.

  Returns:
    An iterator of (images, labels, weights).
  """
  trax = _trax()
  batch_size = _check_batch_size(batch_size)
  preprocess = _check_preprocess(preprocess)
  return trax.data.Serial(
      BatchArrays(ds.test_images, ds.test_labels, batch_size, shuffle=False,
                  repeat=False, pad_last=True),
      _preprocess_steps(ds, preprocess, False, 0),
      trax.data.AddLossWeights(),
  )()


# The old name of `test_batches` (scripts may call it).
eval_batches = test_batches


def eval_sample_batches(ds, batch_size, *, preprocess='raw', seed=0):
  """Infinite shuffled test batches for trax's in-training `EvalTask`.

  For the cheap periodic estimate (``n_eval_batches=20`` as the seed
  notebooks); use `test_batches` for the exact full-split number.

  Args:
    ds: a `Dataset`.
    batch_size: examples per batch (> 0).
    preprocess: one of `PREPROCESS`; eval never augments.
    seed: makes the stream reproducible.

  Returns:
    An iterator of (images, labels, weights), weights all 1.
  """
  trax = _trax()
  batch_size = _check_batch_size(batch_size)
  preprocess = _check_preprocess(preprocess)
  return trax.data.Serial(
      BatchArrays(ds.test_images, ds.test_labels, batch_size,
                  seed=_seeds(seed)[0]),
      _preprocess_steps(ds, preprocess, False, 0),
      trax.data.AddLossWeights(),
  )()


def n_test_batches(ds, batch_size):
  """Number of batches of `test_batches`: ceil(n_test / batch_size)."""
  batch_size = _check_batch_size(batch_size)
  return math.ceil(len(ds.test_labels) / batch_size)


n_eval_batches = n_test_batches  # its old name
