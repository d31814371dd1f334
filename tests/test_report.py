"""Tests of wrn_trax.report on fake run folders that follow the contract."""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from wrn_trax import report

STEPS = 100
EVAL_EVERY = 25

# Final test error (fraction) of the finished WRN-16-k CIFAR-10 runs.
ERRORS = {(1, 0): 0.30, (1, 1): 0.20, (2, 0): 0.18, (2, 1): 0.14,
          (3, 0): 0.12, (3, 1): 0.10, (4, 0): 0.09, (4, 1): 0.11}

# A small stand-in for wrn_trax.models.paper_networks() (same columns; test
# errors in percent). WRN-16-4 is listed twice, as in the paper's Tables 3/4.
PAPER = pd.DataFrame({
    'table': [3, 4, 4, 4],
    'name': ['WRN-16-4-B(3,3)', 'WRN-16-4', 'WRN-16-8', 'WRN-28-10'],
    'block': ['B(3,3)'] * 4,
    'depth': [16, 16, 16, 28],
    'widen_factor': [4, 4, 8, 10],
    'paper_cifar10_error': [9.99, 5.02, 4.27, 4.00],
    'paper_cifar100_error': [np.nan, 24.03, 20.43, 19.25],
})


def _config(name, k, seed, **overrides):
  config = {
      'run_name': name, 'model': f'WRN-16-{k}', 'family': 'paper',
      'depth': 16, 'widen_factor': k, 'block': 'B(3,3)', 'dropout': 0.0,
      'dataset': 'cifar10', 'recipe': 'seed', 'seed': seed, 'steps': STEPS,
      'batch_size': 32, 'optimizer': 'momentum', 'lr': 0.1,
      'preprocess': 'standardize', 'eval_every': EVAL_EVERY,
      'versions': {'wrn_trax': '0.1.0', 'trax': '1.4.1', 'jax': '0.4.30'},
      'device': 'cpu', 'milestones': [50, 75],
  }
  config.update(overrides)
  return config


def _metrics(final_error, last_step=STEPS):
  """Train lines every 25 steps, eval lines at the same steps."""
  lines = []
  for step in range(EVAL_EVERY, last_step + 1, EVAL_EVERY):
    error = final_error + 0.5 * (1 - step / STEPS)
    lines.append({'step': step, 'split': 'train', 'loss': 2.0 - step / STEPS,
                  'accuracy': 1 - error, 'lr': 0.1, 'seconds': step / 10,
                  'images_per_s': 320.0})
    lines.append({'step': step, 'split': 'eval', 'loss': 2.1 - step / STEPS,
                  'accuracy': 1 - error, 'lr': None, 'seconds': step / 10,
                  'images_per_s': None})
  return lines


def _summary(k, test_error, status='done', step=STEPS):
  return {
      'status': status, 'reason': None if status == 'done' else 'loss is nan',
      'step': step, 'steps': STEPS, 'test_error': test_error,
      'test_loss': None if test_error is None else 2 * test_error,
      'eval_examples': 10000, 'best_eval_error': test_error,
      'best_eval_step': step, 'params': 1000 * k * k, 'flops': 10**6 * k * k,
      'wall_seconds': 60.0 * k, 'median_step_seconds': 0.1 * k,
      'images_per_s': 1000.0 / k, 'peak_host_mb': 500.0,
      'peak_device_mb': None,
  }


def _write_run(root, name, config, metrics, summary=None, truncate=False):
  run_dir = root / name
  run_dir.mkdir(parents=True)
  (run_dir / 'config.json').write_text(json.dumps(config))
  text = ''.join(json.dumps(m) + '\n' for m in metrics)
  if truncate:  # A kill mid-write: half of one more line, no newline.
    text += json.dumps(metrics[-1])[:17]
  (run_dir / 'metrics.jsonl').write_text(text)
  if summary is not None:
    (run_dir / 'summary.json').write_text(json.dumps(summary))


def make_runs(root):
  """k=1..4 x 2 seeds done, one diverged, one killed, one stock, one digits."""
  root = pathlib.Path(root)
  for (k, seed), error in ERRORS.items():
    name = f'wrn-16-{k}-s{seed}'
    _write_run(root, name, _config(name, k, seed), _metrics(error),
               _summary(k, error))
  _write_run(root, 'wrn-16-2-s2', _config('wrn-16-2-s2', 2, 2),
             _metrics(0.5, last_step=50),
             _summary(2, None, status='diverged', step=60))
  _write_run(root, 'wrn-16-4-s2', _config('wrn-16-4-s2', 4, 2),
             _metrics(0.1, last_step=75), truncate=True)
  _write_run(root, 'stock-s0',
             _config('stock-s0', 1, 0, model='stock-WRN-22-1', family='stock',
                     depth=22),
             _metrics(0.25), _summary(1, 0.25))
  _write_run(root, 'digits-s0',
             _config('digits-s0', 4, 0, dataset='digits'),
             _metrics(0.05), _summary(4, 0.05))
  return root


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  return make_runs(tmp_path_factory.mktemp('runs'))


@pytest.fixture(scope='module')
def runs(root):
  return report.load_runs(root)


@pytest.fixture(scope='module')
def curves(root):
  return report.load_curves(root)


@pytest.fixture(scope='module')
def summary(runs):
  return report.summarize(runs, paper=PAPER)


def _row(frame, **where):
  mask = np.ones(len(frame), bool)
  for column, value in where.items():
    mask &= (frame[column] == value).to_numpy()
  assert mask.sum() == 1, where
  return frame[mask].iloc[0]


def test_load_runs_one_row_per_folder(runs):
  assert len(runs) == 12
  assert sorted(runs['run']) == sorted(
      [f'wrn-16-{k}-s{s}' for k, s in ERRORS] +
      ['wrn-16-2-s2', 'wrn-16-4-s2', 'stock-s0', 'digits-s0'])
  assert runs['status'].value_counts().to_dict() == {
      'done': 10, 'diverged': 1, 'incomplete': 1}
  # Config and summary fields become columns; nested ones dotted.
  for column in ('model', 'widen_factor', 'seed', 'device', 'params',
                 'versions.trax', 'milestones', 'error_pct', 'path'):
    assert column in runs.columns
  assert _row(runs, run='wrn-16-3-s1')['error_pct'] == pytest.approx(10.0)
  assert _row(runs, run='wrn-16-2-s0')['params'] == 4000


def test_load_runs_incomplete_run_takes_last_logged_step(runs):
  killed = _row(runs, run='wrn-16-4-s2')
  assert killed['status'] == 'incomplete'
  assert killed['step'] == 75  # The truncated line after it is skipped.
  assert killed['steps'] == STEPS  # From config.json.
  assert np.isnan(killed['error_pct'])


def test_load_runs_sorted_by_configuration_then_seed(runs):
  paper_c10 = runs[(runs['family'] == 'paper') & (runs['dataset'] == 'cifar10')]
  order = list(zip(paper_c10['widen_factor'], paper_c10['seed']))
  assert order == sorted(order)
  # Sorting is deterministic: loading again gives the same frame.


def test_load_runs_is_deterministic(root, runs):
  pd.testing.assert_frame_equal(report.load_runs(root), runs)


@pytest.mark.parametrize('make', ['missing', 'empty', 'no_config'])
def test_load_errors_name_root_and_how_to_make_runs(tmp_path, make):
  root = tmp_path / 'runs'
  if make != 'missing':
    root.mkdir()
  if make == 'no_config':
    (root / 'stray').mkdir()
  for load in (report.load_runs, report.load_curves, report.write_report):
    with pytest.raises(FileNotFoundError, match='sweep') as info:
      load(root)
    assert str(root) in str(info.value)


def test_load_curves_long_form(curves):
  assert list(curves.columns) == ['run', 'step', 'split', 'metric', 'value']
  assert {'loss', 'accuracy', 'error', 'lr', 'seconds',
          'images_per_s'} <= set(curves['metric'])
  one = curves[(curves['run'] == 'wrn-16-3-s1') & (curves['split'] == 'eval')
               & (curves['metric'] == 'error')]
  assert list(one['step']) == [25, 50, 75, 100]
  assert one['value'].iloc[-1] == pytest.approx(0.10)
  # lr is null on eval lines: dropped, not NaN.
  assert curves['value'].notna().all()
  assert curves[(curves['split'] == 'eval') & (curves['metric'] == 'lr')].empty


def test_load_curves_skips_truncated_last_line(curves):
  killed = curves[(curves['run'] == 'wrn-16-4-s2')
                  & (curves['metric'] == 'loss')]
  assert sorted(killed['step'].unique()) == [25, 50, 75]
  assert len(killed) == 6  # 3 train + 3 eval lines.


def test_corrupt_middle_line_warns(tmp_path):
  _write_run(tmp_path, 'r', _config('r', 1, 0), _metrics(0.2))
  path = tmp_path / 'r' / 'metrics.jsonl'
  lines = path.read_text().splitlines()
  lines[1] = lines[1][:10]
  path.write_text('\n'.join(lines) + '\n')
  with pytest.warns(UserWarning, match='line 2'):
    curves = report.load_curves(tmp_path)
  assert curves['step'].max() == STEPS
  with pytest.warns(UserWarning, match='line 2'):
    assert report.load_runs(tmp_path)['status'].tolist() == ['incomplete']


def test_summarize_statistics_over_seeds(summary):
  # One row per configuration: 4 k on cifar10 + stock + digits.
  assert len(summary) == 6
  k1 = _row(summary, model='WRN-16-1', dataset='cifar10', family='paper')
  assert k1['error_pct_median'] == pytest.approx(25.0)
  assert k1['error_pct_mean'] == pytest.approx(25.0)
  assert k1['error_pct_std'] == pytest.approx(np.std([30, 20], ddof=1))
  assert (k1['error_pct_min'], k1['error_pct_max']) == pytest.approx((20, 30))
  assert k1['n_done'] == 2
  assert k1['params_M'] == pytest.approx(0.001)
  assert k1['flops_G'] == pytest.approx(0.001)
  assert k1['wall_minutes'] == pytest.approx(1.0)
  assert k1['images_per_s'] == pytest.approx(1000.0)


def test_summarize_counts_diverged_and_incomplete_apart(summary):
  k2 = _row(summary, model='WRN-16-2', dataset='cifar10')
  # The diverged seed counts, but its error does not enter the statistics.
  assert (k2['n_done'], k2['n_diverged'], k2['n_failed']) == (2, 1, 0)
  assert k2['error_pct_median'] == pytest.approx(16.0)
  k4 = _row(summary, model='WRN-16-4', dataset='cifar10')
  assert (k4['n_done'], k4['n_incomplete']) == (2, 1)
  assert k4['error_pct_mean'] == pytest.approx(10.0)


def test_summarize_paper_column_only_for_paper_networks_on_cifar(summary):
  filled = summary.dropna(subset=['paper_error_pct'])
  assert filled[['model', 'dataset']].values.tolist() == [
      ['WRN-16-4', 'cifar10']]
  assert filled['paper_error_pct'].iloc[0] == pytest.approx(5.02)
  # Not for WRN-16-4 on digits, nor for networks the paper does not list.
  assert np.isnan(_row(summary, dataset='digits')['paper_error_pct'])
  assert np.isnan(_row(summary, family='stock')['paper_error_pct'])


def test_summarize_paper_fractions_and_cifar100(runs):
  c100 = runs.assign(dataset='cifar100')
  paper = PAPER.assign(paper_cifar10_error=PAPER['paper_cifar10_error'] / 100,
                       paper_cifar100_error=PAPER['paper_cifar100_error'] / 100)
  out = report.summarize(c100, paper=paper, paper_unit='fraction')
  assert out.dropna(subset=['paper_error_pct'])['paper_error_pct'].tolist() == (
      pytest.approx([24.03]))  # WRN-16-4, in percent; not the stock net.
  # The unit is what the caller says, never guessed: read as percent, the
  # same fractions are tiny percentages.
  out = report.summarize(c100, paper=paper)
  assert out.dropna(subset=['paper_error_pct'])['paper_error_pct'].tolist() == (
      pytest.approx([0.2403]))


def test_summarize_paper_sub_one_percent_figures_stay_percent(runs):
  # A table of sub-1 % errors (all <= 1) is still percent: 0.5 % is 0.5.
  paper = PAPER.assign(paper_cifar10_error=[0.9, 0.5, 0.4, 0.3])
  out = report.summarize(runs, paper=paper)
  assert out.dropna(subset=['paper_error_pct'])['paper_error_pct'].tolist() == (
      pytest.approx([0.5]))
  assert re.search(r'\|\s+0\.50\s+\|', report.format_table(out))


def test_summarize_paper_unit_is_checked(runs):
  with pytest.raises(ValueError, match="paper_unit must be one of"):
    report.summarize(runs, paper=PAPER, paper_unit='pct')
  # Percent figures (5.02) cannot be fractions.
  with pytest.raises(ValueError, match=r"'paper_cifar10_error'.*fraction"):
    report.summarize(runs, paper=PAPER, paper_unit='fraction')
  paper = PAPER.assign(paper_cifar10_error=[9.99, 5.02, 4.27, 400.0])
  with pytest.raises(ValueError, match=r'outside \[0, 100\]'):
    report.summarize(runs, paper=paper)


def test_sub_one_percent_error_is_reported_in_percent(tmp_path):
  """test_error 0.004 (a fraction) is 0.40 %, not 40 % nor 0.004 %."""
  root = tmp_path / 'runs'
  for seed in range(2):
    name = f'wrn-16-8-s{seed}'
    _write_run(root, name, _config(name, 8, seed), _metrics(0.004),
               dict(_summary(8, 0.004), test_error_running_bn=0.006))
  runs = report.load_runs(root)
  assert runs['error_pct'].tolist() == pytest.approx([0.4, 0.4])
  assert runs['error_pct_running_bn'].tolist() == pytest.approx([0.6, 0.6])
  table = report.summarize(runs, paper=False)
  assert table['error_pct_median'].tolist() == pytest.approx([0.4])
  assert table['running_bn_error_pct'].tolist() == pytest.approx([0.6])
  lines = report.format_table(table).splitlines()
  header = [c.strip() for c in lines[0].strip('|').split('|')]
  row = dict(zip(header, (c.strip() for c in lines[2].strip('|').split('|'))))
  assert (row['error_pct_median'], row['running_bn_error_pct']) == (
      '0.40', '0.60')
  ax = report.plot_error_vs_k(runs).axes[0]
  assert list(ax.lines[0].get_ydata()) == pytest.approx([0.4])
  written = report.write_report(root, out=tmp_path / 'out', paper=False)
  assert re.search(r'\|\s+0\.40\s+\|',
                   pathlib.Path(written['summary.md']).read_text())


def test_test_error_outside_zero_one_warns(tmp_path):
  # 40 is not a fraction: the contract is broken, so say so (naming the run)
  # rather than guess that it meant 40 %.
  _write_run(tmp_path, 'bad', _config('bad', 1, 0), _metrics(0.4),
             _summary(1, 40.0))
  with pytest.warns(UserWarning, match=r'test_error is a fraction.*bad'):
    runs = report.load_runs(tmp_path)
  assert runs['error_pct'].tolist() == [4000.0]


def test_summarize_paper_matches_architecture_not_dropout(runs):
  # The paper's figures are without dropout: a dropout run gets none.
  assert report.summarize(runs.assign(dropout=0.3),
                          paper=PAPER)['paper_error_pct'].isna().all()
  # A different block is a different network.
  assert report.summarize(runs.assign(block='B(1,3)'),
                          paper=PAPER)['paper_error_pct'].isna().all()
  # Without structure columns the name decides.
  by_name = PAPER[['name', 'paper_cifar10_error']]
  out = report.summarize(runs, paper=by_name)
  assert out.dropna(subset=['paper_error_pct'])['paper_error_pct'].tolist() == (
      pytest.approx([5.02]))


def test_summarize_without_paper_figures(runs):
  out = report.summarize(runs, paper=False)
  assert out['paper_error_pct'].isna().all()


def test_summarize_custom_grouping(runs):
  out = report.summarize(runs, by=['dataset'], paper=False)
  assert out['dataset'].tolist() == ['cifar10', 'digits']
  assert out['n_done'].tolist() == [9, 1]


def test_differing_columns(runs):
  cifar = runs[(runs['dataset'] == 'cifar10') & (runs['family'] == 'paper')]
  assert report.differing_columns(cifar) == ['model', 'widen_factor', 'seed']
  one_k = cifar[cifar['widen_factor'] == 3]
  assert report.differing_columns(one_k) == ['seed']
  assert 'dataset' in report.differing_columns(runs)
  assert report.differing_columns(one_k[:1]) == []


def test_format_table_rows(summary):
  table = report.format_table(summary)
  lines = table.strip().splitlines()
  assert len(lines) == 2 + len(summary)
  header = [c.strip() for c in lines[0].strip('|').split('|')]
  assert header[:2] == ['family', 'model']
  assert 'error_pct_median' in header and 'paper_error_pct' in header
  assert set(lines[1]) <= set('|-:')
  cells = {}
  for line in lines[2:]:
    row = dict(zip(header, (c.strip() for c in line.strip('|').split('|'))))
    cells[(row['model'], row['dataset'])] = row
  assert cells[('WRN-16-4', 'cifar10')]['error_pct_median'] == '10.00'
  assert cells[('WRN-16-4', 'cifar10')]['paper_error_pct'] == '5.02'
  assert cells[('WRN-16-1', 'cifar10')]['paper_error_pct'] == ''
  assert cells[('WRN-16-2', 'cifar10')]['n_diverged'] == '1'


def test_compact_table_rows_and_width(summary):
  """The printed table: one row per configuration, the figures a person
  reads, every line within 100 characters; the varying dataset is named."""
  lines = report.compact_table(summary).splitlines()
  assert len(lines) == 1 + len(summary)
  assert lines[0].split()[:3] == ['model', 'params', 'M']
  assert max(map(len, lines)) <= 100
  row = next(l for l in lines if l.startswith('WRN-16-4 dataset=cifar10'))
  # Median 10.00 over seeds 0.09 and 0.11; 2 of 3 runs done (one killed).
  assert '10.00 (9.00-11.00)' in row and ' 2/3 ' in row
  assert report.compact_table(summary).count('dataset=digits') == 1
  diverged = next(l for l in lines if l.startswith('WRN-16-2 dataset=cifar10'))
  assert ' 2/3 ' in diverged


def test_compact_table_cuts_long_names_to_fit(summary):
  long = summary.assign(model=summary['model'] + '-' + 'x' * 120)
  lines = report.compact_table(long, width=100).splitlines()
  assert max(map(len, lines)) <= 100
  assert lines[1].split()[0].endswith('~')
  wide = report.format_table(long)  # the files keep the full names
  assert 'x' * 120 in wide


def test_seeds_on_two_machines_make_one_curve_and_one_row(tmp_path):
  """device, data_dir and precision_used are volatile, not identity: two
  seeds that differ only in them are one configuration."""
  root = tmp_path / 'runs'
  for seed, device, data_dir in ((0, 'cpu', '/data/a'), (1, 'gpu:0', '/b')):
    name = f'wrn-16-2-s{seed}'
    config = _config(name, 2, seed, device=device, data_dir=data_dir,
                     precision_used='float32' if seed else 'bfloat16')
    _write_run(root, name, config, _metrics(0.1), _summary(2, 0.1 + seed / 100))
  runs = report.load_runs(root)
  assert len(runs) == 2 and runs['device'].nunique() == 2
  assert 'device' not in report.curve_keys(runs)
  assert 'data_dir' not in report.differing_columns(runs)
  stats = report.curve_stats(report.load_curves(root), runs)
  assert stats['line'].nunique() == 1 and set(stats['n_runs']) == {2}
  summary = report.summarize(runs, paper=False)
  assert len(summary) == 1 and summary['n_done'].iloc[0] == 2
  assert len(report.compact_table(summary).splitlines()) == 2


def test_markdown_table_escapes_pipes():
  table = report.markdown_table(pd.DataFrame({'a': ['x|y'], 'b': [1.5]}))
  assert table.splitlines()[2] == r'| x\|y | 1.5 |'
  assert table.splitlines()[1] == '|------|----:|'


def test_plot_curves_one_line_per_run(curves, runs):
  fig = report.plot_curves(curves, runs, metric='error', split='eval',
                           per_run=True)
  ax = fig.axes[0]
  assert len(ax.lines) == 12
  assert not ax.collections  # No bands per run.
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert len(set(labels)) == 12
  assert 'k=4, seed=0' not in labels  # Data set and family differ too.
  assert any('dataset=digits' in label for label in labels)
  # Error is plotted in percent: run wrn-16-3-s1 ends at 0.10 -> 10 %.
  line = [l for l, label in zip(ax.lines, labels)
          if label == 'family=paper, depth=16, k=3, dataset=cifar10, seed=1']
  assert len(line) == 1
  assert list(line[0].get_xdata()) == [25, 50, 75, 100]
  assert list(line[0].get_ydata()) == pytest.approx(
      [100 * (0.10 + 0.5 * (1 - s / STEPS)) for s in (25, 50, 75, 100)])
  # The old keyword still works.
  old = report.plot_curves(curves, runs, aggregate=False).axes[0]
  assert len(old.lines) == 12


def test_plot_curves_default_one_line_per_configuration(curves, runs):
  ax = report.plot_curves(curves, runs, metric='error', split='eval').axes[0]
  # 4 k on cifar10 + stock + digits; k=2 and k=4 have 3 runs each (one
  # diverged, one killed), k=1 and k=3 two: a band each; stock, digits none.
  assert len(ax.lines) == 6
  assert len(ax.collections) == 4
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert not any('seed' in label for label in labels)
  assert 'median over seeds' in ax.get_ylabel()


def test_plot_curves_legend_names_only_what_differs(curves, runs):
  cifar = runs[(runs['dataset'] == 'cifar10') & (runs['family'] == 'paper')
               & (runs['seed'] == 0)]
  fig = report.plot_curves(curves, cifar)
  labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
  assert labels == ['k=1', 'k=2', 'k=3', 'k=4']
  # The runs were written with the recipe's old name: read as today's.
  assert fig.axes[0].get_title() == (
      'family=paper, dataset=cifar10, recipe=notebook')


def test_plot_curves_median_per_config_on_given_ax(curves, runs):
  from matplotlib import figure
  fig = figure.Figure()
  ax = fig.add_subplot()
  out = report.plot_curves(curves, runs, metric='loss', split='train', ax=ax,
                           aggregate=True)
  assert out is fig
  assert len(ax.lines) == 6  # 4 k on cifar10 + stock + digits.


def test_plot_error_vs_k(runs):
  cifar = runs[(runs['dataset'] == 'cifar10') & (runs['family'] == 'paper')]
  ax = report.plot_error_vs_k(cifar).axes[0]
  assert len(ax.containers) == 1  # One errorbar series.
  x, y = ax.lines[0].get_data()
  assert list(x) == [1, 2, 3, 4]
  assert list(y) == pytest.approx([25.0, 16.0, 11.0, 10.0])
  # Both data sets: one series each, labelled by data set.
  ax = report.plot_error_vs_k(runs[runs['family'] == 'paper']).axes[0]
  assert len(ax.containers) == 2
  assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == [
      'dataset=cifar10', 'dataset=digits']


def test_plot_error_vs_params_and_throughput(runs):
  ax = report.plot_error_vs_params(runs).axes[0]
  assert ax.get_xscale() == 'log'
  assert len(ax.containers) == 3  # paper/cifar10, paper/digits, stock.
  ax = report.plot_throughput_vs_k(runs).axes[0]
  assert len(ax.containers) == 3
  labels = sorted(c.get_label() for c in ax.containers)
  assert labels == ['family=paper, depth=16, dataset=cifar10',
                    'family=paper, depth=16, dataset=digits',
                    'family=stock, depth=22, dataset=cifar10']
  cifar = [c for c in ax.containers if c.get_label() == labels[0]][0]
  x, y = cifar.lines[0].get_data()
  assert list(y) == pytest.approx([1000.0, 500.0, 1000 / 3, 250.0])


def test_write_report(root, tmp_path):
  out = tmp_path / 'results'
  written = report.write_report(root, out=out, paper=PAPER)
  for name in ('runs.csv', 'summary.csv', 'summary.md', 'summary.html',
               'README.md', 'curves_eval_error.png', 'curves_train_loss.png',
               'error_vs_k.png', 'error_vs_params.png', 'throughput_vs_k.png'):
    assert name in written
    path = pathlib.Path(written[name])
    assert path.parent == out and path.stat().st_size > 0
  assert not [p for p in os.listdir(out) if p.endswith('.tmp')]
  assert pathlib.Path(written['error_vs_k.png']).read_bytes()[:4] == (
      b'\x89PNG')
  assert len(pd.read_csv(written['runs.csv'])) == 12
  summary = pd.read_csv(written['summary.csv'])
  assert summary['paper_error_pct'].notna().sum() == 1
  assert '<table' in pathlib.Path(written['summary.html']).read_text()

  readme = pathlib.Path(written['README.md']).read_text()
  assert str(root) in readme
  assert '12 runs' in readme and '10 done' in readme
  assert '1 diverged' in readme and '1 incomplete' in readme
  assert pathlib.Path(written['summary.md']).read_text().strip() in readme
  images = [line.split('](')[1].rstrip(')') for line in readme.splitlines()
            if line.startswith('![')]
  assert len(images) == 5
  for image in images:
    assert (out / image).is_file()


def test_write_report_overwrites_and_skips_empty_plots(tmp_path):
  root = tmp_path / 'runs'
  _write_run(root, 'r', _config('r', 1, 0), _metrics(0.2, last_step=50))
  out = tmp_path / 'out'
  first = report.write_report(root, out=out, paper=False)
  second = report.write_report(root, out=out, paper=False)
  assert first == second
  # No run is done: curves only, no error or throughput plots.
  assert 'curves_eval_error.png' in second
  assert 'error_vs_k.png' not in second
  assert 'Runs not done' in pathlib.Path(second['README.md']).read_text()


def test_report_package_imports_no_framework_nor_matplotlib():
  """The report package pulls in no trax, jax, TensorFlow or matplotlib."""
  code = (
      'import sys\n'
      'import wrn_trax.report\n'
      'from wrn_trax.report import io, analysis, plots, write\n'
      'heavy = sorted(m for m in sys.modules if m.split(".")[0] in\n'
      '               ("trax", "jax", "tensorflow", "matplotlib"))\n'
      'assert not heavy, heavy\n')
  r = subprocess.run([sys.executable, '-c', code], capture_output=True,
                     text=True, check=False)
  assert r.returncode == 0, r.stderr


def test_report_package_reexports_public_names():
  for module in (report.io, report.analysis, report.plots, report.write):
    for name in dir(module):
      obj = getattr(module, name)
      if (not name.startswith('_') and callable(obj)
          and getattr(obj, '__module__', '') == module.__name__):
        assert getattr(report, name) is obj, name
  for name in report.__all__:
    assert hasattr(report, name), name


def test_running_bn_error_beside_the_headline_and_eval_bn_label(tmp_path):
  for seed, (exact, running) in enumerate([(0.40, 0.55), (0.44, 0.60),
                                           (0.42, 0.50)]):
    name = f'stock-s{seed}'
    summary = dict(_summary(1, exact), test_error_running_bn=running,
                   test_bn='precise (50 train batches)')
    _write_run(tmp_path, name,
               _config(name, 1, seed, model='stock-WRN-22-1',
                       family='stock', depth=22, eval_bn='batch'),
               _metrics(exact), summary)
  runs = report.load_runs(tmp_path)
  assert list(runs['test_bn'].unique()) == ['precise (50 train batches)']
  table = report.summarize(runs, paper=False)
  row = table.iloc[0]
  assert row['error_pct_median'] == pytest.approx(42.0)
  assert row['running_bn_error_pct'] == pytest.approx(55.0)
  text = report.format_table(table)
  assert 'running_bn_error_pct' in text and '55.00' in text
  fig = report.plot_curves(report.load_curves(tmp_path), runs)
  assert 'train-mode BN' in fig.axes[0].get_ylabel()
  # Runs made before the field existed read as NaN, not as an error.
  assert np.isnan(report.summarize(report.load_runs(
      make_runs(tmp_path / 'old')), paper=False)['running_bn_error_pct']).all()


def test_curve_stats_and_band_match_numpy_over_three_seeds(tmp_path):
  """Median line and min-max band of 3 seeds of one config, against numpy."""
  rng = np.random.default_rng(0)
  steps = [10, 20, 30, 40]
  errors = rng.uniform(0.05, 0.9, size=(3, len(steps)))
  for seed in range(3):
    name = f'wrn-16-2-s{seed}'
    metrics = [{'step': s, 'split': 'eval', 'loss': 1.0, 'accuracy': 1 - e}
               for s, e in zip(steps, errors[seed])]
    if seed == 2:  # Killed early: the last step has two runs only.
      metrics = metrics[:-1]
    _write_run(tmp_path, name, _config(name, 2, seed), metrics,
               None if seed == 2 else _summary(2, float(errors[seed, -1])))
  runs, curves = report.load_runs(tmp_path), report.load_curves(tmp_path)

  stats = report.curve_stats(curves, runs, 'error', 'eval')
  assert stats['line'].unique().tolist() == [0]
  assert stats['step'].tolist() == steps
  assert 'seed' not in stats.columns and stats['widen_factor'].eq(2).all()
  assert stats['n_runs'].tolist() == [3, 3, 3, 2]
  expected = [errors[:, :3], errors[:2, 3:]]
  median = np.concatenate([np.median(e, axis=0) for e in expected])
  low = np.concatenate([np.min(e, axis=0) for e in expected])
  high = np.concatenate([np.max(e, axis=0) for e in expected])
  np.testing.assert_allclose(stats['median'], median, rtol=1e-12)
  np.testing.assert_allclose(stats['min'], low, rtol=1e-12)
  np.testing.assert_allclose(stats['max'], high, rtol=1e-12)

  ax = report.plot_curves(curves, runs).axes[0]
  assert len(ax.lines) == 1 and len(ax.collections) == 1
  np.testing.assert_allclose(ax.lines[0].get_xdata(), steps)
  np.testing.assert_allclose(ax.lines[0].get_ydata(), 100 * median)
  # The band's polygon runs along the max and back along the min (percent).
  vertices = ax.collections[0].get_paths()[0].vertices
  for x, lo, hi in zip(steps, 100 * low, 100 * high):
    ys = vertices[np.isclose(vertices[:, 0], x), 1]
    assert ys.min() == pytest.approx(lo) and ys.max() == pytest.approx(hi)
  from matplotlib import colors
  np.testing.assert_allclose(colors.to_rgb(ax.lines[0].get_color()),
                             ax.collections[0].get_facecolor()[0][:3])
  # per_run=True: one line per seed, the data as logged (in percent).
  per_run = report.curve_stats(curves, runs, 'error', 'eval', per_run=True)
  assert per_run['line'].nunique() == 3
  assert (per_run['median'] == per_run['min']).all()
  ax = report.plot_curves(curves, runs, per_run=True).axes[0]
  assert len(ax.lines) == 3 and not ax.collections
  np.testing.assert_allclose(ax.lines[0].get_ydata(), 100 * errors[0])


def test_curve_stats_splits_configs_on_any_config_column(tmp_path):
  # Seeds agree on everything but the seed; a different lr is another line.
  for seed, lr in [(0, 0.1), (1, 0.1), (0, 0.05)]:
    name = f'r-lr{lr}-s{seed}'
    _write_run(tmp_path, name, _config(name, 2, seed, lr=lr), _metrics(0.2),
               _summary(2, 0.2))
  runs, curves = report.load_runs(tmp_path), report.load_curves(tmp_path)
  stats = report.curve_stats(curves, runs, 'loss', 'train')
  assert sorted(stats.groupby('line')['lr'].first()) == [0.05, 0.1]
  assert sorted(stats.groupby('line')['n_runs'].max()) == [1, 2]
  ax = report.plot_curves(curves, runs, 'loss', 'train').axes[0]
  labels = sorted(t.get_text() for t in ax.get_legend().get_texts())
  assert labels == ['lr=0.05', 'lr=0.1']


def test_budget_curves_name_width_and_steps_and_shade_budgets(tmp_path):
  """A budget sweep's legend says 'k=1, steps=50', not the milestones and
  overrides that follow from steps; a width's budgets are shades of its
  color, lightest for the shortest, and the widths keep their own hues."""
  import colorsys

  from matplotlib import colors
  for k in (1, 2):
    for steps in (100, 50):
      for seed in (0, 1):
        name = f'wrn-16-{k}-steps{steps}-s{seed}'
        config = _config(name, k, seed, steps=steps,
                         lr_milestone_steps=[steps // 2, 3 * steps // 4],
                         overrides={'steps': steps})
        summary = dict(_summary(k, 0.2, step=steps), steps=steps)
        _write_run(tmp_path, name, config, _metrics(0.2, last_step=steps),
                   summary)
  runs, curves = report.load_runs(tmp_path), report.load_curves(tmp_path)
  ax = report.plot_curves(curves, runs).axes[0]
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert sorted(labels) == ['k=1, steps=100', 'k=1, steps=50',
                            'k=2, steps=100', 'k=2, steps=50']
  hls = {label: colorsys.rgb_to_hls(*colors.to_rgb(line.get_color()))
         for label, line in zip(labels, ax.lines)}
  for k in (1, 2):
    short, long = hls[f'k={k}, steps=50'], hls[f'k={k}, steps=100']
    assert short[0] == pytest.approx(long[0], abs=0.02)  # one hue per width
    assert short[1] > long[1] + 0.2  # the shorter budget is lighter
  assert abs(hls['k=1, steps=100'][0] - hls['k=2, steps=100'][0]) > 0.1
  # Per run, the seeds are named and the implied columns kept out too.
  ax = report.plot_curves(curves, runs, per_run=True).axes[0]
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert 'k=1, steps=50, seed=1' in labels and len(set(labels)) == 8
