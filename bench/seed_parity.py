"""The seed recipe on real CIFAR-10 images, beside the seed notebooks' logs.

Trains (or resumes, or just reads, if the run folder is finished) stock-WRN-k
with the `seed` recipe through `wrn_trax.train`, then prints one table: at each
logged step, our train loss and in-training eval accuracy (train-mode BN over
20 shuffled test batches, as the notebooks measured it) beside the values the
two seed documents logged, and the final full-test-split errors with precise
and with running BatchNorm statistics.

  python bench/seed_parity.py --data-dir /tmp/cifar10-jpeg --steps 2000 \\
      --workdir /tmp/real/check_k1_2000

Our train loss is the mean over the steps since the last chunk boundary of
`train` (at most 100 steps), the notebooks' the mean over the 1,000 steps
since their previous log: on a falling curve ours reads lower.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import _common  # pylint: disable=g-import-not-at-top,wrong-import-position

# Logged by the seed documents (../shared/seeds): {k: {step: (train loss,
# eval accuracy)}}. "notebook": 000_4078312f7f0739c4.txt (Kaggle notebook,
# k=1 and 2); "blog": 001_1e7edeb87ad4fb37.txt (the same study, k=1..4).
SEED_LOGS = {
    'notebook': {
        1: {1: (2.4925, 0.1469), 1000: (1.5684, 0.5148), 2000: (1.1727, 0.5984),
            3000: (1.0017, 0.6359), 4000: (0.8991, None)},
        2: {1: (2.3474, 0.1570), 1000: (1.5593, 0.4805), 2000: (1.2017, 0.6438),
            3000: (0.9875, 0.6664), 4000: (0.8602, None)},
    },
    'blog': {
        1: {1: (2.2322, 0.1758), 1000: (1.5170, 0.5516), 2000: (1.1458, 0.6063),
            3000: (0.9821, 0.6641), 4000: (0.8731, 0.7133),
            5000: (0.7959, 0.6797)},
        2: {1: (2.4548, 0.1727), 1000: (1.5343, 0.5430), 2000: (1.1334, 0.6539),
            3000: (0.9404, 0.6891), 4000: (0.8280, 0.7016),
            5000: (0.7444, 0.7086)},
        3: {1: (2.4637, 0.1602), 1000: (1.5500, 0.5320), 2000: (1.1430, 0.6180),
            3000: (0.9606, 0.6609), 4000: (0.8605, 0.7188),
            5000: (0.7700, 0.7305)},
        4: {1: (2.4666, 0.1883), 1000: (1.6010, 0.5156), 2000: (1.2391, 0.5914),
            3000: (1.0297, 0.6602), 4000: (0.8831, 0.6680),
            5000: (0.7955, 0.7297)},
    },
}


def _fmt(x, digits=3):
  return '' if x is None else f'{x:.{digits}f}'


def table(rows, summary, widen):
  """Markdown table of our metrics rows beside the seed logs for widen k."""
  ours = {}
  for r in rows:
    if r['split'] in ('train', 'eval'):
      ours.setdefault(r['step'], {})[r['split']] = r
  lines = ['| step | ours: train loss | ours: eval acc (train-mode BN, 20 batches) '
           '| notebook: train loss | notebook: eval acc | blog: train loss '
           '| blog: eval acc |', '|---:|---:|---:|---:|---:|---:|---:|']
  for step in sorted(ours):
    train = ours[step].get('train', {}).get('loss')
    acc = ours[step].get('eval', {}).get('accuracy')
    nb = SEED_LOGS['notebook'].get(widen, {}).get(step, (None, None))
    bl = SEED_LOGS['blog'].get(widen, {}).get(step, (None, None))
    lines.append(f'| {step} | {_fmt(train)} | {_fmt(acc)} | {_fmt(nb[0])} | '
                 f'{_fmt(nb[1])} | {_fmt(bl[0])} | {_fmt(bl[1])} |')
  final = []
  if summary and summary.get('test_error') is not None:
    final = [
        '',
        f'Full test split ({summary["eval_examples"]} images) at step '
        f'{summary["step"]}: accuracy {1 - summary["test_error"]:.3f} with '
        f'{summary["test_bn"]} BN statistics, '
        f'{1 - summary["test_error_running_bn"]:.3f} with trax\'s running '
        'averages.']
  return '\n'.join(lines + final)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--data-dir', required=True,
                 help='CIFAR-10: image folders, batch files or a TFDS dir')
  p.add_argument('--widen', type=int, default=1)
  p.add_argument('--steps', type=int, default=2000)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--workdir', default=None,
                 help='run folder (default runs/seed_parity_k<k>_<steps>)')
  p.add_argument('--json', default='bench/results/seed_parity.json')
  args = p.parse_args(argv)
  import wrn_trax  # pylint: disable=g-import-not-at-top
  from wrn_trax import runio  # pylint: disable=g-import-not-at-top
  workdir = args.workdir or f'runs/seed_parity_k{args.widen}_{args.steps}'
  summary = wrn_trax.train(f'stock-WRN-22-{args.widen}', 'cifar10', 'notebook',
                           steps=args.steps, workdir=workdir, seed=args.seed,
                           data_dir=args.data_dir, checkpoint_every=500)
  rows = runio.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
  text = table(rows, summary, args.widen)
  print(text)
  if args.json:
    os.makedirs(os.path.dirname(args.json) or '.', exist_ok=True)
    with open(args.json, 'w', encoding='utf-8') as f:
      json.dump(dict(widen=args.widen, steps=args.steps, seed=args.seed,
                     rows=rows, summary=summary, seed_logs=SEED_LOGS,
                     machine=_common.machine(), table=text), f, indent=1)


if __name__ == '__main__':
  main()
