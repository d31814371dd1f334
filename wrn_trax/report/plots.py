"""Plots: frames in, `matplotlib.figure.Figure` out; each takes an optional
`ax`. Figures are built directly (no pyplot), so no GUI backend or display is
needed and pyplot's global state is left alone. matplotlib is imported inside
the functions, so `import wrn_trax.report` does not load it.

Errors are drawn in percent: `error_pct*` columns are percent already, and
the curves' `error` (a fraction by the metrics.jsonl contract) is scaled by
100 here.
"""
import numpy as np
import pandas as pd

from wrn_trax import record
from wrn_trax.report.analysis import (_key_value, _seed_stats, curve_keys,
                                      curve_stats, differing_columns)
from wrn_trax.report.io import CONFIG_KEYS

# Short legend names for long column names.
_LEGEND_NAMES = {'widen_factor': 'k', 'batch_size': 'batch'}

# Series of the error and throughput plots: everything that configures a run
# except the x axis (widen factor) and the model name (which encodes it).
_SERIES_KEYS = ('family', 'depth', 'block', 'dropout', 'dataset', 'recipe',
                'steps')

# Opacity of the min-max band around a configuration's median curve.
_BAND_ALPHA = 0.2


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


def _implied(name):
  """Columns a legend may leave out when the others fix them: records of
  what was overridden (`overrides.steps`) and what is derived from the
  run's length (`lr_milestone_steps`)."""
  return name.startswith('overrides.') or name == 'lr_milestone_steps'


def _short_legend(runs, columns):
  """`columns` less the implied ones that the others already determine.

  A budget sweep's lines differ in `steps`, `lr_milestone_steps` and
  `overrides.steps`; the last two follow from the first, so the legend says
  'k=4, steps=782' rather than all three.
  """
  def n_distinct(cols):
    return len({tuple(_key_value(row[c]) for c in cols)
                for _, row in runs.iterrows()})
  keep = list(columns)
  full = n_distinct(keep)
  for c in reversed(list(columns)):
    rest = [x for x in keep if x != c]
    if _implied(c) and rest and n_distinct(rest) == full:
      keep = rest
  return keep


def _order_key(values):
  """Sort key for legend values: numbers by value, before other values."""
  out = []
  for v in values:
    try:
      out.append((0, float(v), ''))
    except (TypeError, ValueError):
      out.append((1, 0.0, str(v)))
  return tuple(out)


def _shades(color, n):
  """`n` versions of `color` from light to dark (same hue), for the lines
  that share a width but differ in something else (e.g. their budget)."""
  import colorsys  # pylint: disable=g-import-not-at-top
  from matplotlib import colors  # pylint: disable=g-import-not-at-top
  if n == 1:
    return [color]
  hue, _, saturation = colorsys.rgb_to_hls(*colors.to_rgb(color))
  return [colorsys.hls_to_rgb(hue, 0.72 - 0.5 * i / (n - 1), saturation)
          for i in range(n)]


def plot_curves(curves, runs, metric='error', split='eval', ax=None,
                aggregate=None, per_run=False):
  """Learning curves, colored by widen factor, one line per configuration.

  Args:
    curves: frame from `load_curves`.
    runs: frame from `load_runs` (names the configuration of each run).
    metric: metric to plot ('error', a fraction in the logs, is shown in
      percent).
    split: 'train', 'eval' or 'test'.
    ax: axes to draw on; default a new Figure.
    aggregate: kept for old callers: True is `per_run=False`, False is
      `per_run=True`; None (default) leaves `per_run` to decide.
    per_run: False (default) draws one line per configuration (every config
      column but the seed, see `curve_keys`): the median over its seeds at
      each step, with a shaded band from the min to the max where it has
      more than one run (`curve_stats` computes the data). True draws one
      line per run, as before.

  Returns:
    The Figure. The legend names only the config columns that differ between
    the lines drawn (less those the others imply, e.g. `lr_milestone_steps`
    beside `steps`). Lines of one width that differ in something else (their
    budget, say) get shades of the width's color, light to dark in the order
    of what differs (shortest budget lightest).
  """
  if aggregate is not None:
    per_run = not aggregate
  data = curves[(curves['metric'] == metric) & (curves['split'] == split)]
  names = runs[runs['run'].isin(data['run'])]
  stats = curve_stats(curves, names, metric, split, per_run=per_run)
  many = stats['line'].nunique() > 8
  fig, ax = _axes(ax, figsize=(9.6, 4.8) if many else (6.4, 4.4))
  data = data.merge(runs, on='run', how='inner', suffixes=('', '_run'))
  scale = 100.0 if metric == 'error' else 1.0
  color_of = _colors(names['widen_factor']) if 'widen_factor' in names else {}
  # Colour tells the width; the line style tells the family apart.
  families = (sorted(names['family'].dropna().unique())
              if 'family' in names else [])
  style_of = dict(zip(families, ['-', '--', ':', '-.']))
  candidates = curve_keys(names)
  if per_run and 'seed' in names.columns:
    candidates = candidates + ['seed']
  legend_columns = _short_legend(
      names, differing_columns(names, _drop_model(candidates)))
  lines = [(line, names[names['run'] == line['runs'].iloc[0][0]].iloc[0])
           for _, line in stats.groupby('line', sort=True)]
  color_of_line = _line_colors(lines, color_of, legend_columns)
  for (line, first), color in zip(lines, color_of_line):
    label = _label(first, legend_columns) or str(first.get('model', ''))
    steps = line['step'].to_numpy(float)
    drawn = ax.plot(steps, scale * line['median'].to_numpy(float), label=label,
                    color=color,
                    linestyle=style_of.get(first.get('family'), '-'))
    if not per_run and line['n_runs'].max() > 1:
      ax.fill_between(steps, scale * line['min'].to_numpy(float),
                      scale * line['max'].to_numpy(float),
                      color=drawn[0].get_color(), alpha=_BAND_ALPHA,
                      linewidth=0)
  ax.set_xlabel('step')
  ylabel = f'{split} {metric}' + (' (%)' if metric == 'error' else '')
  if not per_run and (stats['n_runs'] > 1).any():
    ylabel += ', median over seeds (band: min-max)'
  ax.set_ylabel(ylabel + _bn_note(data, split))
  if metric == 'loss':
    ax.set_yscale('log')
  _legend(ax, names, legend_columns)
  return fig


def _line_colors(lines, color_of, legend_columns):
  """A color per (line, first run): the width's, shaded within a width."""
  others = [c for c in legend_columns if c not in ('widen_factor', 'seed')]
  by_width = {}
  for i, (_, first) in enumerate(lines):
    by_width.setdefault(_key_value(first.get('widen_factor')), []).append(i)
  out = [None] * len(lines)
  for width, members in by_width.items():
    base = color_of.get(width)
    if base is None or len(members) == 1 or not others:
      for i in members:
        out[i] = base
      continue
    members = sorted(members, key=lambda i: _order_key(
        [lines[i][1][c] for c in others]))
    for i, shade in zip(members, _shades(base, len(members))):
      out[i] = shade
  return out


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
  _k_axis(ax, stats, 'test error (%)')
  _legend(ax, runs[runs['status'] == record.DONE], label_columns)
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
  _legend(ax, runs[runs['status'] == record.DONE], label_columns)
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
  _k_axis(ax, stats, 'images / s (training)')
  _legend(ax, runs[runs['status'] == record.DONE], label_columns)
  return fig


def _k_axis(ax, stats, ylabel):
  """Widen factor k on x, one tick per k in `stats`; `ylabel` on y."""
  ax.set_xlabel('widen factor k')
  ax.set_ylabel(ylabel)
  ks = sorted(stats['widen_factor'].dropna().unique())
  if ks:
    ax.set_xticks(ks)


def _flops_label(value, _=None):
  """'2e12' for 2 x 10^12: short enough that neighbouring ticks never touch."""
  mantissa, exponent = f'{value:.0e}'.split('e')
  return f'{mantissa}e{int(exponent)}'


def _flops_ticks(ax):
  """A log axis labelled at 1, 2 and 5 x 10^n only, with short labels.

  matplotlib's default labels the minor ticks too when a log axis spans less
  than a decade or two, as '2 x 10^12', and neighbours overlap.
  """
  from matplotlib import ticker  # pylint: disable=import-outside-toplevel
  ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
  ax.xaxis.set_major_formatter(ticker.FuncFormatter(_flops_label))
  ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def plot_error_vs_compute(table, ax=None):
  """Test error (%) against training FLOPs (log), one line per width.

  Args:
    table: frame from `report.budget_table` (one row per budget and width).
    ax: axes to draw on; default a new Figure.

  Returns:
    The Figure: each width's median error over seeds at each budget, with
    min-max bars, joined in order of compute; the lower envelope (the points
    no cheaper point beats, `budget.lower_envelope`) as a dashed black line
    through ringed points. With several contexts (data sets, recipes, ...),
    one set of lines and one envelope per context.
  """
  from wrn_trax.report.budget import CONTEXT_KEYS  # pylint: disable=g-import-not-at-top
  fig, ax = _axes(ax)
  context = [c for c in table.columns if c in CONTEXT_KEYS]
  data = table.dropna(subset=['train_flops', 'error_pct_median'])
  color_of = _colors(data['widen_factor']) if len(data) else {}
  groups = (data.groupby(context, sort=False, dropna=False) if context
            else [((), data)])
  envelope_label = 'lower envelope'
  for ckey, part in groups:
    ckey = ckey if isinstance(ckey, tuple) else (ckey,)
    prefix = ', '.join(f'{c}={v}' for c, v in zip(context, ckey))
    by_model = part['model'].nunique() != part['widen_factor'].nunique()
    for model, line in part.groupby('model', sort=False):
      line = line.sort_values('train_flops')
      k = line['widen_factor'].iloc[0]
      name = model if by_model else _label(line.iloc[0], ['widen_factor'])
      center = line['error_pct_median'].to_numpy(float)
      yerr = np.stack([center - line['error_pct_min'].to_numpy(float),
                       line['error_pct_max'].to_numpy(float) - center])
      ax.errorbar(line['train_flops'].to_numpy(float), center, yerr=yerr,
                  marker='o', capsize=3, color=color_of.get(k),
                  label=f'{prefix}: {name}' if prefix else name)
    front = part[part['envelope']].sort_values('train_flops')
    if len(front):
      ax.plot(front['train_flops'].to_numpy(float),
              front['error_pct_median'].to_numpy(float), 'k--', marker='o',
              markersize=11, markerfacecolor='none', linewidth=1.2,
              label=envelope_label, zorder=5)
      envelope_label = None
  ax.set_xscale('log')
  _flops_ticks(ax)
  ax.set_xlabel('training FLOPs (estimate: 3 x forward FLOPs x images)')
  ax.set_ylabel('test error (%), median over seeds (bars: min-max)')
  if len(data):
    ax.legend(fontsize='small')
  ax.grid(True, which='both', alpha=0.3)
  return fig
