"""Tests for wrn_trax.data: sources, validation, pipelines, augmentation.

No test touches the network: TFDS data sets are written into temp folders
with the real builders (their download step replaced by in-memory examples),
and downloading is patched to fail loudly.
"""
import contextlib
import io
import os
import pickle
import struct
import tempfile
import tracemalloc
from unittest import mock

import numpy as np
import pytest

from wrn_trax import data

_ORIGINAL_PROBE = data._probe  # pylint: disable=protected-access

# ------------------------------------------------------------------ helpers


def _images(rng, n, h=32, w=32, c=3):
  return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _small(rng=None, n_train=50, n_test=23, n_classes=5):
  rng = rng or np.random.default_rng(0)
  return data.from_arrays(
      _images(rng, n_train), rng.integers(0, n_classes, n_train),
      _images(rng, n_test), rng.integers(0, n_classes, n_test),
      n_classes=n_classes)


class _Py2Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Writes str and bytes as Python 2 `str` (BINSTRING), as cPickle did.

  The CIFAR "python version" files are Python 2 protocol-2 pickles; Python 3
  would write bytes through `_codecs.encode`, a global the real files never
  name, so this pickler reproduces the originals' opcodes.
  """

  def save_py2_str(self, obj):
    raw = obj.encode('latin1') if isinstance(obj, str) else obj
    if len(raw) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
    else:
      self.write(pickle.BINSTRING + struct.pack('<i', len(raw)) + raw)
    self.memoize(obj)

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access
  dispatch[str] = save_py2_str
  dispatch[bytes] = save_py2_str


def _write_cifar_py(folder, files, label_key, rng, n_per_file=4,
                    numpy_core_alias=True):
  """Writes CIFAR "python version" batch files like the originals.

  With ``numpy_core_alias`` the arrays name `numpy.core.multiarray` (as the
  originals, pickled with numpy 1.x); else `numpy._core.multiarray` (numpy 2).
  Returns {file name: (images N x 32 x 32 x 3, labels)} of what was written.
  """
  os.makedirs(folder, exist_ok=True)
  written = {}
  for f in files:
    images = _images(rng, n_per_file)
    labels = rng.integers(0, 10, n_per_file).tolist()
    rows = images.transpose(0, 3, 1, 2).reshape(n_per_file, 3072)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(
        {'batch_label': 'training batch', label_key.decode(): labels,
         'data': rows, 'filenames': ['a.png'] * n_per_file})
    blob = buf.getvalue()
    if numpy_core_alias:
      blob = blob.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    with open(os.path.join(folder, f), 'wb') as fh:
      fh.write(blob)
    written[f] = (images, np.asarray(labels))
  return written


_CIFAR10_FILES = [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']


@contextlib.contextmanager
def _no_download():
  """Makes any TFDS download attempt fail the test."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def refuse(*args, **kwargs):
    raise AssertionError(f'network download attempted: {args} {kwargs}')

  with mock.patch.object(tfds.core.DatasetBuilder, 'download_and_prepare',
                         refuse), \
       mock.patch.object(tfds.download.DownloadManager, 'download', refuse), \
       mock.patch.object(tfds.download.DownloadManager, 'download_and_extract',
                         refuse):
    yield


def _prepare_tfds(tfds_name, data_dir, splits):
  """Writes a real, prepared TFDS data set from in-memory examples.

  The builder's `_split_generators` (the only part that downloads) is
  replaced by generators over `splits` = {split: (images, labels)}.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  cls = type(builder)
  features = set(builder.info.features.keys())

  def examples(split, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      record = {'image': image, 'label': int(label)}
      if 'id' in features:
        record['id'] = f'{split}_{i:05d}'
      if 'coarse_label' in features:
        record['coarse_label'] = int(label) % 20
      yield i, record

  def split_generators(self, dl_manager):
    del self, dl_manager
    return {s: examples(s, *xy) for s, xy in splits.items()}

  # url_infos reads checksum files through code paths this venv lacks, and
  # mock.patch would read the original first; set and delete it by hand.
  cls.url_infos = None
  try:
    with mock.patch.object(cls, '_split_generators', split_generators):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  finally:
    del cls.url_infos


def _sorted_rows(images, labels):
  """Examples as sorted bytes, to compare splits regardless of order."""
  return sorted(bytes(x) + bytes([int(y)]) for x, y in zip(images, labels))


# --------------------------------------------------------------- digits


def test_digits_is_real_fixed_and_stratified():
  ds = data.load('digits')
  assert ds.name == 'digits' and ds.n_classes == 10
  assert ds.source == 'sklearn digits'
  assert ds.train_images.shape == (1437, 32, 32, 3)
  assert ds.test_images.shape == (360, 32, 32, 3)
  assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
  assert ds.train_images.max() == 255 and ds.train_images.min() == 0
  # Nearest-neighbour upscaling: 4x4 blocks, 3 equal channels.
  img = ds.train_images[0]
  assert (img[::4, ::4] == img[3::4, 3::4]).all()
  assert (img[..., 0] == img[..., 2]).all()
  assert np.bincount(ds.test_labels, minlength=10).min() >= 35
  again = data.load('digits')
  np.testing.assert_array_equal(ds.test_labels, again.test_labels)
  np.testing.assert_array_equal(ds.train_images, again.train_images)


def test_default_preprocess():
  assert data.default_preprocess('cifar10') == 'cifar'
  assert data.default_preprocess('cifar100') == 'cifar'
  assert data.default_preprocess('svhn') == 'svhn'
  assert data.default_preprocess('digits') == 'standardize'
  assert set(map(data.default_preprocess, data.DATASETS)) <= set(
      data.PREPROCESS)


# ------------------------------------------------------------ from_arrays


def test_from_arrays_accepts_grayscale_and_column_labels():
  rng = np.random.default_rng(0)
  ds = data.from_arrays(
      rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
      rng.integers(0, 3, (6, 1)),
      rng.integers(0, 256, (4, 8, 8), dtype=np.uint8), np.array([0, 1, 2, 1]))
  assert ds.train_images.shape == (6, 8, 8, 1)
  assert ds.train_labels.shape == (6,) and ds.train_labels.dtype == np.int32
  assert ds.n_classes == 3 and ds.source == 'arrays' and ds.name == 'arrays'


def test_from_arrays_does_not_copy_good_arrays():
  rng = np.random.default_rng(0)
  x = _images(rng, 5)
  ds = data.from_arrays(x, np.zeros(5, np.int32), x[:2], np.zeros(2, np.int32))
  assert ds.train_images is x


@pytest.mark.parametrize('kwargs, match', [
    (dict(train_images=np.zeros((4, 8, 8, 3), np.float32)), 'train_images must be uint8'),
    (dict(test_images=np.zeros((4, 8), np.uint8)), r'test_images must be N x H x W x C'),
    (dict(train_images=np.zeros((4, 2, 8, 8, 3), np.uint8)), 'train_images must be N x H x W'),
    (dict(test_images=np.zeros((2, 9, 8, 3), np.uint8)), 'same image shape'),
    (dict(train_labels=np.array([0, 1, 2])), r'train_labels must have shape \(4,\)'),
    (dict(train_labels=np.array([0., 1., 2., 1.])), 'train_labels must be integers'),
    (dict(test_labels=np.array([0, 5])), r'test_labels must lie in \[0, n_classes=3\)'),
    (dict(train_labels=np.array([0, -1, 1, 1])), r'train_labels must lie in'),
    (dict(n_classes=0), 'n_classes must be >= 1'),
    (dict(n_classes=2.5), 'n_classes must be an int'),
])
def test_from_arrays_rejects_bad_input(kwargs, match):
  args = dict(train_images=np.zeros((4, 8, 8, 3), np.uint8),
              train_labels=np.array([0, 1, 2, 1]),
              test_images=np.zeros((2, 8, 8, 3), np.uint8),
              test_labels=np.array([0, 2]), n_classes=3)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    data.from_arrays(**args)


# ------------------------------------------------------------- bad arguments


def test_load_rejects_unknown_name():
  with pytest.raises(ValueError, match=r"name='mnist'.*'digits', 'cifar10'"):
    data.load('mnist')
  with pytest.raises(ValueError, match='svhn_extra'):
    data.load('cifar10', svhn_extra=True)


@pytest.mark.parametrize('batch_size', [0, -3, 2.5, True, None])
def test_bad_batch_size(batch_size):
  ds = _small()
  for fn in (data.train_batches, data.eval_batches, data.eval_sample_batches,
             data.n_eval_batches):
    with pytest.raises(ValueError, match='batch_size must be a positive int'):
      fn(ds, batch_size)


def test_unknown_preprocess():
  ds = _small()
  for fn in (data.train_batches, data.eval_batches, data.eval_sample_batches):
    with pytest.raises(ValueError, match=r"preprocess='imagenet'.*'raw'"):
      fn(ds, 4, preprocess='imagenet')


# ------------------------------------------------- CIFAR python batch files


@pytest.mark.parametrize('layout', ['itself', 'parent', 'kaggle_nested'])
@pytest.mark.parametrize('numpy_core_alias', [False, True])
def test_cifar10_python_batches(tmp_path, layout, numpy_core_alias):
  folder = {'itself': tmp_path / 'cifar-10-batches-py',
            'parent': tmp_path / 'cifar-10-batches-py',
            'kaggle_nested': tmp_path / 'cifar10-python' / 'cifar-10-batches-py'
           }[layout]
  written = _write_cifar_py(folder, _CIFAR10_FILES, b'labels',
                            np.random.default_rng(1),
                            numpy_core_alias=numpy_core_alias)
  data_dir = folder if layout == 'itself' else tmp_path
  with _no_download():
    ds = data.load('cifar10', data_dir=data_dir)
  assert ds.source == f'cifar-10-batches-py @ {folder}'
  assert ds.n_classes == 10 and ds.train_images.shape == (20, 32, 32, 3)
  train = [written[f] for f in _CIFAR10_FILES[:5]]
  np.testing.assert_array_equal(ds.train_images,
                                np.concatenate([x for x, _ in train]))
  np.testing.assert_array_equal(ds.train_labels,
                                np.concatenate([y for _, y in train]))
  np.testing.assert_array_equal(ds.test_images, written['test_batch'][0])
  assert ds.train_labels.dtype == np.int32


def test_cifar100_python_fine_labels(tmp_path):
  folder = tmp_path / 'cifar-100-python'
  written = _write_cifar_py(folder, ['train', 'test'], b'fine_labels',
                            np.random.default_rng(2), n_per_file=6)
  ds = data.load('cifar100', data_dir=str(tmp_path))
  assert ds.n_classes == 100 and ds.source.startswith('cifar-100-python @ ')
  np.testing.assert_array_equal(ds.test_labels, written['test'][1])
  np.testing.assert_array_equal(ds.train_images, written['train'][0])


def _globals_in(blob):
  """The (module, name) globals a pickle asks for, by a plain Unpickler."""
  names = set()

  class Recorder(pickle.Unpickler):

    def find_class(self, module, name):
      names.add((module, name))
      return super().find_class(module, name)

  Recorder(io.BytesIO(blob), encoding='bytes').load()
  return names


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
@pytest.mark.parametrize('keys', ['bytes', 'str'])
def test_cifar_batches_repickled_by_python3(tmp_path, protocol, keys):
  """Batch files re-pickled under Python 3 at any protocol numpy uses."""
  rng = np.random.default_rng(12)
  folder = tmp_path / 'cifar-10-batches-py'
  folder.mkdir()
  want_x, want_y, seen = [], [], set()
  for i, f in enumerate(_CIFAR10_FILES):
    images = _images(rng, 3)
    labels = rng.integers(0, 10, 3)
    # Labels as ints, an int64 array, or a list of numpy scalars (as
    # list(array) gives); file names with a b'' (pickled as bytes()).
    label_obj = [labels.tolist(), labels, list(labels)][i % 3]
    batch = {'batch_label': b'training batch', 'labels': label_obj,
             'data': images.transpose(0, 3, 1, 2).reshape(3, 3072),
             'filenames': [b'a_1.png', b'', b'\xff.png']}
    if keys == 'bytes':
      batch = {k.encode(): v for k, v in batch.items()}
    blob = pickle.dumps(batch, protocol=protocol)
    seen |= _globals_in(blob)
    (folder / f).write_bytes(blob)
    if f != 'test_batch':
      want_x.append(images)
      want_y.append(labels)
  ds = data.load('cifar10', data_dir=tmp_path)
  np.testing.assert_array_equal(ds.train_images, np.concatenate(want_x))
  np.testing.assert_array_equal(ds.train_labels, np.concatenate(want_y))
  assert ds.test_images.shape == (3, 32, 32, 3)
  # The test covers the helpers each protocol really uses.
  core = seen & {('numpy._core.multiarray', '_reconstruct'),
                 ('numpy.core.multiarray', '_reconstruct')}
  if protocol == 2:
    assert ('_codecs', 'encode') in seen and core
    assert ('__builtin__', 'bytes') in seen
  elif protocol < 5:
    assert core and ('_codecs', 'encode') not in seen
  else:
    assert {g[1] for g in seen} >= {'_frombuffer', 'scalar', 'dtype'}
  assert all(g in data._CifarUnpickler.allowed for g in seen)  # pylint: disable=protected-access


def test_numpy1_names_of_protocol5_helpers_resolve():
  unpickler = data._CifarUnpickler(io.BytesIO(), 'x')  # pylint: disable=protected-access
  for module in ('numpy.core.numeric', 'numpy._core.numeric'):
    assert unpickler.find_class(module, '_frombuffer').__name__ == '_frombuffer'
  for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    assert unpickler.find_class(module, 'scalar').__name__ == 'scalar'


@pytest.mark.parametrize('blob, match', [
    # _codecs.encode is allowed only as pickle uses it: (str, 'latin1').
    (b'\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13'
     b'\x86R.', 'refusing _codecs.encode'),
    (b'\x80\x02c__builtin__\nbytes\nJ\x00\xe1\xf5\x05\x85R.',
     r'refusing bytes\(100000000,\)'),
])
def test_allowed_helpers_refuse_other_uses(tmp_path, blob, match):
  path = tmp_path / 'test_batch'
  path.write_bytes(blob)
  with pytest.raises(data.UnsafePickleError, match=match) as err:
    data._unpickle(str(path))  # pylint: disable=protected-access
  assert str(path) in str(err.value)


@pytest.mark.parametrize('blob', [b'', b'\x80\x05garbage', b'not a pickle'])
def test_unreadable_batch_file_is_a_clear_error(tmp_path, blob):
  path = tmp_path / 'test_batch'
  path.write_bytes(blob)
  with pytest.raises(ValueError, match='not a readable CIFAR batch file'):
    data._unpickle(str(path))  # pylint: disable=protected-access


def test_out_of_band_buffers_are_refused(tmp_path):
  buffers = []
  blob = pickle.dumps({b'data': np.zeros((2, 3072), np.uint8)}, protocol=5,
                      buffer_callback=buffers.append)
  assert buffers  # The stream refers to data that is not in the file.
  path = tmp_path / 'test_batch'
  path.write_bytes(blob)
  with pytest.raises(ValueError, match='not a readable CIFAR batch file'):
    data._unpickle(str(path))  # pylint: disable=protected-access


class _Evil:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
  folder = tmp_path / 'cifar-10-batches-py'
  _write_cifar_py(folder, _CIFAR10_FILES, b'labels', np.random.default_rng(3))
  marker = tmp_path / 'pwned'
  with open(folder / 'data_batch_3', 'wb') as fh:
    pickle.dump({b'data': _Evil(marker), b'labels': [0]}, fh, protocol=3)
  with pytest.raises(data.UnsafePickleError) as err:
    data.load('cifar10', data_dir=tmp_path)
  assert 'data_batch_3' in str(err.value) and 'system' in str(err.value)
  assert isinstance(err.value, pickle.UnpicklingError)
  assert not marker.exists()


def test_pickle_of_other_globals_is_refused(tmp_path):
  path = tmp_path / 'test_batch'
  with open(path, 'wb') as fh:
    pickle.dump({b'data': print}, fh, protocol=3)  # builtins.print
  with pytest.raises(data.UnsafePickleError, match='builtins.print'):
    data._unpickle(str(path))  # pylint: disable=protected-access


# ------------------------------------------------------------ image folders


def _write_folder(root, classes, rng, n_train=3, n_test=2, size=(32, 32),
                  fmt='png', mode='RGB'):
  """Writes root/{train,test}/<class>/<i>.<fmt> images; returns what it wrote.

  Returns {split: {class: [H x W x 3 uint8 as decoded]}}, class order as given.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  written = {}
  for split, n in (('train', n_train), ('test', n_test)):
    written[split] = {}
    for cls in classes:
      d = root / split / cls
      d.mkdir(parents=True, exist_ok=True)
      written[split][cls] = []
      for i in range(n):
        c = 1 if mode == 'L' else 3
        pixels = rng.integers(0, 256, (size[1], size[0], c), dtype=np.uint8)
        im = Image.fromarray(pixels[..., 0] if mode == 'L' else pixels, mode)
        path = d / f'{i:04d}.{fmt}'
        im.save(path)
        with Image.open(path) as back:  # JPEG is lossy: keep what decodes.
          written[split][cls].append(np.asarray(back.convert('RGB')))
  return written


@pytest.fixture
def cache_env(tmp_path, monkeypatch):
  """No WRN_TRAX_CACHE and a temp home cache: nothing lands in ~/.cache."""
  monkeypatch.delenv('WRN_TRAX_CACHE', raising=False)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  return tmp_path / 'xdg' / 'wrn_trax'


@pytest.mark.parametrize('fmt', ['png', 'jpg'])
def test_cifar10_image_folder_in_cifar_label_order(tmp_path, cache_env, fmt):
  classes = list(data._CLASS_NAMES['cifar10'])  # pylint: disable=protected-access
  root = tmp_path / 'cifar10-images'
  # Written in reverse, so file order alone cannot give the right labels.
  written = _write_folder(root, classes[::-1], np.random.default_rng(5),
                          fmt=fmt)
  with _no_download():
    ds = data.load('cifar10', data_dir=tmp_path)  # One level up: found.
  assert ds.name == 'cifar10' and ds.n_classes == 10
  assert ds.class_names == tuple(classes)
  assert ds.train_images.shape == (30, 32, 32, 3)
  assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
  assert ds.source.startswith(f'image folder @ {root}')
  assert (root / '.wrn_trax_cache.npz').is_file()  # Beside the data.
  for split, x, y in (('train', ds.train_images, ds.train_labels),
                      ('test', ds.test_images, ds.test_labels)):
    for label, cls in enumerate(classes):
      np.testing.assert_array_equal(x[y == label],
                                    np.stack(written[split][cls]))
  assert np.bincount(ds.test_labels).tolist() == [2] * 10


def test_cifar100_image_folder_checks_class_names(tmp_path, cache_env):
  classes = list(data._CLASS_NAMES['cifar100'])  # pylint: disable=protected-access
  assert len(classes) == 100 and classes[:3] == ['apple', 'aquarium_fish',
                                                 'baby']
  written = _write_folder(tmp_path, classes, np.random.default_rng(6),
                          n_train=1, n_test=1)
  ds = data.load('cifar100', data_dir=tmp_path)
  assert ds.n_classes == 100 and ds.class_names[-1] == 'worm'
  np.testing.assert_array_equal(ds.train_labels, np.arange(100))
  np.testing.assert_array_equal(ds.test_images[42],
                                written['test'][classes[42]][0])
  (tmp_path / 'train' / 'worm').rename(tmp_path / 'train' / 'worms')
  (tmp_path / 'test' / 'worm').rename(tmp_path / 'test' / 'worms')
  with pytest.raises(ValueError, match=r"missing: \['worm'\].*unknown: "
                     r"\['worms'\].*dataset='folder'"):
    data.load('cifar100', data_dir=tmp_path)


def test_cifar10_folder_names_match_loosely_and_size_is_checked(
    tmp_path, cache_env):
  classes = ['Airplane', 'Automobile', 'Bird', 'Cat', 'Deer', 'Dog', 'Frog',
             'Horse', 'Ship', 'Truck']
  _write_folder(tmp_path / 'a', classes, np.random.default_rng(7), n_train=1,
                n_test=1)
  ds = data.load('cifar10', data_dir=tmp_path / 'a')
  assert ds.class_names[0] == 'airplane'
  _write_folder(tmp_path / 'b', classes, np.random.default_rng(7), n_train=1,
                n_test=1, size=(40, 40))
  with pytest.raises(ValueError, match=r"40x40 pixels.*32x32.*'folder'"):
    data.load('cifar10', data_dir=tmp_path / 'b')


def test_folder_dataset_any_classes_grey_and_resized(tmp_path, cache_env):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(8)
  written = _write_folder(tmp_path, ['zebra', 'ant', 'moth'], rng,
                          size=(20, 12), mode='L', fmt='jpg')
  odd = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)  # 40 wide, 24 high.
  Image.fromarray(odd).save(tmp_path / 'train' / 'moth' / 'big.png')
  (tmp_path / 'train' / 'moth' / 'notes.txt').write_text('not an image')
  (tmp_path / 'train' / '.ipynb_checkpoints').mkdir()
  ds = data.load('folder', data_dir=tmp_path)
  assert ds.name == 'folder' and ds.class_names == ('ant', 'moth', 'zebra')
  assert ds.n_classes == 3 and ds.image_shape == (12, 20, 3)
  assert np.bincount(ds.train_labels).tolist() == [3, 4, 3]
  grey = ds.train_images[ds.train_labels == 2][0]
  np.testing.assert_array_equal(grey, written['train']['zebra'][0])
  assert (grey[..., 0] == grey[..., 1]).all()  # Greyscale -> 3 equal channels.
  moth = ds.train_images[ds.train_labels == 1]
  want = np.asarray(Image.fromarray(odd).resize((20, 12), Image.BILINEAR))
  np.testing.assert_array_equal(moth[-1], want)  # 'big.png' sorts last.
  assert data.default_preprocess('folder') == 'standardize'


def test_image_folder_one_level_deeper_picks_the_matching_classes(
    tmp_path, cache_env):
  rng = np.random.default_rng(16)
  _write_folder(tmp_path / 'a_pets', ['cat', 'dog'], rng, n_test=1)
  for f in (tmp_path / 'a_pets' / 'test' / 'dog').iterdir():
    f.unlink()
  (tmp_path / 'a_pets' / 'test' / 'dog').rmdir()
  _write_folder(tmp_path / 'b_cifar', list(data._CLASS_NAMES['cifar10']),  # pylint: disable=protected-access
                rng, n_train=1, n_test=1)
  ds = data.load('cifar10', data_dir=tmp_path)
  assert ds.source.startswith(f'image folder @ {tmp_path / "b_cifar"}')
  pets = data.load('folder', data_dir=tmp_path)  # The first, sorted.
  assert pets.class_names == ('cat', 'dog')
  # test/ may lack a class that train/ has.
  assert pets.train_labels.tolist() == [0] * 3 + [1] * 3
  assert pets.test_labels.tolist() == [0]


def test_folder_errors_are_clear(tmp_path, cache_env):
  with pytest.raises(ValueError, match='needs data_dir'):
    data.load('folder')
  with pytest.raises(data.DataNotFoundError, match='No image folders'):
    data.load('folder', data_dir=tmp_path)
  _write_folder(tmp_path, ['a', 'b'], np.random.default_rng(9))
  (tmp_path / 'test' / 'c').mkdir()
  with pytest.raises(ValueError, match=r"class folders \['c'\] are not in"):
    data.load('folder', data_dir=tmp_path)
  (tmp_path / 'test' / 'c').rmdir()
  (tmp_path / 'train' / 'b' / 'broken.png').write_bytes(b'not a png')
  with pytest.raises(ValueError, match='broken.png: not a readable PNG/JPEG'):
    data.load('folder', data_dir=tmp_path)


def test_folder_cache_is_used_refreshed_and_rebuilt(tmp_path, cache_env,
                                                    capsys):
  rng = np.random.default_rng(10)
  _write_folder(tmp_path, ['a', 'b'], rng)
  first = data.load('folder', data_dir=tmp_path)
  cache = tmp_path / '.wrn_trax_cache.npz'
  assert cache.is_file()
  with mock.patch.object(data, '_decode_images',
                         side_effect=AssertionError('decoded again')):
    second = data.load('folder', data_dir=tmp_path)
  np.testing.assert_array_equal(first.train_images, second.train_images)
  np.testing.assert_array_equal(first.test_labels, second.test_labels)
  # A changed folder is read again.
  _write_folder(tmp_path, ['c'], rng)
  third = data.load('folder', data_dir=tmp_path)
  assert third.class_names == ('a', 'b', 'c') and len(third.train_labels) == 9
  # A corrupt cache is ignored with a one-line notice and rebuilt.
  capsys.readouterr()
  cache.write_bytes(b'PK\x03\x04 garbage')
  fourth = data.load('folder', data_dir=tmp_path)
  np.testing.assert_array_equal(fourth.train_images, third.train_images)
  err = capsys.readouterr().err
  assert 'ignoring unreadable image cache' in err and len(
      err.strip().splitlines()) == 1
  assert data.load('folder', data_dir=tmp_path).source == fourth.source
  assert not list(tmp_path.glob('.tmp-*'))  # No temp file left behind.


def test_folder_cache_goes_to_cache_dir_when_data_is_read_only(
    tmp_path, cache_env, monkeypatch):
  root = tmp_path / 'ro'
  _write_folder(root, ['a', 'b'], np.random.default_rng(11))
  mkstemp = tempfile.mkstemp

  def refuse_data_dir(*args, **kwargs):
    if os.path.samefile(kwargs['dir'], root):
      raise PermissionError(13, 'Read-only file system', str(root))
    return mkstemp(*args, **kwargs)

  monkeypatch.setattr(tempfile, 'mkstemp', refuse_data_dir)
  ds = data.load('folder', data_dir=root)
  cached = list(cache_env.glob('image-folder-*.npz'))
  assert len(cached) == 1 and not (root / '.wrn_trax_cache.npz').exists()
  assert ds.source.endswith(f'(cache {cached[0]})')
  # WRN_TRAX_CACHE, when set, is the only place.
  monkeypatch.setattr(tempfile, 'mkstemp', mkstemp)
  monkeypatch.setenv('WRN_TRAX_CACHE', str(tmp_path / 'mine'))
  ds = data.load('folder', data_dir=root)
  assert len(list((tmp_path / 'mine').glob('image-folder-*.npz'))) == 1
  assert not (root / '.wrn_trax_cache.npz').exists()


def test_folder_load_bench_runs_small(tmp_path, cache_env, monkeypatch,
                                      capsys):
  import importlib.util  # pylint: disable=g-import-not-at-top
  bench = os.path.join(os.path.dirname(__file__), '..', 'bench')
  monkeypatch.syspath_prepend(bench)
  spec = importlib.util.spec_from_file_location(
      'bench_folder_load', os.path.join(bench, 'folder_load.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  _write_folder(tmp_path / 'imgs', list(data._CLASS_NAMES['cifar10']),  # pylint: disable=protected-access
                np.random.default_rng(15), n_train=2, n_test=1, fmt='jpg')
  out_json = tmp_path / 'r.json'
  runs, check = module.main([str(tmp_path / 'imgs'), '--threads', '1', '2',
                             '--cached-rounds', '2', '--json', str(out_json)])
  assert [r['threads_setting'] for r in runs] == [1, 2]
  assert all(r['first_s'] > 0 and r['images'] == 30 for r in runs)
  assert check['train_shape'] == [20, 32, 32, 3]
  assert check['train_per_class'] == [2] * 10
  assert '| 1 | 30 |' in capsys.readouterr().out
  import json  # pylint: disable=g-import-not-at-top
  written = json.loads(out_json.read_text())  # what the script wrote
  assert written['runs'] == runs and written['check'] == check
  assert written['path'] == str(tmp_path / 'imgs')
  assert not list((tmp_path / 'imgs').glob('.wrn_trax_cache*'))  # Temp cache.
  assert 'WRN_TRAX_CACHE' not in os.environ


# ------------------------------------------- not found / offline / download


@pytest.fixture(autouse=True)
def offline(monkeypatch):
  """Every test is offline: the connectivity probe fails (and is counted).

  Tests that simulate a connection patch `data._probe` themselves.
  """
  calls = []

  def probe(addresses, timeout=None):
    del timeout
    calls.append(addresses)
    return 'no network: storage.googleapis.com:443: gaierror (test)'

  monkeypatch.setattr(data, '_probe', probe)
  return calls


@pytest.mark.parametrize('name, tfds_name', [('cifar10', 'cifar10'),
                                             ('cifar100', 'cifar100'),
                                             ('svhn', 'svhn_cropped')])
@pytest.mark.parametrize('stub', [False, True])
@pytest.mark.parametrize('download', [False, None, True])
def test_not_found_gives_clear_error(tmp_path, offline, name, tfds_name, stub,
                                     download):
  (tmp_path / 'unrelated.txt').write_text('x')
  if stub:  # An unprepared TFDS folder: asks TFDS, which must not download.
    (tmp_path / tfds_name / '1.0.0').mkdir(parents=True)
  with _no_download(), pytest.raises(data.DataNotFoundError) as err:
    data.load(name, data_dir=tmp_path, download=download)
  msg = str(err.value)
  assert isinstance(err.value, FileNotFoundError)
  assert repr(name) in msg and str(tmp_path) in msg and tfds_name in msg
  assert f'TFDS {tfds_name} in {tmp_path} (not prepared)' in msg
  assert 'tfds.load(' in msg and 'downloads and prepares it' in msg
  if download is False:
    assert not offline and '(download=False)' in msg
  else:  # Auto or True: probed once, offline, so nothing was tried.
    assert len(offline) == 1 and 'no network: ' in msg
  if name != 'svhn':
    assert 'Kaggle' in msg and 'train/<class>' in msg
    assert ('cifar-10-batches-py' if name == 'cifar10' else
            'cifar-100-python') in msg


@pytest.mark.parametrize('download', [False, None])
def test_default_tfds_dir_downloads_only_when_allowed(offline, download):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if tfds.builder('cifar100').is_prepared():
    pytest.skip('cifar100 is prepared in the default TFDS dir here')
  with _no_download(), pytest.raises(data.DataNotFoundError) as err:
    data.load('cifar100', download=download)
  assert 'the TFDS default data dir (not prepared)' in str(err.value)
  assert len(offline) == (download is None)


def test_missing_data_dir_gives_clear_error(tmp_path):
  with _no_download(), pytest.raises(data.DataNotFoundError,
                                     match='does not exist'):
    data.load('cifar10', data_dir=tmp_path / 'nope')


def test_bad_download_argument():
  with pytest.raises(ValueError, match='download must be None'):
    data.load('cifar10', download='yes')


@contextlib.contextmanager
def _fake_download(splits=None, error=None):
  """Online, with TFDS's download replaced: it writes `splits`, or raises.

  Yields the list of TFDS names whose download_and_prepare was called.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  original = tfds.core.DatasetBuilder.download_and_prepare
  calls = []

  def fake(self, *args, **kwargs):
    del args, kwargs
    calls.append(self.name)
    if error is not None:
      raise error
    with mock.patch.object(tfds.core.DatasetBuilder, 'download_and_prepare',
                           original):
      _prepare_tfds(self.name, self.data_dir_root, splits)

  with mock.patch.object(data, '_probe', return_value=None), \
       mock.patch.object(tfds.core.DatasetBuilder, 'download_and_prepare',
                         fake):
    yield calls


@pytest.mark.parametrize('download', [None, True])
def test_download_when_no_local_source(tmp_path, capsys, download):
  rng = np.random.default_rng(13)
  splits = {'train': (_images(rng, 6), np.arange(6)),
            'test': (_images(rng, 4), np.arange(4))}
  with _fake_download(splits) as calls:
    ds = data.load('cifar10', data_dir=tmp_path, download=download)
    assert calls == ['cifar10']
    assert 'downloading TFDS cifar10 into' in capsys.readouterr().err
    again = data.load('cifar10', data_dir=tmp_path, download=download)
    assert calls == ['cifar10']  # Prepared now: not downloaded again.
  assert ds.source == f'tfds:cifar10 @ {tmp_path}'
  assert _sorted_rows(ds.train_images, ds.train_labels) == _sorted_rows(
      *splits['train'])
  np.testing.assert_array_equal(ds.test_labels, again.test_labels)


def test_failed_download_gives_not_found(tmp_path):
  with _fake_download(error=OSError('Connection reset by peer')) as calls, \
       pytest.raises(data.DataNotFoundError,
                     match=r"'svhn' not found and not downloaded \(the "
                           r'download failed: OSError: Connection reset'):
    data.load('svhn', data_dir=tmp_path)
  assert calls == ['svhn_cropped']


def test_download_false_never_calls_the_builder(tmp_path):
  with _fake_download(error=AssertionError('downloaded')) as calls, \
       pytest.raises(data.DataNotFoundError, match='download=False'):
    data.load('cifar100', data_dir=tmp_path, download=False)
  assert not calls


def test_local_sources_come_before_a_download(tmp_path):
  _write_folder(tmp_path, list(data._CLASS_NAMES['cifar10']),  # pylint: disable=protected-access
                np.random.default_rng(14), n_train=1, n_test=1)
  with _fake_download(error=AssertionError('downloaded')) as calls:
    ds = data.load('cifar10', data_dir=tmp_path, download=True)
  assert not calls and ds.source.startswith('image folder @ ')


def test_probe_is_quick_and_says_why(monkeypatch):
  import socket  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  probe = _ORIGINAL_PROBE  # The autouse fixture replaces data._probe.
  with socket.socket() as server:
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]
    assert probe([('127.0.0.1', port)], timeout=2) is None
  # The port is closed now: refused, with the reason.
  why = probe([('127.0.0.1', port)], timeout=2)
  assert why.startswith('no network: 127.0.0.1:') and 'Refused' in why
  # A hanging connect (or DNS lookup) is abandoned after the timeout.
  def hang(*unused_args, **unused_kwargs):
    time.sleep(3)  # far past the timeout; then fails as a real hang would.
    raise OSError('hung')

  monkeypatch.setattr(socket, 'create_connection', hang)
  start = time.monotonic()
  why = probe([('example.invalid', 443)], timeout=0.3)
  assert time.monotonic() - start < 2
  assert 'example.invalid:443: no answer within 0.3 s' in why


def test_download_addresses_follow_a_proxy(monkeypatch):
  for var in ('HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'):
    monkeypatch.delenv(var, raising=False)
  assert data._download_addresses('cifar10') == [  # pylint: disable=protected-access
      ('storage.googleapis.com', 443), ('www.cs.toronto.edu', 443)]
  monkeypatch.setenv('https_proxy', 'http://proxy.corp:3128')
  assert data._download_addresses('svhn') == [('proxy.corp', 3128)]  # pylint: disable=protected-access


# ---------------------------------------------------------------- TFDS


@pytest.fixture(scope='module')
def tfds_dir(tmp_path_factory):
  """A TFDS data dir with tiny prepared cifar10 and svhn_cropped."""
  root = tmp_path_factory.mktemp('tfds')
  rng = np.random.default_rng(4)
  splits = {
      'cifar10': {'train': (_images(rng, 12), np.arange(12) % 10),
                  'test': (_images(rng, 5), np.arange(5))},
      'svhn_cropped': {'train': (_images(rng, 7), np.arange(7)),
                       'test': (_images(rng, 3), np.arange(3)),
                       'extra': (_images(rng, 4), np.arange(4) + 5)},
  }
  for tfds_name, s in splits.items():
    _prepare_tfds(tfds_name, str(root), s)
  return root, splits


def test_tfds_cifar10_through_trax(tfds_dir):
  root, splits = tfds_dir
  with _no_download():
    ds = data.load('cifar10', data_dir=root)
  assert ds.source == f'tfds:cifar10 @ {root}'
  assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int32
  assert _sorted_rows(ds.train_images, ds.train_labels) == _sorted_rows(
      *splits['cifar10']['train'])
  assert _sorted_rows(ds.test_images, ds.test_labels) == _sorted_rows(
      *splits['cifar10']['test'])
  again = data.load('cifar10', data_dir=root)  # Deterministic order.
  np.testing.assert_array_equal(ds.train_labels, again.train_labels)


def test_tfds_svhn_with_and_without_extra(tfds_dir):
  root, splits = tfds_dir
  with _no_download():
    ds = data.load('svhn', data_dir=root)
    extra = data.load('svhn', data_dir=root, svhn_extra=True)
  assert ds.train_images.shape == (7, 32, 32, 3) and ds.n_classes == 10
  assert extra.train_images.shape == (11, 32, 32, 3)
  assert extra.source.endswith('(train+extra)')
  s = splits['svhn_cropped']
  assert _sorted_rows(extra.train_images, extra.train_labels) == _sorted_rows(
      np.concatenate([s['train'][0], s['extra'][0]]),
      np.concatenate([s['train'][1], s['extra'][1]]))
  # The cifar10 in the same dir is not mistaken for cifar100.
  with pytest.raises(data.DataNotFoundError, match='cifar100'):
    data.load('cifar100', data_dir=root, download=False)


# ------------------------------------------------------------- pipelines


@pytest.mark.parametrize('preprocess, dtype', [
    ('raw', np.uint8), ('standardize', np.float32), ('cifar', np.float32),
    ('svhn', np.float32)])
def test_train_batches_types_and_reproducibility(preprocess, dtype):
  ds = _small()
  a = data.train_batches(ds, 8, preprocess=preprocess, seed=3)
  b = data.train_batches(ds, 8, preprocess=preprocess, seed=3)
  c = data.train_batches(ds, 8, preprocess=preprocess, seed=4)
  for _ in range(10):  # Crosses epoch boundaries (50 examples).
    (xa, ya, wa), (xb, yb, _), (xc, _, _) = next(a), next(b), next(c)
    assert xa.shape == (8, 32, 32, 3) and xa.dtype == dtype
    assert ya.dtype == np.int32 and wa.dtype == np.float32
    assert (wa == 1).all()
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
  assert not np.array_equal(xa, xc)


def test_svhn_preprocess_is_pixels_over_255():
  ds = _small()
  raw = next(data.eval_batches(ds, 8))[0]
  scaled = next(data.eval_batches(ds, 8, preprocess='svhn'))[0]
  np.testing.assert_allclose(scaled, raw / np.float32(255), rtol=1e-6)


def test_each_epoch_is_a_permutation():
  ds = _small(n_train=50)
  ds = data.from_arrays(ds.train_images, np.arange(50) % 5, ds.test_images,
                        ds.test_labels)
  stream = data.BatchArrays(ds.train_images, np.arange(50), 10, seed=1)()
  epoch1 = np.concatenate([next(stream)[1] for _ in range(5)])
  epoch2 = np.concatenate([next(stream)[1] for _ in range(5)])
  assert sorted(epoch1) == list(range(50)) == sorted(epoch2)
  assert not np.array_equal(epoch1, epoch2)
  # A batch size that does not divide N runs across the epoch boundary.
  stream = data.BatchArrays(ds.train_images, np.arange(50), 7, seed=1)()
  seen = np.concatenate([next(stream)[1] for _ in range(14)])  # 98 examples.
  assert sorted(seen[:50]) == list(range(50))
  assert len(set(seen[50:])) == 48


def test_standardize_uses_train_split_stats():
  rng = np.random.default_rng(5)
  ds = data.from_arrays(
      (rng.normal([60, 120, 200], [10, 20, 30], (400, 8, 8, 3))
       .clip(0, 255).astype(np.uint8)), rng.integers(0, 2, 400),
      np.full((16, 8, 8, 3), 255, np.uint8), np.zeros(16, np.int64))
  mean, std = ds.channel_stats
  x = ds.train_images.reshape(-1, 3).astype(np.float64)
  np.testing.assert_allclose(mean, x.mean(0), rtol=1e-5)
  np.testing.assert_allclose(std, x.std(0), rtol=1e-5)
  out = np.concatenate(
      [b[0] for b in data.BatchArrays(ds.train_images, ds.train_labels, 400,
                                      shuffle=False, repeat=False)()])
  assert out.shape[0] == 400
  batch = next(data.train_batches(ds, 400, preprocess='standardize'))[0]
  np.testing.assert_allclose(batch.reshape(-1, 3).mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(batch.reshape(-1, 3).std(0), 1, atol=1e-4)
  # Eval is standardized with the *training* statistics.
  ev = next(data.eval_batches(ds, 16, preprocess='standardize'))[0]
  np.testing.assert_allclose(ev[0, 0, 0], (255 - mean) / std, rtol=1e-5)


# ---------------------------------------------------------- augmentation


def test_batched_crop_flip_equals_per_example_definition():
  rng = np.random.default_rng(6)
  images = _images(rng, 2 * 9 * 9, h=32, w=32)
  oy, ox = np.meshgrid(np.arange(9), np.arange(9), indexing='ij')
  oy = np.tile(oy.ravel(), 2)
  ox = np.tile(ox.ravel(), 2)
  flips = np.repeat([False, True], 81)  # Every offset, flipped or not.
  batched = data.crop_flip_batch(images, oy, ox, flips, pad=4)
  for i in range(len(images)):
    np.testing.assert_array_equal(
        batched[i], data.crop_flip_example(images[i], oy[i], ox[i], flips[i]))
  # Offset (4, 4) unflipped is the identity; flipped is a mirror.
  centre = (oy == 4) & (ox == 4)
  np.testing.assert_array_equal(batched[centre][0], images[centre][0])
  np.testing.assert_array_equal(batched[centre][1], images[centre][1][:, ::-1])


def test_crop_flip_non_square_and_bad_pad():
  rng = np.random.default_rng(7)
  images = _images(rng, 6, h=10, w=7, c=1)
  oy, ox, flips = data.crop_flip_draws(rng, 6, pad=3)
  out = data.crop_flip_batch(images, oy, ox, flips, pad=3)
  for i in range(6):
    np.testing.assert_array_equal(
        out[i], data.crop_flip_example(images[i], oy[i], ox[i], flips[i], 3))
  with pytest.raises(ValueError, match='pad must be in'):
    data.crop_flip_batch(images, oy, ox, flips, pad=7)


def test_cifar_train_stream_is_the_per_example_definition():
  """'cifar' = shuffle, per-example crop/flip (same draws), standardize."""
  ds = _small()
  shuffle_seed, augment_seed = data._seeds(11)  # pylint: disable=protected-access
  stream = data.train_batches(ds, 16, preprocess='cifar', seed=11)
  plain = data.BatchArrays(ds.train_images, ds.train_labels, 16,
                           seed=shuffle_seed)()
  rng = np.random.default_rng(augment_seed)
  mean, std = ds.channel_stats
  for _ in range(5):
    x, y, _ = next(stream)
    raw, raw_y = next(plain)
    oy, ox, flips = data.crop_flip_draws(rng, 16)
    expect = np.stack([data.crop_flip_example(raw[i], oy[i], ox[i], flips[i])
                       for i in range(16)])
    np.testing.assert_array_equal(y, raw_y)
    np.testing.assert_allclose(x, (expect - mean) / std, rtol=1e-5, atol=1e-5)
  # Augmentation really happens in train, never in eval.
  ev = next(data.eval_batches(ds, 16, preprocess='cifar'))[0]
  st = next(data.eval_batches(ds, 16, preprocess='standardize'))[0]
  np.testing.assert_array_equal(ev, st)


# ------------------------------------------------------------- evaluation


@pytest.mark.parametrize('n_test, batch_size', [(23, 5), (20, 5), (3, 8)])
def test_eval_batches_cover_test_split_exactly_once(n_test, batch_size):
  ds = _small(n_test=n_test)
  batches = list(data.eval_batches(ds, batch_size))
  assert len(batches) == data.n_eval_batches(ds, batch_size) == -(
      -n_test // batch_size)
  for x, y, w in batches:
    assert x.shape[0] == y.shape[0] == w.shape[0] == batch_size
    assert w.dtype == np.float32
  w = np.concatenate([b[2] for b in batches])
  assert w.sum() == n_test and (w[:n_test] == 1).all() and (w[n_test:] == 0).all()
  x = np.concatenate([b[0] for b in batches])
  y = np.concatenate([b[1] for b in batches])
  np.testing.assert_array_equal(x[:n_test], ds.test_images)  # Stored order.
  np.testing.assert_array_equal(y[:n_test], ds.test_labels)
  # A "model" right on the first 11 test examples: exact accuracy via weights.
  predictions = np.where(np.arange(len(y)) < 11, y, (y + 1) % ds.n_classes)
  correct = (predictions == y).astype(np.float32)
  assert (correct * w).sum() / w.sum() == pytest.approx(min(11, n_test) / n_test)
  again = list(data.eval_batches(ds, batch_size))
  np.testing.assert_array_equal(again[-1][0], batches[-1][0])


def test_eval_sample_batches_are_infinite_full_and_seeded():
  ds = _small(n_test=23)
  a = data.eval_sample_batches(ds, 10, seed=1)
  b = data.eval_sample_batches(ds, 10, seed=1)
  for _ in range(7):  # More than the 3 batches one pass would give.
    xa, ya, wa = next(a)
    xb, _, _ = next(b)
    assert xa.shape == (10, 32, 32, 3) and (wa == 1).all()
    np.testing.assert_array_equal(xa, xb)
    assert ya.dtype == np.int32


# ---------------------------------------------------------------- memory


def test_pipeline_holds_the_split_once():
  rng = np.random.default_rng(8)
  n = 10_000
  ds = data.from_arrays(_images(rng, n, 16, 16), rng.integers(0, 10, n),
                        _images(rng, 10, 16, 16), rng.integers(0, 10, 10))
  split_bytes = ds.train_images.nbytes  # ~7.7 MB.
  stream = data.train_batches(ds, 64, preprocess='cifar', seed=0)
  next(stream)  # Channel stats and tables outside the measurement.
  tracemalloc.start()
  try:
    for _ in range(3 * n // 64):  # Three epochs.
      next(stream)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < split_bytes / 4, (peak, split_bytes)


def test_tfds_import_clash_names_the_pin(monkeypatch):
  """tensorflow-metadata too new for TF 2.19's protobuf: say which pin fixes it."""
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def clashing_import(name, *args, **kwargs):
    if name == 'tensorflow_datasets':
      raise ImportError("cannot import name 'runtime_version' from "
                        "'google.protobuf'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', clashing_import)
  with pytest.raises(ImportError, match=r"tensorflow-metadata<1\.18"):
    data._import_tfds()  # pylint: disable=protected-access


def test_tfds_import_other_errors_pass_through(monkeypatch):
  import builtins  # pylint: disable=g-import-not-at-top
  real_import = builtins.__import__

  def broken_import(name, *args, **kwargs):
    if name == 'tensorflow_datasets':
      raise ImportError('No module named tensorflow_datasets')
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', broken_import)
  with pytest.raises(ImportError, match='No module named tensorflow_datasets'):
    data._import_tfds()  # pylint: disable=protected-access
