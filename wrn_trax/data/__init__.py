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

The package's modules, one job each: `dataset` (the `Dataset`, `from_arrays`,
the channel statistics), one per source (`digits`, `cifar`, `images`,
`tfds`), and `pipelines`; the host crop/flip lives in `wrn_trax.augment`
beside its device twin. Every name is importable from `wrn_trax.data`.
"""

import os

from wrn_trax.data import cifar, dataset, digits, images, pipelines, tfds
from wrn_trax.data.cifar import (
  _CIFAR_PY,
  _CifarUnpickler,
  _empty_bytes,
  _find_cifar_python,
  _latin1_encode,
  _load_cifar_python,
  _numpy_core,
  _unpickle,
)
from wrn_trax.data.dataset import (
  _CLASS_NAMES,
  _N_CLASSES,
  _STATS_CHUNK,
  CIFAR_PAD,
  DATASETS,
  PREPROCESS,
  DataNotFoundError,
  Dataset,
  UnsafePickleError,
  _channel_stats,
  _check_images,
  _check_labels,
  _trax,
  default_preprocess,
  from_arrays,
)
from wrn_trax.data.digits import _load_digits
from wrn_trax.data.images import (
  _CACHE_NAME,
  _CACHE_VERSION,
  _DECODE_THREADS,
  _IMAGE_EXTS,
  _cache_paths,
  _class_dirs,
  _decode_images,
  _find_image_folder,
  _fingerprint,
  _first_size,
  _is_image,
  _list_images,
  _load_image_folder,
  _norm_class,
  _read_cache,
  _write_cache,
)
from wrn_trax.data.pipelines import (
  BatchArrays,
  RandomCropFlip,
  Rescale,
  Standardize,
  _check_batch_size,
  _check_preprocess,
  _LookupStep,
  _preprocess_steps,
  _seeds,
  eval_batches,
  eval_sample_batches,
  n_eval_batches,
  n_test_batches,
  test_batches,
  train_batches,
)
from wrn_trax.data.tfds import (
  _DOWNLOAD_HOSTS,
  _PROBE_TIMEOUT_S,
  _TFDS_NAMES,
  _download_addresses,
  _download_tfds,
  _import_tfds,
  _load_tfds,
  _not_found,
  _probe,
)

__all__ = [
    'CIFAR_PAD',
    'DATASETS',
    'PREPROCESS',
    'BatchArrays',
    'DataNotFoundError',
    'Dataset',
    'RandomCropFlip',
    'Rescale',
    'Standardize',
    'UnsafePickleError',
    'crop_flip_batch',
    'crop_flip_draws',
    'crop_flip_example',
    'default_preprocess',
    'eval_batches',
    'eval_sample_batches',
    'from_arrays',
    'load',
    'n_eval_batches',
    'n_test_batches',
    'test_batches',
    'train_batches',
]

# The host crop/flip lives in wrn_trax.augment, beside its device twin; it is
# imported on first use, as augment imports trax and jax, which
# `import wrn_trax.data` does not.
_FROM_AUGMENT = {'crop_flip_draws': 'crop_flip_draws',
                 'crop_flip_example': 'crop_flip_example',
                 'crop_flip_batch': 'crop_flip_batch',
                 '_reflect_index': '_host_reflect_index'}


def __getattr__(name):
  if name in _FROM_AUGMENT:
    from wrn_trax import augment  # pylint: disable=g-import-not-at-top
    return getattr(augment, _FROM_AUGMENT[name])
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
  return sorted(set(globals()) | set(_FROM_AUGMENT))


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
