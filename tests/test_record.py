"""The run record (record.py), the recipes as base + variants, and names.

Old names that users could depend on keep working: the recipe 'seed' (now
'notebook'), its run folders, `data.eval_batches`; 'svhn_extra' reaches
`data.load` from train, sweep and the command line.
"""
import json
import os

import numpy as np
import pytest

from wrn_trax import data
from wrn_trax import recipes
from wrn_trax import record
from wrn_trax import runio


# ------------------------------------------------------------- recipes ----


def test_every_recipe_is_the_base_with_its_changes():
  base = recipes.base()
  for name in recipes.RECIPES:
    r = recipes.get(name, 'cifar10')
    assert set(r) == set(base), name  # no field of its own, none missing
  # The variants differ from the base only where they say so.
  assert recipes.notebook()['weight_decay'] == 1e-5 != base['weight_decay']
  assert recipes.paper('svhn')['lr'] == 0.01
  assert recipes.paper('svhn_extra') == recipes.paper('svhn')
  assert recipes.get('smoke')['steps'] == 120


def test_the_old_recipe_name_is_the_notebook_recipe():
  assert recipes.canonical('seed') == 'notebook'
  assert recipes.get('seed', 'cifar10') == recipes.get('notebook', 'cifar10')
  with pytest.raises(ValueError, match=r"unknown recipe 'sed'; choose one of"):
    recipes.get('sed')


def test_backends_other_than_jax_are_refused_with_the_reason():
  with pytest.raises(ValueError, match="train\\(\\) runs on jax only"):
    recipes.get('smoke', backend='tensorflow-numpy')
  with pytest.raises(ValueError, match='backend'):
    recipes.get('smoke', backend='numpy')


# ------------------------------------------------------ configs, names ----


def test_make_config_records_the_recipe_by_its_name():
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  old = train_lib.make_config('WRN-10-1', 'digits', 'seed', steps=3)
  new = train_lib.make_config('WRN-10-1', 'digits', 'notebook', steps=3)
  assert old == new
  assert new['recipe'] == 'notebook'
  assert new['run_name'] == 'WRN-10-1_digits_notebook_s0_steps3'


def test_a_run_folder_of_the_old_recipe_name_is_found_and_matches(tmp_path):
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  config = train_lib.make_config('WRN-10-1', 'digits', 'notebook', steps=3)
  root = str(tmp_path)
  # Nothing there: the run's own folder.
  assert train_lib.default_workdir(config, root) == os.path.join(
      root, config['run_name'])
  # A folder that an older version made for the same run (recipe 'seed').
  legacy = tmp_path / 'WRN-10-1_digits_seed_s0_steps3'
  legacy.mkdir()
  old = dict(config, recipe='seed', run_name=legacy.name)
  (legacy / 'config.json').write_text(json.dumps(old))
  assert train_lib.default_workdir(config, root) == str(legacy)
  record.check_same_run(old, config, str(legacy))  # the same run
  with pytest.raises(ValueError, match='lr'):
    record.check_same_run(dict(old, lr=0.5), config, str(legacy))
  # Once the new folder exists it wins.
  os.makedirs(os.path.join(root, config['run_name']))
  assert train_lib.default_workdir(config, root) == os.path.join(
      root, config['run_name'])


def test_a_sweep_plans_old_recipe_folders_as_their_members(tmp_path):
  from wrn_trax import sweep as sweep_lib  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  config = train_lib.make_config('stock-WRN-10-1', 'digits', 'notebook',
                                 steps=3)
  legacy = tmp_path / config['run_name'].replace('_notebook_', '_seed_')
  legacy.mkdir()
  (legacy / 'config.json').write_text(json.dumps(dict(config, recipe='seed')))
  members = sweep_lib.plan([1], depths=[10], family='stock', dataset='digits',
                           recipe='seed', steps=3, root=str(tmp_path))
  assert [w for w, _ in members] == [str(legacy)]


def test_svhn_extra_is_a_data_set_name_that_reaches_load(monkeypatch):
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  assert 'svhn_extra' in data.DATASETS
  seen = {}

  def fake_tfds(name, data_dir, svhn_extra, looked, download):
    del data_dir, looked, download
    seen.update(name=name, svhn_extra=svhn_extra)
    raise data.DataNotFoundError('stop here')

  monkeypatch.setattr(data, '_load_tfds', fake_tfds)
  with pytest.raises(data.DataNotFoundError, match='stop here'):
    data.load('svhn_extra', download=False)
  assert seen == dict(name='svhn', svhn_extra=True)
  config = train_lib.make_config('WRN-16-4', 'svhn_extra', 'paper')
  assert config['preprocess'] == 'svhn' and config['lr'] == 0.01
  assert config['dropout'] == 0.4


def test_cli_takes_svhn_extra_and_the_notebook_recipe():
  from wrn_trax import cli  # pylint: disable=g-import-not-at-top
  parser = cli.parser()
  args = parser.parse_args(['train', '--model', 'WRN-16-4', '--dataset',
                            'svhn_extra', '--recipe', 'notebook'])
  steps, overrides = cli._recipe_args(args)  # pylint: disable=protected-access
  assert steps is None and overrides == {}


def test_test_batches_keeps_its_old_name():
  assert data.eval_batches is data.test_batches
  assert data.n_eval_batches is data.n_test_batches
  ds = data.from_arrays(
      np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int32),
      np.zeros((5, 8, 8, 3), np.uint8), np.arange(5, dtype=np.int32) % 2,
      n_classes=2)
  batches = list(data.test_batches(ds, 2))
  assert len(batches) == data.n_test_batches(ds, 2) == 3
  assert sum(float(w.sum()) for _, _, w in batches) == 5


# ------------------------------------------------------------- summary ----


def test_summary_round_trips_and_reads_older_files(tmp_path):
  s = record.Summary(status='done', step=10, steps=10, test_error=0.25,
                     eval_examples=360)
  record.write_summary(str(tmp_path), s)
  assert record.read_summary(str(tmp_path)) == s
  # A summary of an older version (fewer fields) or a newer one (more).
  (tmp_path / 'summary.json').write_text(json.dumps(
      dict(status='diverged', step=3, future_field=1)))
  old = record.read_summary(str(tmp_path))
  assert (old.status, old.step, old.test_error) == ('diverged', 3, None)
  assert record.read_summary(str(tmp_path / 'nothing')) is None


@pytest.mark.parametrize('text', ['[1, 2]', '{"step": 3}',
                                  '{"status": "great"}', 'garbage'])
def test_a_summary_that_is_not_one_names_the_file(tmp_path, text):
  (tmp_path / 'summary.json').write_text(text)
  with pytest.raises(runio.CorruptFileError, match='summary.json in '):
    record.read_summary(str(tmp_path))


def test_one_writer_of_failed_summaries_keeps_the_sessions_own(tmp_path):
  workdir = str(tmp_path / 'run')
  first = record.write_failed_summary(workdir, 'ValueError: boom', step=7,
                                      steps=10)
  assert first.status == 'failed' and first.step == 7
  # A sweep that sees the exception afterwards keeps the session's summary.
  kept = record.write_failed_summary(workdir, 'ValueError: boom',
                                     keep_existing=True)
  assert kept == first
  on_disk = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert on_disk['step'] == 7
  assert set(on_disk) == {f for f in record.Summary.__dataclass_fields__}


# -------------------------------------------------------------- config ----


def test_a_config_has_exactly_the_fields_of_the_record():
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  config = train_lib.make_config('WRN-10-1', 'digits', 'smoke', steps=3)
  assert set(config) == set(record.IDENTITY_FIELDS) | set(recipes.base())
  resolved = train_lib.resolve(config, data.load('digits'))
  assert set(resolved) - set(config) == set(record.RESOLVED_FIELDS)
  assert resolved['steps'] == 3 and resolved['n_classes'] == 10
  assert config['steps'] == 3 and 'n_classes' not in config  # not changed
  assert set(record.VOLATILE_FIELDS) - {'verbose'} <= set(resolved)


# ------------------------------------------------------ typed schema ----


def test_make_config_is_a_run_config_with_every_field_typed():
  import typing  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  hints = typing.get_type_hints(record.RunConfig)
  # The TypedDict is the field lists: identity plus every recipe field.
  assert set(hints) == set(record.IDENTITY_FIELDS) | set(recipes.base())
  assert set(typing.get_type_hints(record.ResolvedConfig)) - set(hints) == (
      set(record.RESOLVED_FIELDS))
  for args in (('WRN-10-1', 'digits', 'smoke'),
               ('stock-WRN-10-1', 'cifar10', 'notebook'),
               ('WRN-16-4', 'svhn', 'paper')):
    config = train_lib.make_config(*args, seed=3, data_dir='/d', lr=1)
    assert set(config) == set(hints), args
    assert record.check_config(config) is config
    assert isinstance(config['depth'], int) and isinstance(config['lr'], int)
    assert isinstance(config['overrides'], dict)
    assert config['data_dir'] == '/d' and config['seed'] == 3
    # What config.json holds after a JSON round trip is still one.
    record.check_config(json.loads(json.dumps(config)))
  resolved = train_lib.resolve(config, data.from_arrays(
      np.zeros((10, 8, 8, 3), np.uint8), np.zeros(10, np.int32),
      np.zeros((4, 8, 8, 3), np.uint8), np.zeros(4, np.int32), n_classes=2))
  assert record.check_config(resolved, record.ResolvedConfig) is resolved
  assert resolved['image_shape'] == [8, 8, 3] and resolved['n_test'] == 4
  with pytest.raises(record.ConfigError, match='unknown field'):
    record.check_config(resolved)  # resolved fields are not a RunConfig's


def test_a_hand_built_config_is_refused_naming_what_is_wrong():
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  config = train_lib.make_config('WRN-10-1', 'digits', 'smoke')
  by_hand = {k: v for k, v in config.items() if k != 'family'}
  with pytest.raises(record.ConfigError,
                     match=r"missing field\(s\) \['family'\].*make_config"):
    record.check_config(by_hand)
  with pytest.raises(ValueError, match=r"missing field\(s\) \['family'\]"):
    record.new_config(**by_hand)
  bad = dict(config, depth='10', data_parallel=0, lr_milestones=['a'],
             extra=1)
  with pytest.raises(record.ConfigError) as e:
    record.check_config(bad)
  message = str(e.value)
  assert "unknown field(s) ['extra']" in message
  assert "depth must be an int, got '10'" in message
  assert 'data_parallel must be True or False, got 0' in message
  assert "lr_milestones must be a list of numbers, got ['a']" in message
  assert 'steps' not in message  # Optional[int] holds an int
  with pytest.raises(record.ConfigError, match='a RunConfig is a dict'):
    record.check_config([('model', 'WRN-10-1')])
  # resolved_config checks what it completes.
  with pytest.raises(record.ConfigError, match=r'missing field\(s\) \['):
    record.resolved_config(config, n_classes=10)


# ------------------------------------------------------------ statuses ----


def test_one_vocabulary_of_statuses():
  assert record.STATUSES == ('done', 'diverged', 'failed', 'interrupted',
                             'running')
  assert set(record.FINAL_STATUSES) <= set(record.STATUSES)
  assert runio.FINAL_STATUSES is record.FINAL_STATUSES  # its old name
  assert record.INCOMPLETE not in record.STATUSES  # report's word, no file's
  assert set(record.UNFINISHED_STATUSES) - {record.INCOMPLETE} <= set(
      record.STATUSES)


@pytest.mark.parametrize('status', ['done', 'diverged', 'failed',
                                    'interrupted'])
def test_the_summary_readers_are_one(tmp_path, status):
  """record.read_summary is the reader; the others only shape its answer."""
  from wrn_trax import report  # pylint: disable=g-import-not-at-top
  s = record.Summary(status=status, step=7, steps=10, test_error=0.5)
  record.write_summary(str(tmp_path), s)
  final = status in ('done', 'diverged')
  assert record.finished_summary(str(tmp_path)) == (s if final else None)
  assert runio.finished_summary(str(tmp_path)) == (
      s.to_dict() if final else None)
  assert report.summary_row(tmp_path) == s.to_dict()
  assert report.read_summary is report.summary_row  # its old name
  # An unknown status is a corrupt file to every reader, not a finished run.
  (tmp_path / 'summary.json').write_text('{"status": "great", "step": 1}')
  with pytest.raises(runio.CorruptFileError, match='summary.json in '):
    runio.finished_summary(str(tmp_path))
  with pytest.warns(UserWarning, match='reported as incomplete'):
    row = report.summary_row(tmp_path)
  assert row['status'] == record.INCOMPLETE
