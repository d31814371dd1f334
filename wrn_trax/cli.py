"""The `wrn-trax` command: parse arguments, call one library function, print.

  wrn-trax models                       the paper's networks: params, FLOPs
  wrn-trax data --dataset digits        what a data set holds and where from
  wrn-trax train --model WRN-16-4 --dataset digits --recipe smoke
  wrn-trax sweep --widen-factors 1 2 3 4 --dataset digits --recipe smoke
  wrn-trax report --root runs --out results
"""
import argparse
import ast
import functools
import json
import os
import sys
import warnings

from wrn_trax import devices as devices_lib

_EPILOG = {
    'models': 'example: wrn-trax models --name WRN-28-10 --name stock-WRN-22-1',
    'data': 'example: wrn-trax data --dataset cifar10 --data-dir /kaggle/input/cifar10',
    'train': ('example: wrn-trax train --model WRN-16-4 --dataset digits '
              '--recipe smoke --workdir runs/demo --set batch_size=64'),
    'sweep': ('example: wrn-trax sweep --widen-factors 1 2 3 4 --dataset digits '
              '--recipe smoke --root runs'),
    'report': 'example: wrn-trax report --root runs --out results',
}


def _value(text):
  """'0.1' -> 0.1, '128' -> 128, '(60,120)' -> (60, 120), 'jax' -> 'jax'."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


# Arguments of train/sweep that have their own option, not a --set.
_OPTIONS = ('model', 'dataset', 'recipe', 'workdir', 'seed', 'data_dir',
            'verbose', 'root', 'executor', 'address', 'seeds', 'family',
            'widen_factors', 'depths', 'blocks', 'dropouts',
            'gpus_per_member', 'gpus', 'max_retries')


def _overrides(pairs):
  """The recipe fields of --set KEY=VALUE, parsed by `_value`.

  Raises ValueError for a pair without '=' or a key that has an option of
  its own; the values are type-checked by `recipes.get`.
  """
  out = {}
  for pair in pairs or []:
    if '=' not in pair:
      raise ValueError(f'--set takes KEY=VALUE, got {pair!r}')
    key, value = pair.split('=', 1)
    key = key.strip()
    if key in _OPTIONS:
      raise ValueError(f'--set {key}=...: {key} is not a recipe field; use '
                       f'--{key.replace("_", "-")}')
    out[key] = _value(value.strip())
  return out


def _recipe_args(args):
  """(steps, overrides) of train/sweep, checked against the recipe.

  `--set steps=N` is `--steps N`. Bad fields or values, an unknown data set,
  model name or sweep grid fail here, before the training modules (and
  TensorFlow, trax and jax) are imported; `train` and `sweep` check them
  again.
  """
  # pylint: disable=g-import-not-at-top
  from wrn_trax import _names
  from wrn_trax import data
  from wrn_trax import recipes
  # pylint: enable=g-import-not-at-top
  if args.dataset not in data.DATASETS:
    raise ValueError(f'unknown dataset {args.dataset!r}; choose one of '
                     f'{data.DATASETS}')
  if args.command == 'train':
    families = {_names.parse(args.model).family}
  else:
    families = {_names.parse(name).family for name in _names.member_models(
        args.widen_factors, args.depths, args.blocks, args.family)}
  overrides = _overrides(args.set)
  if args.data_parallel:
    if overrides.get('data_parallel') is False:
      raise ValueError('--data-parallel and --set data_parallel=False '
                       'disagree')
    overrides['data_parallel'] = True
  steps = args.steps
  if 'steps' in overrides:
    value = overrides.pop('steps')
    if steps is not None and value != steps:
      raise ValueError(f'--steps {steps} and --set steps={value} disagree')
    steps = value
  if steps is not None and (not isinstance(steps, int) or
                            isinstance(steps, bool) or steps <= 0):
    raise ValueError(f'steps must be a positive int, got {steps!r}')
  recipe = recipes.get(args.recipe, args.dataset, **overrides)
  if 'stock' in families and (recipe['dropout'] or any(_dropouts(args))):
    raise ValueError('stock WideResnet has no dropout; use a paper-family '
                     'model (WRN-d-k, or --family paper) for dropout')
  return steps, overrides


def _dropouts(args):
  """The dropout rates of `wrn-trax sweep --dropouts` (none for train)."""
  return [p for p in getattr(args, 'dropouts', None) or [] if p]


def _common(p, root_default=None):
  p.add_argument('--dataset', default='digits',
                 help='digits (offline demo), cifar10, cifar100, svhn, '
                 "svhn_extra (train + extra, as the paper) or folder")
  p.add_argument('--data-dir', default=None,
                 help='TFDS data dir, or a folder with cifar-10-batches-py')
  p.add_argument('--recipe', default='smoke',
                 help="notebook (the seed notebooks'; 'seed' is its old "
                 'name), paper or smoke')
  p.add_argument('--steps', type=int, default=None,
                 help="training steps (default: the recipe's)")
  p.add_argument('--set', action='append', metavar='KEY=VALUE',
                 help='override a recipe field, e.g. --set batch_size=64')
  p.add_argument('--data-parallel', action='store_true',
                 help='split each batch over all the devices a run sees '
                 '(BatchNorm per device); default: one device per run')
  p.add_argument('--quiet', action='store_true', help='no progress output')


def parser():
  """The argument parser of `wrn-trax` (one subcommand per library call)."""
  top = argparse.ArgumentParser(
      prog='wrn-trax', description=__doc__.split('\n\n', 1)[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__.split('\n\n', 1)[1])
  sub = top.add_subparsers(dest='command', required=True)
  fmt = argparse.RawDescriptionHelpFormatter

  p = sub.add_parser('models', formatter_class=fmt, epilog=_EPILOG['models'],
                     help="the paper's networks (Tables 2-4) with params and FLOPs",
                     description='Prints the networks of the paper\'s Tables '
                     '2-4 with the paper\'s and our parameter counts, or the '
                     'named models.')
  p.add_argument('--name', action='append',
                 help='a model name to describe instead of the table')

  p = sub.add_parser('data', formatter_class=fmt, epilog=_EPILOG['data'],
                     help='load a data set and print its splits',
                     description='Loads a data set (no download) and prints '
                     'its sizes, classes and source.')
  p.add_argument('--dataset', default='digits')
  p.add_argument('--data-dir', default=None)

  p = sub.add_parser('train', formatter_class=fmt, epilog=_EPILOG['train'],
                     help='train one model (resumes its run folder)',
                     description='Trains one model with trax\'s Loop and '
                     'writes a run folder; rerun to resume.')
  p.add_argument('--model', default='WRN-16-4',
                 help='e.g. WRN-28-10, WRN-40-2-B(3,1,3), stock-WRN-22-1')
  p.add_argument('--workdir', default=None)
  p.add_argument('--seed', type=int, default=0)
  _common(p)

  p = sub.add_parser('sweep', formatter_class=fmt, epilog=_EPILOG['sweep'],
                     help='train a grid of models (resumable)',
                     description='Trains the cross product of widths, depths, '
                     'blocks, dropouts and seeds; rerun to resume.')
  p.add_argument('--widen-factors', type=int, nargs='+', default=[1, 2, 3, 4])
  p.add_argument('--depths', type=int, nargs='+', default=None)
  p.add_argument('--blocks', nargs='+', default=None,
                 help="block types for --family paper, e.g. 'B(3,3)' 'B(3,1,3)'")
  p.add_argument('--dropouts', type=float, nargs='+', default=None)
  p.add_argument('--seeds', type=int, nargs='+', default=[0])
  p.add_argument('--family', default='stock', help='stock or paper')
  p.add_argument('--root', default='runs')
  p.add_argument('--executor', default='local', help='local or ray')
  p.add_argument('--address', default=None, help='Ray cluster address')
  p.add_argument('--gpus-per-member', type=float, default=None,
                 help='the GPUs each member gets, e.g. 0.25 (four members '
                 'per GPU, each capped at 0.9 x 0.25 of its memory) or 2 '
                 '(default: one GPU each where there are GPUs)')
  p.add_argument('--gpus', nargs='*', default=None,
                 help='with --executor local: the GPU ids to run members on '
                 '(default: all, from CUDA_VISIBLE_DEVICES or nvidia-smi); '
                 'with no id, one member after another in this process')
  p.add_argument('--max-retries', type=int, default=3,
                 help='with --executor ray: how many times a member whose '
                 'node or worker is lost is started again (it resumes from '
                 'its last checkpoint)')
  _common(p)

  p = sub.add_parser('report', formatter_class=fmt, epilog=_EPILOG['report'],
                     help='tables and plots of a run root',
                     description='Reads every run folder under --root and '
                     'writes CSV/Markdown/HTML tables, PNG plots and a '
                     'README to --out.')
  p.add_argument('--root', nargs='+', default=['runs'],
                 help='folders of run folders, and runs.csv tables of earlier '
                 'reports whose run folders are gone (default: runs)')
  p.add_argument('--out', default='results')
  return top


def main(argv=None):
  """Runs `wrn-trax`.

  Bad input and a run folder that cannot be used as it is (busy, a garbage
  config.json or summary.json, a truncated checkpoint: ValueErrors, see
  `runio.RunFolderError`) print one `error:` line that says what to do and
  exit with status 2, as argparse does for bad options; nothing is written
  to the run folder. Warnings (a run that `report` skips, naming its
  unreadable file) are one `warning:` line each; a sweep ends with one line
  per member that failed or is running elsewhere, even with --quiet. Ctrl-C
  exits with 130 and says how to resume.
  """
  args = parser().parse_args(argv)
  try:
    with warnings.catch_warnings():
      warnings.showwarning = functools.partial(_warning_line, args.command,
                                               set())
      _dispatch(args)
  except (ValueError, FileNotFoundError, ImportError,
          devices_lib.DriverHoldsGpuError) as e:
    print(f'wrn-trax {args.command}: error: {e}', file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM while training
    again = ('; rerun the same command to resume'
             if args.command in ('train', 'sweep') else '')
    what = str(e) or 'interrupted'  # train.Interrupted says where it stopped
    print(f'wrn-trax {args.command}: {what}{again}', file=sys.stderr)
    sys.exit(128 + getattr(e, 'signum', 2))


def _warning_line(command, shown, message, category, filename, lineno,
                  file=None, line=None):
  """Prints a warning once, as one `warning:` line (e.g. a run `report` skips).

  `shown` holds the lines already printed: `report` reads the runs twice.
  """
  del filename, lineno, file, line
  kind = ('warning' if category is UserWarning else category.__name__)
  text = f'wrn-trax {command}: {kind}: {message}'
  if text not in shown:
    shown.add(text)
    print(text, file=sys.stderr)


def _report_failed_members(frame):
  """One stderr line per member that did not train (even with --quiet)."""
  from wrn_trax import record  # pylint: disable=g-import-not-at-top
  for row in frame.to_dict('records'):
    if row.get('status') in (record.FAILED, record.RUNNING):
      print(f'wrn-trax sweep: {row["run"]}: {row["status"]}: {row["reason"]}',
            file=sys.stderr)


def _dispatch(args):
  if args.command == 'models':
    from wrn_trax import _names  # pylint: disable=g-import-not-at-top
    for name in args.name or []:
      _names.parse(name)  # a bad name fails before trax is imported
    from wrn_trax import models  # pylint: disable=g-import-not-at-top
    if args.name:
      for name in args.name:
        print(models.describe(name))
    else:
      print(models.markdown_table())
  elif args.command == 'data':
    from wrn_trax import data  # pylint: disable=g-import-not-at-top
    ds = data.load(args.dataset, args.data_dir)
    print(json.dumps(dict(
        name=ds.name, source=ds.source, n_classes=int(ds.n_classes),
        train=list(ds.train_images.shape), test=list(ds.test_images.shape)),
                     indent=2))
  elif args.command == 'train':
    steps, overrides = _recipe_args(args)
    from wrn_trax import train  # pylint: disable=g-import-not-at-top
    summary = train.train(
        model=args.model, dataset=args.dataset, recipe=args.recipe,
        steps=steps, workdir=args.workdir, seed=args.seed,
        data_dir=args.data_dir, verbose=not args.quiet, **overrides)
    print(json.dumps(summary, indent=2))
  elif args.command == 'sweep':
    steps, overrides = _recipe_args(args)
    if args.gpus_per_member is not None:
      # This process only drives the members; its jax (imported with the
      # sweep) must not preallocate 75% of the GPUs they share.
      os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
    from wrn_trax import report  # pylint: disable=g-import-not-at-top
    from wrn_trax import sweep  # pylint: disable=g-import-not-at-top
    frame = sweep.sweep(
        widen_factors=args.widen_factors, depths=args.depths,
        blocks=args.blocks, dropouts=args.dropouts, seeds=args.seeds,
        family=args.family, dataset=args.dataset, recipe=args.recipe,
        steps=steps, root=args.root, executor=args.executor,
        address=args.address, data_dir=args.data_dir,
        verbose=not args.quiet, gpus_per_member=args.gpus_per_member,
        gpus=args.gpus, max_retries=args.max_retries, **overrides)
    print(report.compact_table(report.summarize(frame)), end='')
    print(f'full table: {os.path.join(args.root, "sweep.csv")}; '
          f'plots and tables: wrn-trax report --root {args.root}')
    _report_failed_members(frame)
  elif args.command == 'report':
    from wrn_trax import report  # pylint: disable=g-import-not-at-top
    written = report.write_report(args.root, out=args.out)
    print(report.compact_table(report.summarize(report.load_runs(args.root))),
          end='')
    if 'best_width_by_budget.md' in written:  # runs at several budgets
      print('\nBest width by budget:\n')
      print(open(written['best_width_by_budget.md']).read())
    print(f'wrote {len(written)} files to {args.out}/ (full table: '
          f'{os.path.join(args.out, "summary.md")})')


if __name__ == '__main__':
  main()
