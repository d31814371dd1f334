"""Time per training step and peak memory as WRN width k and depth grow.

Each (depth, k) of the paper family runs our `train()` path (the Loop of
`train.build_loop` in `train.train_in_chunks`'s chunks, see `bench/train_speed.py`) in
its own subprocess, so ru_maxrss is that configuration's peak host memory.
The step time (median, min-max over `--rounds` chunks of `--steps` steps
after a warm-up) is set against `wrn_trax.models.count_flops` (multiply-adds
per image x batch): on a compute-bound device the points lie on a line
through the origin. Writes bench/results/scaling.png (step time vs FLOPs and
peak memory vs k).

Configurations whose FLOPs per step exceed `--max-gflops` are skipped and
listed as such: a CPU takes minutes per WRN-28-10 step; pass
`--max-gflops 0` on a GPU to run the whole grid.

Usage::

  python bench/scaling.py                      # CPU: batch 8, small models
  python bench/scaling.py --batch 128 --steps 20 --max-gflops 0    # GPU
  python bench/scaling.py --help
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
  p.add_argument('--depths', type=int, nargs='+', default=[16, 28, 40],
                 help='default: 16 28 40')
  p.add_argument('--widen', type=int, nargs='+', default=[1, 2, 4, 8, 10],
                 help='default: 1 2 4 8 10')
  p.add_argument('--batch', type=int, default=8, help='default: 8 (CPU)')
  p.add_argument('--steps', type=int, default=2,
                 help='timed steps per round (default: 2)')
  p.add_argument('--rounds', type=int, default=2, help='default: 2')
  p.add_argument('--max-gflops', type=float, default=10.0,
                 help='skip configurations above this many GFLOPs '
                 '(multiply-adds) per step, forward only (default: 10, for '
                 'a CPU; 0 = run all)')
  p.add_argument('--json', default='scaling',
                 help="name of bench/results/<name>.json ('' = none)")
  p.add_argument('--plot', default='scaling',
                 help="name of bench/results/<name>.png ('' = none)")
  p.add_argument('--worker', nargs=2, metavar=('DEPTH', 'K'),
                 help=argparse.SUPPRESS)
  return p.parse_args(argv)


def measure(model, args):
  ds = _common.synthetic_dataset(n_train=max(512, 4 * args.batch),
                                 n_test=max(256, args.batch))
  t0 = time.perf_counter()
  path = _common.OurPath(model, ds, args.batch)
  path.chunk(1)
  path.chunk(1)
  warm_s = time.perf_counter() - t0
  times = [path.chunk(args.steps) / args.steps for _ in range(args.rounds)]
  return dict(step_s=_common.spread(times), build_and_warmup_s=warm_s,
              peak_host_mb=_common.peak_host_mb(),
              peak_device_mb=_common.peak_device_mb())


def plot(results, path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  ok = [r for r in results if 'step_s' in r]
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  for depth in sorted({r['depth'] for r in ok}):
    sel = sorted((r for r in ok if r['depth'] == depth), key=lambda r: r['k'])
    gf = np.array([r['gflops_step'] for r in sel])
    med = np.array([r['step_s']['median'] for r in sel])
    err = np.array([med - [r['step_s']['min'] for r in sel],
                    [r['step_s']['max'] for r in sel] - med])
    ax1.errorbar(gf, med, yerr=err, fmt='-o', capsize=3, label=f'depth {depth}')
    for r, x, y in zip(sel, gf, med):
      ax1.annotate(f'k={r["k"]}', (x, y), fontsize=7, xytext=(3, 3),
                   textcoords='offset points')
    ax2.plot([r['k'] for r in sel], [r['peak_host_mb'] for r in sel], '-o',
             label=f'depth {depth}')
  ax1.set_xlabel('GFLOPs (multiply-adds, forward) per step')
  ax1.set_ylabel('seconds per training step')
  ax1.set_xscale('log')
  ax1.set_yscale('log')
  ax1.legend(fontsize=8)
  ax2.set_xlabel('widen factor k')
  ax2.set_ylabel('peak host RSS, MB')
  ax2.legend(fontsize=8)
  fig.suptitle('WRN scaling (paper family, our train() path)', fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  from wrn_trax import models  # pylint: disable=g-import-not-at-top
  if args.worker:
    depth, k = map(int, args.worker)
    _common.emit(measure(f'WRN-{depth}-{k}', args))
    return None
  results = []
  for depth in args.depths:
    for k in args.widen:
      model = f'WRN-{depth}-{k}'
      flops = models.count_flops(model)
      r = dict(model=model, depth=depth, k=k, flops=flops,
               params=models.count_params(model),
               gflops_step=flops * args.batch / 1e9)
      if args.max_gflops and r['gflops_step'] > args.max_gflops:
        r['skipped'] = f'> --max-gflops {args.max_gflops:g}'
      else:
        r.update(_common.run_worker(__file__, argv, (depth, k)))
      print(model, r.get('skipped') or r.get('error') or
            f'{r["step_s"]["median"]:.3f} s/step', flush=True)
      results.append(r)
  rows = []
  for r in results:
    if 'step_s' in r:
      dev = r['peak_device_mb']
      rows.append([r['model'], f'{r["params"] / 1e6:.2f}',
                   f'{r["gflops_step"]:.2f}',
                   _common.fmt_spread(r['step_s'], 3),
                   f'{r["step_s"]["median"] / r["gflops_step"]:.3f}',
                   f'{r["peak_host_mb"]:,.0f}',
                   'n/a' if dev is None else f'{dev:,.0f}'])
    else:
      rows.append([r['model'], f'{r["params"] / 1e6:.2f}',
                   f'{r["gflops_step"]:.2f}',
                   'skipped ' + r.get('skipped', r.get('error', ''))[:60],
                   '', '', ''])
  info = _common.machine()
  print(f'\nmachine: {info["cpu"]}, {info["nproc"]} CPUs, {info["device"]}; '
        f'batch {args.batch}, {args.rounds} rounds x {args.steps} steps\n')
  print(_common.markdown_table(
      ['model', 'params M', 'GFLOPs/step (fwd)', 's/step median (min–max)',
       's per GFLOP', 'peak host MB', 'peak device MB'], rows))
  if args.json:
    print('\nwrote', _common.write_json(args.json, dict(
        machine=info, args=vars(args), results=results)))
  if args.plot:
    os.makedirs(_common.RESULTS, exist_ok=True)
    out = os.path.join(_common.RESULTS, args.plot + '.png')
    plot(results, out)
    print('wrote', out)


if __name__ == '__main__':
  main()
