"""The one restricted unpickler, as each pickle format wrn_trax reads uses it."""

import collections
import gzip
import io
import os
import pickle

import numpy as np
import pytest

from wrn_trax import _pickle, data, runio


class _Evil:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f'touch {self.marker}',))


def _checkpoint(path, payload):
  with gzip.open(path, 'wb') as f:
    pickle.dump({'step': 3, 'x': payload}, f)
  return runio.load_checkpoint_dict(str(path))


def _cifar_batch(path, payload):
  with open(path, 'wb') as f:
    pickle.dump({b'data': payload, b'labels': [0]}, f, protocol=3)
  return data._unpickle(str(path))  # pylint: disable=protected-access


# Each format: its reader, the error it raises, and words of its advice.
_FORMATS = {
  'checkpoint': (_checkpoint, runio.UntrustedPickleError, 'a trax checkpoint holds only'),
  'cifar': (_cifar_batch, data.UnsafePickleError, 'not a CIFAR batch file'),
}


@pytest.mark.parametrize('fmt', sorted(_FORMATS))
def test_os_system_is_refused_and_nothing_runs(tmp_path, fmt):
  read, error, advice = _FORMATS[fmt]
  marker = tmp_path / 'pwned'
  path = tmp_path / 'file'
  with pytest.raises(error) as err:
    read(path, _Evil(marker))
  message = str(err.value)
  assert str(path) in message and 'system' in message and advice in message
  assert isinstance(err.value, pickle.UnpicklingError)
  assert not marker.exists()


def test_each_format_refuses_a_global_only_the_other_allows(tmp_path):
  """Each format allows only its own globals, not the union of both."""
  # A checkpoint may hold an OrderedDict; a CIFAR batch file may not.
  with pytest.raises(data.UnsafePickleError, match='collections.OrderedDict'):
    _cifar_batch(tmp_path / 'batch', collections.OrderedDict(a=1))
  # Bytes pickled at protocol 2 name _codecs.encode, which CIFAR batch files
  # need and a checkpoint never holds.
  path = tmp_path / 'model.pkl.gz'
  with gzip.open(path, 'wb') as f:
    pickle.dump({'step': 3, 'x': b'abc'}, f, protocol=2)
  with pytest.raises(runio.UntrustedPickleError, match='_codecs.encode'):
    runio.load_checkpoint_dict(str(path))


@pytest.mark.parametrize('fmt', sorted(_FORMATS))
def test_allowed_globals_still_load(tmp_path, fmt):
  read, _, _ = _FORMATS[fmt]
  array = np.arange(6, dtype=np.uint8).reshape(2, 3)
  got = read(tmp_path / 'file', array)
  key = 'x' if fmt == 'checkpoint' else b'data'
  np.testing.assert_array_equal(got[key], array)


def test_base_unpickler_refuses_what_it_does_not_list():
  class OnlyList(_pickle.RestrictedUnpickler):
    allowed = {('builtins', 'list'): None, ('builtins', 'dict'): lambda: 'stand-in'}

  blob = pickle.dumps([list, dict], protocol=4)
  assert OnlyList(io.BytesIO(blob), 'f').load() == [list, 'stand-in']
  with pytest.raises(pickle.UnpicklingError, match='f: refusing to load global builtins.print'):
    OnlyList(io.BytesIO(pickle.dumps(print)), 'f').load()
