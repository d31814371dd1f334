"""Unreadable run-folder files as `train`, `sweep` and `report` meet them.

Each case is tried as a user would (the command line, in-process): one
message that names the file, no traceback, and every file already in the
folders left as it was. The train-side basics (a garbage config.json or
summary.json, a truncated checkpoint, bad --set values) are in
test_runfolder.py.
"""
import os
import re

import pytest

from test_runfolder import _fake_checkpoint  # pylint: disable=g-bad-import-order
from test_runfolder import _garbage
from test_runfolder import _snapshot
from test_runfolder import _truncate
from wrn_trax import report
from wrn_trax import runio
from wrn_trax import sweep as sweep_lib
from wrn_trax import train as train_lib

TINY = 'WRN-10-1'
ARGS = dict(model=TINY, dataset='digits', recipe='smoke', steps=2)
SWEEP_ARGV = ['sweep', '--family', 'paper', '--depths', '10',
              '--widen-factors', '1', '2', '--dataset', 'digits', '--recipe',
              'smoke', '--steps', '2', '--quiet']


def _run(workdir, status='done', **kwargs):
  """A run folder as training leaves it: config, metrics, summary."""
  os.makedirs(workdir)
  config = train_lib.make_config(**dict(ARGS, **kwargs))
  runio.write_json(os.path.join(workdir, 'config.json'), config)
  runio.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                     [dict(step=1, split='train', loss=2.3)])
  summary = dict(status=status, reason=None, step=2, steps=2, test_error=0.5,
                 params=1000, flops=2000)
  if status == 'failed':
    summary.update(reason='RuntimeError: earlier', test_error=None)
  runio.write_json(os.path.join(workdir, 'summary.json'), summary)
  return workdir


# --- report --------------------------------------------------------------------

_DAMAGE = {
    'not UTF-8': lambda p: open(p, 'wb').write(b'\xff\xfe{"model": '),
    'truncated': lambda p: _truncate(_as_path(p), 0.5),
    'a list': lambda p: open(p, 'w').write('[1, 2]\n'),
    'garbage': lambda p: _garbage(_as_path(p)),
}


def _as_path(p):
  import pathlib  # pylint: disable=g-import-not-at-top
  return pathlib.Path(p)


@pytest.mark.parametrize('damage', sorted(_DAMAGE))
def test_report_skips_a_run_with_an_unreadable_config_and_names_it(
    tmp_path, run_cli, damage):
  root = tmp_path / 'runs'
  _run(str(root / 'good'))
  bad = _run(str(root / 'bad'), seed=1)
  _DAMAGE[damage](os.path.join(bad, 'config.json'))
  before = _snapshot(root)
  code, out, err = run_cli(['report', '--root', str(root), '--out',
                           str(tmp_path / 'results')])
  assert code == 0, err
  assert 'Traceback' not in err
  lines = err.splitlines()
  assert len(lines) == 1, err  # once, though report reads the runs twice
  assert lines[0].startswith(
      f'wrn-trax report: warning: skipping the run in {bad}: config.json in '
      f'{bad} is truncated or unreadable (')
  assert re.search(r'^WRN-10-1 ', out, re.M), out  # the compact table
  assert _snapshot(root) == before
  with pytest.warns(UserWarning, match=f'config.json in {bad} is truncated'):
    runs = report.load_runs(root)
  assert list(runs['run']) == ['good']


@pytest.mark.parametrize('damage', sorted(_DAMAGE))
def test_report_counts_a_run_with_an_unreadable_summary_as_incomplete(
    tmp_path, run_cli, damage):
  root = tmp_path / 'runs'
  bad = _run(str(root / 'bad'))
  _DAMAGE[damage](os.path.join(bad, 'summary.json'))
  before = _snapshot(root)
  code, _, err = run_cli(['report', '--root', str(root), '--out',
                         str(tmp_path / 'results')])
  assert code == 0, err
  lines = err.splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith(f'wrn-trax report: warning: summary.json in '
                             f'{bad} is truncated or unreadable (')
  assert _snapshot(root) == before
  with pytest.warns(UserWarning, match=f'summary.json in {bad} is truncated'):
    runs = report.load_runs(root)
  assert runs.loc[0, 'status'] == 'incomplete'
  assert runs.loc[0, 'reason'] == 'unreadable summary.json'


def test_report_with_no_readable_run_is_one_error(tmp_path, run_cli):
  root = tmp_path / 'runs'
  bad = _run(str(root / 'bad'))
  _garbage(_as_path(os.path.join(bad, 'config.json')))
  before = _snapshot(root)
  code, _, err = run_cli(['report', '--root', str(root), '--out',
                         str(tmp_path / 'results')])
  assert code == 2
  assert f'config.json in {bad} is truncated' in err
  assert err.splitlines()[-1].startswith(
      'wrn-trax report: error: No readable runs under')
  assert _snapshot(root) == before


# --- train ----------------------------------------------------------------------


@pytest.mark.parametrize('name', ['config.json', 'summary.json'])
def test_train_refuses_a_json_file_that_is_not_an_object(tmp_path, run_cli,
                                                         name):
  workdir = _run(str(tmp_path / 'run'), status='failed')
  with open(os.path.join(workdir, name), 'w') as f:
    f.write('["not", "an", "object"]\n')
  before = _snapshot(workdir)
  with pytest.raises(runio.CorruptFileError) as e:
    train_lib.train(workdir=workdir, verbose=False, **ARGS)
  assert e.value.path == os.path.join(workdir, name)
  assert str(e.value).startswith(
      f'{name} in {workdir} is truncated or unreadable (a JSON list, not an '
      'object)')
  code, _, err = run_cli(['train', '--workdir', workdir, '--model', TINY,
                         '--recipe', 'smoke', '--steps', '2', '--quiet'])
  assert code == 2
  assert err == f'wrn-trax train: error: {e.value}\n'
  assert _snapshot(workdir) == before


# --- sweep ----------------------------------------------------------------------


def _members(root):
  return [w for w, _ in sweep_lib.plan(
      widen_factors=[1, 2], depths=[10], family='paper', dataset='digits',
      recipe='smoke', steps=2, root=str(root))]


def test_sweep_reports_members_with_unreadable_files_and_keeps_them(
    tmp_path, run_cli):
  """A truncated checkpoint and a garbage summary: both members fail with
  the file named (even with --quiet), nothing is trained or written there,
  and the closing table still prints."""
  root = tmp_path / 'runs'
  first, second = _members(root)
  _run(first, status='failed', model='WRN-10-1')
  _fake_checkpoint(_as_path(first), step=1)
  _truncate(_as_path(first) / 'model.pkl.gz')
  _run(second, model='WRN-10-2')
  _garbage(_as_path(second) / 'summary.json')
  before = {w: _snapshot(w) for w in (first, second)}
  code, out, err = run_cli(SWEEP_ARGV + ['--root', str(root)])
  assert code == 0, err
  assert 'Traceback' not in err
  assert re.search(r'^WRN-10-1 ', out, re.M), out  # the compact table
  assert re.search(r'^WRN-10-2 ', out, re.M), out
  lines = err.splitlines()
  assert len(lines) == 2, err
  assert lines[0].startswith(
      f'wrn-trax sweep: {os.path.basename(first)}: failed: CorruptFileError: '
      f'model.pkl.gz in {first} is truncated or unreadable (')
  assert 'continue by deleting it' in lines[0]
  assert 'or train into another workdir' in lines[0]
  assert lines[1].startswith(
      f'wrn-trax sweep: {os.path.basename(second)}: failed: CorruptFileError: '
      f'summary.json in {second} is truncated or unreadable (')
  assert {w: _snapshot(w) for w in (first, second)} == before


def test_sweep_refuses_a_member_with_a_garbage_config(tmp_path, run_cli):
  root = tmp_path / 'runs'
  first, _ = _members(root)
  _run(first, status='failed', model='WRN-10-1')
  _DAMAGE['not UTF-8'](os.path.join(first, 'config.json'))
  before = _snapshot(root)
  code, _, err = run_cli(SWEEP_ARGV + ['--root', str(root)])
  assert code == 2
  assert err.startswith(f'wrn-trax sweep: error: config.json in {first} is '
                        'truncated or unreadable (not JSON: ')
  assert err.count('\n') == 1
  assert _snapshot(root) == before  # no sweep.csv, no second member folder
