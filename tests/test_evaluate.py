"""Evaluation lives in wrn_trax.evaluate, apart from the training loop."""

import ast
import inspect

import pytest

from wrn_trax import augment, evaluate
from wrn_trax import train as train_lib

_MOVED = (
  'final_eval',
  'test_row',
  'evaluate',
  'precise_bn_state',
  'load_checkpoint',
  '_sublayers',
  '_PRECISE_BN_STREAM',
)


@pytest.mark.parametrize('name', _MOVED)
def test_train_keeps_the_old_names(name):
  assert getattr(train_lib, name) is getattr(evaluate, name)


def test_host_preprocess_is_augments_and_still_trains():
  assert train_lib.host_preprocess is augment.host_preprocess
  assert augment.host_preprocess({'preprocess': 'cifar', 'augment': 'device'}) == 'raw'
  assert augment.host_preprocess({'preprocess': 'cifar'}) == 'cifar'


def test_evaluation_does_not_reach_into_the_training_loop():
  """evaluate.py imports neither train nor sweep: the loop calls it, not back."""
  tree = ast.parse(inspect.getsource(evaluate))
  imported = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom):
      imported |= {f'{node.module}.{a.name}' for a in node.names}
    elif isinstance(node, ast.Import):
      imported |= {a.name for a in node.names}
  assert not {m for m in imported if m.endswith(('.train', '.sweep'))}
  assert 'wrn_trax.data' in imported and 'wrn_trax.models' in imported


def test_test_row_is_the_final_metrics_row():
  test = dict(loss=0.5, accuracy=0.9, bn='precise (2 train batches)')
  running = dict(loss=0.6, accuracy=0.8)
  row = evaluate.test_row(7, test, running, 1.5)
  assert row['split'] == 'test' and row['step'] == 7 and row['bn'] == test['bn']
  assert (row['accuracy'], row['accuracy_running_bn']) == (0.9, 0.8)
