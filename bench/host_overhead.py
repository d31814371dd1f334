"""Host time per training step of our `train()` path, with the device step removed.

Builds the Loop with `wrn_trax.train.build_loop` (as `bench/train_speed.py` does) and
replaces the trainer's compiled step (`Trainer._accelerated_update_fn`) with a
no-op that hands back its weights, slots and state and a constant loss
(after `jax.device_put` of the batch, so the host-to-device copy stays in).
What is left per step is everything the host does around the device step:
the data pipeline, trax's Loop bookkeeping, and per chunk the summary writers
that `loop.run` opens, our history read and the NaN check. On a fast GPU the
host runs ahead of the device only while this stays below the device step
time (WRN-28-10 at batch 128: tens of ms on a current GPU; a small WRN a few
ms).

Reports, in interleaved rounds:

* per-step host time of a `train.train_in_chunks` chunk (`loop.run(n)` + history
  read + NaN check) for chunk sizes n (default 1, 10, 100; `train` uses 100);
* the parts, each timed alone: one batch of our pipeline, `loop.new_rng()`,
  the rest of Loop's per-step work, opening/closing the summary writers,
  `MetricsLog.rows_from_history`, `optim.tree_all_finite`;
* the variants in `VARIANTS`, each its own Loop, timed in the same rounds:
  trax's own `Trainer.one_step` (the code before the fix) against `train`'s
  default (`build_loop(light_step=True)`: `_compat._one_step_one_device`), a jitted NaN
  check, and the other `augment` (where the recipe's preprocessing does
  something): with ``augment='device'`` the host hands over uint8 batches and
  the crop, flip and normalisation run in the compiled step (removed here,
  so only the host's share is timed);
* a cProfile of one chunk (top functions by own time), with --profile.

Usage::

  python bench/host_overhead.py                       # WRN-28-10, batch 128
  python bench/host_overhead.py --model stock-WRN-22-1 --batch 64
  python bench/host_overhead.py --max-ms 5         # a regression guard
  python bench/host_overhead.py --augment device   # main path: uint8 batches
  python bench/host_overhead.py --help
"""
import argparse
import cProfile
import contextlib
import io
import os
import pstats
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
  p.add_argument('--model', default='WRN-28-10',
                 help='network name (default: WRN-28-10)')
  p.add_argument('--batch', type=int, default=128, help='default: 128')
  p.add_argument('--recipe', default=None,
                 help="default: 'notebook' for stock models, else 'paper' "
                 '(standardize + crop + flip on the host)')
  p.add_argument('--augment', choices=('host', 'device'), default='host',
                 help="the recipe's augment for the main path (chunk sizes, "
                 "parts, profile); the other one is timed as a variant "
                 "(default: 'host')")
  p.add_argument('--chunks', type=int, nargs='+', default=[1, 10, 100],
                 help='loop.run(n) sizes timed (default: 1 10 100)')
  p.add_argument('--steps', type=int, default=200,
                 help='no-op steps timed per chunk size and round '
                 '(default: 200)')
  p.add_argument('--rounds', type=int, default=5, help='default: 5')
  p.add_argument('--reps', type=int, default=20,
                 help='repetitions per part timing (default: 20)')
  p.add_argument('--profile', action='store_true',
                 help='print a cProfile of one 100-step chunk')
  p.add_argument('--max-ms', type=float, default=0.0,
                 help='guard: exit with status 1 if the median host time '
                 'per step of the largest chunk size exceeds this many ms '
                 '(default: 0 = off)')
  p.add_argument('--json', default='host_overhead',
                 help="name of bench/results/<name>.json ('' = none)")
  return p.parse_args(argv)


def make_noop(weights_example):
  """A stand-in for the compiled step: returns its inputs, a constant loss."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  del weights_example
  stats = dict(loss=jnp.float32(2.3), gradients_l2=jnp.float32(1.0),
               weights_l2=jnp.float32(1.0))

  def noop(weights_and_slots, step, opt_params, batch, state, rng):
    del step, opt_params, rng
    jax.device_put(batch)  # the host-to-device copy a real step makes
    return weights_and_slots, state, dict(stats)

  return noop


def noop_path(model, ds, batch, recipe, **overrides):
  """OurPath with the device step replaced by `make_noop` and evals off."""
  path = _common.OurPath(model, ds, batch, recipe=recipe, **overrides)
  for trainer in path.loop._trainer_per_task:  # pylint: disable=protected-access
    trainer._accelerated_update_fn = make_noop(None)  # pylint: disable=protected-access
  path.loop._eval_at = lambda step: False  # pylint: disable=protected-access
  return path


def _time(fn, reps):
  t0 = time.perf_counter()
  for _ in range(reps):
    fn()
  return (time.perf_counter() - t0) / reps


def parts(path, ds, batch, reps):
  """Seconds of each part of the host work, timed alone."""
  from wrn_trax import data as data_lib  # pylint: disable=g-import-not-at-top
  from wrn_trax import optim  # pylint: disable=g-import-not-at-top
  from wrn_trax import train as train_lib  # pylint: disable=g-import-not-at-top
  c = path.run.config
  stream = data_lib.train_batches(
      ds, batch, preprocess=train_lib.host_preprocess(c), seed=1)
  loop = path.loop
  out = {}
  out['pipeline batch (per step)'] = _time(lambda: next(stream), reps)
  out['loop.new_rng (per step)'] = _time(loop.new_rng, reps)

  def writers():
    with contextlib.redirect_stdout(io.StringIO()):
      with loop._open_summary_writers():  # pylint: disable=protected-access
        pass

  out['summary writers open+close (per chunk)'] = _time(writers, reps)
  def history():
    path.log.logged = set()
    path.log.rows_from_history(loop, 0.0, [0.1])

  out['history rows (per chunk)'] = _time(history, reps)
  out['tree_all_finite (per chunk)'] = _time(
      lambda: optim.tree_all_finite(loop.model.weights), reps)
  return out


# ------------------------------------------------------------------ fixes


_FAST_ALL_FINITE = []


def _fast_all_finite():
  """NaN check as one jitted reduction over all leaves, one host sync."""
  if _FAST_ALL_FINITE:  # one jitted function, so it compiles once
    return _FAST_ALL_FINITE[0]
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  @jax.jit
  def finite(tree):
    leaves = [x for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

  _FAST_ALL_FINITE.append(lambda tree: bool(finite(tree)))
  return _FAST_ALL_FINITE[0]


# Each variant is a Loop built with these `wrn_trax.train.build_loop` arguments (plus, for
# 'jit_all_finite', `_fast_all_finite` as the NaN check); all are timed in
# the same rounds on loop.run(100) chunks, with the main path's `augment`.
# 'train default' is what `train` does; "trax's one_step" is the code before
# the host-overhead fix. `variants` adds the other `augment`.
VARIANTS = {
    "trax's one_step": dict(light_step=False),
    'train default (light one_step)': dict(light_step=True),
    'train default + jit_all_finite': dict(light_step=True),
}


def variants(augment, preprocess):
  """{name: (train settings, recipe overrides)} of the timed variants.

  Every `VARIANTS` entry with the main path's ``augment``, and, unless the
  preprocessing is 'raw' (nothing to move to the device), 'train default'
  with the other one, named e.g. "train default, augment='device'".
  """
  out = {name: (values, dict(augment=augment))
         for name, values in VARIANTS.items()}
  if preprocess != 'raw':
    other = 'device' if augment == 'host' else 'host'
    out[f"train default, augment='{other}'"] = (dict(light_step=True),
                                                dict(augment=other))
  return out


@contextlib.contextmanager
def patched(variant):
  """The NaN check of a variant, while inside."""
  from wrn_trax import optim  # pylint: disable=g-import-not-at-top
  if variant.endswith('jit_all_finite'):
    saved = optim.tree_all_finite
    optim.tree_all_finite = _fast_all_finite()
    try:
      yield
    finally:
      optim.tree_all_finite = saved
  else:
    yield


def main(argv=None):
  args = parse_args(argv)
  ds = _common.synthetic_dataset(n_train=max(2048, 4 * args.batch))
  recipe = args.recipe or _common.recipe_for(args.model)
  t0 = time.perf_counter()
  path = noop_path(args.model, ds, args.batch, recipe, augment=args.augment)
  path.chunk(1)
  path.chunk(2)
  build_s = time.perf_counter() - t0
  variant_paths = {}
  timed = variants(args.augment, path.run.config['preprocess'])
  for name, (values, overrides) in timed.items():
    variant_paths[name] = noop_path(args.model, ds, args.batch, recipe,
                                    **values, **overrides)
    with patched(name):
      variant_paths[name].chunk(1)
      variant_paths[name].chunk(100)  # a patched NaN check compiles here
  per_step = {n: [] for n in args.chunks}
  part_rounds = []
  fix_rounds = {f: [] for f in timed}
  for _ in range(args.rounds):
    for n in args.chunks:
      k = max(1, args.steps // n)
      per_step[n].append(sum(path.chunk(n) for _ in range(k)) / (k * n))
    part_rounds.append(parts(path, ds, args.batch, args.reps))
    for name, vpath in variant_paths.items():
      with patched(name):
        fix_rounds[name].append(vpath.chunk(100) / 100)

  info = _common.machine()
  print(f'machine: {info["cpu"]}, {info["nproc"]} CPUs, {info["device"]}; '
        f'{args.model}, batch {args.batch}, {recipe} recipe '
        f'(preprocess {path.run.config["preprocess"]}, augment '
        f'{args.augment}); {args.rounds} rounds; '
        f'build + warm-up {build_s:.1f} s\n')
  rows = [[f'loop.run({n}) + history + NaN check', _common.fmt_spread(
      _common.spread(np.array(v) * 1e3), 3)] for n, v in per_step.items()]
  print(_common.markdown_table(['host time per step (no-op device step)',
                                'ms, median (min–max)'], rows))
  print()
  names = list(part_rounds[0])
  rows = [[name, _common.fmt_spread(_common.spread(
      [r[name] * 1e3 for r in part_rounds]), 3)] for name in names]
  print(_common.markdown_table(['part', 'ms, median (min–max)'], rows))
  print()
  rows = [[fix, _common.fmt_spread(_common.spread(
      np.array(v) * 1e3), 3)] for fix, v in fix_rounds.items()]
  print(_common.markdown_table(['variant (loop.run(100) chunks)',
                                'ms per step, median (min–max)'], rows))
  profile_text = None
  if args.profile:
    prof = cProfile.Profile()
    prof.enable()
    path.chunk(100)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats('tottime').print_stats(25)
    profile_text = buf.getvalue()
    print('\ncProfile of one loop.run(100) chunk, by own time:\n')
    print(profile_text)
  if args.json:
    print('wrote', _common.write_json(args.json, dict(
        machine=info, args=vars(args), recipe=recipe,
        per_step_s={str(n): _common.spread(v) for n, v in per_step.items()},
        parts_s={n: _common.spread([r[n] for r in part_rounds])
                 for n in names},
        fixes_s={f: _common.spread(v) for f, v in fix_rounds.items()},
        profile=profile_text)))
  if args.max_ms > 0:
    n = max(args.chunks)
    ms = float(np.median(per_step[n])) * 1e3
    _common.guard([f'{args.model} batch {args.batch}: {ms:.3f} ms per step '
                   f'in loop.run({n}) chunks > {args.max_ms:g} ms']
                  if ms > args.max_ms else [], f'--max-ms {args.max_ms:g}')


if __name__ == '__main__':
  main()
