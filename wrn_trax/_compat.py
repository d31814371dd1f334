"""Every patch of trax and jax that wrn_trax installs, in one place.

trax 1.4.1 (2021) calls jax APIs that newer jax renamed or removed, and does
some work on the host that we take off it. Each patch below is named in
`PATCHES`, with what it fixes and the trax and jax versions it was verified
on; tests/test_compat.py is the contract of each (one test of what it
guarantees, plus the guard's behaviour).

The guard: a patch is installed silently only on the versions of its row
(trax 1.4.1; jax 0.5.3 to 0.12.0, the jax of this project's stacks: 0.5.3,
0.7.2, 0.10.2, 0.11.2 and 0.12.0.1). On trax 1.4.1 with another jax, each
speed patch (`shallow_inspect_stack`, `light_one_step`) first runs its
self-test, a check of its contract that takes seconds on the CPU
(`self_test`), and is installed silently if it passes. Otherwise (a failed
self-test, another trax, or a patch without one) it warns once, with an
`UnverifiedPatchWarning` naming the patch and both sets of versions, and then
either installs it anyway (`'warn'`: without it trax fails outright) or keeps
trax's own code (`'refuse'`: the patch copies trax 1.4.1 internals and is
only about speed). `installed()` lists what this process has installed;
`patch_report()` says why each went the way it did, with the self-tests'
outcomes (a run's config.json holds it under versions/patches).

No decision here touches a device: importing wrn_trax starts no jax backend.
The light step's self-test runs at the first training on another jax.

Process-wide patches (`install`, once, from `ensure_trax`):

- `shallow_inspect_stack`: while trax is imported, `inspect.stack` looks at
  the two frames trax's `assert_shape` reads (~8x less CPU for the import);
  restored right after.
- `device_put_replicated`: `jax.device_put_replicated`, removed in jax 0.8;
  trax's `tl.for_n_devices` copies weights to every device with it when a
  Loop trains data-parallel. Added only where jax lacks it.
- `tree_unflatten`: `trax.fastmath.tree_unflatten(..., copy_from_tree=[None,
  ()])`, which `Loop.load_checkpoint` calls to restore optimizer slots, tests
  `tree in copy_from_tree`; that compares a jax Array with `()`, which jax
  rejects with a TypeError: no run could resume. Replaced on every jax (a
  version check, not a probe: probing needs a jax Array, which would start
  the GPU backend at import).

Per-Loop patches (`train.ready_loop` calls them on each Loop it builds):

- `slots_on_device` (`spread_optimizer_state`): trax pins optimizer slots to
  the host CPU; on today's jax a jitted step runs where its committed inputs
  are (one GPU: on the CPU), and jax 0.10's pmap refuses them.
- `checkpoint_readers`: trax's checkpoint readers swapped for the
  restricted ones of `runio` while a Loop is built (and reads a checkpoint).
- `loop_device_count`: while a Loop is built on fewer devices than jax
  sees (one GPU of two), trax's `fastmath.local_device_count` answers that
  number, so trax's "n_devices != all devices" check lets it through.
- `light_one_step` (`lighten_steps`, `install_one_step`): trax's
  single-device `Trainer.one_step` replaced by `_one_step_one_device`, with a
  compiled update that donates the weight and slot buffers.

`jax.host_count()` (still an alias that warns) is left alone: `_quiet`
filters its warning.
"""
import collections
import contextlib
import functools
import importlib.metadata
import inspect
import os
import re
import sys
import time
import warnings

from wrn_trax import _quiet
from wrn_trax import _tf_standin

# --------------------------------------------------------- the patch table

TRAX_VERIFIED = '1.4.1'
# The jax of this project's stacks: Colab 2025.07 (0.5.3), Colab and Kaggle
# 2026 (0.7.2), ours (0.10.2), the GPU machine's (0.11.2) and what a plain
# `pip install` resolved on 2026-12-05 (0.12.0.1, constraints/pip-2026-12.txt).
# Every patch was verified on all five. (The range compares the first three
# numbers: 0.12.0.1 is 0.12.0.)
JAX_VERIFIED = ('0.5.3', '0.12.0')

Patch = collections.namedtuple(
    'Patch', 'name fixes trax jax_min jax_max outside')
Patch.__doc__ = """One row of PATCHES.

name: what `installed()` reports. fixes: what goes wrong without it.
trax: the one trax version it was verified on. jax_min, jax_max: the jax
range verified. outside: what happens on other versions, after the warning:
'warn' installs it anyway, 'refuse' keeps trax's own code.
"""

PATCHES = (
    Patch('shallow_inspect_stack',
          "trax's assert_shape calls inspect.stack() ~65 times while trax "
          'is imported; each walks every frame (8x the CPU time of the '
          'import)', TRAX_VERIFIED, *JAX_VERIFIED, 'refuse'),
    Patch('device_put_replicated',
          'jax >= 0.8 removed jax.device_put_replicated, which trax uses to '
          'replicate weights for data-parallel training',
          TRAX_VERIFIED, *JAX_VERIFIED, 'warn'),
    Patch('tree_unflatten',
          "trax's tree_unflatten compares a jax Array with (), which jax "
          'rejects: restoring optimizer slots (every resume) fails',
          TRAX_VERIFIED, *JAX_VERIFIED, 'warn'),
    Patch('slots_on_device',
          'trax pins optimizer slots to the host: one GPU would run the step '
          "on the CPU, several fail in jax's pmap",
          TRAX_VERIFIED, *JAX_VERIFIED, 'warn'),
    Patch('checkpoint_readers',
          "trax's Loop reads checkpoints with pickle.load and np.load: a "
          "pickle of unknown origin runs code (runio's restricted readers "
          'go in while a Loop is built)', TRAX_VERIFIED, *JAX_VERIFIED,
          'warn'),
    Patch('loop_device_count',
          "trax's Loop refuses fewer devices than jax sees: a one-device "
          'run on a machine with several GPUs could not be built',
          TRAX_VERIFIED, *JAX_VERIFIED, 'warn'),
    Patch('light_one_step',
          "trax's single-device one_step, with less host work and a donating "
          'update (bitwise the same training on jax >= 0.7.2, within 1e-6 '
          'on 0.5.3)', TRAX_VERIFIED, *JAX_VERIFIED, 'refuse'),
)
_BY_NAME = {p.name: p for p in PATCHES}

# Set to 1 to import trax with the stdlib's full inspect.stack() (for
# bench/import_time.py's "before" column).
SLOW_IMPORT_ENV = 'WRN_TRAX_SLOW_IMPORT'


class UnverifiedPatchWarning(UserWarning):
  """A patch meets a trax or jax version it was not verified on."""


class UnverifiedPatchError(RuntimeError):
  """A refused patch was required (float16's loss-scaled step)."""


_INSTALLED = []    # names, in the order they were first installed
_WARNED = set()    # names already warned about
_ORIGINALS = {}    # name -> what the patch replaced (for tests and undoing)


def installed():
  """The names of the patches this process has installed, in order.

  Process-wide patches appear once `ensure_trax` has run (and only where
  needed: `device_put_replicated` on jax >= 0.8); per-Loop ones once a Loop
  got them.
  """
  return tuple(_INSTALLED)


def _version_tuple(version):
  return tuple(int(p) for p in re.findall(r'\d+', version)[:3])


@functools.lru_cache(maxsize=None)
def versions():
  """(trax, jax) versions installed, from package metadata (imports neither)."""
  found = []
  for pkg in ('trax', 'jax'):
    try:
      found.append(importlib.metadata.version(pkg))
    except importlib.metadata.PackageNotFoundError:
      found.append('not installed')
  return tuple(found)


def verified(name, found=None):
  """Whether patch `name` was verified on `found` (default: `versions()`)."""
  patch = _BY_NAME[name]
  trax_v, jax_v = found or versions()
  return (trax_v == patch.trax and
          _version_tuple(patch.jax_min) <= _version_tuple(jax_v) <=
          _version_tuple(patch.jax_max))


def _unverified_message(patch, found):
  action = ('installed anyway: without it trax fails'
            if patch.outside == 'warn' else
            "not installed: trax's own code is used")
  return (f'wrn_trax patch {patch.name!r} ({patch.fixes}) was verified on '
          f'trax {patch.trax} with jax {patch.jax_min} to {patch.jax_max}; '
          f'found trax {found[0]}, jax {found[1]}. It is {action}. '
          'See wrn_trax/_compat.py, PATCHES.')


# Set to 1 to run every speed patch's self-test even on a listed jax, and let
# its outcome decide (for checking a stack; `patch_report` shows the outcome).
SELF_TEST_ENV = 'WRN_TRAX_SELF_TEST'

SelfTest = collections.namedtuple('SelfTest', 'passed seconds detail')
SelfTest.__doc__ = """The outcome of one patch's self-test (`self_test`).

passed: whether the patch kept its contract. seconds: how long the test
took. detail: what it compared, and the difference it found.
"""

_SELF_TEST_FNS = {}  # name -> () -> (passed, detail); filled below
_DECISIONS = {}   # name -> (allowed, why), the guard's last answer
_SELF_TESTS = {}  # name -> SelfTest, run at most once per process


def self_test(name):
  """Runs the self-test of speed patch `name` once; returns its `SelfTest`.

  Each 'refuse' patch (it copies trax internals, only for speed) has one:
  a check of its contract that takes seconds and touches no GPU
  (`_SELF_TEST_FNS`). On trax 1.4.1 with a jax the table does not list (or
  with WRN_TRAX_SELF_TEST=1), the guard runs it and installs the patch only
  if it passes. An exception inside the test is a failure, with its message.
  """
  if name not in _SELF_TESTS:
    start = time.perf_counter()
    try:
      passed, detail = _SELF_TEST_FNS[name]()
    except Exception as e:  # pylint: disable=broad-except
      passed, detail = False, f'raised {type(e).__name__}: {e}'
    _SELF_TESTS[name] = SelfTest(bool(passed), round(
        time.perf_counter() - start, 3), detail)
  return _SELF_TESTS[name]


def _self_test_forced():
  return os.environ.get(SELF_TEST_ENV, '') not in ('', '0')


def allowed(name):
  """Whether to install patch `name` here; warns once where it may not be.

  True on the verified versions. On the verified trax with another jax, a
  patch with a self-test (the speed patches) is allowed if its self-test
  passes, silently, and refused with an UnverifiedPatchWarning if it fails
  (WRN_TRAX_SELF_TEST=1: the self-test decides on the listed jax too). Any
  other patch, and any patch on another trax, is allowed
  ('warn') or refused ('refuse') after an UnverifiedPatchWarning. Each patch
  warns at most once per process. `patch_report` says which way each went.
  """
  patch = _BY_NAME[name]
  found = versions()
  # A self-test stands in for the table on another jax only: a speed patch
  # copies trax internals, which another trax may change beyond the test.
  has_test = name in _SELF_TEST_FNS and found[0] == patch.trax
  if verified(name, found) and not (has_test and _self_test_forced()):
    _DECISIONS[name] = True, 'verified on these versions'
    return True
  if has_test:
    result = self_test(name)
    if result.passed:
      _DECISIONS[name] = True, 'its self-test passed'
      return True
    _DECISIONS[name] = False, 'its self-test failed'
    if name not in _WARNED:
      _WARNED.add(name)
      warnings.warn(
          f'wrn_trax patch {patch.name!r} ({patch.fixes}) failed its '
          f'self-test on trax {found[0]}, jax {found[1]}: {result.detail}. '
          "It is not installed: trax's own code is used. See "
          'wrn_trax/_compat.py, PATCHES.', UnverifiedPatchWarning,
          stacklevel=3)
    return False
  _DECISIONS[name] = (patch.outside == 'warn',
                      f'unverified, {patch.outside!r} outside the table')
  if name not in _WARNED:
    _WARNED.add(name)
    warnings.warn(_unverified_message(patch, found), UnverifiedPatchWarning,
                  stacklevel=3)
  return patch.outside == 'warn'


def patch_report(run_self_tests=False):
  """What each patch did in this process, for a run's record (JSON-able).

  {name: {'verified': whether the table lists this trax and jax,
  'allowed': the guard's answer (None: not asked yet; the per-Loop patches
  are asked when the first Loop is built), 'why': the reason for it,
  'installed': whether this process has installed it yet, 'self_test': its
  `SelfTest` as a dict, or None where none ran}}, in the order of PATCHES.
  With `run_self_tests`, the guard first decides each patch that has a
  self-test (running it where the table does not list this jax), so the
  report holds the outcome before the first Loop is built; on a listed jax
  that costs nothing.
  """
  if run_self_tests:
    for name in _SELF_TEST_FNS:
      allowed(name)
  rows = {}
  for patch in PATCHES:
    result = _SELF_TESTS.get(patch.name)
    rows[patch.name] = {
        'verified': verified(patch.name),
        'allowed': _DECISIONS.get(patch.name, (None, None))[0],
        'why': _DECISIONS.get(patch.name, (None, None))[1],
        'installed': patch.name in _INSTALLED,
        'self_test': None if result is None else dict(result._asdict()),
    }
  return rows


def _record(name):
  if name not in _INSTALLED:
    _INSTALLED.append(name)


# ------------------------------------------- shallow_inspect_stack (import)


def _frame_info(frame, context):
  """inspect.FrameInfo for one frame, built as inspect.getouterframes does."""
  info = inspect.getframeinfo(frame, context)
  positions = getattr(info, 'positions', None)
  if positions is not None or sys.version_info >= (3, 11):
    return inspect.FrameInfo(frame, *info, positions=positions)
  return inspect.FrameInfo(frame, *info)  # Python 3.10: no positions


_ASSERT_SHAPE = 'trax.layers.assert_shape'


def _shallow_stack_for(full_stack):
  """An inspect.stack for trax's assert_shape that looks at two frames only.

  trax/layers/assert_shape.py runs `inspect.getframeinfo(inspect.stack()[1][0])`
  each time `@assert_shape`, `AssertFunction` or `AssertShape` is used
  (~65 times while trax imports itself). `inspect.stack()` builds a FrameInfo
  for every frame up to the interpreter, and each of those looks its module
  up in `sys.modules` and reads its source: 24-33 s of the import. assert_shape
  uses entry [1] alone (its caller's frame, for "Defined at FILE:LINE"), so
  for calls from that module this returns the same first two FrameInfos,
  built the same way, and nothing deeper. Any other caller gets the stdlib's
  whole stack, as `inspect.stack()` gives it there.
  """

  def stack(context=1):
    frame = sys._getframe(1)  # pylint: disable=protected-access
    if frame.f_globals.get('__name__') != _ASSERT_SHAPE:
      return full_stack(context)[1:]  # the stdlib's, less this frame
    infos = []
    while frame is not None and len(infos) < 2:
      infos.append(_frame_info(frame, context))
      frame = frame.f_back
    return infos

  stack.__wrapped__ = full_stack
  return stack


def _self_test_shallow_inspect_stack():
  """shallow_inspect_stack's contract, in pure Python (no trax, no device).

  Called from a frame whose module is trax's assert_shape, the shallow
  stack gives the first two FrameInfos the stdlib's gives (same frames,
  filename, line, function, context, positions) and nothing deeper; called
  from anywhere else it gives the stdlib's whole stack.
  """
  full_stack = getattr(inspect.stack, '__wrapped__', inspect.stack)
  namespace = {'__name__': _ASSERT_SHAPE}
  exec(compile('def call(shallow, full):\n  return shallow(), full()\n',  # pylint: disable=exec-used
               'assert_shape.py', 'exec'), namespace)
  shallow, full = namespace['call'](_shallow_stack_for(full_stack), full_stack)
  if len(shallow) != 2 or len(full) <= 2:
    return False, f'{len(shallow)} frames from assert_shape, not 2'
  for a, b in zip(shallow, full):
    if a.frame is not b.frame or a != b:
      return False, f'frame {a!r} differs from the stdlib\'s {b!r}'
  # [1] is what assert_shape reads (its caller); [0]'s columns differ, as
  # the two calls stand side by side on one line.
  if getattr(shallow[1], 'positions', None) != getattr(full[1], 'positions',
                                                        None):
    return False, 'the caller\'s positions differ from the stdlib\'s'
  # Any other caller: the stdlib's stack (less the wrapper's own frame).
  calls = []
  whole = lambda context=1: calls.append(context) or ['wrapper', 'caller']
  if _shallow_stack_for(whole)(3) != ['caller'] or calls != [3]:
    return False, 'another caller did not get the stdlib\'s whole stack'
  return True, ('the 2 frames assert_shape reads equal the stdlib\'s; '
                'other callers get the stdlib\'s stack')


_SELF_TEST_FNS['shallow_inspect_stack'] = _self_test_shallow_inspect_stack


@contextlib.contextmanager
def shallow_inspect_stack():
  """Makes trax's assert_shape cheap for the body; restores inspect.stack.

  Not with WRN_TRAX_SLOW_IMPORT=1, nor where the guard refuses it.
  """
  if (os.environ.get(SLOW_IMPORT_ENV, '') not in ('', '0') or
      not allowed('shallow_inspect_stack')):
    yield
    return
  full_stack = inspect.stack
  inspect.stack = _shallow_stack_for(full_stack)
  _record('shallow_inspect_stack')
  try:
    yield
  finally:
    inspect.stack = full_stack


def import_trax():
  """Imports trax (once) with assert_shape's inspect.stack() made shallow."""
  if 'trax' in sys.modules:
    return
  with shallow_inspect_stack():
    import trax  # pylint: disable=unused-import,g-import-not-at-top


# TF and gym quietly, the known warnings filtered, then trax with a cheap
# inspect.stack, all before jax is imported here: whoever imports trax
# through us gets the silencing first. Where TensorFlow, TFDS or TF Text is
# not installed, a stand-in takes its place first (wrn_trax/_tf_standin.py).
_tf_standin.install_if_missing()
_quiet.silence_imports()
import_trax()

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def ensure_trax():
  """Imports TF, gym and trax quietly and installs the patches; once.

  The one entry point of the heavy imports: `import wrn_trax` imports none of
  TensorFlow, trax or jax, and every module of ours that needs them
  (`models`, `data`'s pipelines, `optim`, `train`, `sweep`) calls this first,
  so the silencing (`_quiet.silence_imports`) always runs before trax is
  imported and the process-wide patches (`install`) are in place before trax
  is used. Importing this module already does the imports; calling this
  again is free.
  """
  install()


# ------------------------------------------------- device_put_replicated


def _device_put_replicated(x, devices):
  """x stacked n times along a new leading axis, one copy per device.

  The result is laid out across `devices` by a pmap sharding, as
  `device_put_replicated` used to return, so trax's pmapped train step takes
  it without a copy.
  """
  x = np.asarray(x)
  mesh = jax.sharding.Mesh(np.array(devices), ('batch',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))
  return jax.device_put(
      np.broadcast_to(x[None], (len(devices),) + x.shape), sharding)


# --------------------------------------------------------- tree_unflatten


def _in(tree, candidates):
  """`tree in candidates` without asking a jax Array to compare with ()."""
  if hasattr(tree, 'shape'):
    return any(tree is c for c in candidates)
  return tree in candidates


def _safe_tree_unflatten(flat, tree, copy_from_tree=None):
  """trax.fastmath.numpy.tree_unflatten with an array-safe membership test."""
  if copy_from_tree is not None and _in(tree, copy_from_tree):
    return tree, flat
  if isinstance(tree, (list, tuple)):
    new_tree, rest = [], flat
    for t in tree:
      new_t, rest = _safe_tree_unflatten(rest, t, copy_from_tree)
      new_tree.append(new_t)
    return (tuple(new_tree) if isinstance(tree, tuple) else new_tree), rest
  if isinstance(tree, dict):
    new_tree, rest = {}, flat
    for k in tree:
      new_tree[k], rest = _safe_tree_unflatten(rest, tree[k], copy_from_tree)
    return new_tree, rest
  return flat[0], flat[1:]


# ------------------------------------------------------ process-wide install


def install():
  """Installs the process-wide patches, each once and only where needed.

  `device_put_replicated` where jax lacks it, `tree_unflatten` always
  (trax's own raises on a jax Array on every jax from 0.5.3 to 0.12, and
  ours does the same as trax's on every tree without arrays); each through
  the guard (`allowed`). Nothing here touches a device: no jax backend is
  initialised, so importing a module of ours takes no GPU memory (a probe
  such as `jax.numpy.zeros(())` would start the GPU backend, which
  preallocates 75 % of the GPU). Calling this again changes nothing.
  """
  if ('device_put_replicated' not in _INSTALLED and
      not hasattr(jax, 'device_put_replicated') and
      allowed('device_put_replicated')):
    jax.device_put_replicated = _device_put_replicated
    _record('device_put_replicated')
  if 'tree_unflatten' not in _INSTALLED:
    from trax import fastmath  # pylint: disable=g-import-not-at-top
    # The module file, not the `fastmath.numpy` backend proxy of that name.
    trax_numpy = sys.modules['trax.fastmath.numpy']
    original = trax_numpy.tree_unflatten
    if allowed('tree_unflatten'):
      _ORIGINALS['tree_unflatten'] = original
      trax_numpy.tree_unflatten = _safe_tree_unflatten
      fastmath.tree_unflatten = _safe_tree_unflatten
      _record('tree_unflatten')


# ------------------------------------------------------ slots_on_device


def _pmap_sharding(n_devices):
  devices = jax.local_devices()[:n_devices]
  mesh = jax.sharding.Mesh(np.array(devices), ('batch',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('batch'))


def spread_optimizer_state(loop):
  """Moves a Loop's optimizer slots and params onto the devices it trains on.

  The `slots_on_device` patch. trax's Trainer builds the slots (and optimizer
  params such as the learning rate) and pins them to the host with
  `tl.on_cpu`. On today's jax an array pinned to a device is "committed", and
  a jitted step runs where its committed arguments are: with one GPU the
  whole train step would run on the CPU. With several devices, jax 0.10's
  pmap is a jit with fixed input shardings and refuses the host-pinned arrays
  outright. Placing them once, before the first step, on the default device
  (one device) or with the pmap's sharding (several) is what the old jax did
  on the first call. Placing them again changes nothing.
  """
  if not allowed('slots_on_device'):
    return
  n = loop.n_devices
  if n > 1:
    target = _pmap_sharding(n)
  else:
    target = jax.devices()[0]  # the default backend: the GPU/TPU if any
  put = lambda x: jax.device_put(x, target) if hasattr(x, 'shape') else x
  for trainer in loop._trainer_per_task:  # pylint: disable=protected-access
    trainer._slots = jax.tree_util.tree_map(put, trainer._slots)  # pylint: disable=protected-access
    trainer._opt_params = jax.tree_util.tree_map(put, trainer._opt_params)  # pylint: disable=protected-access
    # The weights and state come out of the first step committed to the
    # device; fresh from init they are not, and jit compiles the step once
    # for each placement. Committing them now saves that second compile.
    model = trainer.accelerated_model_with_loss
    model.weights = jax.tree_util.tree_map(put, model.weights)
    model.state = jax.tree_util.tree_map(put, model.state)
  _record('slots_on_device')


# ------------------------------------------------------ loop_device_count


@contextlib.contextmanager
def loop_device_count(n_devices):
  """trax's Loop, while built, counts `n_devices` local devices.

  The `loop_device_count` patch. trax 1.4.1's `init_host_and_devices`
  refuses a Loop on fewer devices than jax sees ("JAX cannot work yet with
  n_devices != all devices"), though its single-device trainer (jit on the
  default device) needs nothing else: a one-device run on a machine with
  several GPUs is built with trax's device count set to `n_devices`, which
  only that check and the defaults of `n_devices=None` read. Restored
  after the body, also when it raises; nothing changes where `n_devices`
  is at least what jax sees.
  """
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  count = fastmath.local_device_count
  if n_devices >= count() or not allowed('loop_device_count'):
    yield
    return
  fastmath.local_device_count = lambda: n_devices
  _record('loop_device_count')
  try:
    yield
  finally:
    fastmath.local_device_count = count


# ------------------------------------------------- checkpoint_readers


@contextlib.contextmanager
def checkpoint_readers(unpickle_from_file, np_from_file):
  """trax's Loop reads its checkpoints with these two for the body.

  The `checkpoint_readers` patch: `trax.supervised.training.unpickle_from_file`
  and `trax.layers.np_from_file` are replaced for the body and restored
  after it, also when it raises. `runio.restricted_checkpoints` passes its
  restricted unpickler and strict array reader.
  """
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax.supervised import training  # pylint: disable=g-import-not-at-top
  allowed('checkpoint_readers')  # 'warn': reading safely is never wrong
  original = training.unpickle_from_file, tl.np_from_file
  training.unpickle_from_file = unpickle_from_file
  tl.np_from_file = np_from_file
  _record('checkpoint_readers')
  try:
    yield
  finally:
    training.unpickle_from_file, tl.np_from_file = original


# ------------------------------------------------- light_one_step
#
# These change no result; they only take work off the host between device
# steps (see bench/host_overhead.py for the figures).


def _assign(layer, name, value):
  """`layer.<name> = value` for 'weights' or 'state', without the overhead.

  trax's `Layer.weights`/`Layer.state` setters recurse through every
  sublayer, each assignment passing through `Layer.__setattr__`'s typo check
  and rebuilding the combinator's cache-marker list; per training step that
  costs about as much host time as the rest of the Loop together. This walk
  does the same writes directly. Layers whose class overrides the setter,
  and values carrying trax's weight-sharing cache markers, go through trax's
  own setter, so the result is always what trax's setter leaves.
  """
  from trax.layers import base  # pylint: disable=g-import-not-at-top
  prop = getattr(base.Layer, name)
  marker = (base.GET_WEIGHTS_FROM_CACHE if name == 'weights'
            else base.GET_STATE_FROM_CACHE)
  attr = '_' + name
  set_ = object.__setattr__

  def walk(layer, value):
    if getattr(type(layer), name) is not prop:
      setattr(layer, name, value)  # an overriding setter: trax's own path
      return
    if isinstance(value, dict) and value == marker:
      return
    subs = layer._sublayers  # pylint: disable=protected-access
    if not subs:
      set_(layer, attr, value)
      return
    if (not isinstance(value, (list, tuple)) or len(value) != len(subs) or
        any(isinstance(v, dict) and v == marker for v in value)):
      prop.fset(layer, value)  # shared weights or a bad length: trax's path
      return
    set_(layer, attr, [None] * len(subs))
    for sub, v in zip(subs, value):
      walk(sub, v)

  walk(layer, value)


def _one_step_one_device(self, batch, rng, step=0, learning_rate=None):
  """trax `Trainer.one_step` for one device, with `_assign` for the writes.

  The same calls in the same order as trax 1.4.1's `one_step` with
  n_devices == 1 (where `for_n_devices`, `reshape_by_device` and
  `_unreplicate` are identities), less its vlog-only logging.

  A trainer with a `_wrn_loss_scale` (float16, `precision.enable_loss_scaling`)
  passes that state to its update and keeps the new one it returns.
  """
  if learning_rate is not None:
    self._opt_params['learning_rate'] = learning_rate  # pylint: disable=protected-access
  acc = self._accelerated_model_with_loss  # pylint: disable=protected-access
  args = ((acc.weights, self._slots), step, self._opt_params, batch,  # pylint: disable=protected-access
          acc.state, rng)
  loss_scale = getattr(self, '_wrn_loss_scale', None)
  if loss_scale is None:
    (new_weights, new_slots), new_state, stats = self._accelerated_update_fn(  # pylint: disable=protected-access
        *args)
  else:
    (new_weights, new_slots), new_state, stats, self._wrn_loss_scale = (  # pylint: disable=protected-access
        self._accelerated_update_fn(*args, loss_scale))  # pylint: disable=protected-access
  # tl.Accelerate's setters with one device: keep the value, then set the
  # wrapped model (whose layers are the Loop's model).
  object.__setattr__(acc, '_weights', new_weights)
  _assign(acc.sublayer, 'weights', new_weights)
  object.__setattr__(acc, '_state', new_state)
  _assign(acc.sublayer, 'state', new_state)
  self._slots = new_slots  # pylint: disable=protected-access
  self._optimizer.slots = new_slots  # pylint: disable=protected-access
  return stats['loss'], stats


def _has_light_step(trainer):
  step = trainer.__dict__.get('one_step')
  return getattr(step, '__func__', None) is _one_step_one_device


def _give_light_step(trainer, update_fn):
  trainer.one_step = _one_step_one_device.__get__(trainer)
  trainer._accelerated_update_fn = update_fn  # pylint: disable=protected-access


def _donating(update):
  """trax's jitted update, jitted again donating its (weights, slots)."""
  if hasattr(update, '__wrapped__'):
    update = jax.jit(update.__wrapped__, donate_argnums=(0,))
  return update


def install_one_step(trainer, update_fn):
  """Gives one trainer `_one_step_one_device` and the compiled `update_fn`.

  For a caller that cannot do without it (float16's loss-scaled update,
  `precision.enable_loss_scaling`): where the guard refuses
  `light_one_step`, this raises UnverifiedPatchError instead of training
  with a step that was not verified.
  """
  if not allowed('light_one_step'):
    found = versions()
    raise UnverifiedPatchError(
        _unverified_message(_BY_NAME['light_one_step'], found) +
        f' ({_DECISIONS["light_one_step"][1]})')
  _give_light_step(trainer, update_fn)
  _record('light_one_step')


def lighten_steps(loop):
  """Gives each of the Loop's single-device trainers `_one_step_one_device`,
  and a compiled update that donates its (weights, slots) buffers.

  The `light_one_step` patch. Only trax's plain `Trainer` on one device is
  changed (the data-parallel and memory-efficient trainers keep their own
  `one_step`; trax's pmapped update already donates), and a trainer that has
  it already is left as it is. Where the guard refuses it, nothing changes.
  """
  from trax.layers import acceleration  # pylint: disable=g-import-not-at-top
  from trax.optimizers import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  if loop.n_devices != 1 or not allowed('light_one_step'):
    return
  for trainer in loop._trainer_per_task:  # pylint: disable=protected-access
    if (type(trainer) is trainer_lib.Trainer and  # pylint: disable=unidiomatic-typecheck
        trainer._n_devices == 1 and  # pylint: disable=protected-access
        type(trainer._accelerated_model_with_loss) is acceleration.Accelerate and  # pylint: disable=protected-access,unidiomatic-typecheck
        not _has_light_step(trainer)):
      # trax jits the update without donating the (weights, slots) buffers
      # (a TODO in its source). Donating them lets XLA write the new values
      # in place: no second copy of weights and slots on the device, and on
      # the CPU 11% less time per step for WRN-22-1 (bench/README.md).
      # `_one_step_one_device` replaces every reference to the old arrays
      # (the layer tree, the trainer's and the optimizer's slots) with the
      # new ones; run_evals and checkpoints read those.
      install_one_step(trainer, _donating(trainer._accelerated_update_fn))  # pylint: disable=protected-access


# The light step's contract: what trax's own step gives, bitwise on jax >=
# 0.7.2; on jax 0.5.3 XLA compiles the donated update a little differently and
# some elements differ by 1 ulp (~1.5e-8 after 3 steps), hence the tolerance.
LIGHT_STEP_TOLERANCE = 1e-6


def _self_test_light_one_step(steps=3):
  """light_one_step's contract on a tiny model, on the CPU, in about a second.

  Two trax `Trainer`s (one device) of the same model, built the same way: a
  Dense net with BatchNorm (state), Dropout (the rng), a Dense layer used
  twice (trax's shared-weights path of the setters) and a Residual, with
  Momentum slots. One keeps trax's `one_step`, the other gets the light one
  with the donating update; both take `steps` steps on the same batches,
  rngs and learning rates. Passes when the weights, state, slots and losses
  agree within LIGHT_STEP_TOLERANCE (the detail says whether bitwise). No
  Loop is built (it would reseed Python's, NumPy's and TF's global
  generators), nothing is written, and no GPU memory is used.
  """
  import trax  # pylint: disable=g-import-not-at-top
  from trax import layers as tl  # pylint: disable=g-import-not-at-top
  from trax import optimizers  # pylint: disable=g-import-not-at-top
  from trax import shapes  # pylint: disable=g-import-not-at-top
  try:
    device = jax.devices('cpu')[0]
  except RuntimeError:  # JAX_PLATFORMS without cpu: the default device
    device = jax.devices()[0]
  rng = np.random.default_rng(0)
  batches = [(rng.normal(size=(4, 4)).astype(np.float32),
              rng.integers(0, 3, 4).astype(np.int32), np.ones(4, np.float32))
             for _ in range(steps)]

  def trainer():
    dense = tl.Dense(4)
    model = tl.Serial(
        tl.Dense(4), tl.BatchNorm(axis=(0,)), dense, tl.Relu(), dense,
        tl.Residual(tl.Dense(4), tl.Dropout(0.5)), tl.Dense(3),
        tl.LogSoftmax(), tl.CrossEntropyLoss())
    model.init(shapes.signature(batches[0]), rng=jax.random.PRNGKey(0))
    opt = trax.optimizers.Momentum(0.05)
    opt.tree_init(model.weights)
    return optimizers.Trainer(model, opt, n_devices=1)

  put = lambda x: jax.device_put(x, device) if hasattr(x, 'shape') else x
  with jax.default_device(device):
    stock, light = trainer(), trainer()
    _give_light_step(light, _donating(light._accelerated_update_fn))  # pylint: disable=protected-access
    losses = {id(stock): [], id(light): []}
    for t in (stock, light):
      # Committed before step 1 as they are after it: one compile each.
      acc = t.accelerated_model_with_loss
      acc.weights = jax.tree_util.tree_map(put, acc.weights)
      acc.state = jax.tree_util.tree_map(put, acc.state)
      t._slots = jax.tree_util.tree_map(put, t._slots)  # pylint: disable=protected-access
      t._opt_params = jax.tree_util.tree_map(put, t._opt_params)  # pylint: disable=protected-access
      for step, batch in enumerate(batches, 1):
        loss, _ = t.one_step(batch, jax.random.PRNGKey(step), step=step,
                             learning_rate=put(np.float32(0.05 / step)))
        losses[id(t)].append(loss)
    pairs = []
    for a, b in ((stock.model_with_loss.weights, light.model_with_loss.weights),
                 (stock.model_with_loss.state, light.model_with_loss.state),
                 (stock.slots, light.slots),
                 (losses[id(stock)], losses[id(light)])):
      la, ta = jax.tree_util.tree_flatten(a)
      lb, tb = jax.tree_util.tree_flatten(b)
      if ta != tb:
        return False, f'the trees differ in structure: {ta} and {tb}'
      pairs += [(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)]
  worst = max(float(np.max(np.abs(x - y), initial=0.0)) for x, y in pairs)
  bitwise = all(np.array_equal(x, y) for x, y in pairs)
  close = all(np.allclose(x, y, rtol=LIGHT_STEP_TOLERANCE,
                          atol=LIGHT_STEP_TOLERANCE) for x, y in pairs)
  finite = all(np.all(np.isfinite(x)) for x, _ in pairs)
  detail = (f'{steps} steps, {len(pairs)} arrays against trax\'s one_step: '
            + ('bitwise the same' if bitwise else
               f'largest difference {worst:.3g} (tolerance '
               f'{LIGHT_STEP_TOLERANCE:g})'))
  return bool(close and finite), detail


_SELF_TEST_FNS['light_one_step'] = _self_test_light_one_step
