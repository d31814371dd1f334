"""Executes every notebook end to end in smoke mode on `digits`.

Parameters are injected the way papermill does it: a cell tagged
`injected-parameters` goes right after the one cell tagged `parameters`, so the
notebook's own defaults stay as they are and the injected values win. The
notebooks run with nbclient in a `python3` kernel; jupyter_client starts a
kernelspec whose argv[0] is 'python' with `sys.executable`, so the kernel runs
in this interpreter (the injected cell checks it).

The install cell runs for real: a wheel of this checkout (version
`WHEEL_VERSION`) is built once, laid out as a Kaggle dataset would be, and the
kernel's pip installs it into a folder of its own (`PIP_TARGET`, no
dependencies, no index) that is first on the kernel's `PYTHONPATH`, so the
notebook trains with the installed wheel and the venv's editable install is
left as it is.
"""
import glob
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')

NOTEBOOKS = sorted(
    (pathlib.Path(__file__).resolve().parent.parent / 'notebooks').glob(
        '*.ipynb'))

# Smoke mode: digits and the smoke recipe; 20 steps (the recipe has 120) keep
# each notebook to about a minute on 2 CPU cores.
SMOKE_STEPS = 20
CELL_TIMEOUT_S = 300
PARAMETER_NAMES = ('dataset', 'steps', 'smoke', 'root', 'recipe',
                   'wrn_trax_source')
REPO = pathlib.Path(__file__).resolve().parent.parent
# The wheel's version: unlike the editable install's, so the install cell
# must install it.
WHEEL_VERSION = '0.1.0+nbtest'
# Runs each notebook trains in smoke mode (02: d10 B(3,3) is shared).
SMOKE_RUNS = {'01_width_sweep': 2, '02_block_types_and_depth': 3,
              '03_reading_results': 2}


def _read(path):
  return nbformat.read(path, as_version=4)


def _parameters_index(nb):
  tagged = [i for i, cell in enumerate(nb.cells)
            if 'parameters' in cell.get('metadata', {}).get('tags', [])]
  assert len(tagged) == 1, f'want one cell tagged "parameters", got {tagged}'
  return tagged[0]


def _inject(nb, **params):
  """Inserts a papermill-style `injected-parameters` cell; returns nb."""
  lines = ['# Parameters injected by tests/test_notebooks.py.']
  lines += [f'{k} = {v!r}' for k, v in params.items()]
  # The kernel must be this interpreter (this venv, this checkout).
  lines += ['import sys as _sys',
            f'assert _sys.prefix == {sys.prefix!r}, _sys.prefix']
  cell = nbformat.v4.new_code_cell('\n'.join(lines))
  cell.metadata['tags'] = ['injected-parameters']
  nb.cells.insert(_parameters_index(nb) + 1, cell)
  return nb


def _kernel_env(site=None):
  """This process's environment, on the CPU and quiet.

  With `site`, pip installs into `site` (no dependencies, offline) and the
  kernel imports from it first.
  """
  env = dict(os.environ)
  if site is not None:
    env.update(PIP_TARGET=str(site), PIP_NO_DEPS='1', PIP_NO_INDEX='1',
               PIP_DISABLE_PIP_VERSION_CHECK='1',
               PYTHONPATH=os.pathsep.join(
                   [str(site)] + [p for p in [env.get('PYTHONPATH')] if p]))
  env.update(
      CUDA_VISIBLE_DEVICES='',       # TF and jax see no GPU.
      JAX_PLATFORMS='cpu',
      TF_CPP_MIN_LOG_LEVEL='3',      # no TF C++ banner.
      PYTHONWARNINGS='ignore::DeprecationWarning',
      MPLBACKEND='agg',
  )
  return env


def test_found_the_notebooks():
  assert [p.name for p in NOTEBOOKS] == [
      '01_width_sweep.ipynb', '02_block_types_and_depth.ipynb',
      '03_reading_results.ipynb']


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_clean_with_one_parameters_cell(path):
  nb = _read(path)
  nbformat.validate(nb)
  assert nb.metadata['kernelspec']['name'] == 'python3'
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert cell.execution_count is None, 'store notebooks with outputs cleared'
      assert cell.outputs == [], 'store notebooks with outputs cleared'
  source = nb.cells[_parameters_index(nb)].source
  for name in PARAMETER_NAMES:
    assert f'\n{name} = ' in '\n' + source, f'parameters cell lacks {name}'


def _install_cell(nb):
  """The code cell right after the parameters cell: the install cell."""
  cell = nb.cells[_parameters_index(nb) + 1]
  assert 'def install_wrn_trax(' in cell.source, cell.source[:200]
  return cell


def test_one_install_cell_in_every_notebook():
  sources = {p.stem: _install_cell(_read(p)).source for p in NOTEBOOKS}
  assert len(set(sources.values())) == 1, 'the install cells differ'
  source = next(iter(sources.values()))
  assert '<owner>' not in source
  assert "'--upgrade'" not in source and "'-U'" not in source
  for p in NOTEBOOKS:  # the default: a wheel attached as a Kaggle dataset
    assert ("\nwrn_trax_source = '/kaggle/input/**/wrn_trax-*.whl'" in
            _read(p).cells[_parameters_index(_read(p))].source)


@pytest.fixture(scope='module')
def install_cell():
  """The install cell's functions, from executing it with 'skip'."""
  namespace = dict(wrn_trax_source='skip')
  exec(_install_cell(_read(NOTEBOOKS[0])).source, namespace)  # pylint: disable=exec-used
  return namespace


def _touch(path):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(b'')
  return str(path)


def test_install_plan_picks_the_newest_wheel_by_version(install_cell, tmp_path):
  plan = install_cell['install_plan']
  old = _touch(tmp_path / 'a' / 'wrn_trax-0.1.9-py3-none-any.whl')
  new = _touch(tmp_path / 'b' / 'c' / 'wrn_trax-0.1.10-py3-none-any.whl')
  _touch(tmp_path / 'b' / 'other-9.0-py3-none-any.whl')
  os.utime(new, (0, 0))  # older file, newer version: the version decides
  pattern = str(tmp_path / '**' / 'wrn_trax-*.whl')
  assert plan(pattern, None)[0] == new
  assert plan(pattern, '0.1.9')[0] == new
  target, why = plan(pattern, '0.1.10')
  assert target is None and 'wrn_trax 0.1.10 is installed' in why
  assert plan(old, '0.1.10')[0] == old  # a path: exactly that wheel


def test_install_plan_without_a_wheel(install_cell, tmp_path):
  plan = install_cell['install_plan']
  pattern = str(tmp_path / '**' / 'wrn_trax-*.whl')
  target, why = plan(pattern, '0.1.0')
  assert target is None and 'using the installed 0.1.0' in why
  with pytest.raises(FileNotFoundError, match='wrn_trax is not installed'):
    plan(pattern, None)


@pytest.mark.parametrize('source,have,target', [
    ('skip', None, None), ('', '0.1.0', None), (' SKIP ', '0.1.0', None),
    ('wrn_trax==0.1.0', '0.1.0', None),
    ('wrn_trax==0.2.0', '0.1.0', 'wrn_trax==0.2.0'),
    ('wrn-trax == 0.2.0', None, 'wrn-trax == 0.2.0'),
    ('git+https://github.com/o/wrn_trax', '0.1.0', None),
    ('git+https://github.com/o/wrn_trax', None,
     'git+https://github.com/o/wrn_trax'),
    ('/src/wrn_trax', None, '/src/wrn_trax'),
])
def test_install_plan_for_specs_urls_and_skip(install_cell, source, have,
                                              target):
  assert install_cell['install_plan'](source, have)[0] == target


def test_a_failed_pip_install_raises_with_pips_message(install_cell, capsys,
                                                        monkeypatch):
  monkeypatch.setenv('PIP_NO_INDEX', '1')  # nothing is fetched, ever
  missing = '/nonexistent/wrn_trax-9.9.9-py3-none-any.whl'
  with pytest.raises(RuntimeError, match='pip install .* failed'):
    install_cell['install_wrn_trax'](missing)
  out = capsys.readouterr().out
  assert f'wrn_trax: installing {missing}' in out
  assert 'pip keeps jax==' in out and 'numpy==' in out
  assert 'does not exist' in out  # pip's own message, shown in the cell


@pytest.fixture(scope='module')
def kaggle_input(tmp_path_factory):
  """A folder laid out like /kaggle/input with a wheel of this checkout.

  The wheel is built from a copy whose version is `WHEEL_VERSION`, with
  `pip wheel --no-deps` as the README says (no build isolation: offline).
  A decoy older 'wheel' (not a zip: installing it would fail) sits beside it.
  """
  tmp = tmp_path_factory.mktemp('wheel')
  src = tmp / 'src'
  shutil.copytree(REPO / 'wrn_trax', src / 'wrn_trax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  for name in ('setup.cfg', 'pyproject.toml', 'README.md'):
    shutil.copy(REPO / name, src / name)
  cfg = (src / 'setup.cfg').read_text()
  cfg, n = re.subn(r'(?m)^version\s*=.*$', f'version = {WHEEL_VERSION}', cfg)
  assert n == 1, 'setup.cfg has no version line'
  (src / 'setup.cfg').write_text(cfg)
  out = tmp / 'input' / 'wrn-trax-wheel'
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--quiet', '--no-deps',
                  '--no-build-isolation', '--no-index', '-w', str(out),
                  str(src)], check=True)
  wheel, = glob.glob(str(out / 'wrn_trax-*.whl'))
  assert os.path.basename(wheel).startswith(f'wrn_trax-{WHEEL_VERSION}-')
  # Every module of the package is in the wheel (setup.cfg lists packages).
  with zipfile.ZipFile(wheel) as z:
    packed = set(z.namelist())
  sources = {p.relative_to(src).as_posix()
             for p in (src / 'wrn_trax').rglob('*.py')}
  assert sources <= packed, sorted(sources - packed)
  _touch(tmp / 'input' / 'old' / 'wrn_trax-0.0.1-py3-none-any.whl')
  return tmp / 'input', wheel


# Appended to each notebook under test: writes what the notebook computed
# (its run frames, and the files write_report said it wrote) to a JSON file,
# so the test compares the notebook's own values with the run folders.
_PROBE = """
import json as _json
import pandas as _pd
_probe = {}
for _name, _value in list(globals().items()):
  if (isinstance(_value, _pd.DataFrame) and not _name.startswith('_') and
      {'run', 'test_error'} <= set(_value.columns)):
    _probe[_name] = _value[['run', 'status', 'test_error']].to_dict('records')
if 'written' in globals():
  _probe['written'] = sorted(
      str(p) for p in (written.values() if isinstance(written, dict)
                       else written))
with open(PROBE_PATH, 'w') as _f:
  _json.dump(_probe, _f)
"""


def _with_probe(nb, path):
  cell = nbformat.v4.new_code_cell(f'PROBE_PATH = {str(path)!r}\n' + _PROBE)
  cell.metadata['tags'] = ['test-probe']
  nb.cells.append(cell)
  return nb


def _rich(cell, mime):
  """The `mime` data of a cell's display and result outputs, joined."""
  out = []
  for o in cell.get('outputs', []):
    value = o.get('data', {}).get(mime)
    if value is not None:
      out.append(''.join(value) if isinstance(value, list) else value)
  return '\n'.join(out)


def _outputs(cell, name='stdout'):
  return ''.join(o.get('text', '') for o in cell.outputs
                 if o.get('name') == name)


def _runs(root):
  """(config, summary) of every run folder under root."""
  out = []
  for config in sorted(pathlib.Path(root).glob('*/config.json')):
    summary = config.with_name('summary.json')
    out.append((json.loads(config.read_text()),
                json.loads(summary.read_text()) if summary.exists() else None))
  return out


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_in_smoke_mode(path, tmp_path, kaggle_input):
  inputs, wheel = kaggle_input
  site = tmp_path / 'site'
  site.mkdir()
  root, out = tmp_path / 'runs', tmp_path / 'report'
  params = dict(smoke=True, dataset='digits', recipe='smoke',
                steps=SMOKE_STEPS, root=str(root),
                wrn_trax_source=str(inputs / '**' / 'wrn_trax-*.whl'))
  if path.stem.startswith('03'):
    params['out'] = str(out)
  nb = _with_probe(_inject(_read(path), **params), tmp_path / 'probe.json')
  client = nbclient.NotebookClient(
      nb, timeout=CELL_TIMEOUT_S, kernel_name='python3',
      resources={'metadata': {'path': str(tmp_path)}})
  t0 = time.time()
  client.execute(env=_kernel_env(site))  # raises CellExecutionError on an error
  print(f'{path.name}: {time.time() - t0:.0f} s')

  # The install cell chose the newest wheel, pip installed it, and the
  # notebook imported the installed copy.
  installed = _outputs(nb.cells[_parameters_index(nb) + 2])
  assert f'wrn_trax: installing {wheel}' in installed, installed
  assert f'from {site / "wrn_trax"}' in installed, installed
  assert (site / f'wrn_trax-{WHEEL_VERSION}.dist-info').is_dir()
  # The parameters were applied: every run trained on digits with the smoke
  # recipe for SMOKE_STEPS steps, with the installed wheel's code.
  runs = _runs(root)
  assert len(runs) == SMOKE_RUNS[path.stem], [c['run_name'] for c, _ in runs]
  for config, summary in runs:
    assert (config['dataset'], config['recipe'], config['steps']) == (
        'digits', 'smoke', SMOKE_STEPS)
    assert config['versions']['wrn_trax'] == WHEEL_VERSION
    assert summary['status'] == 'done' and summary['step'] == SMOKE_STEPS
    assert 0 <= summary['test_error'] <= 1
  by_run = {c['run_name']: s for c, s in runs}
  # The frames the notebook computed hold the runs' recorded results.
  probe = json.loads((tmp_path / 'probe.json').read_text())
  frames = {k: v for k, v in probe.items() if k != 'written'}
  assert frames, 'the notebook made no frame of runs'
  seen = set()
  for name, records in frames.items():
    for row in records:
      assert row['run'] in by_run, (name, row['run'], sorted(by_run))
      assert row['status'] == 'done', (name, row)
      assert row['test_error'] == pytest.approx(
          by_run[row['run']]['test_error']), (name, row)
      seen.add(row['run'])
  assert seen == set(by_run), (seen, sorted(by_run))
  # Every summary table it displayed names the models it trained.
  tables = [_rich(c, 'text/markdown') for c in nb.cells
            if 'format_table' in c.get('source', '')]
  assert tables and all(tables), 'a summary table was not displayed'
  models = {c['model'] for c, _ in runs}
  assert all(any(m in t for t in tables) for m in models), (models, tables)
  # Every plotting cell displayed a figure.
  plot_cells = [c for c in nb.cells if c.cell_type == 'code' and
                'report.plot_' in c.source]
  assert plot_cells
  for c in plot_cells:
    assert _rich(c, 'image/png'), f'no figure from: {c.source[:80]}'
  if path.stem.startswith('01'):  # the budget section: 2 budgets x 2 widths
    budget_runs = _runs(tmp_path / 'runs-budget')  # root + '-budget'
    assert sorted(c['steps'] for c, _ in budget_runs) == (
        [SMOKE_STEPS // 2] * 2 + [SMOKE_STEPS] * 2)
    assert all(s['status'] == 'done' for _, s in budget_runs)
    shown = [_rich(c, 'text/markdown') for c in nb.cells
             if 'budget_markdown' in c.get('source', '')]
    assert shown and 'best width' in shown[0], shown
  if path.stem.startswith('03'):  # without results/cifar10-budget/: says so
    assert 'results/cifar10-budget/ is not here' in ''.join(
        _outputs(c) for c in nb.cells if c.cell_type == 'code')
  if path.stem.startswith('03'):  # write_report's tables and plots
    written = {p.name for p in out.iterdir()}
    assert {'runs.csv', 'summary.csv', 'summary.md', 'README.md'} <= written
    assert any(name.endswith('.png') for name in written), written
    import pandas as pd  # pylint: disable=g-import-not-at-top
    assert len(pd.read_csv(out / 'runs.csv')) == SMOKE_RUNS[path.stem]
    # What write_report returned (the notebook's last cell) is what it wrote.
    said = {pathlib.Path(p).name for p in probe['written']}
    assert said and said <= written, (said, written)
    assert f'{SMOKE_RUNS[path.stem]} runs under {str(root)!r}' in ''.join(
        _outputs(c) for c in nb.cells if c.cell_type == 'code')
