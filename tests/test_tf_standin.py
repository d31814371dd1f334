"""The TensorFlow stand-in: used only where TF is missing; trains, checkpoints
and resumes through it (TF blocked in child processes by a meta-path finder)."""
import gzip
import json
import os
import pickle
import subprocess
import textwrap

import pytest

from wrn_trax import _tf_standin
from wrn_trax import runio

BLOCKED = ('tensorflow', 'tensorflow_datasets', 'tensorflow_text')

# A sitecustomize that makes `import tensorflow` (and TFDS, TF Text) fail as
# on a machine without them, before anything else is imported.
_BLOCKER = f"""
import sys
class _NoTensorFlow:
  def find_spec(self, name, path=None, target=None):
    if name.split('.')[0] in {BLOCKED!r}:
      raise ModuleNotFoundError(f'No module named {{name!r}} (blocked)',
                                name=name)
    return None
sys.meta_path.insert(0, _NoTensorFlow())
"""


@pytest.fixture
def no_tf_env(tmp_path, subprocess_env):
  site = tmp_path / 'block_tf'
  site.mkdir()
  (site / 'sitecustomize.py').write_text(_BLOCKER)
  env = dict(subprocess_env)
  env['PYTHONPATH'] = str(site) + os.pathsep + env['PYTHONPATH']
  return env


def _run(python, code, env, *args):
  proc = subprocess.run([python, '-c', textwrap.dedent(code), *args],
                        env=env, capture_output=True, text=True, check=False,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  return proc.stdout + proc.stderr


def test_real_packages_are_never_replaced(python, subprocess_env):
  """Where TensorFlow is installed it is the one imported, never the stand-in
  (the no-TF case is the next tests')."""
  out = _run(python, """
      import json
      from wrn_trax import _tf_standin
      installed = _tf_standin._installed('tensorflow')
      done = _tf_standin.install_if_missing()
      print(json.dumps([installed, done, _tf_standin.active()]))
      """, subprocess_env)
  installed, done, active = json.loads(out.strip().splitlines()[-1])
  assert ('tensorflow' in done) is (not installed)
  assert active['tensorflow'] == ('real' if installed else 'stand-in')


def test_gfile_writes_gzip_through_its_real_mode_and_renames(tmp_path):
  path = str(tmp_path / 'a.pkl.gz')
  f = _tf_standin.GFile(path + '.tmp', 'wb')
  assert f.mode == 'wb'
  with gzip.GzipFile(fileobj=f, mode='wb') as z:
    pickle.dump({'step': 3}, z)
  f.close()
  with pytest.raises(FileExistsError):
    open(path, 'w').close()
    _tf_standin.rename(path + '.tmp', path)
  _tf_standin.rename(path + '.tmp', path, overwrite=True)
  with gzip.GzipFile(fileobj=_tf_standin.GFile(path, 'rb')) as z:
    assert pickle.load(z) == {'step': 3}
  assert _tf_standin.exists(path) and not _tf_standin.exists(path + '.tmp')
  _tf_standin.makedirs(str(tmp_path / 'x' / 'y'))
  assert _tf_standin.isdir(str(tmp_path / 'x' / 'y'))
  assert _tf_standin.glob(str(tmp_path / '*.gz')) == [path]
  _tf_standin.remove(path)
  assert not _tf_standin.exists(path)


def test_stand_in_modules_where_tf_is_blocked(python, no_tf_env):
  out = _run(python, """
      import json, sys
      from wrn_trax import _tf_standin
      before = _tf_standin.active()
      done = _tf_standin.install_if_missing()
      import tensorflow as tf
      import tensorflow.compat.v2 as tf2
      from tensorflow.experimental.numpy import *
      import tensorflow_datasets, tensorflow_text
      assert isinstance(tf.TensorShape([1, 2]), tf2.TensorShape)
      assert isinstance(tf.float32, tf.DType) and isinstance(tf.__file__, str)
      tf.random.set_seed(3)
      try:
        tf.data.Dataset.range(3)
      except RuntimeError as e:
        missing = str(e)
      print(json.dumps(dict(before=before, done=done,
                            after=_tf_standin.active(), missing=missing)))
      """, no_tf_env)
  got = json.loads(out.strip().splitlines()[-1])
  assert set(got['before'].values()) == {'absent'}
  assert sorted(got['done']) == sorted(BLOCKED)
  assert set(got['after'].values()) == {'stand-in'}
  assert 'tensorflow.data.Dataset.range is not provided' in got['missing']
  assert 'pip install tensorflow' in got['missing']


_TRAIN = """
import json, sys
import numpy as np
import wrn_trax
from wrn_trax import _tf_standin, train as train_lib
from trax.supervised import training
workdir, phase = sys.argv[1], sys.argv[2]
assert _tf_standin.active()['tensorflow'] == 'stand-in'
kw = dict(dataset='digits', recipe='smoke', steps=6, eval_every=3,
          checkpoint_every=3, precise_bn_batches=2, workdir=workdir)
if phase == 'first':
  save = training.Loop.save_checkpoint
  def save_then_stop(self, *a, **k):
    save(self, *a, **k)
    if self.step >= 3:
      w = np.concatenate([np.ravel(x) for x in
                          __import__('jax').tree_util.tree_leaves(
                              self.model.weights)])
      print('SAVED', self.step, float(np.sum(w, dtype=np.float64)))
      raise KeyboardInterrupt  # a stop that leaves no summary behind
  training.Loop.save_checkpoint = save_then_stop
  try:
    wrn_trax.train('WRN-10-1', **kw)
  except KeyboardInterrupt:
    pass
else:
  ck = train_lib.load_checkpoint(workdir)
  w = np.concatenate([np.ravel(x) for x in
                      __import__('jax').tree_util.tree_leaves(ck['weights'])])
  print('READ', ck['step'], float(np.sum(w, dtype=np.float64)))
  s = wrn_trax.train('WRN-10-1', **kw)
  print('DONE', json.dumps(dict(status=s['status'], step=s['step'])))
"""


@pytest.mark.slow
def test_trains_checkpoints_and_resumes_without_tensorflow(
    tmp_path, python, no_tf_env):
  workdir = str(tmp_path / 'run')
  first = _run(python, _TRAIN, no_tf_env, workdir, 'first')
  saved = [ln.split() for ln in first.splitlines() if ln.startswith('SAVED')]
  assert saved and saved[-1][1] == '3', first
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))
  for name in ('model.pkl.gz', 'model.weights.npy.gz',
               'model.opt_slots0.npy.gz', 'config.json', 'metrics.jsonl'):
    assert os.path.exists(os.path.join(workdir, name)), name
  try:
    import tensorboard  # pylint: disable=g-import-not-at-top,unused-import  # noqa: F401
    # The Loop's summaries, through TensorBoard's writer.
    assert os.listdir(os.path.join(workdir, 'train'))
  except ImportError:
    assert 'TensorBoard summaries are not written' in first

  second = _run(python, _TRAIN, no_tf_env, workdir, 'second')
  read = [ln.split() for ln in second.splitlines() if ln.startswith('READ')]
  # The second process reads the first one's checkpoint: same step, same
  # weights.
  assert read[0][1] == '3'
  assert float(read[0][2]) == pytest.approx(float(saved[-1][2]), rel=1e-6)
  assert 'resuming from the checkpoint at step 3' in second
  done = json.loads(second.split('DONE ', 1)[1].splitlines()[0])
  assert done['status'] == 'done' and done['step'] == 6
  config = runio.read_json(os.path.join(workdir, 'config.json'))
  assert config['versions']['tensorflow_standin'] is True
  rows = runio.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  steps = [r['step'] for r in rows if r['split'] == 'train']
  assert steps == sorted(set(steps)) and steps[-1] == 6
