"""TensorFlow Datasets: prepared data dirs, and downloads after a network probe."""
import dataclasses
import os
import socket
import sys
import threading
import time
import urllib.parse

import numpy as np

from wrn_trax.data.cifar import _CIFAR_PY
from wrn_trax.data.dataset import _N_CLASSES, DataNotFoundError, _patchable, _trax, from_arrays

_TFDS_NAMES = {'cifar10': 'cifar10', 'cifar100': 'cifar100',
               'svhn': 'svhn_cropped'}
# The sites TFDS downloads each data set from (when its GCS mirror misses),
# and how long the connectivity probe before a download may take.
_DOWNLOAD_HOSTS = {'cifar10': ('www.cs.toronto.edu', 443),
                   'cifar100': ('www.cs.toronto.edu', 443),
                   'svhn': ('ufldl.stanford.edu', 80)}
_PROBE_TIMEOUT_S = 3.0


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
  offline = _patchable()._probe(_download_addresses(name))
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
