"""The per-budget report: the table against errors worked out by hand from
the run folders, the lower envelope, the report files, one budget left alone.

Run folders are written through the run record (`wrn_trax.record`), as
`train` writes them; the slow test trains real tiny digits runs.
"""
import dataclasses
import json
import os
import shutil
import statistics

import numpy as np
import pandas as pd
import pytest

from wrn_trax import record
from wrn_trax import report
from wrn_trax import runio

N_TRAIN = 1000
BATCH = 50
MACS = {1: 2_000_000, 2: 7_000_000}   # forward multiply-adds per image
# (k, steps, seed) -> test error (fraction). At 20 steps k=1 wins, at 80 k=2.
ERRORS = {(1, 20, 0): 0.40, (1, 20, 1): 0.44, (2, 20, 0): 0.50,
          (2, 20, 1): 0.46, (1, 80, 0): 0.30, (1, 80, 1): 0.26,
          (2, 80, 0): 0.20, (2, 80, 1): 0.24}


def _write_run(root, k, steps, seed, error, status='done', device='cpu: cpu'):
  name = f'WRN-10-{k}_digits_smoke_s{seed}_steps{steps}'
  workdir = os.path.join(root, name)
  os.makedirs(workdir)
  runio.write_json(record.config_path(workdir), dict(
      run_name=name, model=f'WRN-10-{k}', family='paper', depth=10,
      widen_factor=k, block='B(3,3)', blocks_per_group=1, dataset='digits',
      recipe='smoke', seed=seed, data_dir=None, overrides={'steps': steps},
      steps=steps, batch_size=BATCH, dropout=0.0, n_train=N_TRAIN,
      device=device))
  record.write_summary(workdir, record.Summary(
      status=status, step=steps, steps=steps, test_error=error,
      flops=MACS[k], params=1000 * k, wall_seconds=steps * k * 0.5 + seed,
      median_step_seconds=0.01 * k))
  return workdir


@pytest.fixture
def root(tmp_path):
  for (k, steps, seed), error in ERRORS.items():
    _write_run(str(tmp_path), k, steps, seed, error)
  return str(tmp_path)


def _by_hand(root):
  """(k, steps) -> (median, min, max) % and wall seconds, from the folders."""
  errors, seconds = {}, {}
  for name in os.listdir(root):
    if not os.path.isfile(os.path.join(root, name, 'config.json')):
      continue  # the sweep's sweep.csv
    with open(os.path.join(root, name, 'config.json')) as f:
      config = json.load(f)
    with open(os.path.join(root, name, 'summary.json')) as f:
      summary = json.load(f)
    if summary['status'] != 'done':
      continue
    key = (config['widen_factor'], config['steps'])
    errors.setdefault(key, []).append(100 * summary['test_error'])
    seconds.setdefault(key, []).append(summary['wall_seconds'])
  return {key: (statistics.median(v), min(v), max(v),
                statistics.median(seconds[key]))
          for key, v in errors.items()}


def test_budget_table_matches_the_run_folders(root):
  runs = report.load_runs(root)
  assert report.has_budgets(runs)
  table = report.budget_table(runs)
  hand = _by_hand(root)
  assert len(table) == len(hand) == 4
  for _, row in table.iterrows():
    k, steps = int(row['widen_factor']), int(row['steps'])
    median, low, high, seconds = hand[(k, steps)]
    assert row['error_pct_median'] == pytest.approx(median)
    assert row['error_pct_min'] == pytest.approx(low)
    assert row['error_pct_max'] == pytest.approx(high)
    assert row['seconds_median'] == pytest.approx(seconds)
    assert row['n_seeds'] == 2 and row['seeds'] == (0, 1)
    assert row['epochs'] == pytest.approx(steps * BATCH / N_TRAIN)
    # 3 x (2 FLOPs per multiply-add) x multiply-adds x images trained.
    assert row['train_flops'] == pytest.approx(6 * MACS[k] * steps * BATCH)
    assert row['device'] == 'cpu: cpu'
  best = table[table['best']].set_index('steps')['widen_factor']
  assert best.to_dict() == {20: 1, 80: 2}
  assert list(table['steps']) == [20, 20, 80, 80]


def test_failed_and_unfinished_runs_do_not_count(root):
  _write_run(root, 2, 20, 2, 0.01, status='diverged')
  table = report.budget_table(report.load_runs(root))
  row = table[(table['steps'] == 20) & (table['widen_factor'] == 2)].iloc[0]
  assert row['n_seeds'] == 2
  assert row['error_pct_median'] == pytest.approx(48.0)


def test_no_best_width_where_a_width_is_unfinished(tmp_path):
  for (k, steps, seed), error in ERRORS.items():
    if (k, steps) != (2, 80):
      _write_run(str(tmp_path), k, steps, seed, error)
  table = report.budget_table(report.load_runs(str(tmp_path)))
  assert table[table['best']]['steps'].tolist() == [20]
  assert 'not all widths done' in report.budget_markdown(table)


def test_one_budget_is_not_a_budget_study(tmp_path):
  for (k, steps, seed), error in ERRORS.items():
    if steps == 20:
      _write_run(str(tmp_path), k, steps, seed, error)
  runs = report.load_runs(str(tmp_path))
  assert not report.has_budgets(runs)
  assert report.budget_table(runs).empty
  out = tmp_path / 'out'
  written = report.write_report(str(tmp_path), out=str(out), paper=False)
  assert 'best_width_by_budget.csv' not in written
  assert not (out / 'error_vs_compute.png').exists()
  summary = report.summarize(runs, paper=False)
  assert len(summary) == 2 and set(summary['n_done']) == {2}


def test_summarize_groups_seeds_and_separates_budgets(root):
  summary = report.summarize(report.load_runs(root), paper=False)
  assert len(summary) == 4
  assert set(summary['n_done']) == {2}
  row = summary[(summary['steps'] == 80) & (summary['widen_factor'] == 2)]
  assert row['error_pct_median'].iloc[0] == pytest.approx(22.0)


@pytest.mark.parametrize('flops,errors,expected', [
    ([1, 2, 3, 4], [5, 4, 3, 2], [1, 1, 1, 1]),  # every step buys error
    ([1, 2, 3, 4], [2, 3, 4, 5], [1, 0, 0, 0]),  # the cheapest beats all
    ([4, 1, 3, 2], [1, 5, 2, 6], [1, 1, 1, 0]),  # order of the input
    ([1, 1, 2], [3, 2, 1], [0, 1, 1]),           # equal compute: the lower
    ([1, 2, 2], [3, 3, 3], [1, 0, 0]),           # no gain is not on it
    ([1, np.nan, 3], [3, 1, 2], [1, 0, 1]),      # a missing point is not
])
def test_lower_envelope(flops, errors, expected):
  assert report.lower_envelope(flops, errors).tolist() == [
      bool(e) for e in expected]


def test_lower_envelope_against_brute_force():
  rng = np.random.default_rng(0)
  flops, errors = rng.integers(1, 20, 40), rng.random(40)
  on = report.lower_envelope(flops, errors)
  for i in range(40):
    cheaper = (flops <= flops[i]) & (np.arange(40) != i)
    beaten = (errors[cheaper] <= errors[i]).any()
    assert on[i] == (not beaten)


def test_envelope_in_the_table(root):
  table = report.budget_table(report.load_runs(root))
  on = table[table['envelope']][['steps', 'widen_factor']]
  # Worked out apart: walk the points from the cheapest, keep new lows.
  flops = {(k, s): 6 * MACS[k] * s * BATCH for k in (1, 2) for s in (20, 80)}
  median = {(k, s): 100 * statistics.median(
      [ERRORS[(k, s, 0)], ERRORS[(k, s, 1)]]) for k in (1, 2) for s in (20, 80)}
  expected = []
  best = np.inf
  for key in sorted(flops, key=lambda key: (flops[key], median[key])):
    if median[key] < best:
      expected.append(key)
      best = median[key]
  assert sorted(zip(on['widen_factor'], on['steps'])) == sorted(expected)


def test_write_report_adds_the_budget_files(root, tmp_path):
  out = tmp_path / 'report'
  written = report.write_report(root, out=str(out), paper=False)
  for name in ('best_width_by_budget.csv', 'best_width_by_budget.md',
               'error_vs_compute.png'):
    assert name in written and (out / name).stat().st_size > 0
  csv = pd.read_csv(out / 'best_width_by_budget.csv')
  assert len(csv) == 4 and csv['best'].sum() == 2
  md = (out / 'best_width_by_budget.md').read_text()
  assert '| best width' in md
  assert '42.00 (40.00-44.00)' in md  # k=1 at 20 steps
  header = md.splitlines()[0].split('|')
  rows = {int(cells[1]): cells for cells in (
      l.split('|') for l in md.split('\n\n')[0].splitlines()[2:])}
  best = header.index(' best width ')
  assert (rows[20][best].strip(), rows[80][best].strip()) == ('k=1', 'k=2')
  readme = (out / 'README.md').read_text()
  assert 'Best width by budget' in readme and 'error_vs_compute.png' in readme


def _budget_columns(table):
  return table[['steps', 'widen_factor', 'n_seeds', 'error_pct_median', 'error_pct_min',
                'error_pct_max', 'train_flops', 'seconds_median', 'best', 'envelope']]


def test_a_reports_runs_csv_stands_in_for_lost_run_folders(root, tmp_path_factory):
  out = tmp_path_factory.mktemp('first_report')
  report.write_report(root, out=str(out), paper=False)
  before = report.budget_table(report.load_runs(root))
  # The k=2 folders are lost (a reset machine); k=1's are still there.
  for name in os.listdir(root):
    if name.startswith('WRN-10-2_'):
      shutil.rmtree(os.path.join(root, name))
  assert report.budget_table(report.load_runs(root))['widen_factor'].nunique() == 1
  runs = report.load_runs([root, out / 'runs.csv'])
  assert len(runs) == len(ERRORS)
  from_table = runs[runs['path'] == str(out / 'runs.csv')]
  assert sorted(from_table['widen_factor']) == [2, 2, 2, 2]
  pd.testing.assert_frame_equal(
    _budget_columns(report.budget_table(runs)), _budget_columns(before), check_dtype=False
  )
  # Curves come from the folders only.
  curves_runs = set(report.load_curves([root, out / 'runs.csv'])['run'])
  assert not any(r.startswith('WRN-10-2_') for r in curves_runs)


def test_a_run_folder_wins_over_the_table_row_of_the_same_run(root, tmp_path_factory):
  out = tmp_path_factory.mktemp('first_report')
  report.write_report(root, out=str(out), paper=False)
  name = 'WRN-10-1_digits_smoke_s0_steps20'
  summary = record.read_summary(os.path.join(root, name))
  record.write_summary(os.path.join(root, name), dataclasses.replace(summary, test_error=0.10))
  for order in ([root, out / 'runs.csv'], [out / 'runs.csv', root]):
    runs = report.load_runs(order)
    row = runs[runs['run'] == name]
    assert len(row) == 1 and row['error_pct'].item() == pytest.approx(10.0)


def test_report_cli_reads_folders_and_tables(root, tmp_path_factory, run_cli):
  first = tmp_path_factory.mktemp('first_report')
  assert run_cli(['report', '--root', root, '--out', str(first)])[0] == 0
  for name in os.listdir(root):
    if name.startswith('WRN-10-2_'):
      shutil.rmtree(os.path.join(root, name))
  second = tmp_path_factory.mktemp('second_report')
  code, out, err = run_cli(
    ['report', '--root', root, str(first / 'runs.csv'), '--out', str(second)]
  )
  assert code == 0, err
  assert 'Best width by budget' in out
  pd.testing.assert_frame_equal(
    pd.read_csv(second / 'best_width_by_budget.csv'),
    pd.read_csv(first / 'best_width_by_budget.csv'),
  )
  assert str(first / 'runs.csv') in (second / 'README.md').read_text()


@pytest.mark.parametrize(
  'text, message',
  [('a,b\n1,2\n', 'has no column run, status, test_error'), ('', 'is not a runs table')],
)
def test_a_file_that_is_no_runs_table_is_a_clear_error(tmp_path, run_cli, text, message):
  table = tmp_path / 'runs.csv'
  table.write_text(text)
  with pytest.raises(ValueError, match=message):
    report.load_runs([table])
  code, out, err = run_cli(['report', '--root', str(table), '--out', str(tmp_path / 'o')])
  assert code == 2 and 'Traceback' not in err
  assert err.startswith('wrn-trax report: error:') and message in err
  assert not (tmp_path / 'o').exists()
  code, _, err = run_cli(['report', '--root', str(tmp_path / 'gone.csv')])
  assert code == 2 and 'No runs table at' in err


def test_plot_error_vs_compute_one_line_per_width_and_envelope(root):
  table = report.budget_table(report.load_runs(root))
  fig = report.plot_error_vs_compute(table)
  ax = fig.axes[0]
  assert ax.get_xscale() == 'log'
  labels = [t.get_text() for t in ax.get_legend().get_texts()]
  assert sorted(labels) == ['k=1', 'k=2', 'lower envelope']
  envelope = [l for l in ax.lines if l.get_label() == 'lower envelope'][0]
  on = table[table['envelope']].sort_values('train_flops')
  np.testing.assert_allclose(envelope.get_xdata(), on['train_flops'])
  np.testing.assert_allclose(envelope.get_ydata(), on['error_pct_median'])


def test_error_vs_compute_labels_only_1_2_5_ticks_briefly(root):
  """Within a decade or two, matplotlib's default labels the minor ticks of
  a log axis as '2 x 10^12' and neighbours overlap (they did in
  results/cifar10-budget); ours label 1, 2 and 5 x 10^n as '2e12'."""
  table = report.budget_table(report.load_runs(root))
  fig = report.plot_error_vs_compute(table)
  ax = fig.axes[0]
  ax.set_xlim(2e12, 7e13)
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  inside = [t for t in ax.get_xticklabels()
            if t.get_text() and 2e12 <= t.get_position()[0] <= 7e13]
  assert [t.get_text() for t in inside] == [
      '2e12', '5e12', '1e13', '2e13', '5e13']
  assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]
  renderer = canvas.get_renderer()
  boxes = [t.get_window_extent(renderer) for t in inside]
  for left, right in zip(boxes, boxes[1:]):
    assert left.x1 < right.x0


@pytest.mark.slow
def test_budget_table_from_real_digits_runs(tmp_path):
  """2 budgets x 2 widths x 2 seeds of real smoke trainings on digits."""
  import wrn_trax  # pylint: disable=g-import-not-at-top
  root = str(tmp_path / 'runs')
  for steps in (4, 8):
    wrn_trax.sweep(widen_factors=[1, 2], depths=[10], family='paper',
                   seeds=[0, 1], dataset='digits', recipe='smoke',
                   steps=steps, eval_every=4, checkpoint_every=4,
                   precise_bn_batches=2, root=root, verbose=False,
                   live=False)
  runs = report.load_runs(root)
  assert (runs['status'] == 'done').all() and len(runs) == 8
  table = report.budget_table(runs)
  hand = _by_hand(root)
  assert len(table) == 4
  for _, row in table.iterrows():
    median, low, high, _ = hand[(int(row['widen_factor']), int(row['steps']))]
    assert row['error_pct_median'] == pytest.approx(median)
    assert (row['error_pct_min'], row['error_pct_max']) == pytest.approx(
        (low, high))
    assert row['epochs'] == pytest.approx(row['steps'] * 32 / 1437)
  for steps, at in table.groupby('steps'):  # noqa: B007
    assert at['best'].sum() == 1
    best = at[at['best']].iloc[0]
    assert best['error_pct_median'] == at['error_pct_median'].min()
  written = report.write_report(root, out=str(tmp_path / 'out'), paper=False)
  assert 'error_vs_compute.png' in written
