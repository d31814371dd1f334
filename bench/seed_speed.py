"""Training images/s of the seed notebooks' setup against ours.

* ``seed``: the Kaggle seed notebooks exactly: `trax.fastmath.set_backend(
  'tensorflow-numpy')`, trax's `WideResnet(n_blocks=3, widen_factor=k)`,
  `trax.data.Serial(source, Shuffle(), Batch(64), AddLossWeights())` over
  per-example CIFAR-shaped uint8 arrays, `Adam(0.01)`, a plain trax `Loop`
  with an `EvalTask` of 20 batches.
* ``ours``: stock-WRN-22-k with the 'notebook' recipe through our `train()` path
  (the jax backend, our pipeline; see `bench/train_speed.py`).

The fastmath backend is global, so every measurement runs in its own
subprocess: seed, ours, seed, ours, ... for `--rounds` rounds. Each process
builds its trainer, warms up (compile, step-1 eval) and times `--steps`
steps. The speed-up is ours / seed images/s, median over rounds (a round's
ratio pairs its two neighbouring processes). A configuration that fails
records its exact error.

Usage::

  python bench/seed_speed.py                       # k = 1 2 on a CPU
  python bench/seed_speed.py --widen 1 2 3 4 --steps 100 --rounds 3   # GPU
  python bench/seed_speed.py --help
"""
import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # pylint: disable=g-import-not-at-top,wrong-import-position

BATCH = 64  # the seed notebooks' Batch(64)


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__.split('\n\n', 1)[1])
  p.add_argument('--widen', type=int, nargs='+', default=[1, 2],
                 help='widen factors k (default: 1 2; the seed used 1 2 3 4)')
  p.add_argument('--steps', type=int, default=3,
                 help='timed steps per process (default: 3; GPU: 100)')
  p.add_argument('--warmup', type=int, default=2,
                 help='untimed steps first (default: 2)')
  p.add_argument('--rounds', type=int, default=2, help='default: 2')
  p.add_argument('--n-train', type=int, default=2048,
                 help='synthetic training images (default: 2048)')
  p.add_argument('--json', default='seed_speed',
                 help="name of bench/results/<name>.json ('' = none)")
  p.add_argument('--worker', nargs=2, metavar=('CONFIG', 'K'),
                 help=argparse.SUPPRESS)
  return p.parse_args(argv)


def seed_loop(k, ds, workdir):
  """The seed notebooks' trainer, on the tensorflow-numpy backend."""
  from wrn_trax import _compat  # pylint: disable=g-import-not-at-top
  _compat.ensure_trax()  # trax through us: quiet and patched, as train() has it
  import trax  # pylint: disable=g-import-not-at-top
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax.supervised import training  # pylint: disable=g-import-not-at-top
  trax.fastmath.set_backend('tensorflow-numpy')

  def stream(images, labels):
    def examples(generator=None):
      del generator
      while True:  # as TFDS(...) yields: one (image, label) at a time
        for i in range(len(images)):
          yield images[i], labels[i]
    return trax.data.Serial(examples, trax.data.Shuffle(),
                            trax.data.Batch(BATCH),
                            trax.data.AddLossWeights())()

  def model(mode):
    return trax.models.WideResnet(n_blocks=3, widen_factor=k,
                                  n_output_classes=ds.n_classes, mode=mode)

  task = training.TrainTask(
      labeled_data=stream(ds.train_images, ds.train_labels),
      loss_layer=tl.CrossEntropyLoss(),
      optimizer=trax.optimizers.Adam(0.01),
      n_steps_per_checkpoint=1000)
  eval_task = training.EvalTask(
      labeled_data=stream(ds.test_images, ds.test_labels),
      metrics=[tl.CrossEntropyLoss(), tl.Accuracy()],
      n_eval_batches=20)
  return training.Loop(model('train'), [task], eval_model=model('eval'),
                       eval_tasks=[eval_task], output_dir=workdir)


class SeedPath:
  """`loop.run(n)` of the seed Loop, stdout hidden, waiting for the result."""

  def __init__(self, k, ds):
    with contextlib.redirect_stdout(io.StringIO()):
      self.loop = seed_loop(k, ds, tempfile.mkdtemp(prefix='wrn_seed_'))

  def chunk(self, n):
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
      self.loop.run(n)
    # Converting a weight to numpy waits for the step on either backend.
    from trax import fastmath  # pylint: disable=g-import-not-at-top
    np.asarray(fastmath.tree_flatten(self.loop.model.weights)[-1])
    return time.perf_counter() - t0


def measure(config, k, args):
  ds = _common.synthetic_dataset(n_train=args.n_train)
  t0 = time.perf_counter()
  if config == 'seed':
    trainer = SeedPath(k, ds)
  else:
    trainer = _common.OurPath(f'stock-WRN-22-{k}', ds, BATCH, recipe='notebook')
  trainer.chunk(1)
  for _ in range(max(0, args.warmup - 1)):
    trainer.chunk(1)
  warm_s = time.perf_counter() - t0
  dt = trainer.chunk(args.steps)
  return dict(config=config, k=k, images_per_s=BATCH * args.steps / dt,
              step_s=dt / args.steps, build_and_warmup_s=warm_s,
              peak_host_mb=_common.peak_host_mb())


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  args = parse_args(argv)
  if args.worker:
    config, k = args.worker[0], int(args.worker[1])
    try:
      out = measure(config, k, args)
    except Exception as e:  # pylint: disable=broad-except
      out = dict(config=config, k=k, error=f'{type(e).__name__}: {e}',
                 traceback=traceback.format_exc()[-3000:])
    _common.emit(out)
    return None
  runs = []
  for k in args.widen:
    for _ in range(args.rounds):
      for config in ('seed', 'ours'):
        r = _common.run_worker(__file__, argv, (config, k), config=config,
                               k=k)
        print(f'k={k} {config}: ' + (
            'error ' + r['error'][:300] if 'error' in r else
            f'{r["images_per_s"]:.1f} images/s'), flush=True)
        runs.append(r)
  rows, summary = [], []
  for k in args.widen:
    by = {c: [r for r in runs if r['k'] == k and r['config'] == c]
          for c in ('seed', 'ours')}
    ok = {c: [r['images_per_s'] for r in v if 'error' not in r]
          for c, v in by.items()}
    errors = {c: next((r['error'] for r in v if 'error' in r), None)
              for c, v in by.items()}
    cells = {c: (_common.fmt_spread(_common.spread(v), 1) if v else
                 'failed: ' + (errors[c] or '')[:100].replace('|', '/'))
             for c, v in ok.items()}
    ratio = None
    if ok['seed'] and ok['ours'] and len(ok['seed']) == len(ok['ours']):
      ratio = _common.spread([o / s for o, s in zip(ok['ours'], ok['seed'])])
    rows.append([f'stock-WRN-22-{k}', cells['seed'], cells['ours'],
                 _common.fmt_spread(ratio, 2) + '×' if ratio else 'n/a'])
    summary.append(dict(k=k, seed=ok['seed'], ours=ok['ours'],
                        speedup=ratio, errors=errors))
  info = _common.machine()
  print(f'\nmachine: {info["cpu"]}, {info["nproc"]} CPUs, {info["device"]}; '
        f'batch {BATCH}, {args.rounds} rounds x {args.steps} steps, '
        'synthetic CIFAR-shaped data\n')
  print(_common.markdown_table(
      ['model', 'seed img/s (tensorflow-numpy)', 'ours img/s (jax)',
       'speed-up ours / seed'], rows))
  if args.json:
    print('\nwrote', _common.write_json(args.json, dict(
        machine=info, args=vars(args), runs=runs, summary=summary)))


if __name__ == '__main__':
  main()
