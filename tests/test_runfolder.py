"""The run folder's faults: one writer at a time, clear errors for bad input.

Each failure must name the file or the holder, say how to continue, and leave
every file already in the folder as it was.
"""
import gzip
import os
import pickle
import signal
import subprocess
import time

import numpy as np
import pytest

from wrn_trax import recipes
from wrn_trax import runio
from wrn_trax import train as train_lib

TINY = 'WRN-10-1'  # one B(3,3) block per group: compiles in seconds on a CPU
ARGS = dict(model=TINY, dataset='digits', recipe='smoke', steps=2)
CLI_ARGS = ['--model', TINY, '--dataset', 'digits', '--recipe', 'smoke',
            '--steps', '2', '--quiet']

# A process that holds a run folder's lock until it is killed. It loads
# runio.py by path, which imports nothing of trax, so it starts at once.
_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('runio', sys.argv[1])
runio = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runio)
runio.lock_run_folder(sys.argv[2]).acquire()
print('locked', flush=True)
time.sleep(600)
"""


def _snapshot(folder):
  """Every file under `folder` (hidden ones too) with its bytes."""
  out = {}
  for dirpath, _, files in os.walk(folder):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, folder)] = f.read()
  return out


@pytest.fixture
def holder(python):
  """Starts a child process holding the lock of a folder; kills it after."""
  children = []

  def start(workdir):
    child = subprocess.Popen(
        [python, '-c', _HOLDER, runio.__file__, str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == 'locked', child.stderr.read()
    children.append(child)
    return child

  yield start
  for child in children:
    if child.poll() is None:
      child.kill()
    child.wait()
    child.stdout.close()
    child.stderr.close()


def _run_folder(tmp_path, **kwargs):
  """A run folder as a killed session leaves it: config, metrics, summary."""
  workdir = tmp_path / 'run'
  workdir.mkdir()
  config = train_lib.make_config(**dict(ARGS, **kwargs))
  runio.write_json(workdir / 'config.json', config)
  runio.append_jsonl(workdir / 'metrics.jsonl',
                     [dict(step=1, split='train', loss=2.3)])
  runio.write_json(workdir / 'summary.json',
                   dict(status='failed', reason='RuntimeError: earlier'))
  return workdir


# --- the lock -----------------------------------------------------------------


def test_lock_is_exclusive_names_its_holder_and_leaves_no_trace(tmp_path):
  workdir = tmp_path / 'run'
  with runio.lock_run_folder(workdir) as lock:
    assert lock.held
    holder = runio.read_json(workdir / runio.LOCK_FILE)
    assert holder['pid'] == os.getpid() and holder['host']
    assert holder['since'].endswith('Z')
    # flock is per open file: a second lock in this process is refused too.
    with pytest.raises(runio.RunFolderBusyError) as e:
      runio.lock_run_folder(workdir).acquire()
    assert f'pid {os.getpid()} on {holder["host"]}' in str(e.value)
    assert holder['since'] in str(e.value)
    assert 'wait for it to finish, or train into another workdir' in str(
        e.value)
    assert e.value.holder == holder
  # The folder it made held nothing else: it is gone again.
  assert not workdir.exists()
  with runio.lock_run_folder(workdir):
    (workdir / 'config.json').write_text('{}')
  assert os.listdir(workdir) == ['config.json']


def test_a_busy_folder_fails_at_once_and_then_is_taken_over_after_sigkill(
    tmp_path, holder):
  workdir = _run_folder(tmp_path)
  child = holder(workdir)
  before = _snapshot(workdir)
  t0 = time.time()
  with pytest.raises(runio.RunFolderBusyError) as e:
    train_lib.train(workdir=str(workdir), verbose=False, **ARGS)
  assert time.time() - t0 < 30
  assert f'pid {child.pid} on ' in str(e.value)
  assert str(workdir) in str(e.value)
  assert _snapshot(workdir) == before

  child.send_signal(signal.SIGKILL)
  child.wait()
  # The kernel freed the lock; its file stays until the next holder is done.
  assert (workdir / runio.LOCK_FILE).exists()
  with runio.lock_run_folder(workdir):
    assert runio.read_json(workdir / runio.LOCK_FILE)['pid'] == os.getpid()
  assert not (workdir / runio.LOCK_FILE).exists()


@pytest.mark.slow
def test_train_takes_over_a_folder_whose_holder_was_killed(tmp_path, holder):
  workdir = tmp_path / 'run'
  child = holder(workdir)
  with pytest.raises(runio.RunFolderBusyError, match=f'pid {child.pid} '):
    train_lib.train(workdir=str(workdir), verbose=False, **ARGS)
  assert os.listdir(workdir) == [runio.LOCK_FILE]
  child.send_signal(signal.SIGKILL)
  child.wait()
  summary = train_lib.train(workdir=str(workdir), verbose=False, **ARGS)
  assert summary['status'] == 'done' and summary['step'] == 2
  assert not (workdir / runio.LOCK_FILE).exists()
  # A finished run returns its summary without the lock, even while
  # another process holds it.
  child = holder(workdir)
  assert train_lib.train(workdir=str(workdir), verbose=False,
                         **ARGS) == summary


# --- clear errors for corrupt files ------------------------------------------


def _fake_checkpoint(workdir, step=1):
  """trax's checkpoint layout: a small pickle and gzip'd .npy streams."""
  with gzip.open(workdir / 'model.pkl.gz', 'wb') as f:
    pickle.dump(dict(step=step, flat_weights=2, slots_per_task=2,
                     history={}, flat_state=[], input_signature=None), f)
  for part in ('weights', 'opt_slots0'):
    with gzip.open(workdir / f'model.{part}.npy.gz', 'wb') as f:
      for shape in ((3, 3), (8,)):
        np.save(f, np.ones(shape, np.float32), allow_pickle=False)


def _truncate(path, keep=0.5):
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep)])


def _garbage(path):
  path.write_bytes(b'\x00\x17garbage{')


@pytest.mark.parametrize('damage, name, advice', [
    (lambda w: _garbage(w / 'config.json'), 'config.json',
     'restore it, or train into another workdir'),
    (lambda w: _garbage(w / 'summary.json'), 'summary.json',
     'delete it to continue'),
    (lambda w: _truncate(w / 'model.pkl.gz'), 'model.pkl.gz',
     'continue by deleting it (the run restarts from step 0 in that folder) '
     'or train into another workdir'),
    (lambda w: _garbage(w / 'model.pkl.gz'), 'model.pkl.gz',
     'continue by deleting it'),
    (lambda w: _truncate(w / 'model.weights.npy.gz', 0.9),
     'model.weights.npy.gz', 'continue by deleting model.pkl.gz'),
    (lambda w: os.remove(w / 'model.opt_slots0.npy.gz'),
     'model.opt_slots0.npy.gz', 'continue by deleting model.pkl.gz'),
])
def test_a_corrupt_file_is_named_with_advice_and_nothing_is_written(
    tmp_path, damage, name, advice):
  workdir = _run_folder(tmp_path)
  _fake_checkpoint(workdir)
  damage(workdir)
  before = _snapshot(workdir)
  with pytest.raises(runio.CorruptFileError) as e:
    train_lib.train(workdir=str(workdir), verbose=False, **ARGS)
  message = str(e.value)
  assert message.startswith(f'{name} in {workdir} is truncated or unreadable (')
  assert advice in message
  assert e.value.path == str(workdir / name)
  assert _snapshot(workdir) == before  # no summary, no lock file left


def test_json_readers_name_the_file(tmp_path):
  path = tmp_path / 'config.json'
  path.write_text('not json')
  for read in (runio.read_json, runio.read_json_or_none):
    with pytest.raises(runio.CorruptFileError,
                       match=f'config.json in {tmp_path} is truncated'):
      read(path)
  assert runio.read_json_or_none(tmp_path / 'missing.json') is None
  with pytest.raises(FileNotFoundError):
    runio.read_json(tmp_path / 'missing.json')
  assert issubclass(runio.CorruptFileError, ValueError)


def test_trax_restore_reads_weights_strictly(tmp_path):
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4)]
  path = tmp_path / 'model.weights.npy.gz'
  tl.np_to_file(arrays, str(path), compresslevel=2)
  with runio.restricted_checkpoints():
    got = tl.np_from_file(str(path), compresslevel=2)
    assert [a.tolist() for a in got] == [a.tolist() for a in arrays]
    _truncate(path, 0.8)
    # trax's own returns fewer arrays; ours names the file.
    with pytest.raises(runio.CorruptFileError,
                       match='model.weights.npy.gz in .* truncated'):
      tl.np_from_file(str(path), compresslevel=2)
  assert tl.np_from_file is not runio._np_from_file  # pylint: disable=protected-access


# --- bad --set values and the CLI --------------------------------------------


@pytest.mark.parametrize('field, value, match', [
    ('lr', 'abc', "lr must be a number .*got 'abc'"),
    ('lr', None, 'lr must be a number'),
    ('batch_size', 64.0, 'batch_size must be an int'),
    ('batch_size', True, 'batch_size must be an int'),
    ('lr_milestones', 60, r'lr_milestones must be a tuple of numbers'),
    ('lr_milestones', ('a',), r'lr_milestones must be a tuple of numbers'),
    ('optimizer', 3, 'optimizer must be a string'),
    ('backend', None, 'backend must be a string .*got None'),
])
def test_recipe_fields_are_type_checked(field, value, match):
  with pytest.raises(ValueError, match=match):
    recipes.get('smoke', 'digits', **{field: value})


@pytest.mark.parametrize('field, value', [
    ('lr', 1), ('lr', np.float32(0.1)), ('momentum', None),
    ('momentum', 0.9), ('preprocess', None), ('preprocess', 'raw'),
    ('lr_milestones', [10, 20]), ('epochs', 3), ('dropout', 0),
])
def test_recipe_fields_accept_their_kinds(field, value):
  recipes.get('smoke', 'digits', **{field: value})


@pytest.mark.parametrize('pairs, match', [
    (['lr=abc'], "recipe field lr must be a number (the smoke recipe has "
                 "0.003), got 'abc'"),
    (['lr_milestones=60'], 'lr_milestones must be a tuple of numbers'),
    (['lr'], "--set takes KEY=VALUE, got 'lr'"),
    (['learning_rate=0.1'], 'unknown recipe field'),
    (['seed=1'], 'seed is not a recipe field; use --seed'),
    (['steps=3'], '--steps 2 and --set steps=3 disagree'),
])
def test_cli_bad_set_is_one_error_line(tmp_path, run_cli, pairs, match):
  workdir = tmp_path / 'run'
  argv = ['train', '--workdir', str(workdir)] + CLI_ARGS
  for pair in pairs:
    argv += ['--set', pair]
  code, _, err = run_cli(argv)
  assert code == 2
  assert err.startswith('wrn-trax train: error: ')
  assert match in err and err.count('\n') == 1
  assert not workdir.exists()


def test_cli_corrupt_checkpoint_and_busy_folder(tmp_path, run_cli, holder):
  workdir = _run_folder(tmp_path)
  _fake_checkpoint(workdir)
  _truncate(workdir / 'model.pkl.gz')
  before = _snapshot(workdir)
  argv = ['train', '--workdir', str(workdir)] + CLI_ARGS
  code, _, err = run_cli(argv)
  assert code == 2 and err.count('\n') == 1
  assert f'error: model.pkl.gz in {workdir} is truncated or unreadable' in err
  assert _snapshot(workdir) == before

  child = holder(workdir)
  before = _snapshot(workdir)
  code, _, err = run_cli(argv)
  assert code == 2 and err.count('\n') == 1
  assert f'is being trained by another process (pid {child.pid} on ' in err
  assert _snapshot(workdir) == before

  sweep_argv = ['sweep', '--root', str(tmp_path / 'runs'), '--set', 'lr=abc',
                '--widen-factors', '1', '--depths', '10', '--family', 'paper',
                '--dataset', 'digits', '--recipe', 'smoke', '--quiet']
  code, _, err = run_cli(sweep_argv)
  assert code == 2 and 'lr must be a number' in err
  assert not (tmp_path / 'runs').exists()


@pytest.mark.slow
def test_cli_garbage_config_in_a_subprocess_has_no_traceback(
    tmp_path, python, subprocess_env):
  workdir = _run_folder(tmp_path)
  _garbage(workdir / 'config.json')
  before = _snapshot(workdir)
  out = subprocess.run(
      [python, '-m', 'wrn_trax', 'train', '--workdir', str(workdir)]
      + CLI_ARGS, env=subprocess_env, capture_output=True, text=True,
      timeout=300, check=False)
  assert out.returncode == 2, out.stderr
  assert 'Traceback' not in out.stderr
  assert (f'wrn-trax train: error: config.json in {workdir} is truncated or '
          'unreadable (not JSON: ') in out.stderr
  assert _snapshot(workdir) == before
