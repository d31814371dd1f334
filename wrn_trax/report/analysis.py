"""Pure functions on the frames of `report.io`: the comparison table, the
paper's figure beside ours, per-step statistics of the curves, markdown.

Units are explicit: `error_pct*` columns are percent (made from the
fraction-valued summary.json fields by `load_runs`); the paper's tables
(`wrn_trax.models.paper_networks()`) are in percent by construction, and a
`paper` frame passed to `summarize` is read in `paper_unit` ('percent' unless
told otherwise). Nothing is inferred from a value's magnitude.

No trax, jax, TensorFlow or matplotlib; `wrn_trax.models` is imported lazily
by `summarize` only when no `paper` frame is passed.
"""
import json
import math
import warnings
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import pandas as pd

from wrn_trax import _markdown, record
from wrn_trax.report.io import (CONFIG_KEYS, SUMMARY_FIELDS, _BOOKKEEPING,
                                _DERIVED, _NUMERIC_SUMMARY)

# Units a `paper` frame's error columns may be given in, and the factor that
# turns each into percent.
PAPER_UNITS = {'percent': 1.0, 'fraction': 100.0}

# Per-column number formats of the markdown and HTML tables.
_FORMATS = {
    'error_pct_median': '.2f', 'error_pct_mean': '.2f', 'error_pct_std': '.2f',
    'error_pct_min': '.2f', 'error_pct_max': '.2f', 'paper_error_pct': '.2f',
    'params_M': '.3f', 'flops_G': '.3f', 'images_per_s': '.0f',
    'wall_minutes': '.1f', 'dropout': 'g', 'error_pct': '.2f',
    'running_bn_error_pct': '.2f', 'error_pct_running_bn': '.2f',
}
_TABLE_STATS = ('error_pct_median', 'error_pct_mean', 'error_pct_std',
                'running_bn_error_pct', 'n_done', 'n_diverged', 'n_failed',
                'n_incomplete', 'paper_error_pct', 'params_M', 'flops_G',
                'images_per_s', 'wall_minutes')


def _config_columns(runs):
  """Columns of `runs` that came from config.json and say what the run is.

  Bookkeeping (run_name, versions.*) and the run record's volatile fields
  (`record.VOLATILE_FIELDS`: device, data_dir, precision_used, ...), which
  may differ between two sessions of one run, are left out: seeds run on two
  machines, or with the data in two places, are one configuration.
  """
  return [c for c in runs.columns
          if c not in SUMMARY_FIELDS and c not in _DERIVED
          and c.split('.')[0] not in _BOOKKEEPING
          and c.split('.')[0] not in record.VOLATILE_FIELDS]


def differing_columns(runs, columns=None):
  """Config columns whose values differ between the rows of `runs`.

  Args:
    runs: frame from `load_runs` (or any subset of it, or `summarize`'s).
    columns: candidates; default every config.json column except run_name
      and versions.*.

  Returns:
    List of column names, in frame order, that take more than one value
    (NaN counts as a value). A legend that names these names every line
    uniquely, and names nothing shared by all lines.
  """
  if columns is None:
    columns = _config_columns(runs)
  differ = []
  for c in columns:
    if c in runs.columns and runs[c].map(_hashable).nunique(dropna=False) > 1:
      differ.append(c)
  return differ


def _hashable(value):
  if isinstance(value, (list, dict)):
    return json.dumps(value, sort_keys=True, default=str)
  return value


def _key_value(value):
  """A grouping key for `value`: NaN and None alike, lists as JSON."""
  if value is None or value is pd.NA or (
      isinstance(value, float) and math.isnan(value)):
    return None
  return _hashable(value)


def _paper_table(paper):
  """The paper's figures, or None; `paper=None` asks wrn_trax.models."""
  if paper is False:
    return None
  if paper is None:
    try:
      from wrn_trax import models  # pylint: disable=g-import-not-at-top
      paper = models.paper_networks(counts=False)  # the figures only: fast
    except Exception as e:  # pylint: disable=broad-except
      warnings.warn('paper figures unavailable (wrn_trax.models.'
                    f'paper_networks() failed: {e!r}); paper_error_pct is NaN')
      return None
  return pd.DataFrame(paper)


def _paper_pct(values, unit, column):
  """The paper's error figures in percent, from `unit` (no guessing)."""
  values = pd.to_numeric(values, errors='coerce').astype(float)
  high = 1.0 if unit == 'fraction' else 100.0
  bad = values.notna() & ((values < 0.0) | (values > high))
  if bad.any():
    raise ValueError(
        f'paper column {column!r} is read in {unit} (paper_unit={unit!r}) '
        f'but holds {values[bad].tolist()}, outside [0, {high:g}]')
  return PAPER_UNITS[unit] * values


def _norm(value):
  """Comparable spelling of a name or block: 'B(3, 3)' -> 'b(3,3)'."""
  return ''.join(str(value).split()).lower()


def _paper_error_pct(summary, paper, unit='percent'):
  """Paper's CIFAR error (%) for each summary row; NaN where not a paper net.

  A row is one of the paper's networks when its family is not 'stock', its
  data set is cifar10 or cifar100 and its architecture is a row of `paper`:
  same depth, widen_factor and block where `paper` has those columns (so
  'WRN-40-2' and 'WRN-40-2-B(3,3)' are one network), otherwise the same name
  as `model`. Where several rows match, the one whose name is the model's
  wins, then the first. The paper's tables are for networks without dropout,
  so unless `paper` has a dropout column only dropout-0 runs get a figure.
  `paper`'s error columns are in `unit` ('percent' or 'fraction').
  """
  result = pd.Series(np.nan, index=summary.index, dtype=float)
  if paper is None or 'name' not in paper.columns:
    return result
  figures = {}
  for dataset in ('cifar10', 'cifar100'):
    column = f'paper_{dataset}_error'
    if column in paper.columns:
      figures[dataset] = _paper_pct(paper[column], unit, column)
  names = paper['name'].map(_norm)
  structure = [c for c in ('depth', 'widen_factor', 'block')
               if c in paper.columns and c in summary.columns]
  if not structure and 'model' not in summary.columns:
    return result
  for i, row in summary.iterrows():
    dataset = str(row.get('dataset', '')).lower()
    if dataset not in figures or row.get('family') == 'stock':
      continue
    dropout = pd.to_numeric(row.get('dropout', 0.0), errors='coerce')
    dropout = 0.0 if pd.isna(dropout) else float(dropout)
    if 'dropout' in paper.columns:
      match = np.isclose(pd.to_numeric(paper['dropout'], errors='coerce')
                         .fillna(0.0), dropout)
    elif dropout != 0.0:
      continue
    else:
      match = np.ones(len(paper), bool)
    if structure:
      for c in structure:
        if c == 'block':
          match &= (paper[c].map(_norm) == _norm(row[c])).to_numpy()
        else:
          match &= (pd.to_numeric(paper[c], errors='coerce')
                    == pd.to_numeric(row[c], errors='coerce')).to_numpy()
    else:
      match &= (names == _norm(row['model'])).to_numpy()
    values = figures[dataset][match]
    same_name = names[match] == _norm(row.get('model', ''))
    values = pd.concat([values[same_name], values[~same_name]]).dropna()
    if len(values):
      result[i] = float(values.iloc[0])
  return result


def _first(series):
  series = series.dropna()
  return series.iloc[0] if len(series) else np.nan


def summarize(runs: pd.DataFrame, by: Optional[Sequence[str]] = None,
              paper: Any = None, paper_unit: str = 'percent') -> pd.DataFrame:
  """The comparison table: one row per configuration, statistics over seeds.

  Args:
    runs: frame from `load_runs`.
    by: columns that define a configuration; default the CONFIG_KEYS present
      (family, model, depth, widen_factor, block, dropout, dataset, recipe,
      steps), i.e. everything but seed and run name.
    paper: the paper's figures, a frame with columns name,
      paper_cifar10_error, paper_cifar100_error (in `paper_unit`) and
      optionally depth, widen_factor, block, dropout (see `_paper_error_pct`
      for the matching); None asks `wrn_trax.models.paper_networks()`
      (lazily; its figures are percent; NaN with a warning if that fails);
      False leaves the column NaN.
    paper_unit: unit of `paper`'s error columns, 'percent' (as the paper
      states them, and `paper_networks()` gives them) or 'fraction'. Values
      outside [0, 100] or [0, 1] respectively are a ValueError.

  Returns:
    DataFrame with the `by` columns and: error_pct_median/mean/std/min/max
    (test error in percent over the seeds whose status is 'done'; the paper
    reports the median of 5 runs; BatchNorm statistics recomputed for the
    final weights, see `train.precise_bn_state`), running_bn_error_pct (the
    median with trax's running BN averages instead; NaN for runs made before
    it was recorded), n_done, n_diverged, n_failed, n_incomplete
    (running or without summary), paper_error_pct (percent), params_M,
    flops_G (multiply-adds per image, 1e9), images_per_s and wall_minutes
    (medians over done runs).

  Raises:
    ValueError: an unknown `paper_unit`, or paper figures outside its range.
  """
  if paper_unit not in PAPER_UNITS:
    raise ValueError(f'paper_unit must be one of {sorted(PAPER_UNITS)}; '
                     f'got {paper_unit!r}')
  # A sweep whose members all failed before training (e.g. an unreadable
  # file in each folder) has summaries without params, flops, timings.
  missing = [f for f in _NUMERIC_SUMMARY + ('error_pct', 'error_pct_running_bn')
             if f not in runs.columns]
  if missing:
    runs = runs.assign(**{f: np.nan for f in missing})
  if by is None:
    by = [k for k in CONFIG_KEYS if k in runs.columns]
  by = list(by)
  rows = []
  groups = runs.groupby(by, dropna=False, sort=False) if by else [((), runs)]
  for key, group in groups:
    key = key if isinstance(key, tuple) else (key,)
    status = group['status']
    done = group[status == record.DONE]
    errors = done['error_pct'].dropna()
    row = dict(zip(by, key))
    row.update({
        'error_pct_median': errors.median() if len(errors) else np.nan,
        'error_pct_mean': errors.mean() if len(errors) else np.nan,
        'error_pct_std': errors.std(ddof=1) if len(errors) > 1 else np.nan,
        'error_pct_min': errors.min() if len(errors) else np.nan,
        'error_pct_max': errors.max() if len(errors) else np.nan,
        'running_bn_error_pct': pd.to_numeric(
            done['error_pct_running_bn'], errors='coerce').median(),
        'n_done': int((status == record.DONE).sum()),
        'n_diverged': int((status == record.DIVERGED).sum()),
        'n_failed': int((status == record.FAILED).sum()),
        'n_incomplete': int(status.isin(record.UNFINISHED_STATUSES).sum()),
        'params_M': _first(group['params']) / 1e6,
        'flops_G': _first(group['flops']) / 1e9,
        'images_per_s': done['images_per_s'].median(),
        'wall_minutes': done['wall_seconds'].median() / 60.0,
    })
    rows.append(row)
  summary = pd.DataFrame(rows)
  if by:
    summary = summary.sort_values(by, kind='stable', na_position='last')
  summary = summary.reset_index(drop=True)
  summary.insert(summary.columns.get_loc('n_incomplete') + 1,
                 'paper_error_pct',
                 _paper_error_pct(summary, _paper_table(paper), paper_unit))
  return summary


def _seed_stats(runs, value, by):
  """Median/min/max of `value` over done seeds per configuration `by`."""
  done = runs[runs['status'] == record.DONE].dropna(subset=[value])
  if done.empty:
    return pd.DataFrame(columns=by + [f'{value}_{s}'
                                      for s in ('median', 'min', 'max')]
                        + ['params'])
  stats = (done.groupby(by, dropna=False)[value]
           .agg(['median', 'min', 'max']).add_prefix(f'{value}_')
           .reset_index())
  extra = done.groupby(by, dropna=False)[['params']].first().reset_index()
  return stats.merge(extra, on=by, how='left')


def curve_keys(runs, per_run=False):
  """Columns whose values make one curve: ['run'], or the config but seed.

  A configuration is every config.json column (plus the CONFIG_KEYS, e.g.
  `steps`) except the seed, the run name, versions.* and the volatile
  fields (device, data_dir, ...): runs that agree on all of them are seeds
  of one configuration.
  """
  if per_run:
    return ['run']
  keys = [k for k in CONFIG_KEYS if k in runs.columns]
  keys += [c for c in _config_columns(runs) if c not in keys]
  return [k for k in keys if k != 'seed']


def curve_stats(curves, runs, metric='error', split='eval', per_run=False):
  """Per-step statistics over seeds of one metric: the data of `plot_curves`.

  Args:
    curves: frame from `load_curves`.
    runs: frame from `load_runs`; only its runs are used.
    metric: metric of `curves` (values as logged: `error` is a fraction).
    split: 'train', 'eval' or 'test'.
    per_run: True makes each run its own line (statistics over one value).

  Returns:
    DataFrame, one row per line and step, sorted by line then step, with
    columns `line` (0, 1, ... in the order of `runs`), the `curve_keys`
    columns (values of the line's first run), `step`, `median`, `min`,
    `max` (over the line's runs that logged that step) and `n_runs` (how
    many did), and `runs` (their names, a tuple).
  """
  keys = curve_keys(runs, per_run)
  data = curves[(curves['metric'] == metric) & (curves['split'] == split)]
  names = runs[runs['run'].isin(data['run'])]
  line_of_key = {}
  line_of_run = {}
  first_run = []
  for _, row in names.iterrows():
    key = tuple(_key_value(row[k]) for k in keys)
    if key not in line_of_key:
      line_of_key[key] = len(line_of_key)
      first_run.append(row)
    line_of_run[row['run']] = line_of_key[key]
  columns = ['line'] + keys + ['step', 'median', 'min', 'max', 'n_runs',
                               'runs']
  if not line_of_run:
    return pd.DataFrame(columns=columns)
  data = data.assign(line=data['run'].map(line_of_run))
  data = data.dropna(subset=['line']).astype({'line': int})
  grouped = data.groupby(['line', 'step'], sort=True)
  stats = grouped['value'].agg(['median', 'min', 'max']).reset_index()
  stats['n_runs'] = grouped['run'].nunique().to_numpy()
  stats['runs'] = grouped['run'].agg(lambda r: tuple(sorted(set(r)))).to_numpy()
  lines = pd.DataFrame([{'line': i, **{k: row[k] for k in keys}}
                        for i, row in enumerate(first_run)])
  stats = stats.merge(lines, on='line', how='left')
  return stats[columns].reset_index(drop=True)


def _format_cell(value, fmt):
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return ''
  if isinstance(value, (bool, np.bool_)):
    return str(value)
  if isinstance(value, (float, np.floating)):
    if float(value).is_integer() and fmt is None:
      return str(int(value))
    return format(float(value), fmt or '.4g')
  return str(value)


def markdown_table(frame: pd.DataFrame,
                   formats: Optional[dict[str, str]] = None) -> str:
  """GitHub markdown table of `frame` (no index); numbers right-aligned.

  Cells are formatted by column (`formats`, else 4 significant digits) and
  written by the one table writer, `wrn_trax._markdown.pipe_table`, padded
  so that the columns line up in plain text.
  """
  formats = {**_FORMATS, **(formats or {})}
  header = [str(c) for c in frame.columns]
  body = [[_format_cell(v, formats.get(c)) for c, v in zip(frame.columns, r)]
          for r in frame.itertuples(index=False, name=None)]
  numeric = [pd.api.types.is_numeric_dtype(frame[c])
             and not pd.api.types.is_bool_dtype(frame[c])
             for c in frame.columns]
  return _markdown.pipe_table(header, body, right=numeric, pad=True) + '\n'


def _table_columns(summary):
  keys = [c for c in summary.columns if c not in _TABLE_STATS
          and not c.startswith('error_pct_')]
  return keys + [c for c in _TABLE_STATS if c in summary.columns]


def format_table(summary: pd.DataFrame,
                 columns: Optional[Sequence[str]] = None) -> str:
  """Markdown table of `summarize`'s frame (what `wrn-trax report` prints).

  Args:
    summary: frame from `summarize`.
    columns: columns to show; default the configuration columns, then error
      median/mean/std, run counts, the paper's error, params, FLOPs,
      throughput and wall time (min and max are left to the CSV).

  Returns:
    The table as a markdown string, one row per configuration.
  """
  columns = list(columns) if columns is not None else _table_columns(summary)
  return markdown_table(summary[columns])


# What a person reads in a terminal: `compact_table` fits this many columns.
COMPACT_WIDTH = 100
# Configuration columns the model's name already says (family, depth, width,
# block); the others are named beside the model only where they vary.
_NAMED_BY_MODEL = ('family', 'model', 'depth', 'widen_factor', 'block')


def _compact_label(row, varying):
  extra = [f'{k}={_markdown.escape_cell(_format_cell(row[k], _FORMATS.get(k)))}'
           for k in varying]
  model = str(row['model']) if 'model' in row.index else ''
  return ' '.join([model] + extra).strip() or '-'


def _error_with_spread(row):
  median = row.get('error_pct_median')
  if median is None or (isinstance(median, float) and math.isnan(median)):
    return ''
  low, high = row.get('error_pct_min'), row.get('error_pct_max')
  if (low is None or high is None or math.isnan(low) or math.isnan(high)
      or low == high):
    return f'{median:.2f}'
  return f'{median:.2f} ({low:.2f}-{high:.2f})'


def compact_table(summary: pd.DataFrame, width: int = COMPACT_WIDTH) -> str:
  """The short table `wrn-trax sweep` and `wrn-trax report` print.

  One row per configuration: the model (with any other configuration field
  that differs between rows, e.g. `dropout=0.3`), parameters in millions,
  the test error in percent as the median over seeds with the lowest and
  highest seed in brackets, the runs done out of all, the error with trax's
  running BatchNorm averages, images/s and wall minutes (medians over done
  runs). The full table (`format_table`) stays in the report's files.

  Args:
    summary: frame from `summarize`.
    width: the most characters a line may have; the model column is cut
      (ending in '~') to make the table fit.

  Returns:
    The table as plain text, columns separated by two spaces, every line at
    most `width` characters.
  """
  config = [c for c in CONFIG_KEYS if c in summary.columns
            and c not in _NAMED_BY_MODEL]
  varying = [c for c in config
             if summary[c].astype(str).nunique(dropna=False) > 1]

  def number(row, column, fmt):
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
      return ''
    return format(float(value), fmt)

  header = ['model', 'params M', 'error % (min-max)', 'runs', 'run-BN err %',
            'img/s', 'wall min']
  body = []
  for _, row in summary.iterrows():
    n_all = sum(int(row.get(c, 0) or 0) for c in
                ('n_done', 'n_diverged', 'n_failed', 'n_incomplete'))
    body.append([
        _compact_label(row, varying),
        number(row, 'params_M', '.3f'),
        _error_with_spread(row),
        f'{int(row.get("n_done", 0) or 0)}/{n_all}',
        number(row, 'running_bn_error_pct', '.2f'),
        number(row, 'images_per_s', '.0f'),
        number(row, 'wall_minutes', '.1f'),
    ])
  widths = [max([len(h)] + [len(r[j]) for r in body])
            for j, h in enumerate(header)]
  room = width - (sum(widths[1:]) + 2 * (len(widths) - 1))
  if widths[0] > room:
    widths[0] = max(room, 8)
    for r in body:
      if len(r[0]) > widths[0]:
        r[0] = r[0][:widths[0] - 1] + '~'

  def line(cells):
    return '  '.join(c.ljust(w) if j == 0 else c.rjust(w)
                     for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

  return '\n'.join([line(header)] + [line(r) for r in body]) + '\n'
