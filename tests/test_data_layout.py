"""wrn_trax.data is a package of modules with one job each; its names stay put.

Every name `wrn_trax.data` had when it was one module (public, and the private
ones tests and benches use) is still importable from it, and patching the
package's name still changes what the code in its modules does.
"""

import concurrent.futures
import subprocess
import sys

import numpy as np
import pytest

from wrn_trax import augment, data

# The names of wrn_trax.data as one module (dir() before the split), less the
# modules it imported (os, np, ...).
_NAMES_OF_THE_MODULE = """
BatchArrays CIFAR_PAD DATASETS DataNotFoundError Dataset PREPROCESS
RandomCropFlip Rescale Standardize UnsafePickleError _CACHE_NAME
_CACHE_VERSION _CIFAR_PY _CLASS_NAMES _CifarUnpickler _DECODE_THREADS
_DOWNLOAD_HOSTS _IMAGE_EXTS _LookupStep _N_CLASSES _PROBE_TIMEOUT_S
_STATS_CHUNK _TFDS_NAMES _cache_paths _channel_stats _check_batch_size
_check_images _check_labels _check_preprocess _class_dirs _decode_images
_download_addresses _download_tfds _empty_bytes _find_cifar_python
_find_image_folder _fingerprint _first_size _import_tfds _is_image
_latin1_encode _list_images _load_cifar_python _load_digits
_load_image_folder _load_tfds _norm_class _not_found _numpy_core
_preprocess_steps _probe _read_cache _reflect_index _seeds _trax _unpickle
_write_cache crop_flip_batch crop_flip_draws crop_flip_example
default_preprocess eval_batches eval_sample_batches from_arrays load
n_eval_batches n_test_batches test_batches train_batches
""".split()


@pytest.mark.parametrize('name', _NAMES_OF_THE_MODULE)
def test_every_name_of_the_old_module_is_importable(name):
  assert name in dir(data)
  assert getattr(data, name) is not None


def test_public_names_are_the_documented_ones():
  public = sorted(n for n in _NAMES_OF_THE_MODULE if not n.startswith('_'))
  assert sorted(data.__all__) == public
  exec(f'from wrn_trax.data import {", ".join(public)}', {})  # pylint: disable=exec-used


def test_host_crop_flip_lives_beside_its_device_twin():
  assert data.crop_flip_batch is augment.crop_flip_batch
  assert data.crop_flip_draws is augment.crop_flip_draws
  assert data.crop_flip_example is augment.crop_flip_example
  # The old private name is the host's index (np.pad 'reflect'), not int32.
  np.testing.assert_array_equal(data._reflect_index(5, 2), [2, 1, 0, 1, 2, 3, 4, 3, 2])  # pylint: disable=protected-access
  with pytest.raises(AttributeError, match='no_such_name'):
    data.no_such_name  # noqa: B018  # pylint: disable=pointless-statement


def test_import_of_data_stays_light():
  """`import wrn_trax.data` imports neither trax nor jax (the CLI reads DATASETS)."""
  code = 'import sys, wrn_trax.data; print(sorted(m for m in ("trax", "jax", "tensorflow") if m in sys.modules))'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == '[]'


def test_patching_lookup_step_of_the_package_reaches_the_pipeline(monkeypatch):
  ds = data.from_arrays(
    np.zeros((4, 2, 2, 3), np.uint8),
    np.arange(4) % 2,
    np.zeros((2, 2, 2, 3), np.uint8),
    np.arange(2) % 2,
  )
  tables = []

  def recording_step(table):
    tables.append(table)
    return data.pipelines._LookupStep(table)  # pylint: disable=protected-access

  monkeypatch.setattr(data, '_LookupStep', recording_step)
  next(data.test_batches(ds, 2, preprocess='svhn'))
  assert len(tables) == 1 and tables[0][0, 255] == np.float32(1.0)


def test_patching_decode_threads_of_the_package_reaches_the_decoder(tmp_path, monkeypatch):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  for split in ('train', 'test'):
    for label in ('a', 'b'):
      (tmp_path / split / label).mkdir(parents=True)
      Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(tmp_path / split / label / 'x.png')
  workers = []
  real = concurrent.futures.ThreadPoolExecutor

  def recording_pool(max_workers=None, *args, **kwargs):
    workers.append(max_workers)
    return real(max_workers, *args, **kwargs)

  monkeypatch.setattr(concurrent.futures, 'ThreadPoolExecutor', recording_pool)
  monkeypatch.setenv('WRN_TRAX_CACHE', str(tmp_path / 'cache'))
  monkeypatch.setattr(data, '_DECODE_THREADS', 1)
  ds = data.load('folder', data_dir=tmp_path)
  assert ds.train_images.shape == (2, 4, 4, 3)
  assert workers and set(workers) == {1}


def test_patching_probe_of_the_package_reaches_the_download(tmp_path, monkeypatch):
  asked = []

  def offline(addresses, timeout=None):
    asked.append(addresses)
    return 'no network: patched'

  monkeypatch.setattr(data, '_probe', offline)
  monkeypatch.setattr(data.tfds, '_import_tfds', lambda: None)  # not needed here
  with pytest.raises(data.DataNotFoundError, match='no network: patched'):
    data._download_tfds('svhn', 'svhn_cropped', str(tmp_path), [])  # pylint: disable=protected-access
  assert asked
