"""Writing a report folder: tables, plots and a README (`write_report`)."""
import os
import pathlib
from typing import Any

from wrn_trax import record
from wrn_trax import runio
from wrn_trax.report.analysis import (_FORMATS, _format_cell, format_table,
                                      markdown_table, summarize)
from wrn_trax.report.budget import budget_markdown, budget_table, has_budgets
from wrn_trax.report.io import load_curves, load_runs
from wrn_trax.report.plots import (plot_curves, plot_error_vs_compute,
                                   plot_error_vs_k, plot_error_vs_params,
                                   plot_throughput_vs_k)


def _atomic_write(path, write):
  """Calls write(file_object) on a temp file beside `path`, then renames.

  Readers never see a half-written file, and a failed write leaves the old
  one in place; the umask is honoured (`runio.write_atomic`).
  """
  return runio.write_atomic(path, write)


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
# The curves show one line per configuration: the median over its seeds with
# a min-max band.
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


def write_report(root: 'str | os.PathLike[str]',
                 out: 'str | os.PathLike[str]' = 'results/',
                 paper: Any = None) -> dict[str, str]:
  """Reads the runs under `root` and writes tables, plots and a README.

  Args:
    root: folder of run folders, or a list of such folders and runs.csv
      tables of earlier reports (`load_runs`; a table's runs have no curves).
    out: output folder (created if missing).
    paper: passed to `summarize` (None: the paper's figures from
      `wrn_trax.models.paper_networks()`, in percent).

  Returns:
    Dict from short name ('runs.csv', 'summary.md', 'error_vs_k.png',
    'README.md', ...) to the path written. When the runs hold errors at
    more than one budget (runs of one configuration differing only in
    `steps`), also 'best_width_by_budget.csv' and '.md' (`budget_table`,
    `budget_markdown`) and 'error_vs_compute.png'. Plots with nothing to draw (e.g.
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
  budget_md = None
  if has_budgets(runs):
    budgets = budget_table(runs)
    written['best_width_by_budget.csv'] = _atomic_write(
        out / 'best_width_by_budget.csv', csv(budgets))
    budget_md = budget_markdown(budgets)
    written['best_width_by_budget.md'] = _write_text(
        out / 'best_width_by_budget.md', budget_md)
    written['error_vs_compute.png'] = _write_figure(
        out / 'error_vs_compute.png', plot_error_vs_compute(budgets))
  written['README.md'] = _write_text(
      out / 'README.md', _readme(root, runs, table, figures, budget_md))
  return written


_BUDGET_NOTE = (
    'Each budget is a run of its own, its learning-rate schedule scaled to '
    'its steps. Each cell is the median test error over seeds (percent, '
    'whole test split) with the lowest and highest seed in brackets; `best '
    'width` has the lowest median at that budget. Training FLOPs are an '
    'estimate, 3 x forward FLOPs (2 x the multiply-adds of '
    '`wrn_trax.models.count_flops`) x images trained; `seconds_median` is '
    'the measured wall time of a run (compile and evaluations included) on '
    'the device named. A point `on_envelope` has a lower error than every '
    'point of at most its compute.')


def _sources_text(root):
  if isinstance(root, (str, os.PathLike)):
    return f'`{root}`'
  return ' and '.join(f'`{r}`' for r in root)


def _readme(root, runs, table, figures, budget_md=None):
  """Markdown README of a report: provenance, the table, the plots."""
  counts = runs['status'].value_counts()
  statuses = ', '.join(f'{n} {s}' for s, n in counts.items())
  lines = [
      '# WRN sweep report',
      '',
      f'Runs read from {_sources_text(root)}: {len(runs)} runs ({statuses}).',
      '',
      'Test error in percent on the full test split; median, mean and std '
      'over seeds of finished runs (the paper reports the median of 5 runs). '
      'It uses BatchNorm statistics recomputed for the final weights over '
      'training batches (`precise_bn_batches`); `running_bn_error_pct` is the '
      'median with the running averages trax kept during training. '
      '`paper_error_pct` is Zagoruyko & Komodakis (2016)\'s figure for the '
      'same network and data set, where there is one. The curves show one '
      'line per configuration: the median over its seeds at each step, the '
      'band from the lowest to the highest seed.',
      '',
      table.rstrip('\n'),
      '',
      'Tables: [summary.csv](summary.csv), [summary.html](summary.html), '
      '[runs.csv](runs.csv) (one row per run).',
      '',
  ]
  if budget_md is not None:
    lines += ['## Best width by budget', '', _BUDGET_NOTE, '',
              budget_md.rstrip('\n'), '',
              'Table: [best_width_by_budget.csv](best_width_by_budget.csv).',
              '', '![Test error against training compute]'
              '(error_vs_compute.png)', '']
  for name, title in figures:
    lines += [f'## {title}', '', f'![{title}]({name})', '']
  unfinished = runs[runs['status'] != record.DONE]
  if len(unfinished):
    lines += ['## Runs not done', '',
              markdown_table(unfinished[[c for c in ('run', 'status',
                                                     'reason', 'step', 'steps')
                                         if c in unfinished.columns]]
                             ).rstrip('\n'), '']
  return '\n'.join(lines)
