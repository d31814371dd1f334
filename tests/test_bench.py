"""The training benchmarks under bench/ run, report, and guard.

Speed itself is never asserted here (the machine is shared and noisy); these
tests check every script's --help, run all but seed_speed and standardize_fix
at a tiny size, check that the tables have the figures the README quotes,
and that the regression guards
(`train_speed.py --min-ratio`, `host_overhead.py --max-ms`) exit with
status 1 when their bound is not met.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

BENCH = os.path.join(os.path.dirname(__file__), '..', 'bench')
SCRIPTS = ['train_speed', 'seed_speed', 'host_overhead', 'scaling',
           'pipeline', 'standardize_fix', 'precise_bn', 'seed_parity',
           'folder_load', 'gpu_check']


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


@pytest.mark.slow
def test_host_overhead_runs_small_and_its_guard_fails_above_the_bound(
    capsys):
  host_overhead = load('host_overhead')
  argv = ['--model', 'WRN-10-1', '--batch', '8', '--chunks', '1', '4',
          '--steps', '4', '--rounds', '1', '--reps', '1', '--json', '',
          '--max-ms', '1e-6']
  out, err = exits_with_guard_failure(host_overhead.main, argv, capsys)
  for label in ('loop.run(1) + history + NaN check',
                'loop.run(4) + history + NaN check',
                "trax's one_step", 'train default (light one_step)',
                "train default, augment='device'"):
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


# ------------------------------------------------------------- gpu_check.py


def _gpu_check(argv, env, timeout):
  return subprocess.run(
      [sys.executable, os.path.join(BENCH, 'gpu_check.py'), *argv],
      capture_output=True, text=True, env=env, timeout=timeout, check=False)


@pytest.fixture
def cpu_env(subprocess_env):
  return dict(subprocess_env, JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='',
              TF_CPP_MIN_LOG_LEVEL='3')


def test_gpu_check_without_a_gpu_exits_2_and_says_so(cpu_env, tmp_path):
  out = tmp_path / 'gpu_check.json'
  proc = _gpu_check(['--out', str(out)], cpu_env, timeout=300)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert 'no GPU found' in proc.stderr
  record = json.loads(out.read_text())
  assert record['hard_failures'] == ['device']
  assert record['items']['device']['status'] == 'failed'
  assert record['items']['device']['platform'] == 'cpu'


@pytest.mark.slow
def test_gpu_check_workers_give_results_errors_and_timeouts(tmp_path):
  gpu_check = load('gpu_check')
  script = tmp_path / 'worker.py'
  script.write_text(
      'import json, sys, time\n'
      'kind = sys.argv[sys.argv.index("--worker") + 1]\n'
      'if kind == "ok":\n'
      '  print("noise"); print("RESULT_JSON " + json.dumps({"x": 1}))\n'
      'elif kind == "crash":\n'
      '  sys.exit("boom: the last line")\n'
      'else:\n'
      '  time.sleep(60)\n')
  argvs = [['--worker', kind] for kind in ('ok', 'crash', 'hang')]
  for parallel in (False, True):
    t0 = time.monotonic()
    ok, crash, hang = gpu_check._workers(  # pylint: disable=protected-access
        str(script), argvs, 5, dict(os.environ), parallel)
    assert time.monotonic() - t0 < 30
    assert ok == {'x': 1}
    assert crash['error'].endswith('boom: the last line')
    assert hang['error'].startswith('out of time')


def _image_folders(root, per_class):
  """CIFAR-10's class folders with a few random PNGs each."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, n in per_class.items():
    for name in ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                 'frog', 'horse', 'ship', 'truck'):
      folder = root / split / name
      folder.mkdir(parents=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                        ).save(folder / f'{i:04d}.png')
  return root


@pytest.mark.slow
def test_gpu_check_runs_quick_on_the_cpu(cpu_env, tmp_path):
  # Two host devices: the data-parallel check runs trax's pmapped step.
  env = dict(cpu_env, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  data = _image_folders(tmp_path / 'cifar10', dict(train=4, test=2))
  out = tmp_path / 'gpu_check.json'
  proc = _gpu_check(['--allow-cpu', '--quick', '--data', str(data), '--out',
                     str(out), '--max-seconds', '900'], env, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = json.loads(out.read_text())
  gpu_check = load('gpu_check')
  assert sorted(record['items']) == sorted(gpu_check.ITEMS)
  items = record['items']
  for name, item in items.items():
    assert item['status'] in ('ok', 'failed', 'timeout', 'skipped'), name
    assert item['summary'] and item['seconds'] >= 0
    assert f'| {name} | {item["status"]} |' in proc.stdout
  for name in ('device', 'placement', 'data_parallel', 'throughput'):
    assert items[name]['status'] == 'ok', (name, items[name]['summary'])
  assert record['hard_failures'] == []
  placement = items['placement']
  # weights, slots, state and the step's outputs, on both devices (jax names
  # them 'cpu:0' from 0.9 on, 'TFRT_CPU_0' before)
  assert len(placement['devices']) == 2, placement['devices']
  assert all(devices == placement['devices']
             for devices in placement['where'].values()), placement['where']
  assert placement['train_step_compiles'][0]
  assert not any(placement['train_step_compiles'][1:])
  assert items['data_parallel']['n_devices'] == 2
  assert all(np.isfinite(items['data_parallel']['losses']))
  for row in items['throughput']['models']:
    assert row['images_per_s'] > 0
    assert row['epochs_200_s'] == pytest.approx(
        50_000 * 200 / row['images_per_s'])
  real = items['real_data']  # needs data.load to read image folders
  assert real['status'] in ('ok', 'skipped'), real['summary']
  if real['status'] == 'ok':
    assert real['n_train'] == 40 and real['eval_examples'] == 20
    assert 0 <= real['test_error'] <= 1
  else:
    assert real['summary'].startswith('data not found')
  assert items['seed_vs_ours']['status'] == 'skipped'


@pytest.mark.slow
def test_precise_bn_table_on_a_tiny_run(tmp_path, capsys):
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  run = str(tmp_path / 'run')
  summary = train_lib.train('WRN-10-1', 'digits', 'smoke', steps=10,
                            workdir=run, verbose=False, precise_bn_batches=2)
  out_json = str(tmp_path / 'precise_bn.json')
  load('precise_bn').main(['--run', run, '--batches', '1', '2', '--draws',
                           '2', '--json', out_json])
  out = capsys.readouterr().out
  running = table_cells(out, 'running averages (checkpoint)')
  # The checkpoint's running statistics give the run's own running-BN figure.
  assert float(running[1]) == pytest.approx(
      100 * summary['test_error_running_bn'], abs=0.006)
  assert table_cells(out, 'precise, 2 train batches')
  assert 'train mode (batch statistics), 352 images' in out
  result = json.load(open(out_json, encoding='utf-8'))
  assert [r['n'] for r in result['rows']] == [None, 1, 2, None]
  assert all(len(r['errors']) == 2 for r in result['rows'][1:])


def test_seed_parity_table_lays_our_rows_beside_the_logs():
  rows = [dict(step=1, split='train', loss=2.5), dict(step=1, split='eval',
                                                      accuracy=0.14),
          dict(step=1000, split='train', loss=1.4),
          dict(step=1000, split='eval', accuracy=0.52),
          dict(step=1000, split='test', accuracy=0.55)]
  summary = dict(test_error=0.45, test_error_running_bn=0.57,
                 test_bn='precise (50 train batches)', eval_examples=10000,
                 step=1000)
  text = load('seed_parity').table(rows, summary, 1)
  assert table_cells(text, 1000) == ['1000', '1.400', '0.520', '1.568',
                                     '0.515', '1.517', '0.552']
  assert 'accuracy 0.550 with precise (50 train batches)' in text
  assert '0.430 with trax\'s running averages' in text
