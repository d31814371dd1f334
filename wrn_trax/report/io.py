"""Reading run folders into frames (`load_runs`, `load_curves`).

Run folder contract (written by training)::

  <root>/<run>/config.json    # once, at start
  <root>/<run>/metrics.jsonl  # one JSON object per logged step, appended
  <root>/<run>/summary.json   # at the end; absent while running or if killed

Units are fixed by the contract, never guessed: summary.json's `test_error`
and `test_error_running_bn` and metrics.jsonl's `accuracy` are fractions in
[0, 1]. `load_runs` adds `error_pct` = 100 * test_error (percent), and
`load_curves` adds `error` = 1 - accuracy (a fraction).

Imports pandas, numpy, `wrn_trax.runio` and `wrn_trax.record` only: no trax,
jax, TensorFlow or matplotlib.
"""
import ast
import os
import pathlib
import warnings
from typing import Any, Sequence

import pandas as pd

from wrn_trax import record
from wrn_trax import runio

# Columns that define a configuration: runs that agree on all of these are
# seeds of one configuration (Zagoruyko & Komodakis report the median of 5).
CONFIG_KEYS = ('family', 'model', 'depth', 'widen_factor', 'block', 'dropout',
               'dataset', 'recipe', 'steps')

# Fields of summary.json (the run record's `Summary`, in its order), and
# columns load_runs derives; everything else in a run row came from
# config.json.
SUMMARY_FIELDS = record.SUMMARY_FIELDS
_DERIVED = ('run', 'error_pct', 'error_pct_running_bn', 'path')
_NUMERIC_SUMMARY = tuple(f for f in SUMMARY_FIELDS
                         if f not in record.SUMMARY_TEXT_FIELDS)
# Summary fields that are fractions by the contract, and the percent columns
# load_runs derives from them.
_FRACTION_TO_PCT = {'test_error': 'error_pct',
                    'test_error_running_bn': 'error_pct_running_bn'}
# Config fields that identify a run rather than configure it.
_BOOKKEEPING = ('run_name', 'versions')

# Sort order of run rows: configuration first, then seed, then folder name.
_SORT_KEYS = CONFIG_KEYS + ('seed', 'run')

_HOW_TO_MAKE_RUNS = ('make runs with `wrn_trax.sweep(...)` in Python or '
                     '`wrn-trax sweep` on the command line')


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
  """Parsed lines of metrics.jsonl: `runio.read_jsonl` (a line cut short by a
  kill is dropped silently, an unparsable one elsewhere with a warning)."""
  return runio.read_jsonl(path)


def _read_json(path):
  """The object of config.json or summary.json (runio: no trax).

  Raises runio.CorruptFileError, naming the file, for anything else.
  """
  return runio.read_json_object(path)


def _fraction_to_pct(values, what, names=None):
  """100 * `values`, which the contract says are fractions in [0, 1].

  Nothing is guessed from the magnitude: a value outside [0, 1] is still
  scaled, with a warning naming it (and the run, given `names`), since it
  breaks the contract rather than being percent already.
  """
  values = pd.to_numeric(values, errors='coerce').astype(float)
  bad = values.notna() & ((values < 0.0) | (values > 1.0))
  if bad.any():
    where = (list(names[bad]) if names is not None
             else list(values[bad].index))
    warnings.warn(f'{what} is a fraction in [0, 1] by the run folder '
                  f'contract; got {values[bad].tolist()} ({where}); reported '
                  'as 100x that in percent')
  return 100.0 * values


def _sources(root):
  """`root` as a list of sources: run folder roots and runs.csv tables."""
  if isinstance(root, (str, os.PathLike)):
    return [pathlib.Path(root)]
  sources = [pathlib.Path(r) for r in root]
  if not sources:
    raise FileNotFoundError(f'No run folder root given: {_HOW_TO_MAKE_RUNS}.')
  return sources


def _is_table(source):
  return source.suffix == '.csv' and not source.is_dir()


def _cell(value):
  """A runs.csv cell as load_runs had it: NaN -> None, '(1, 2)' -> (1, 2)."""
  if isinstance(value, float) and value != value:  # NaN: an empty cell
    return None
  if isinstance(value, str) and value[:1] in '([' and value[-1:] in ')]':
    try:
      parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      return value
    return tuple(parsed) if isinstance(parsed, list) else parsed
  return value


def _table_rows(table):
  """The rows of a report's runs.csv (`write_report`), as `run_row` makes.

  A table keeps a report's runs when their folders are gone (a finished
  Colab session, a machine that was reset): only the summary and config
  columns travel, no curves.
  """
  if not table.is_file():
    raise FileNotFoundError(
        f'No runs table at {str(table)!r}: pass a runs.csv that '
        '`wrn-trax report` wrote, or a folder of run folders.')
  try:
    frame = pd.read_csv(table)
  except (pd.errors.ParserError, pd.errors.EmptyDataError,
          UnicodeDecodeError) as e:
    raise ValueError(f'{table} is not a runs table ({e}); pass the runs.csv '
                     'that `wrn-trax report` wrote') from None
  missing = [c for c in ('run', 'status', 'test_error') if c not in frame]
  if missing:
    raise ValueError(f'{table} is not a runs table: it has no column '
                     f'{", ".join(missing)}; pass the runs.csv that '
                     '`wrn-trax report` wrote')
  rows = []
  for record_ in frame.to_dict('records'):
    row = {k: _cell(v) for k, v in record_.items()
           if k not in _FRACTION_TO_PCT.values()}  # derived again
    row['path'] = str(table)
    rows.append(row)
  return rows


def load_runs(root: 'str | os.PathLike[str] | Sequence[str | os.PathLike[str]]'
              ) -> pd.DataFrame:
  """One row per run folder under `root`: config + summary columns.

  Args:
    root: folder holding one sub-folder per run; or a list of such folders
      and runs.csv tables that `write_report` wrote (the runs of an earlier
      report whose folders are gone). A run (by folder name) found in a
      folder is read from there; else from the last table that has it.

  Returns:
    DataFrame with every config.json field (nested ones dotted, e.g.
    `versions.trax`), every summary.json field, `run` (the folder name),
    `error_pct` (100 * test_error: summary.json's errors are fractions,
    `error_pct` is percent; likewise `error_pct_running_bn`) and `path`. A
    folder without summary.json gets status 'incomplete' and the last logged
    step. Rows are sorted stably by configuration, seed and run name.

  Raises:
    FileNotFoundError: `root` is missing or holds no run folders.
  """
  from_folders: dict[str, dict[str, Any]] = {}
  from_tables: dict[str, dict[str, Any]] = {}
  for source in _sources(root):
    if _is_table(source):
      from_tables.update((row['run'], row) for row in _table_rows(source))
      continue
    for run_dir in _run_dirs(source):
      try:
        config = _read_json(run_dir / 'config.json')
      except (OSError, runio.CorruptFileError) as e:
        warnings.warn(f'skipping the run in {run_dir}: {e}')
        continue
      row = run_row(config, summary_row(run_dir), run_dir)
      from_folders.setdefault(row['run'], row)
  rows = list(from_folders.values()) + [
      row for run, row in from_tables.items() if run not in from_folders]
  if not rows:
    raise FileNotFoundError(
        f'No readable runs under {str(root)!r}: {_HOW_TO_MAKE_RUNS}.')
  return runs_frame(rows)


def summary_row(run_dir: 'str | os.PathLike[str]') -> dict[str, Any]:
  """summary.json of a run folder as a dict, as `load_runs` reads it.

  Read by `wrn_trax.record.read_summary` (every field of `record.Summary`).
  A folder without one (or with an unreadable one, warned about) gets status
  'incomplete' (`record.INCOMPLETE`) and the last step metrics.jsonl logged.
  """
  run_dir = pathlib.Path(run_dir)
  reason = 'no summary.json'
  try:
    summary = record.read_summary(run_dir)
  except (OSError, runio.CorruptFileError) as e:
    warnings.warn(f'{e} (the run in {run_dir} is reported as incomplete)')
    reason = 'unreadable summary.json'
  else:
    if summary is not None:
      return summary.to_dict()
  steps = [r['step'] for r in _read_jsonl(run_dir / 'metrics.jsonl')
           if isinstance(r, dict) and r.get('step') is not None]
  return {'status': record.INCOMPLETE, 'reason': reason,
          'step': max(steps) if steps else None}


# Its old name (a dict, unlike `record.read_summary`'s Summary).
read_summary = summary_row


def run_row(config, summary, run_dir):
  """One run's row: its config (in today's terms) and summary, flattened.

  The one place a run becomes a row: `load_runs` and `wrn_trax.sweep` (for
  members it has just trained, or that failed before writing config.json)
  both build rows here and frames with `runs_frame`.
  """
  # An older version's config in today's terms (recipe 'seed' ->
  # 'notebook'), so old and new runs of one setup group together.
  row = _flatten(record.upgrade_config(config))
  row.update(_flatten(summary))
  row['run'] = pathlib.Path(run_dir).name
  row['path'] = str(run_dir)
  return row


def runs_frame(rows, sort=True):
  """The frame of `run_row` rows: typed summary columns, percent columns.

  Every summary field is a column (None where a run lacks it); numeric ones
  are numbers; `error_pct` and `error_pct_running_bn` are 100 x the
  fractions. With `sort`, rows are sorted stably by configuration, seed and
  run name; else they keep the order given (a sweep's member order).
  """
  runs = pd.DataFrame(rows)
  for field in SUMMARY_FIELDS:
    if field not in runs.columns:
      runs[field] = None
  for field in _NUMERIC_SUMMARY:
    runs[field] = pd.to_numeric(runs[field], errors='coerce')
  for field, pct in _FRACTION_TO_PCT.items():
    runs[pct] = _fraction_to_pct(runs[field], f'summary.json {field}',
                                 runs['run'])
  if sort:
    keys = [k for k in _SORT_KEYS if k in runs.columns]
    runs = runs.sort_values(keys, kind='stable', na_position='last')
  first = ['run', 'status'] + [k for k in CONFIG_KEYS if k in runs.columns]
  first += ['seed'] if 'seed' in runs.columns else []
  first += ['error_pct']
  rest = [c for c in runs.columns if c not in first]
  return runs[first + rest].reset_index(drop=True)


def load_curves(root: 'str | os.PathLike[str] | Sequence[str | os.PathLike[str]]'
                ) -> pd.DataFrame:
  """Every logged metric of every run under `root`, in long form.

  Args:
    root: folder holding one sub-folder per run, or a list as `load_runs`
      takes (runs.csv tables hold no curves: their runs have none here).

  Returns:
    DataFrame with columns run, step, split, metric, value. Metrics are the
    numeric fields of metrics.jsonl (loss, accuracy, lr, seconds,
    images_per_s, ...) plus `error` = 1 - accuracy (a fraction, like
    summary.json's test_error). Null values (e.g. lr of eval rows) are dropped.

  Raises:
    FileNotFoundError: `root` is missing or holds no run folders.
  """
  frames = []
  run_dirs = [d for source in _sources(root) if not _is_table(source)
              for d in _run_dirs(source)]
  for run_dir in run_dirs:
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
