"""The training benchmarks under bench/ run, report, and guard.

Speed itself is never asserted here (the machine is shared and noisy); these
tests check every script's --help, run all but seed_speed and standardize_fix
at a tiny size, check that the tables have the figures the README quotes,
and that the regression guards
(`train_speed.py --min-ratio`, `host_overhead.py --max-ms`) exit with
status 1 when their bound is not met.
"""
import importlib.util
import os
import re

import pytest

BENCH = os.path.join(os.path.dirname(__file__), '..', 'bench')
SCRIPTS = ['train_speed', 'seed_speed', 'host_overhead', 'scaling',
           'pipeline', 'standardize_fix']


def load(name):
  spec = importlib.util.spec_from_file_location(
      f'bench_{name}', os.path.join(BENCH, name + '.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def exits_with_guard_failure(main, argv, capsys):
  """Runs a script's main, expecting exit status 1; returns (out, err)."""
  with pytest.raises(SystemExit) as e:
    main(argv)
  assert e.value.code == 1
  captured = capsys.readouterr()
  return captured.out, captured.err


def table_cells(out, *first):
  """The cells of the markdown table row in `out` that starts with `first`."""
  start = '| ' + ' | '.join(map(str, first)) + ' |'
  row = next(line for line in out.splitlines() if line.startswith(start))
  return [c.strip() for c in row.strip('|').split('|')]


@pytest.mark.parametrize('name', SCRIPTS)
def test_every_script_has_help(name, capsys):
  module = load(name)
  entry = getattr(module, 'parse_args', None) or module.main
  with pytest.raises(SystemExit) as e:
    entry(['--help'])
  assert e.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith('usage:') and '--help' in out


@pytest.mark.slow
def test_train_speed_runs_small_and_its_guard_fails_below_the_bound(capsys):
  train_speed = load('train_speed')
  argv = ['--families', 'paper', '--depth', '10', '--widen', '1',
          '--batch-sizes', '8', '--steps', '1', '--rounds', '2',
          '--warmup', '1', '--n-train', '64', '--json', '', '--plot', '',
          '--min-ratio', '1000']
  out, err = exits_with_guard_failure(train_speed.main, argv, capsys)
  # ours, limit, ratio: 'median (min–max)' each, all positive.
  cells = table_cells(out, 'WRN-10-1', 8)
  for cell in cells[2:5]:
    median, lo, hi = map(float, re.match(
        r'([\d.,]+) \(([\d.,]+)–([\d.,]+)\)', cell.replace(',', '')).groups())
    assert 0 < lo <= median <= hi
  assert float(cells[5].replace(',', '')) > 0  # peak host MB
  assert 'GUARD FAILED (--min-ratio 1000)' in err
  assert 'WRN-10-1 batch 8: ours / limit' in err


def test_train_speed_guard_names_failed_and_slow_configurations():
  train_speed = load('train_speed')
  results = [
      dict(model='WRN-22-1', batch=64, ratio=dict(median=0.85)),
      dict(model='WRN-22-2', batch=64, ratio=dict(median=0.95)),
      dict(model='WRN-22-4', batch=128, error='Traceback\nMemoryError: x'),
  ]
  assert train_speed.below_ratio(results, 0) == []
  failures = train_speed.below_ratio(results, 0.9)
  assert failures == ['WRN-22-1 batch 64: ours / limit 0.850 < 0.9',
                      'WRN-22-4 batch 128: error: MemoryError: x']


def test_host_overhead_runs_small_and_its_guard_fails_above_the_bound(
    capsys):
  host_overhead = load('host_overhead')
  argv = ['--model', 'WRN-10-1', '--batch', '8', '--chunks', '1', '4',
          '--steps', '4', '--rounds', '1', '--reps', '1', '--json', '',
          '--max-ms', '1e-6']
  out, err = exits_with_guard_failure(host_overhead.main, argv, capsys)
  for label in ('loop.run(1) + history + NaN check',
                'loop.run(4) + history + NaN check',
                "trax's one_step", 'train default (light one_step)'):
    assert float(table_cells(out, label)[1].split()[0]) > 0
  assert re.search(r'WRN-10-1 batch 8: [\d.]+ ms per step in loop.run\(4\) '
                   r'chunks > 1e-06 ms', err)
  # Well above any host time: the guard passes and main returns normally.
  host_overhead.main(argv[:-1] + ['1e9'])


@pytest.mark.slow
def test_scaling_runs_small_and_skips_above_max_gflops(capsys):
  scaling = load('scaling')
  scaling.main(['--depths', '10', '--widen', '1', '64', '--batch', '2',
                '--steps', '1', '--rounds', '1', '--max-gflops', '1',
                '--json', '', '--plot', ''])
  out = capsys.readouterr().out
  cells = table_cells(out, 'WRN-10-1')
  assert float(cells[3].split()[0]) > 0  # s/step
  assert float(cells[5].replace(',', '')) > 0  # peak host MB
  # WRN-10-64 is about 40 GFLOPs per image: over the bound, never built.
  assert re.search(r'\| WRN-10-64 \|.*\| skipped > --max-gflops 1 \|', out)


@pytest.mark.slow
def test_a_crashed_worker_is_reported_and_fails_the_guard(capsys):
  train_speed = load('train_speed')
  # Depth 11 fits no WRN: the worker process dies on models.parse.
  out, err = exits_with_guard_failure(train_speed.main, [
      '--families', 'paper', '--depth', '11', '--widen', '1',
      '--batch-sizes', '8', '--json', '', '--plot', '', '--min-ratio', '0.5'],
                                      capsys)
  assert re.search(r'\| WRN-11-1 \| 8 \| error: .*depth', out)
  assert re.search(r'WRN-11-1 batch 8: error: \w+Error: .*depth', err)


def test_pipeline_script_runs_small(capsys):
  result = load('pipeline').main(['--n', '2048', '--batch-size', '128',
                                  '--rounds', '1', '--batches', '4',
                                  '--no-pin'])
  out = capsys.readouterr().out
  assert 'images/s' in out and 'stock' in out
  assert result['ours_cifar']['median'] > 0
