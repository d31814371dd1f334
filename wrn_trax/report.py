"""Reads training run folders, compares configurations and plots them.

Three layers, kept apart (load -> pure functions on frames -> plots on an `ax`):

* I/O: `load_runs(root)` and `load_curves(root)` read the run folders that
  training writes (the contract below); `write_report(root, out)` writes the
  tables, the plots and a README.
* Analysis: `summarize(runs)` (median/mean/std of the test error over seeds,
  the paper's figure beside ours), `differing_columns(runs)` (what a legend
  has to name), `format_table(summary)` (markdown).
* Plots: `plot_curves`, `plot_error_vs_k`, `plot_error_vs_params` and
  `plot_throughput_vs_k` take frames and an optional matplotlib `ax`, and
  return the Figure. They build `matplotlib.figure.Figure` objects directly,
  so no GUI backend (and no display) is needed and pyplot's global state is
  left alone.

Run folder contract (written by training)::

  <root>/<run>/config.json    # once, at start
  <root>/<run>/metrics.jsonl  # one JSON object per logged step, appended
  <root>/<run>/summary.json   # at the end; absent while running or if killed

This module reads only: it imports pandas, numpy, matplotlib and
`wrn_trax.runio` (whose readers name a file they cannot read), never trax,
jax or TensorFlow. The paper's CIFAR figures come from
`wrn_trax.models.paper_networks()`, imported lazily by `summarize` only when
no `paper` frame is passed.
"""
import json
import math
import os
import pathlib
import tempfile
import warnings

import numpy as np
import pandas as pd

from wrn_trax import runio

# Columns that define a configuration: runs that agree on all of these are
# seeds of one configuration (Zagoruyko & Komodakis report the median of 5).
CONFIG_KEYS = ('family', 'model', 'depth', 'widen_factor', 'block', 'dropout',
               'dataset', 'recipe', 'steps')

# Fields of summary.json, and columns load_runs derives; everything else in a
# run row came from config.json.
SUMMARY_FIELDS = (
    'status', 'reason', 'step', 'steps', 'test_error', 'test_loss', 'test_bn',
    'test_error_running_bn', 'test_loss_running_bn', 'eval_examples', 'best_eval_error', 'best_eval_step', 'params', 'flops',
    'wall_seconds', 'median_step_seconds', 'images_per_s', 'peak_host_mb',
    'peak_device_mb')
_DERIVED = ('run', 'error_pct', 'error_pct_running_bn', 'path')
_NUMERIC_SUMMARY = tuple(f for f in SUMMARY_FIELDS
                         if f not in ('status', 'reason', 'test_bn'))
# Config fields that identify a run rather than configure it.
_BOOKKEEPING = ('run_name', 'versions')

# Sort order of run rows: configuration first, then seed, then folder name.
_SORT_KEYS = CONFIG_KEYS + ('seed', 'run')

_HOW_TO_MAKE_RUNS = ('make runs with `wrn_trax.sweep(...)` in Python or '
                     '`wrn-trax sweep` on the command line')

# Short legend names for long column names.
_LEGEND_NAMES = {'widen_factor': 'k', 'batch_size': 'batch'}

# Per-column number formats of the markdown and HTML tables.
_FORMATS = {
    'error_pct_median': '.2f', 'error_pct_mean': '.2f', 'error_pct_std': '.2f',
    'error_pct_min': '.2f', 'error_pct_max': '.2f', 'paper_error_pct': '.2f',
    'params_M': '.3f', 'flops_G': '.3f', 'images_per_s': '.0f',
    'wall_minutes': '.1f', 'dropout': 'g', 'error_pct': '.2f',
    'running_bn_error_pct': '.2f', 'error_pct_running_bn': '.2f',
}
_TABLE_STATS = ('error_pct_median', 'error_pct_mean', 'error_pct_std',
                'running_bn_error_pct', 'n_done', 'n_diverged', 'n_failed', 'n_incomplete',
                'paper_error_pct', 'params_M', 'flops_G', 'images_per_s',
                'wall_minutes')


# ----------------------------------------------------------------------------
# I/O: reading run folders.
# ----------------------------------------------------------------------------


def _run_dirs(root):
  """Sorted run folders (those with a config.json) under `root`, or raises."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise FileNotFoundError(
        f'No run folder root at {str(root)!r}: {_HOW_TO_MAKE_RUNS}, '
        'which write <root>/<run>/config.json, metrics.jsonl and summary.json.')
  dirs = sorted(p for p in root.iterdir()
                if p.is_dir() and (p / 'config.json').is_file())
  if not dirs:
    raise FileNotFoundError(
        f'No runs under {str(root)!r} (no <run>/config.json found): '
        f'{_HOW_TO_MAKE_RUNS}.')
  return dirs


def _flatten(record, prefix=''):
  """Flattens nested dicts to dotted keys; lists become hashable tuples."""
  flat = {}
  for key, value in record.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, prefix=f'{name}.'))
    elif isinstance(value, list):
      flat[name] = tuple(value)
    else:
      flat[name] = value
  return flat


def _read_jsonl(path):
  """Parsed lines of a JSON-lines file; skips a line cut short by a kill.

  Training appends one line per logged step, so a process killed mid-write
  leaves a truncated last line. That line is dropped silently; an unparsable
  line elsewhere is dropped with a warning.
  """
  if not path.is_file():
    return []
  lines = path.read_text(encoding='utf-8', errors='replace').splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i != len(lines) - 1:
        warnings.warn(f'{path}: skipping unparsable line {i + 1}')
  return records


def _read_json(path):
  """The object of config.json or summary.json (runio: no trax).

  Raises runio.CorruptFileError, naming the file, for anything else.
  """
  return runio.read_json_object(path)


def load_runs(root):
  """One row per run folder under `root`: config + summary columns.

  Args:
    root: folder holding one sub-folder per run.

  Returns:
    DataFrame with every config.json field (nested ones dotted, e.g.
    `versions.trax`), every summary.json field, `run` (the folder name),
    `error_pct` (100 * test_error) and `path`. A folder without summary.json
    gets status 'incomplete' and the last logged step. Rows are sorted stably
    by configuration, seed and run name.

  Raises:
    FileNotFoundError: `root` is missing or holds no run folders.
  """
  rows = []
  for run_dir in _run_dirs(root):
    try:
      config = _read_json(run_dir / 'config.json')
    except (OSError, runio.CorruptFileError) as e:
      warnings.warn(f'skipping the run in {run_dir}: {e}')
      continue
    row = _flatten(config)
    summary_path = run_dir / 'summary.json'
    summary = None
    reason = 'no summary.json'
    if summary_path.is_file():
      try:
        summary = _read_json(summary_path)
      except (OSError, runio.CorruptFileError) as e:
        warnings.warn(f'{e} (the run in {run_dir} is reported as incomplete)')
        reason = 'unreadable summary.json'
    if summary is None:
      steps = [r['step'] for r in _read_jsonl(run_dir / 'metrics.jsonl')
               if isinstance(r, dict) and r.get('step') is not None]
      summary = {'status': 'incomplete', 'reason': reason,
                 'step': max(steps) if steps else None}
    row.update(_flatten(summary))
    row['run'] = run_dir.name
    row['path'] = str(run_dir)
    rows.append(row)
  if not rows:
    raise FileNotFoundError(
        f'No readable runs under {str(root)!r}: {_HOW_TO_MAKE_RUNS}.')
  runs = pd.DataFrame(rows)
  for field in SUMMARY_FIELDS:
    if field not in runs.columns:
      runs[field] = None
  for field in _NUMERIC_SUMMARY:
    runs[field] = pd.to_numeric(runs[field], errors='coerce')
  runs['error_pct'] = 100.0 * runs['test_error']
  runs['error_pct_running_bn'] = 100.0 * runs['test_error_running_bn']
  keys = [k for k in _SORT_KEYS if k in runs.columns]
  runs = runs.sort_values(keys, kind='stable', na_position='last')
  first = ['run', 'status'] + [k for k in CONFIG_KEYS if k in runs.columns]
  first += ['seed'] if 'seed' in runs.columns else []
  first += ['error_pct']
  rest = [c for c in runs.columns if c not in first]
  return runs[first + rest].reset_index(drop=True)


def load_curves(root):
  """Every logged metric of every run under `root`, in long form.

  Args:
    root: folder holding one sub-folder per run.

  Returns:
    DataFrame with columns run, step, split, metric, value. Metrics are the
    numeric fields of metrics.jsonl (loss, accuracy, lr, seconds,
    images_per_s, ...) plus `error` = 1 - accuracy (a fraction, like
    summary.json's test_error). Null values (e.g. lr of eval rows) are dropped.

  Raises:
    FileNotFoundError: `root` is missing or holds no run folders.
  """
  frames = []
  for run_dir in _run_dirs(root):
    records = [r for r in _read_jsonl(run_dir / 'metrics.jsonl')
               if isinstance(r, dict)]
    if records:
      frame = pd.DataFrame.from_records(records)
      frame.insert(0, 'run', run_dir.name)
      frames.append(frame)
  columns = ['run', 'step', 'split', 'metric', 'value']
  if not frames:
    return pd.DataFrame(columns=columns)
  wide = pd.concat(frames, ignore_index=True)
  if 'split' not in wide.columns:
    wide['split'] = 'train'
  if 'accuracy' in wide.columns:
    accuracy = pd.to_numeric(wide['accuracy'], errors='coerce')
    wide.insert(wide.columns.get_loc('accuracy') + 1, 'error', 1.0 - accuracy)
  metrics = []
  for c in wide.columns:
    if c in ('run', 'step', 'split'):
      continue
    values = pd.to_numeric(wide[c], errors='coerce')
    if values.notna().any():
      wide[c] = values
      metrics.append(c)
  long = wide.melt(id_vars=['run', 'step', 'split'], value_vars=metrics,
                   var_name='metric', value_name='value')
  long = long.dropna(subset=['value'])
  long['value'] = long['value'].astype(float)
  long = long.sort_values(['run', 'split', 'metric', 'step'], kind='stable')
  return long[columns].reset_index(drop=True)


# ----------------------------------------------------------------------------
# Analysis: pure functions on frames.
# ----------------------------------------------------------------------------


def _config_columns(runs):
  """Columns of `runs` that came from config.json (not bookkeeping)."""
  return [c for c in runs.columns
          if c not in SUMMARY_FIELDS and c not in _DERIVED
          and c.split('.')[0] not in _BOOKKEEPING]


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


def _as_pct(values):
  """Error figures as percent; fractions (all <= 1) are scaled by 100."""
  values = pd.to_numeric(values, errors='coerce')
  finite = values.dropna()
  if len(finite) and (finite.abs() <= 1.0).all():
    return 100.0 * values
  return values


def _norm(value):
  """Comparable spelling of a name or block: 'B(3, 3)' -> 'b(3,3)'."""
  return ''.join(str(value).split()).lower()


def _paper_error_pct(summary, paper):
  """Paper's CIFAR error (%) for each summary row; NaN where not a paper net.

  A row is one of the paper's networks when its family is not 'stock', its
  data set is cifar10 or cifar100 and its architecture is a row of `paper`:
  same depth, widen_factor and block where `paper` has those columns (so
  'WRN-40-2' and 'WRN-40-2-B(3,3)' are one network), otherwise the same name
  as `model`. Where several rows match, the one whose name is the model's
  wins, then the first. The paper's tables are for networks without dropout,
  so unless `paper` has a dropout column only dropout-0 runs get a figure.
  """
  result = pd.Series(np.nan, index=summary.index, dtype=float)
  if paper is None or 'name' not in paper.columns:
    return result
  figures = {}
  for dataset in ('cifar10', 'cifar100'):
    column = f'paper_{dataset}_error'
    if column in paper.columns:
      figures[dataset] = _as_pct(paper[column])
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


def summarize(runs, by=None, paper=None):
  """The comparison table: one row per configuration, statistics over seeds.

  Args:
    runs: frame from `load_runs`.
    by: columns that define a configuration; default the CONFIG_KEYS present
      (family, model, depth, widen_factor, block, dropout, dataset, recipe,
      steps), i.e. everything but seed and run name.
    paper: the paper's figures, a frame with columns name,
      paper_cifar10_error, paper_cifar100_error (fractions or percent) and
      optionally depth, widen_factor, block, dropout (see `_paper_error_pct`
      for the matching); None asks `wrn_trax.models.paper_networks()`
      (lazily; NaN with a warning if that fails); False leaves the column NaN.

  Returns:
    DataFrame with the `by` columns and: error_pct_median/mean/std/min/max
    (test error in percent over the seeds whose status is 'done'; the paper
    reports the median of 5 runs; BatchNorm statistics recomputed for the
    final weights, see `train.precise_bn_state`), running_bn_error_pct (the
    median with trax's running BN averages instead; NaN for runs made before
    it was recorded), n_done, n_diverged, n_failed, n_incomplete
    (running or without summary), paper_error_pct, params_M, flops_G
    (multiply-adds per image, 1e9), images_per_s and wall_minutes (medians
    over done runs).
  """
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
    done = group[status == 'done']
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
        'n_done': int((status == 'done').sum()),
        'n_diverged': int((status == 'diverged').sum()),
        'n_failed': int((status == 'failed').sum()),
        'n_incomplete': int(status.isin(['incomplete', 'running']).sum()),
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
                 _paper_error_pct(summary, _paper_table(paper)))
  return summary


def _format_cell(value, fmt):
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return ''
  if isinstance(value, (bool, np.bool_)):
    return str(value)
  if isinstance(value, (float, np.floating)):
    if float(value).is_integer() and fmt is None:
      return str(int(value))
    return format(float(value), fmt or '.4g')
  return str(value).replace('|', r'\|').replace('\n', ' ')


def markdown_table(frame, formats=None):
  """GitHub markdown table of `frame` (no index); numbers right-aligned."""
  formats = {**_FORMATS, **(formats or {})}
  header = [str(c) for c in frame.columns]
  body = [[_format_cell(v, formats.get(c)) for c, v in zip(frame.columns, r)]
          for r in frame.itertuples(index=False, name=None)]
  numeric = [pd.api.types.is_numeric_dtype(frame[c])
             and not pd.api.types.is_bool_dtype(frame[c])
             for c in frame.columns]
  widths = [max([len(h)] + [len(r[j]) for r in body] + [3])
            for j, h in enumerate(header)]

  def line(cells):
    padded = [c.rjust(w) if num else c.ljust(w)
              for c, w, num in zip(cells, widths, numeric)]
    return '| ' + ' | '.join(padded) + ' |'

  rule = '|' + '|'.join(('-' * (w + 1) + ':') if num else ('-' * (w + 2))
                        for w, num in zip(widths, numeric)) + '|'
  return '\n'.join([line(header), rule] + [line(r) for r in body]) + '\n'


def _table_columns(summary):
  keys = [c for c in summary.columns if c not in _TABLE_STATS
          and not c.startswith('error_pct_')]
  return keys + [c for c in _TABLE_STATS if c in summary.columns]


def format_table(summary, columns=None):
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


# ----------------------------------------------------------------------------
# Plots: frames in, Figure out; each takes an optional `ax`.
# ----------------------------------------------------------------------------


def _axes(ax, figsize=(6.4, 4.4)):
  """`ax` and its figure, or a fresh backend-free Figure with one Axes."""
  if ax is not None:
    return ax.figure, ax
  from matplotlib import figure  # pylint: disable=g-import-not-at-top
  fig = figure.Figure(figsize=figsize, layout='constrained')
  return fig, fig.add_subplot()


def _label(row, columns):
  """Legend text naming `columns` of `row`, e.g. 'k=4, dropout=0.3'."""
  parts = []
  for c in columns:
    value = row[c]
    if isinstance(value, float) and value.is_integer():
      value = int(value)
    parts.append(f'{_LEGEND_NAMES.get(c, c)}={value}')
  return ', '.join(parts)


def _colors(values):
  """One viridis color per distinct value (e.g. per widen factor)."""
  from matplotlib import colormaps  # pylint: disable=g-import-not-at-top
  distinct = sorted(pd.unique(pd.Series(list(values)).dropna()), key=str)
  try:
    distinct = sorted(distinct)
  except TypeError:
    pass
  cmap = colormaps['viridis']
  n = max(len(distinct) - 1, 1)
  return {v: cmap(0.9 * i / n) for i, v in enumerate(distinct)}


def plot_curves(curves, runs, metric='error', split='eval', ax=None,
                aggregate=False):
  """Learning curves, colored by widen factor.

  Args:
    curves: frame from `load_curves`.
    runs: frame from `load_runs` (names the configuration of each run).
    metric: metric to plot ('error' is shown in percent).
    split: 'train', 'eval' or 'test'.
    ax: axes to draw on; default a new Figure.
    aggregate: False draws one line per run; True one line per configuration
      (`CONFIG_KEYS`), the median over its seeds at each step.

  Returns:
    The Figure. The legend names only the config columns that differ between
    the lines drawn.
  """
  data = curves[(curves['metric'] == metric) & (curves['split'] == split)]
  many = data['run'].nunique() > 8 and not aggregate
  fig, ax = _axes(ax, figsize=(9.6, 4.8) if many else (6.4, 4.4))
  data = data.merge(runs, on='run', how='inner', suffixes=('', '_run'))
  scale = 100.0 if metric == 'error' else 1.0
  color_of = _colors(data['widen_factor']) if 'widen_factor' in data else {}
  # Colour tells the width; the line style tells the family apart.
  families = sorted(data['family'].dropna().unique()) if 'family' in data else []
  style_of = dict(zip(families, ['-', '--', ':', '-.']))
  if aggregate:
    keys = [k for k in CONFIG_KEYS if k in data.columns]
    lines = (data.groupby(keys + ['step'], dropna=False)['value'].median()
             .reset_index())
  else:
    keys = ['run']
    lines = data
  names = runs[runs['run'].isin(data['run'])]
  candidates = _config_columns(names) if not aggregate else keys
  legend_columns = differing_columns(names, _drop_model(candidates))
  if not aggregate:
    legend_columns = [c for c in legend_columns if c != 'seed'] + (
        ['seed'] if 'seed' in legend_columns else [])
  for _, line in lines.groupby(keys, dropna=False, sort=False):
    line = line.sort_values('step')
    first = line.iloc[0]
    if not aggregate:
      first = names[names['run'] == first['run']].iloc[0]
    label = _label(first, legend_columns) or str(first.get('model', ''))
    ax.plot(line['step'], scale * line['value'], label=label,
            color=color_of.get(first.get('widen_factor')),
            linestyle=style_of.get(first.get('family'), '-'))
  ax.set_xlabel('step')
  ax.set_ylabel(f'{split} {metric}' + (' (%)' if metric == 'error' else '')
                + _bn_note(data, split))
  if metric == 'loss':
    ax.set_yscale('log')
  _legend(ax, names, legend_columns)
  return fig


def _bn_note(data, split):
  """How the eval curves normalised BatchNorm, for the axis label."""
  if split != 'eval' or 'eval_bn' not in data.columns:
    return ''
  modes = set(data['eval_bn'].dropna())
  if modes == {'batch'}:
    return '\ntrain-mode BN (batch statistics), as the seed notebooks'
  if modes == {'running'}:
    return '\neval-mode BN (running averages)'
  return '\nBN: ' + ' and '.join(sorted(modes))


def _legend(ax, runs, legend_columns):
  """Legend plus a title naming what all lines share (model, data set)."""
  handles = ax.get_legend_handles_labels()[0]
  if len(handles) > 8:  # Beside the axes, where it hides no line.
    ax.legend(fontsize='x-small', loc='upper left', bbox_to_anchor=(1.01, 1))
  elif handles:
    ax.legend(fontsize='small')
  shared = [c for c in ('family', 'model', 'dataset', 'recipe')
            if c in runs.columns and c not in legend_columns
            and runs[c].nunique() == 1]
  if shared:
    ax.set_title(_label(runs.iloc[0], shared), fontsize='medium')
  ax.grid(True, alpha=0.3)


def _drop_model(columns):
  """`columns` without 'model' when depth and k, which name it, are there."""
  columns = list(columns)
  if 'depth' in columns and 'widen_factor' in columns:
    columns = [c for c in columns if c != 'model']
  return columns


def _series(summary, x, y, series_keys):
  """(label, frame sorted by x) per series; legend names what differs."""
  keys = [k for k in series_keys if k in summary.columns]
  label_columns = differing_columns(summary, keys)
  data = summary.dropna(subset=[x, y])
  if data.empty:
    return [], label_columns
  if not label_columns:
    return [('', data.sort_values(x))], label_columns
  out = []
  for _, group in data.groupby(label_columns, dropna=False, sort=True):
    out.append((_label(group.iloc[0], label_columns), group.sort_values(x)))
  return out, label_columns


def _errorbars(ax, x, stats, ylabel, series_keys, annotate=None):
  """Median with min-max bars per series of `stats` (a summarize frame)."""
  y = f'{ylabel}_median'
  series, label_columns = _series(stats, x, y, series_keys)
  for label, group in series:
    center = group[y].to_numpy(float)
    low = center - group[f'{ylabel}_min'].to_numpy(float)
    high = group[f'{ylabel}_max'].to_numpy(float) - center
    ax.errorbar(group[x].to_numpy(float), center, yerr=np.stack([low, high]),
                marker='o', capsize=3, label=label or None)
    if annotate:
      for _, r in group.iterrows():
        ax.annotate(str(r[annotate]), (r[x], r[y]), fontsize='x-small',
                    xytext=(3, 3), textcoords='offset points')
  return label_columns


def _seed_stats(runs, value, by):
  """Median/min/max of `value` over done seeds per configuration `by`."""
  done = runs[runs['status'] == 'done'].dropna(subset=[value])
  if done.empty:
    return pd.DataFrame(columns=by + [f'{value}_{s}'
                                      for s in ('median', 'min', 'max')]
                        + ['params'])
  stats = (done.groupby(by, dropna=False)[value]
           .agg(['median', 'min', 'max']).add_prefix(f'{value}_')
           .reset_index())
  extra = done.groupby(by, dropna=False)[['params']].first().reset_index()
  return stats.merge(extra, on=by, how='left')


# Series of the error and throughput plots: everything that configures a run
# except the x axis (widen factor) and the model name (which encodes it).
_SERIES_KEYS = ('family', 'depth', 'block', 'dropout', 'dataset', 'recipe',
                'steps')


def plot_error_vs_k(runs, ax=None):
  """Test error (%) against widen factor k: median, bars min-max over seeds.

  One line per combination of the other config columns that differ (depth,
  dropout, data set, ...); only done runs count.
  """
  fig, ax = _axes(ax)
  by = [k for k in CONFIG_KEYS if k in runs.columns]
  stats = _seed_stats(runs, 'error_pct', by)
  label_columns = _errorbars(ax, 'widen_factor', stats, 'error_pct',
                             _SERIES_KEYS)
  ax.set_xlabel('widen factor k')
  ax.set_ylabel('test error (%)')
  ks = sorted(stats['widen_factor'].dropna().unique())
  if ks:
    ax.set_xticks(ks)
  _legend(ax, runs[runs['status'] == 'done'], label_columns)
  return fig


def plot_error_vs_params(runs, ax=None):
  """Test error (%) against parameters (millions, log scale), per model.

  Points are labelled with the model name; bars are min-max over done seeds.
  """
  fig, ax = _axes(ax)
  by = [k for k in CONFIG_KEYS if k in runs.columns]
  stats = _seed_stats(runs, 'error_pct', by)
  stats = stats.assign(params_M=stats['params'] / 1e6)
  label_columns = _errorbars(ax, 'params_M', stats, 'error_pct', _SERIES_KEYS,
                             annotate='model' if 'model' in stats else None)
  ax.set_xscale('log')
  # Under a decade of range, matplotlib labels the minor log ticks as
  # overlapping "3x10^-1"; plain labels at 1, 2 and 5 x 10^n read better.
  from matplotlib import ticker  # pylint: disable=g-import-not-at-top
  ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel('parameters (millions)')
  ax.set_ylabel('test error (%)')
  _legend(ax, runs[runs['status'] == 'done'], label_columns)
  return fig


def plot_throughput_vs_k(runs, ax=None):
  """Training throughput (images/s) against widen factor k.

  Median over done seeds with min-max bars; one line per device, batch size
  and other differing config columns.
  """
  fig, ax = _axes(ax)
  by = [k for k in CONFIG_KEYS + ('device', 'batch_size') if k in runs.columns]
  stats = _seed_stats(runs, 'images_per_s', by)
  label_columns = _errorbars(ax, 'widen_factor', stats, 'images_per_s',
                             _SERIES_KEYS + ('device', 'batch_size'))
  ax.set_xlabel('widen factor k')
  ax.set_ylabel('images / s (training)')
  ks = sorted(stats['widen_factor'].dropna().unique())
  if ks:
    ax.set_xticks(ks)
  _legend(ax, runs[runs['status'] == 'done'], label_columns)
  return fig


# ----------------------------------------------------------------------------
# I/O: writing the report.
# ----------------------------------------------------------------------------


def _atomic_write(path, write):
  """Calls write(file_object) on a temp file beside `path`, then renames.

  Readers never see a half-written file, and a failed write leaves the old
  one in place.
  """
  path = pathlib.Path(path)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.',
                             suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return str(path)


def _write_text(path, text):
  return _atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def _write_figure(path, fig):
  return _atomic_write(path, lambda f: fig.savefig(f, format='png', dpi=120))


def _html_table(frame):
  formatters = {c: (lambda v, fmt=fmt: _format_cell(v, fmt))
                for c, fmt in _FORMATS.items() if c in frame.columns}
  return frame.to_html(index=False, na_rep='', formatters=formatters,
                       border=0)


# (file name, title, plot function of (runs, curves)) of the report's plots.
_PLOTS = (
    ('curves_eval_error.png', 'In-training eval error',
     lambda runs, curves: plot_curves(curves, runs, 'error', 'eval')),
    ('curves_train_loss.png', 'Training loss',
     lambda runs, curves: plot_curves(curves, runs, 'loss', 'train')),
    ('error_vs_k.png', 'Test error against widen factor',
     lambda runs, curves: plot_error_vs_k(runs)),
    ('error_vs_params.png', 'Test error against parameters',
     lambda runs, curves: plot_error_vs_params(runs)),
    ('throughput_vs_k.png', 'Throughput against widen factor',
     lambda runs, curves: plot_throughput_vs_k(runs)),
)


def _has_lines(fig):
  return any(ax.lines or ax.containers for ax in fig.axes)


def write_report(root, out='results/', paper=None):
  """Reads the runs under `root` and writes tables, plots and a README.

  Args:
    root: folder of run folders.
    out: output folder (created if missing).
    paper: passed to `summarize` (None: the paper's figures from
      `wrn_trax.models.paper_networks()`).

  Returns:
    Dict from short name ('runs.csv', 'summary.md', 'error_vs_k.png',
    'README.md', ...) to the path written. Plots with nothing to draw (e.g.
    no finished run yet) are skipped. Every file is written atomically.

  Raises:
    FileNotFoundError: `root` is missing or holds no run folders.
  """
  runs = load_runs(root)
  curves = load_curves(root)
  summary = summarize(runs, paper=paper)
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  written = {}

  def csv(frame):
    return lambda f: f.write(frame.to_csv(index=False).encode('utf-8'))

  # The folder paths are this machine's; the root is named in the README.
  written['runs.csv'] = _atomic_write(out / 'runs.csv',
                                      csv(runs.drop(columns='path')))
  written['summary.csv'] = _atomic_write(out / 'summary.csv', csv(summary))
  table = format_table(summary)
  written['summary.md'] = _write_text(out / 'summary.md', table)
  written['summary.html'] = _write_text(out / 'summary.html',
                                        _html_table(summary))
  figures = []
  for name, title, plot in _PLOTS:
    fig = plot(runs, curves)
    if _has_lines(fig):
      written[name] = _write_figure(out / name, fig)
      figures.append((name, title))
  written['README.md'] = _write_text(
      out / 'README.md', _readme(root, runs, table, figures))
  return written


def _readme(root, runs, table, figures):
  """Markdown README of a report: provenance, the table, the plots."""
  counts = runs['status'].value_counts()
  statuses = ', '.join(f'{n} {s}' for s, n in counts.items())
  lines = [
      '# WRN sweep report',
      '',
      f'Runs read from `{root}`: {len(runs)} runs ({statuses}).',
      '',
      'Test error in percent on the full test split; median, mean and std '
      'over seeds of finished runs (the paper reports the median of 5 runs). '
      'It uses BatchNorm statistics recomputed for the final weights over '
      'training batches (`precise_bn_batches`); `running_bn_error_pct` is the '
      'median with the running averages trax kept during training. '
      '`paper_error_pct` is Zagoruyko & Komodakis (2016)\'s figure for the '
      'same network and data set, where there is one.',
      '',
      table.rstrip('\n'),
      '',
      'Tables: [summary.csv](summary.csv), [summary.html](summary.html), '
      '[runs.csv](runs.csv) (one row per run).',
      '',
  ]
  for name, title in figures:
    lines += [f'## {title}', '', f'![{title}]({name})', '']
  unfinished = runs[runs['status'] != 'done']
  if len(unfinished):
    lines += ['## Runs not done', '',
              markdown_table(unfinished[[c for c in ('run', 'status',
                                                     'reason', 'step', 'steps')
                                         if c in unfinished.columns]]
                             ).rstrip('\n'), '']
  return '\n'.join(lines)
