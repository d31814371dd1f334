"""What the live view costs a sweep: a digits smoke sweep with and without it.

Each round trains the same one-member sweep (paper WRN-10-1, `digits`,
recipe 'smoke') twice in fresh folders, once with `live=False` and once with
the live view in notebook mode (the figure redrawn to PNG and handed to a
display handle, as in Jupyter, with a stand-in for IPython's display) and
the progress line, the run folders read every `--interval` seconds (default
1, ten times as often as a notebook's default). Rounds alternate which runs
first. The table gives, per round, the members' training time (summary.json
`median_step_seconds` x steps, the steady steps) and the sweep's wall time,
and the ratio live / off; the last line is the median over rounds. The
estimate's probe is off here (it is timed apart: it costs about one compile
per model it times).

Usage::

  nice python bench/live_overhead.py            # 3 rounds, 120 steps
  nice python bench/live_overhead.py --rounds 5 --steps 200
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # pylint: disable=g-import-not-at-top,wrong-import-position


class _Handle:
  def __init__(self):
    self.updates = 0

  def update(self, obj):
    del obj
    self.updates += 1


def _sweep(root, steps, live_on, interval):
  import wrn_trax  # pylint: disable=g-import-not-at-top
  from wrn_trax import live  # pylint: disable=g-import-not-at-top
  handle = _Handle()
  original = live.start
  if live_on:
    live.start = lambda members, mode: original(
        members, 'notebook', interval=interval, probe=False,
        display=lambda obj, display_id=True: handle)
  t0 = time.perf_counter()
  try:
    frame = wrn_trax.sweep(widen_factors=[1], depths=[10], family='paper',
                           dataset='digits', recipe='smoke', steps=steps,
                           root=root, verbose=True,
                           live='notebook' if live_on else False)
  finally:
    live.start = original
  wall = time.perf_counter() - t0
  row = frame.iloc[0]
  assert row['status'] == 'done', row['reason']
  return dict(train=float(row['median_step_seconds']) * steps, wall=wall,
              updates=handle.updates)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--steps', type=int, default=120)
  p.add_argument('--interval', type=float, default=1.0)
  p.add_argument('--json', default='live_overhead')
  args = p.parse_args(argv)
  rows = []
  for r in range(args.rounds):
    result = {}
    order = (False, True) if r % 2 == 0 else (True, False)
    for live_on in order:
      root = tempfile.mkdtemp(prefix='wrn_live_bench_')
      result[live_on] = _sweep(root, args.steps, live_on, args.interval)
    rows.append(dict(round=r, off=result[False], live=result[True],
                     train_ratio=result[True]['train'] / result[False]['train'],
                     wall_ratio=result[True]['wall'] / result[False]['wall']))
    print(json.dumps(rows[-1]), flush=True)
  lines = ['| round | train s off | train s live | ratio | wall s off | '
           'wall s live | ratio | figure updates |',
           '|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    lines.append(f'| {r["round"]} | {r["off"]["train"]:.2f} | '
                 f'{r["live"]["train"]:.2f} | {r["train_ratio"]:.3f} | '
                 f'{r["off"]["wall"]:.1f} | {r["live"]["wall"]:.1f} | '
                 f'{r["wall_ratio"]:.3f} | {r["live"]["updates"]} |')
  lines.append(
      f'| median | | | {statistics.median(x["train_ratio"] for x in rows):.3f}'
      f' | | | {statistics.median(x["wall_ratio"] for x in rows):.3f} | |')
  print('\n'.join(lines))
  if args.json:
    _common.write_json(args.json, dict(machine=_common.machine(),
                                       args=vars(args), rounds=rows))


if __name__ == '__main__':
  main()
