"""Executes every notebook end to end in smoke mode on `digits`.

Parameters are injected the way papermill does it: a cell tagged
`injected-parameters` goes right after the one cell tagged `parameters`, so the
notebook's own defaults stay as they are and the injected values win. The
notebooks run with nbclient in a `python3` kernel; jupyter_client starts a
kernelspec whose argv[0] is 'python' with `sys.executable`, so the kernel runs
in this interpreter (the injected cell checks it).
"""
import os
import pathlib
import sys
import time

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
PARAMETER_NAMES = ('dataset', 'steps', 'smoke', 'root', 'recipe')


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


def _kernel_env():
  """This process's environment, on the CPU and quiet."""
  env = dict(os.environ)
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


@pytest.mark.notebooks
@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.stem)
def test_executes_in_smoke_mode(path, tmp_path):
  nb = _inject(_read(path), smoke=True, dataset='digits', recipe='smoke',
               steps=SMOKE_STEPS, root=str(tmp_path / 'runs'))
  client = nbclient.NotebookClient(
      nb, timeout=CELL_TIMEOUT_S, kernel_name='python3',
      resources={'metadata': {'path': str(tmp_path)}})
  t0 = time.time()
  client.execute(env=_kernel_env())  # raises CellExecutionError on an error
  print(f'{path.name}: {time.time() - t0:.0f} s')
  assert any(out.get('output_type') == 'error'
             for cell in nb.cells for out in cell.get('outputs', [])) is False
  assert any('image/png' in out.get('data', {})
             for cell in nb.cells for out in cell.get('outputs', [])), (
                 'no plot was displayed')
  assert (tmp_path / 'runs').is_dir()
