"""The one Markdown pipe-table writer and the tables written with it."""

import os
import sys

import numpy as np
import pandas as pd
import pytest

from wrn_trax import _markdown, report


def test_pipe_table_plain():
  table = _markdown.pipe_table(['a', 'b'], [[1, 'x'], [2.5, None]])
  assert table == '| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | None |'


def test_pipe_table_padded_with_right_aligned_numbers():
  table = _markdown.pipe_table(
    ['name', 'n'], [['ab', '7'], ['abcdef', '123']], right=[False, True], pad=True
  )
  assert table.splitlines() == [
    '| name   |   n |',
    '|--------|----:|',
    '| ab     |   7 |',
    '| abcdef | 123 |',
  ]


def test_pipe_table_escapes_cells_so_none_breaks_the_table():
  table = _markdown.pipe_table(['a|b'], [['x|y\nz']])
  lines = table.splitlines()
  assert lines == [r'| a\|b |', '|---|', r'| x\|y z |']
  # Every line has as many unescaped pipes as the header.
  assert {line.replace(r'\|', '').count('|') for line in lines} == {2}


@pytest.mark.parametrize(
  'rows, right',
  [
    ([['only one']], None),
    ([['a', 'b']], [True]),
  ],
)
def test_pipe_table_refuses_ragged_rows(rows, right):
  with pytest.raises(ValueError, match='2 columns in the header'):
    _markdown.pipe_table(['x', 'y'], rows, right=right)


@pytest.fixture
def calls(monkeypatch):
  """Records each call of the one writer (and still writes the table)."""
  seen = []
  real = _markdown.pipe_table

  def recording(header, rows, right=None, pad=False):
    seen.append(list(header))
    return real(header, rows, right=right, pad=pad)

  monkeypatch.setattr(_markdown, 'pipe_table', recording)
  return seen


def test_report_tables_are_written_by_the_one_writer(calls):
  frame = pd.DataFrame({'model': ['WRN-16-4'], 'error': [3.5]})
  table = report.markdown_table(frame)
  assert calls == [['model', 'error']]
  assert table == '| model    | error |\n|----------|------:|\n| WRN-16-4 |   3.5 |\n'


def test_budget_table_is_written_by_the_one_writer(calls):
  from wrn_trax.report import budget  # pylint: disable=g-import-not-at-top

  table = pd.DataFrame(
    {
      'model': ['WRN-16-1', 'WRN-16-2'],
      'widen_factor': [1, 2],
      'steps': [100, 100],
      'epochs': [0.25, 0.25],
      'best': [True, False],
      'n_seeds': [2, 2],
      'error_pct_median': [30.0, 31.0],
      'error_pct_min': [29.0, 30.0],
      'error_pct_max': [31.0, 32.0],
      'train_flops': [1e12, 2e12],
      'seconds_median': [10.0, 20.0],
      'device': ['cpu', 'cpu'],
      'envelope': [True, False],
    }
  )
  text = budget.budget_markdown(table)
  assert len(calls) == 2 and calls[1][:2] == ['steps', 'width']
  assert sum(line.startswith('|-') for line in text.splitlines()) == 2


def test_models_table_is_written_by_the_one_writer(calls):
  from wrn_trax import models  # pylint: disable=g-import-not-at-top

  df = pd.DataFrame(
    [
      dict(
        table='t',
        name='WRN-16-4',
        blocks_per_group=2,
        paper_params_m=2.7,
        params=2748890,
        flops=7.8e8,
        paper_cifar10_error=4.97,
        paper_cifar100_error=np.nan,
      )
    ]
  )
  assert (
    models.markdown_table(df).splitlines()[2]
    == '| t | WRN-16-4 | 2 | 2.7M | 2,748,890 | 0.78 | 4.97 / – |'
  )
  assert calls and calls[0][0] == 'table'


def test_bench_tables_are_written_by_the_one_writer(calls):
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'bench'))
  try:
    import _common  # pylint: disable=g-import-not-at-top,import-error
  finally:
    sys.path.pop(0)
  assert _common.markdown_table(['a', 'b'], [[1, 'x']]) == '| a | b |\n|---|---|\n| 1 | x |'
  assert calls == [['a', 'b']]
