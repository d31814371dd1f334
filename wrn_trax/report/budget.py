"""Error per training budget: which width is best for the compute you have.

A budget study trains the same configurations for several step counts, each a
full run whose learning-rate schedule is scaled to its length (`recipes.
resolve_steps`), so every budget's error is what a run of that length
reaches, not a checkpoint in the middle of a longer schedule. These pure
functions turn `load_runs`'s frame into the answer:

* `has_budgets(runs)`: do the runs hold errors at more than one budget?
* `budget_table(runs)`: one row per budget and width: epochs, training FLOPs,
  measured seconds, the median test error over seeds and its spread, which
  width is best at that budget and which points lie on the lower envelope.
* `lower_envelope(flops, errors)`: the points no cheaper point beats.
* `budget_markdown(table)`: the table a reader reads (one row per budget).

Training FLOPs are an estimate from the model's count, not a measurement:
`summary.json`'s `flops` is the multiply-adds of one image's forward pass
(`wrn_trax.models.count_flops`: convolutions and the classifier), a forward
pass is 2 FLOPs per multiply-add, and a training step costs about 3 forward
passes (the backward pass about twice the forward), so training FLOPs =
3 x 2 x multiply-adds x images trained (steps x batch size). BatchNorm,
ReLU, the optimizer update and the evaluations are not counted.

No trax, jax, TensorFlow or matplotlib.
"""
import numpy as np
import pandas as pd

from wrn_trax import record

# FLOPs of one training image per forward multiply-add: 2 FLOPs per
# multiply-add, times 3 for forward + backward (the backward ~2x the forward).
TRAIN_FLOPS_PER_MAC = 3 * 2

# Columns that make runs comparable within one budget study: runs that differ
# in any of these are separate studies (separate tables).
CONTEXT_KEYS = ('family', 'block', 'dropout', 'dataset', 'recipe',
                'batch_size')
# Columns that name a contender (a width; the model name carries the depth).
WIDTH_KEYS = ('model', 'depth', 'widen_factor')

TABLE_COLUMNS = ('steps', 'epochs', 'model', 'widen_factor', 'n_seeds',
                 'seeds', 'error_pct_median', 'error_pct_min', 'error_pct_max',
                 'train_flops', 'seconds_median', 'device', 'best',
                 'envelope')


def _done(runs):
  runs = runs[runs['status'] == record.DONE]
  return runs.dropna(subset=['error_pct', 'steps'])


def _keys(runs, keys):
  return [k for k in keys if k in runs.columns]


def has_budgets(runs):
  """True when some configuration has finished runs at two or more budgets.

  A configuration is everything but the seed and the step count (the
  `CONTEXT_KEYS` and the width); its runs at different `steps` are budgets.
  """
  done = _done(runs)
  if done.empty:
    return False
  keys = _keys(done, CONTEXT_KEYS + WIDTH_KEYS)
  groups = done.groupby(keys, dropna=False) if keys else [((), done)]
  return any(g['steps'].nunique() > 1 for _, g in groups)


def lower_envelope(flops, errors):
  """Which points lie on the lower envelope of error against compute.

  A point is on it when every point at most as costly has a higher error:
  walking from the cheapest point up, it is a new lowest error. (Of points
  with equal FLOPs, only the lowest error can be on it; of exact ties in
  both, the first.)

  Args:
    flops: sequence of compute figures.
    errors: sequence of errors, the same length.

  Returns:
    A numpy bool array, True for the points on the envelope.
  """
  flops = np.asarray(flops, float)
  errors = np.asarray(errors, float)
  if flops.shape != errors.shape:
    raise ValueError(f'flops and errors differ in length: {flops.shape} '
                     f'and {errors.shape}')
  on = np.zeros(len(flops), bool)
  ok = np.flatnonzero(np.isfinite(flops) & np.isfinite(errors))
  order = ok[np.lexsort((errors[ok], flops[ok]))]
  best = np.inf
  for i in order:
    if errors[i] < best:
      on[i] = True
      best = errors[i]
  return on


def _column(frame, name):
  """`frame[name]` as numbers (NaN where missing or not a number)."""
  if name not in frame.columns:
    return pd.Series(np.nan, index=frame.index)
  return pd.to_numeric(frame[name], errors='coerce')


def _first(series):
  series = series.dropna()
  return series.iloc[0] if len(series) else np.nan


def _devices(series):
  names = sorted({str(d) for d in series.dropna()})
  return ', '.join(names) if names else ''


def budget_table(runs):
  """One row per study context, budget and width, from `load_runs`' frame.

  Only finished runs ('done') count; the seeds of one width at one budget
  are the runs that agree on the `CONTEXT_KEYS`, the width and `steps`.
  Contexts (data set, recipe, batch size, ...) with a single budget are left
  out.

  Returns:
    A DataFrame with the context columns that differ between the rows (none
    for one study), then `TABLE_COLUMNS`: steps; epochs (steps x batch size
    / training images); model and widen_factor; n_seeds; the median, min and
    max test error over seeds (percent); train_flops (`TRAIN_FLOPS_PER_MAC`
    x multiply-adds per image x steps x batch size: an estimate from the
    FLOPs count, see the module docstring); seconds_median (the runs'
    measured wall time, compile and evaluations included, median over
    seeds); device (where they ran); best (the width with the lowest median
    error at this budget; a tie goes to the cheaper; none at a budget
    where a width of the study has no finished run yet); envelope (on the lower
    envelope of median error against training FLOPs within its context).
    Sorted by context, steps and widen factor. Empty (with those columns)
    when no context has two budgets.
  """
  done = _done(runs)
  context = _keys(done, CONTEXT_KEYS)
  width = _keys(done, WIDTH_KEYS)
  rows = []
  groups = (done.groupby(context, dropna=False, sort=True) if context
            else [((), done)])
  for ckey, cruns in groups:
    if cruns['steps'].nunique() < 2:
      continue
    ckey = ckey if isinstance(ckey, tuple) else (ckey,)
    start = len(rows)
    for (steps, *wkey), group in cruns.groupby(['steps'] + width,
                                               dropna=False, sort=True):
      errors = group['error_pct']
      batch = _column(group, 'batch_size')
      n_train = _column(group, 'n_train')
      macs = _column(group, 'flops')
      row = dict(zip(context, ckey))
      row.update(zip(width, wkey))
      images = float(steps) * _first(batch)
      row.update(
          steps=int(steps),
          epochs=images / _first(n_train),
          n_seeds=int(len(group)),
          seeds=tuple(sorted(group['seed'].tolist())) if 'seed' in group
          else (),
          error_pct_median=float(errors.median()),
          error_pct_min=float(errors.min()),
          error_pct_max=float(errors.max()),
          train_flops=TRAIN_FLOPS_PER_MAC * _first(macs) * images,
          seconds_median=float(_column(group, 'wall_seconds').median()),
          device=_devices(group['device']) if 'device' in group else '',
      )
      rows.append(row)
    part = pd.DataFrame(rows[start:])
    best = np.zeros(len(part), bool)
    widths = part['model'].nunique()
    for _, at in part.groupby('steps', sort=False):
      if at['model'].nunique() < widths:  # a width unfinished: no verdict
        continue
      order = at.sort_values(['error_pct_median', 'train_flops'],
                             kind='stable')
      best[part.index.get_loc(order.index[0])] = True
    envelope = lower_envelope(part['train_flops'], part['error_pct_median'])
    for i, r in enumerate(rows[start:]):
      r['best'], r['envelope'] = bool(best[i]), bool(envelope[i])
  columns = list(TABLE_COLUMNS)
  if not rows:
    return pd.DataFrame(columns=columns)
  table = pd.DataFrame(rows)
  shown = [c for c in context if table[c].map(str).nunique() > 1]
  sort = shown + ['steps'] + [k for k in ('depth', 'widen_factor', 'model')
                              if k in table.columns]
  table = table.sort_values(sort, kind='stable').reset_index(drop=True)
  extra = [c for c in ('depth',) if c in table.columns
           and table[c].nunique() > 1]
  return table[shown + columns[:3] + extra + columns[3:]]


def _width_label(row, by_model):
  if by_model:
    return str(row['model'])
  k = row['widen_factor']
  return f'k={int(k)}' if float(k).is_integer() else f'k={k}'


def _spread_cell(row):
  return (f'{row["error_pct_median"]:.2f} ({row["error_pct_min"]:.2f}-'
          f'{row["error_pct_max"]:.2f})')


def budget_markdown(table):
  """The budget table as markdown: one row per budget, the answer first.

  For each budget (steps, epochs): every width's median test error with its
  min-max over seeds in brackets, then the best width. A second table lists
  each width's training FLOPs, measured seconds and device per budget. A
  study with several contexts (data sets, recipes, ...) gets one pair of
  tables per context, under a heading naming it.
  """
  from wrn_trax.report.analysis import markdown_table  # pylint: disable=g-import-not-at-top
  if table.empty:
    return 'No configuration has finished runs at two or more budgets.\n'
  context = [c for c in table.columns if c in CONTEXT_KEYS]
  groups = (table.groupby(context, sort=False, dropna=False) if context
            else [((), table)])
  out = []
  for ckey, part in groups:
    ckey = ckey if isinstance(ckey, tuple) else (ckey,)
    if context:
      out += ['### ' + ', '.join(f'{c}={v}' for c, v in zip(context, ckey)),
              '']
    by_model = part['model'].nunique() != part['widen_factor'].nunique()
    labels = {}
    for _, r in part.iterrows():
      labels.setdefault(r['model'], _width_label(r, by_model))
    wide = []
    for steps, at in part.groupby('steps', sort=True):
      row = {'steps': int(steps), 'epochs': at['epochs'].iloc[0]}
      for _, r in at.iterrows():
        row[f'{labels[r["model"]]} error % (min-max)'] = _spread_cell(r)
      best = at[at['best']]
      row['best width'] = (labels[best['model'].iloc[0]] if len(best)
                           else 'not all widths done')
      row['seeds'] = '/'.join(str(n) for n in at['n_seeds'])
      wide.append(row)
    wide = pd.DataFrame(wide)
    out += [markdown_table(wide, {'epochs': '.3g'}).rstrip('\n'), '']
    detail = part.assign(width=part['model'].map(labels),
                         train_TFLOPs=part['train_flops'] / 1e12,
                         on_envelope=part['envelope'].map(
                             {True: 'yes', False: ''}))
    detail = detail[['steps', 'width', 'train_TFLOPs', 'seconds_median',
                     'device', 'error_pct_median', 'on_envelope']]
    out += [markdown_table(detail, {'train_TFLOPs': '.4g',
                                    'seconds_median': '.1f'}).rstrip('\n'),
            '']
  return '\n'.join(out)
