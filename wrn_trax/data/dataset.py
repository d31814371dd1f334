"""The in-memory `Dataset`, its checks, its statistics and the names every source shares."""
import dataclasses
import functools
import pickle
import sys

import numpy as np

DATASETS = ('digits', 'cifar10', 'cifar100', 'svhn', 'svhn_extra', 'folder')
# 'svhn_extra' is SVHN with its 531,131-image `extra` split appended to the
# training split, as the paper trained (`load('svhn', svhn_extra=True)`).
PREPROCESS = ('raw', 'standardize', 'cifar', 'svhn')

# Pixels of reflection padding before the random 32x32 crop (paper, Sec. 3).
CIFAR_PAD = 4

_N_CLASSES = {'digits': 10, 'cifar10': 10, 'cifar100': 100, 'svhn': 10}
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


def _trax():
  """trax, imported through `_compat.ensure_trax`: quietly, patched.

  This package imports neither trax nor TensorFlow when it is imported (the
  command line reads `DATASETS` before anything heavy, and `digits` loads
  without them); the pipelines and the TFDS reader get them from here.
  """
  from wrn_trax import _compat  # pylint: disable=g-import-not-at-top
  _compat.ensure_trax()
  import trax  # pylint: disable=g-import-not-at-top
  return trax


def _patchable():
  """The package `wrn_trax.data`, where tests and benches patch names.

  Code in the modules of the package reads the few names that tests and
  benches replace (``data._probe``, ``data._DECODE_THREADS``,
  ``data._LookupStep``) through this, so a patch of the package's name takes
  effect as it did when `wrn_trax.data` was one module.
  """
  return sys.modules['wrn_trax.data']
