"""Reads training run folders, compares configurations and plots them.

A package of three layers, kept apart (load -> pure functions on frames ->
plots on an `ax`), plus the report writer:

* `report.io`: `load_runs(root)` and `load_curves(root)` read the run folders
  that training writes (config.json, metrics.jsonl, summary.json) through
  the run record (`wrn_trax.record`); `run_row` and `runs_frame` are the one
  way a run becomes a row, which `wrn_trax.sweep` uses for its members.
* `report.analysis`: `summarize(runs)` (median/mean/std of the test error over
  seeds, the paper's figure beside ours), `differing_columns(runs)` (what a
  legend has to name), `curve_stats` (per-step median/min/max over seeds),
  `format_table(summary)`, `compact_table(summary)` (the short table the
  command line prints) and `markdown_table(frame)`.
* `report.plots`: `plot_curves`, `plot_error_vs_k`, `plot_error_vs_params`
  and `plot_throughput_vs_k` take frames and an optional matplotlib `ax` and
  return the Figure (no pyplot, no display needed).
* `report.budget`: `budget_table(runs)` (error per training budget and
  width: epochs, training FLOPs, seconds, median and spread over seeds, the
  best width, the lower envelope), `has_budgets`, `lower_envelope`,
  `budget_markdown`; `plots.plot_error_vs_compute` draws it.
* `report.write`: `write_report(root, out)` writes the tables, the plots and
  a README.

Units are explicit, never guessed from a value's size: summary.json and
metrics.jsonl hold fractions; `error_pct*` and `paper_error_pct` columns are
percent; the paper's tables are percent by construction (`summarize`'s
`paper_unit` says otherwise for a frame of fractions).

Importing this package loads pandas, numpy and `wrn_trax.runio` only: never
trax, jax or TensorFlow, and matplotlib only when a plot is drawn. The
paper's CIFAR figures come from `wrn_trax.models.paper_networks()`, imported
lazily by `summarize` only when no `paper` frame is passed.
"""
from wrn_trax.report.analysis import (PAPER_UNITS, compact_table, curve_keys,
                                      curve_stats, differing_columns,
                                      format_table,
                                      markdown_table, summarize)
from wrn_trax.report.budget import (budget_markdown, budget_table,
                                    has_budgets, lower_envelope)
from wrn_trax.report.io import (CONFIG_KEYS, SUMMARY_FIELDS, load_curves,
                                load_runs, read_summary, run_row, runs_frame,
                                summary_row)
from wrn_trax.report.plots import (plot_curves, plot_error_vs_compute,
                                   plot_error_vs_k, plot_error_vs_params,
                                   plot_throughput_vs_k)
from wrn_trax.report.write import write_report

__all__ = (
    'CONFIG_KEYS', 'SUMMARY_FIELDS', 'PAPER_UNITS',
    'load_runs', 'load_curves', 'read_summary', 'run_row', 'runs_frame',
    'summary_row',
    'summarize', 'differing_columns', 'curve_keys', 'curve_stats',
    'format_table', 'compact_table', 'markdown_table',
    'plot_curves', 'plot_error_vs_k', 'plot_error_vs_params',
    'plot_throughput_vs_k',
    'has_budgets', 'budget_table', 'budget_markdown', 'lower_envelope',
    'plot_error_vs_compute',
    'write_report',
)
