"""Record files, reports and caches honour the umask (0644 under 022), and
are still written atomically (temp file + rename)."""

import contextlib
import os
import stat

import numpy as np
import pytest

from test_report import make_runs  # pylint: disable=g-bad-import-order
from wrn_trax import data
from wrn_trax import record
from wrn_trax import report
from wrn_trax import runio


@contextlib.contextmanager
def umask(mask):
  old = os.umask(mask)
  try:
    yield
  finally:
    os.umask(old)


def mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize('mask,expected', [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_record_files_follow_the_umask(tmp_path, mask, expected):
  with umask(mask):
    runio.write_json(tmp_path / 'config.json', {'model': 'WRN-10-1'})
    record.write_failed_summary(str(tmp_path), 'boom')
    runio.append_jsonl(tmp_path / 'metrics.jsonl', [{'step': 1}])
    runio.write_text(tmp_path / 'sweep.csv', 'a,b\n')
  for name in ('config.json', 'summary.json', 'metrics.jsonl', 'sweep.csv'):
    assert mode(tmp_path / name) == expected, name
  assert record.read_summary(str(tmp_path)).status == 'failed'


def test_a_replaced_file_keeps_its_mode(tmp_path):
  path = tmp_path / 'summary.json'
  with umask(0o022):
    runio.write_json(path, {'a': 1})
    os.chmod(path, 0o640)
    runio.write_json(path, {'a': 2})
  assert mode(path) == 0o640
  assert runio.read_json(path) == {'a': 2}


def test_still_atomic_a_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / 'config.json'
  with umask(0o022):
    runio.write_json(path, {'a': 1})

    def fail(f):
      f.write(b'{"half')
      raise RuntimeError('disk full')

    with pytest.raises(RuntimeError):
      runio.write_atomic(path, fail)
  assert runio.read_json(path) == {'a': 1}
  assert sorted(os.listdir(tmp_path)) == ['config.json']  # no temp file left


def test_report_files_follow_the_umask(tmp_path):
  root = make_runs(tmp_path / 'runs')
  with umask(0o022):
    written = report.write_report(root, out=tmp_path / 'report', paper=False)
  assert 'summary.md' in written and 'error_vs_k.png' in written
  files = sorted((tmp_path / 'report').iterdir())
  assert files and {f.name: mode(f) for f in files} == {f.name: 0o644 for f in files}


def test_image_cache_follows_the_umask(tmp_path):
  with umask(0o022):
    path = data._write_cache(  # pylint: disable=protected-access
      [str(tmp_path / 'cache' / '.wrn_trax_cache.npz')], {'x': np.zeros(3, np.uint8)}
    )
  assert mode(path) == 0o644
