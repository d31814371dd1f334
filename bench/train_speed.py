"""Training images/s of our `train()` path against a bare `jax.jit` step.

For each model and batch size, in its own subprocess (so peak memory is per
configuration and compile caches do not carry over), two trainers of the same
network, loss and optimizer are built side by side:

* ``ours``: trax's `training.Loop`, built by `wrn_trax.train.build_loop`
  itself, fed by our pipeline (`wrn_trax.data.train_batches`), run in chunks
  as `train.train_in_chunks` does: `loop.run(n)`, the history read, the NaN
  check.
* ``limit``: one `jax.jit` train step (the layer's `pure_fn` +
  `CrossEntropyLoss` + the recipe's trax optimizer update, weights / slots /
  state donated) over batches already on the device.

Both are warmed up (compiles, trax's step-1 eval) and then timed in
interleaved rounds (ours, limit, ours, limit, ...). The table gives median
and min-max images/s over the rounds and the ratio ours / limit (median of
the per-round ratios); the target is >= 0.9. Stock models train with the
'seed' recipe (Adam, raw uint8), paper-family ones with 'paper' (SGD +
Nesterov, standardize + crop + flip) at the batch size given.

Data are synthetic CIFAR-shaped uint8 arrays. Peak host memory is the
worker's ru_maxrss (both trainers); device peak is None on a CPU.

Usage::

  python bench/train_speed.py                    # CPU-sized default grid
  python bench/train_speed.py --widen 1 2 3 4 --batch-sizes 64 128 \\
      --steps 50 --rounds 5                      # the full grid, on a GPU
  python bench/train_speed.py --min-ratio 0.9     # a regression guard
  python bench/train_speed.py --help
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # pylint: disable=g-import-not-at-top,wrong-import-position


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__.split('\n\n', 1)[1])
  p.add_argument('--families', nargs='+', default=['stock', 'paper'],
                 choices=['stock', 'paper'],
                 help="'stock' = stock-WRN-<depth>-k (trax WideResnet), "
                 "'paper' = WRN-<depth>-k (default: both)")
  p.add_argument('--depth', type=int, default=22, help='default: 22')
  p.add_argument('--widen', type=int, nargs='+', default=[1, 2],
                 help='widen factors k (default: 1 2; the full grid is 1 2 '
                 '3 4)')
  p.add_argument('--batch-sizes', type=int, nargs='+', default=[64, 128],
                 help='default: 64 128')
  p.add_argument('--max-batch-widen', type=int, default=1,
                 help='on a CPU: only k <= this runs at batch sizes above '
                 'the smallest (default: 1; 0 = no limit)')
  p.add_argument('--steps', type=int, default=2,
                 help='timed steps per trainer and round (default: 2; '
                 'GPU: 50)')
  p.add_argument('--rounds', type=int, default=3,
                 help='interleaved rounds (default: 3)')
  p.add_argument('--warmup', type=int, default=2,
                 help='untimed steps per trainer first (default: 2)')
  p.add_argument('--n-train', type=int, default=2048,
                 help='synthetic training images (default: 2048)')
  p.add_argument('--json', default='train_speed',
                 help="name of bench/results/<name>.json ('' = none)")
  p.add_argument('--plot', default='throughput_vs_k',
                 help="name of bench/results/<name>.png ('' = none)")
  p.add_argument('--min-ratio', type=float, default=0.0,
                 help='guard: exit with status 1 if any configuration fails '
                 'or its median ours / limit ratio is below this (default: '
                 '0 = off; the target is 0.9)')
  p.add_argument('--precision', default='float32',
                 choices=['float32', 'bfloat16', 'float16'],
                 help="the recipe field precision of both trainers (default: "
                 "float32); the limit's float16 step has no loss scaling")
  p.add_argument('--worker', nargs=2, metavar=('MODEL', 'BATCH'),
                 help=argparse.SUPPRESS)
  return p.parse_args(argv)


def grid(args):
  """(model, batch) pairs, the smallest batch first for every k."""
  out = []
  smallest = min(args.batch_sizes)
  for batch in sorted(args.batch_sizes):
    for k in args.widen:
      if (batch != smallest and args.max_batch_widen and
          k > args.max_batch_widen):
        continue
      for family in args.families:
        prefix = 'stock-' if family == 'stock' else ''
        out.append((f'{prefix}WRN-{args.depth}-{k}', batch))
  return out


def measure(model, batch, args):
  """Times ours vs limit in interleaved rounds inside this process."""
  ds = _common.synthetic_dataset(n_train=args.n_train)
  t0 = time.perf_counter()
  ours = _common.OurPath(model, ds, batch, precision=args.precision)
  limit = _common.LimitStep(model, ds, batch, precision=args.precision)
  ours.chunk(1)  # compiles the train step and runs trax's step-1 eval
  limit.chunk(1)
  for _ in range(max(0, args.warmup - 1)):
    ours.chunk(1)
    limit.chunk(1)
  warm_s = time.perf_counter() - t0
  rates = {'ours': [], 'limit': []}
  for _ in range(args.rounds):
    for name, trainer in (('ours', ours), ('limit', limit)):
      rates[name].append(batch * args.steps / trainer.chunk(args.steps))
  ratios = [o / l for o, l in zip(rates['ours'], rates['limit'])]
  from wrn_trax import models  # pylint: disable=g-import-not-at-top
  return dict(model=model, batch=batch, precision=args.precision,
              k=models.parse(model).widen_factor,
              family=models.parse(model).family,
              flops=models.count_flops(model),
              ours=_common.spread(rates['ours']),
              limit=_common.spread(rates['limit']),
              ratio=_common.spread(ratios), rounds=args.rounds,
              steps=args.steps, build_and_warmup_s=warm_s,
              peak_host_mb=_common.peak_host_mb(),
              peak_device_mb=_common.peak_device_mb(),
              raw=rates)


def table(results):
  header = ['model', 'batch', 'ours img/s', 'limit img/s', 'ours / limit',
            'peak host MB', 'peak device MB']
  rows = []
  for r in results:
    if 'error' in r:
      rows.append([r['model'], r['batch'], 'error: ' + r['error'][-80:],
                   '', '', '', ''])
      continue
    dev = r['peak_device_mb']
    rows.append([r['model'], r['batch'], _common.fmt_spread(r['ours'], 1),
                 _common.fmt_spread(r['limit'], 1),
                 _common.fmt_spread(r['ratio'], 2),
                 f'{r["peak_host_mb"]:,.0f}',
                 'n/a' if dev is None else f'{dev:,.0f}'])
  return _common.markdown_table(header, rows)


def plot(results, path):
  """Throughput vs k, one line per family x batch x trainer."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4))
  ok = [r for r in results if 'error' not in r]
  for family in sorted({r['family'] for r in ok}):
    for batch in sorted({r['batch'] for r in ok}):
      sel = sorted((r for r in ok if r['family'] == family and
                    r['batch'] == batch), key=lambda r: r['k'])
      if not sel:
        continue
      ks = [r['k'] for r in sel]
      for name, style in (('ours', '-o'), ('limit', '--x')):
        med = np.array([r[name]['median'] for r in sel])
        err = np.array([[r[name]['median'] - r[name]['min'] for r in sel],
                        [r[name]['max'] - r[name]['median'] for r in sel]])
        ax.errorbar(ks, med, yerr=err, fmt=style, capsize=3,
                    label=f'{family} b{batch} {name}')
  ax.set_xlabel('widen factor k')
  ax.set_ylabel('images / s (median, min–max)')
  ax.set_yscale('log')
  ax.set_title('Training throughput vs k', fontsize=10)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.worker:
    model, batch = args.worker[0], int(args.worker[1])
    _common.emit(measure(model, batch, args))
    return None
  results = []
  for model, batch in grid(args):
    r = _common.run_worker(__file__, argv, (model, batch), model=model,
                           batch=batch)
    print(f'{model} b{batch}: ' + ('error ' + r['error'] if 'error' in r else
                                   f'ratio {r["ratio"]["median"]:.2f}'),
          flush=True)
    results.append(r)
  info = _common.machine()
  print(f'\nmachine: {info["cpu"]}, {info["nproc"]} CPUs, {info["device"]}; '
        f'{args.rounds} rounds x {args.steps} steps per trainer, synthetic '
        f'CIFAR-shaped data, precision {args.precision}\n')
  print(table(results))
  if args.json:
    print('\nwrote', _common.write_json(args.json, dict(
        machine=info, args=vars(args), results=results)))
  if args.plot:
    path = os.path.join(_common.RESULTS, args.plot + '.png')
    os.makedirs(_common.RESULTS, exist_ok=True)
    plot(results, path)
    print('wrote', path)
  _common.guard(below_ratio(results, args.min_ratio),
                f'--min-ratio {args.min_ratio:g}')
  return results


def below_ratio(results, min_ratio):
  """Sentences for the configurations that failed or ran below `min_ratio`."""
  if min_ratio <= 0:
    return []
  out = []
  for r in results:
    name = f'{r["model"]} batch {r["batch"]}'
    if 'error' in r:
      out.append(f'{name}: error: {r["error"].splitlines()[-1]}')
    elif r['ratio']['median'] < min_ratio:
      out.append(f'{name}: ours / limit {r["ratio"]["median"]:.3f} < '
                 f'{min_ratio:g}')
  return out


if __name__ == '__main__':
  main()
