"""The GPU check, as bench/device/run.sh runs it on a bare CUDA jax machine.

Each item runs in its own child process (`--item NAME`), started from an
environment this script leaves as the user has it (no preallocation switch,
no TF hidden beforehand), and is killed at its time budget; the child writes
its JSON part after every measurement, so a killed item keeps what it
measured. The parent writes OUTDIR/gpu_check.json and gpu_check.md after
every item. Every item has a pass condition that can fail (the `judge_*`
functions below; tests/test_device_check.py plants a fault for each).

  device          GPU name, compute capability, memory, driver, jax; hard:
                  no GPU fails (exit 2) unless --allow-cpu
  import_safety   a fresh `import wrn_trax.train` holds no device memory
                  (no jax backend initialised, no memory in nvidia-smi)
  tf_gpu          TensorFlow, where it is the real one, holds no GPU after
                  wrn_trax loaded data (skipped with the stand-in)
  placement       one training's weights, slots and state on the GPU, the
                  step compiled once (bench/gpu_check.py's check)
  real_data       stock-WRN-22-1, notebook recipe, 300 steps on the CIFAR-10
                  JPEG copy: within 3 points of bench/device/cpu_reference.json
  throughput      images/s of our Loop (host / device augmentation) as a
                  ratio to the plain single-jit step, per model and precision
                  (>= 0.9); compile time and memory apart
  members         1 and 4 members on the GPU at once (sweep's memory
                  fractions): total images/s (4 >= 0.9 x 1) and each's memory
  seed_vs_ours    the seed notebooks' tensorflow-numpy setup: not run where
                  TensorFlow is the stand-in (recorded why)
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, '..', '..')
sys.path.insert(0, os.path.join(HERE, '..'))   # bench/ (_common, gpu_check)
sys.path.insert(0, HERE)

# In this order: the cheap items first; throughput, last, takes what is left.
ITEMS = ('device', 'import_safety', 'tf_gpu', 'seed_vs_ours', 'placement',
         'real_data', 'members', 'throughput')
HARD = ('device', 'placement')
MIN_RATIO = 0.9
MAX_ERROR_GAP = 0.03
MIN_MEMBERS_GAIN = 0.9

FULL = dict(
    budget=dict(device=30, import_safety=30, tf_gpu=25, seed_vs_ours=10,
                placement=60, real_data=100, members=80,
                throughput=1000),  # last: what is left
    placement=dict(model='stock-WRN-22-1', batch=64, steps=20),
    real_data=dict(steps=300),
    throughput=dict(
        precisions=('float32', 'bfloat16', 'float16'),
        models=(('stock-WRN-22-1', 64), ('stock-WRN-22-2', 64),
                ('stock-WRN-22-3', 64), ('stock-WRN-22-4', 64),
                ('WRN-16-4', 128), ('WRN-28-10', 128)),
        augments=('host', 'device'), warmup=3, chunk=20, chunks=3),
    members=dict(model='stock-WRN-22-1', batch=64, counts=(1, 4),
                 seconds=6.0),
)
QUICK = dict(
    budget=dict(device=60, import_safety=90, placement=120, real_data=240,
                throughput=240, members=200, tf_gpu=60, seed_vs_ours=10),
    placement=dict(model='stock-WRN-10-1', batch=8, steps=4),
    real_data=dict(steps=4, model='stock-WRN-10-1', batch_size=8,
                   precise_bn_batches=2),
    throughput=dict(precisions=('float32', 'bfloat16'),
                    models=(('WRN-10-1', 8),), augments=('host', 'device'),
                    warmup=1, chunk=2, chunks=2),
    members=dict(model='WRN-10-1', batch=8, counts=(1, 2), seconds=2.0),
)


# ------------------------------------------------------- pass conditions


def judge_device(info, allow_cpu):
  """ok when jax's first device is a GPU (or --allow-cpu)."""
  gpu = info.get('platform') in ('gpu', 'cuda', 'rocm')
  return gpu or bool(allow_cpu), ('a GPU' if gpu else
                                  'no GPU found' + (' (--allow-cpu)'
                                                    if allow_cpu else ''))


def judge_import(backend_initialized, held_mb):
  """ok when the import started no jax backend and holds no GPU memory."""
  problems = []
  if backend_initialized:
    problems.append('a jax backend was initialised at import (on a GPU it '
                    'preallocates 75% of the memory)')
  if held_mb:
    problems.append(f'the importing process holds {held_mb:.0f} MiB of GPU '
                    'memory')
  return not problems, '; '.join(problems) or 'nothing on a device at import'


def judge_tf(standin, visible_gpus, tf_mb):
  """None (not applicable) with the stand-in; ok when TF holds no GPU."""
  if standin:
    return None, 'TensorFlow is the stand-in here: it cannot hold a GPU'
  if visible_gpus and tf_mb:
    return False, f'TensorFlow sees {visible_gpus} GPU(s), holds {tf_mb} MiB'
  return True, f'TensorFlow sees {visible_gpus or 0} GPU(s), holds no memory'


def judge_ratio(ours_ips, limit_ips, min_ratio=MIN_RATIO):
  """(ok, ratio): our Loop's images/s over the plain jit step's."""
  ratio = ours_ips / limit_ips
  return ratio >= min_ratio, ratio


def judge_real_data(error, reference, max_gap=MAX_ERROR_GAP):
  """ok when the test error is within max_gap of the CPU reference."""
  if error is None or reference is None:
    return False, 'no error to compare'
  gap = abs(error - reference)
  return gap <= max_gap, (f'{100 * error:.2f}% vs CPU {100 * reference:.2f}%'
                          f' (gap {100 * gap:.2f} points, max '
                          f'{100 * max_gap:.0f})')


def judge_members(results, min_gain=MIN_MEMBERS_GAIN):
  """results: {n: [per-member dict(images_per_s, peak_device_mb) or error]}.

  ok when every member of every count ran, and n members together train at
  least min_gain x the images/s of one member alone.
  """
  failed = [f'{n} members: {r["error"][:200]}' for n, rs in results.items()
            for r in rs if 'error' in r]
  if failed:
    return False, '; '.join(failed)
  totals = {n: sum(r['images_per_s'] for r in rs) for n, rs in results.items()}
  one, most = totals[min(totals)], totals[max(totals)]
  ok = most >= min_gain * one
  return ok, (f'{min(totals)} member: {one:,.0f} img/s; {max(totals)} '
              f'members: {most:,.0f} img/s in all ({most / one:.2f}x)')


# ------------------------------------------------------------- the items


def _nvidia_smi(query, pid=None):
  try:
    out = subprocess.run(['nvidia-smi', f'--query-{query}', '--format=csv,'
                          'noheader,nounits'], capture_output=True, text=True,
                         timeout=20, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return None
  rows = [[c.strip() for c in ln.split(',')] for ln in out.splitlines() if ln]
  if pid is not None:
    return sum(float(r[1]) for r in rows if r and r[0] == str(pid))
  return rows


def item_device(rec, cfg, args, write):
  del cfg, write
  import jax  # pylint: disable=g-import-not-at-top
  d = jax.devices()[0]
  stats = {}
  try:
    stats = d.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except
    pass
  smi = _nvidia_smi('gpu=name,driver_version,memory.total,compute_cap')
  rec.update(platform=d.platform, device_kind=getattr(d, 'device_kind', ''),
             count=jax.device_count(), jax=jax.__version__,
             compute_capability=getattr(d, 'compute_capability', None),
             memory_limit_mb=(stats.get('bytes_limit') or 0) / 2**20 or None,
             nvidia_smi=smi)
  rec['ok'], why = judge_device(rec, args.allow_cpu)
  rec['summary'] = (f'{why}: {rec["count"]} x {rec["device_kind"]} '
                    f'({d.platform}), cc {rec["compute_capability"]}, '
                    f'jax {jax.__version__}'
                    + (f', driver {smi[0][1]}' if smi else ''))


def item_import_safety(rec, cfg, args, write):
  del cfg, args, write
  import wrn_trax.train  # pylint: disable=g-import-not-at-top,unused-import
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  rec['backend_initialized'] = bool(xla_bridge.backends_are_initialized())
  rec['held_mb'] = _nvidia_smi('compute-apps=pid,used_memory', os.getpid())
  rec['ok'], rec['summary'] = judge_import(rec['backend_initialized'],
                                           rec['held_mb'])


def item_tf_gpu(rec, cfg, args, write):
  del cfg, args, write
  from wrn_trax import _tf_standin  # pylint: disable=g-import-not-at-top
  from wrn_trax import data  # pylint: disable=g-import-not-at-top
  import wrn_trax.train  # pylint: disable=g-import-not-at-top,unused-import
  data.load('digits')
  standin = _tf_standin.active()['tensorflow'] != 'real'
  visible = tf_mb = None
  if not standin:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    visible = len(tf.config.get_visible_devices('GPU'))
    if visible:
      tf_mb = tf.config.experimental.get_memory_info('GPU:0')['current'] / 2**20
  rec.update(standin=standin, tf_visible_gpus=visible, tf_mb=tf_mb)
  ok, rec['summary'] = judge_tf(standin, visible, tf_mb)
  if ok is None:
    rec['skipped'] = rec['summary']
  else:
    rec['ok'] = ok


def item_placement(rec, cfg, args, write):
  del args, write
  import gpu_check  # pylint: disable=g-import-not-at-top
  gpu_check.check_placement(rec, cfg, dict(compiles=gpu_check.Compiles()))


def _reference():
  path = os.path.join(HERE, 'cpu_reference.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def item_real_data(rec, cfg, args, write):
  del write
  import cpu_reference  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  folder = args.data
  for _ in range(120):   # run.sh unpacks the copy in the background
    if folder and os.path.exists(os.path.join(folder, '.unpacked')):
      break
    if folder and not os.path.exists(os.path.join(folder, '.unpacking')):
      break
    time.sleep(1)
  if not folder or not os.path.isdir(os.path.join(folder, 'train')):
    rec['skipped'] = f'no CIFAR-10 image folders at {folder!r}'
    return
  ref = _reference()
  kw = dict(cpu_reference.REAL_DATA, **cfg)  # --quick: smaller, fewer
  import wrn_trax  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  model = kw.pop('model')
  s = wrn_trax.train(model, dataset='cifar10', data_dir=folder,
                     workdir=tempfile.mkdtemp(prefix='wrn_check_real_'),
                     verbose=False, **kw)
  rec.update(model=model, run=kw, test_error=s['test_error'],
             status_of_run=s['status'], seconds=time.perf_counter() - t0,
             images_per_s=s.get('images_per_s'), reference=ref)
  same = ref is not None and all(ref.get(k) == v for k, v in
                                 cpu_reference.REAL_DATA.items()) and all(
                                     cpu_reference.REAL_DATA.get(k) == v
                                     for k, v in cfg.items())
  if not same:
    rec['skipped'] = (f'{model}, {kw}: test error {s["test_error"]}; the '
                      'CPU reference is of another run (or missing)')
    return
  rec['ok'], rec['summary'] = judge_real_data(s['test_error'],
                                              ref['test_error'])


def _rate(runner, cfg, batch):
  t0 = time.perf_counter()
  runner.chunk(1)
  for _ in range(cfg['warmup']):
    runner.chunk(1)
  compile_s = time.perf_counter() - t0
  times = [runner.chunk(cfg['chunk']) / cfg['chunk']
           for _ in range(cfg['chunks'])]
  return batch / float(np.median(times)), compile_s


def item_throughput(rec, cfg, args, write):
  del args
  import gc  # pylint: disable=g-import-not-at-top
  import _common  # pylint: disable=g-import-not-at-top
  ds = _common.synthetic_dataset(n_train=2048, n_test=256)
  rec['rows'] = rows = []
  rec['ok'] = True
  for precision in cfg['precisions']:
    for model, batch in cfg['models']:
      # The paper's crop/flip/standardise for every model, so that 'host'
      # and 'device' augmentation do the same work.
      over = dict(precision=precision, recipe='paper', preprocess='cifar')
      try:
        limit = _common.LimitStep(model, ds, batch, **over)
        limit_ips, limit_compile = _rate(limit, cfg, batch)
        del limit
      except Exception as e:  # pylint: disable=broad-except
        rows.append(dict(model=model, precision=precision,
                         error=f'limit: {type(e).__name__}: {e}'[:300]))
        rec['ok'] = False
        rec['summary'] = rows[-1]['error']
        write()
        continue
      for augment in cfg['augments']:
        row = dict(model=model, batch=batch, precision=precision,
                   augment=augment, limit_images_per_s=limit_ips,
                   limit_compile_s=limit_compile)
        rows.append(row)
        try:
          ours = _common.OurPath(model, ds, batch, augment=augment, **over)
          ips, compile_s = _rate(ours, cfg, batch)
          ok, ratio = judge_ratio(ips, limit_ips)
          row.update(images_per_s=ips, compile_s=compile_s, ratio=ratio,
                     ok=ok, peak_device_mb=_common.peak_device_mb())
          rec['ok'] = rec['ok'] and ok
          del ours
        except Exception as e:  # pylint: disable=broad-except
          row['error'] = f'{type(e).__name__}: {e}'[:300]
          rec['ok'] = False
        gc.collect()
        measured = [r for r in rows if 'ratio' in r]
        rec['summary'] = (f'{len(measured)} measured, worst ratio '
                          f'{min(r["ratio"] for r in measured):.2f}'
                          if measured else 'nothing measured')
        write()


def item_members(rec, cfg, args, write):
  from wrn_trax import sweep  # pylint: disable=g-import-not-at-top
  rec['results'] = results = {}
  for n in cfg['counts']:
    env = dict(os.environ, **sweep.member_env_vars(1.0 / n))
    procs = [subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, __file__, '--member-worker', cfg['model'],
         str(cfg['batch']), str(cfg['seconds'])] + (['--allow-cpu']
                                                   if args.allow_cpu else []),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    out = []
    for p in procs:
      o, e = p.communicate()
      lines = [ln for ln in o.splitlines() if ln.startswith('MEMBER ')]
      out.append(json.loads(lines[-1][7:]) if lines else
                 dict(error=(e.strip() or o.strip())[-300:]))
    results[n] = out
    rec['env'] = {n: sweep.member_env_vars(1.0 / n) for n in cfg['counts']}
    rec['summary'] = '; '.join(
        f'{k} member(s): ' + ', '.join(
            f'{r["images_per_s"]:,.0f} img/s, {r["peak_device_mb"]} MiB'
            if 'error' not in r else 'error' for r in rs)
        for k, rs in results.items())
    write()
  rec['ok'], rec['summary'] = judge_members(results)


def member_worker(model, batch, seconds):
  import _common  # pylint: disable=g-import-not-at-top
  ds = _common.synthetic_dataset(n_train=1024, n_test=128)
  ours = _common.OurPath(model, ds, batch)
  ours.chunk(1)
  ours.chunk(1)
  n, t0 = 0, time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    ours.chunk(5)
    n += 5
  print('MEMBER ' + json.dumps(dict(
      images_per_s=n * batch / (time.perf_counter() - t0),
      peak_device_mb=_common.peak_device_mb())), flush=True)


def item_seed_vs_ours(rec, cfg, args, write):
  del cfg, args, write
  from wrn_trax import _tf_standin  # pylint: disable=g-import-not-at-top
  if _tf_standin.active()['tensorflow'] != 'real':
    rec['skipped'] = ('not run: the seed notebooks train on trax\'s '
                      'tensorflow-numpy backend, which needs the real '
                      'TensorFlow (absent here; 1.9 GB, more than travels)')
    return
  rec['skipped'] = ('not run here: bench/seed_speed.py measures it where '
                    'TensorFlow is installed')


ITEM_FNS = dict(device=item_device, import_safety=item_import_safety,
                tf_gpu=item_tf_gpu, placement=item_placement,
                real_data=item_real_data, throughput=item_throughput,
                members=item_members, seed_vs_ours=item_seed_vs_ours)


# ------------------------------------------------------------ the parent


def _environment():
  import importlib.metadata as md  # pylint: disable=g-import-not-at-top
  out = dict(python=platform.python_version())
  for pkg in ('wrn_trax', 'trax', 'jax', 'jaxlib', 'jax-cuda13-plugin',
              'jax-cuda12-plugin', 'numpy', 'tensorflow', 'gin-config',
              'tensorboard', 'gym'):
    try:
      out[pkg] = md.version(pkg)
    except md.PackageNotFoundError:
      out[pkg] = None
  return out


def _commit():
  for path in (os.path.join(ROOT, '.whl', 'COMMIT'),):
    if os.path.exists(path):
      with open(path) as f:
        return f.read().strip()
  try:
    return subprocess.run(['git', '-C', ROOT, 'rev-parse', 'HEAD'],
                          capture_output=True, text=True, check=True
                          ).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def status_of(rec):
  if 'skipped' in rec:
    return 'skipped'
  return 'ok' if rec.get('ok') else 'failed'


def markdown(record):
  lines = [f'# GPU check ({record.get("device_summary", "?")})', '',
           f'commit {record["commit"]}, TensorFlow: {record["tensorflow"]}, '
           f'total {record.get("total_s", 0):.0f} s', '',
           '| item | status | result | s / budget |', '|---|---|---|---|']
  for name, r in record['items'].items():
    lines.append(f'| {name} | {r["status"]} | '
                 f'{str(r.get("summary", "")).replace("|", "/")[:300]} | '
                 f'{r.get("seconds", 0):.0f} / {r.get("budget_s", 0):.0f} |')
  rows = record['items'].get('throughput', {}).get('rows', [])
  if rows:
    lines += ['', '| model | batch | precision | augment | ours img/s | '
              'limit img/s | ratio | compile s | peak MiB |',
              '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
      lines.append('| {} | {} | {} | {} | {} | {} | {} | {} | {} |'.format(
          r.get('model'), r.get('batch'), r.get('precision'),
          r.get('augment'), _f(r.get('images_per_s')),
          _f(r.get('limit_images_per_s')), _f(r.get('ratio'), 2),
          _f(r.get('compile_s'), 1), _f(r.get('peak_device_mb')))
                   + (f' {r["error"][:100]}' if 'error' in r else ''))
  return '\n'.join(lines) + '\n'


def _f(x, digits=0):
  return '' if x is None else f'{x:,.{digits}f}'


def run_child(name, budget, args, part):
  cmd = [sys.executable, __file__, '--item', name, '--part', part]
  cmd += ['--quick'] if args.quick else []
  cmd += ['--allow-cpu'] if args.allow_cpu else []
  cmd += ['--data', args.data] if args.data else []
  t0 = time.perf_counter()
  # A session of its own, so that a kill at the budget takes the item's own
  # children (the members' workers) with it.
  proc = subprocess.Popen(  # pylint: disable=consider-using-with
      cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      start_new_session=True)
  try:
    out, err = proc.communicate(timeout=budget)
    tail, timed_out = (err or out)[-1500:], False
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    out, err = proc.communicate()
    tail, timed_out = (err or '')[-1500:], True
  rec = {}
  if os.path.exists(part):
    with open(part) as f:
      rec = json.load(f)
  rec['seconds'], rec['budget_s'] = time.perf_counter() - t0, budget
  if timed_out:
    rec['status'] = 'timeout'
    rec['summary'] = f'over its {budget:.0f} s budget; so far: ' + str(
        rec.get('summary', 'nothing'))
  elif 'status' not in rec:
    rec['status'] = 'failed'
    rec['summary'] = 'the item crashed: ' + tail.strip().splitlines()[-1] \
        if tail.strip() else 'the item crashed'
    rec['log_tail'] = tail
  return rec


def parent(args):
  t_start = time.perf_counter()
  cfg = QUICK if args.quick else FULL
  os.makedirs(args.outdir, exist_ok=True)
  from wrn_trax import _tf_standin  # pylint: disable=g-import-not-at-top
  _tf_standin.install_if_missing()
  record = dict(args=vars(args), commit=_commit(), environment=_environment(),
                tensorflow=_tf_standin.active()['tensorflow'], items={},
                env={k: os.environ.get(k) for k in (
                    'XLA_PYTHON_CLIENT_PREALLOCATE',
                    'XLA_PYTHON_CLIENT_MEM_FRACTION', 'CUDA_VISIBLE_DEVICES',
                    'JAX_PLATFORMS', 'XLA_FLAGS')})

  def write():
    record['total_s'] = time.perf_counter() - t_start
    with open(os.path.join(args.outdir, 'gpu_check.json'), 'w') as f:
      json.dump(record, f, indent=1, sort_keys=True, default=str)
    with open(os.path.join(args.outdir, 'gpu_check.md'), 'w') as f:
      f.write(markdown(record))

  names = [n for n in ITEMS if not args.only or n in args.only or
           n == 'device']
  for name in names:
    left = args.max_seconds - (time.perf_counter() - t_start)
    budget = min(cfg['budget'][name], left)
    if budget < 5:
      record['items'][name] = dict(status='skipped', summary='out of time')
      write()
      continue
    print(f'[{time.perf_counter() - t_start:4.0f} s] {name} (budget '
          f'{budget:.0f} s)', flush=True)
    part = os.path.join(args.outdir, f'part-{name}.json')
    rec = record['items'][name] = run_child(name, budget, args, part)
    print(f'    {rec["status"]}: {str(rec.get("summary"))[:300]}', flush=True)
    if name == 'device':
      record['device_summary'] = rec.get('summary')
    write()
    if name == 'device' and rec['status'] != 'ok':
      print('no GPU found (or the device item failed): stopping. '
            '--allow-cpu checks the CPU.', file=sys.stderr)
      record['hard_failures'] = ['device']
      write()
      return 2
  record['hard_failures'] = [n for n in HARD if n in record['items'] and
                             record['items'][n]['status'] != 'ok']
  write()
  print(markdown(record))
  return 1 if record['hard_failures'] else 0


def child(args):
  cfg = (QUICK if args.quick else FULL).get(args.item)
  rec = {}

  def write():
    rec.setdefault('summary', '')
    with open(args.part + '.tmp', 'w') as f:
      json.dump(rec, f, default=str)
    os.replace(args.part + '.tmp', args.part)

  try:
    ITEM_FNS[args.item](rec, cfg, args, write)
    rec['status'] = status_of(rec)
    if rec['status'] == 'skipped':
      rec['summary'] = rec['skipped']
  except Exception as e:  # pylint: disable=broad-except
    import traceback  # pylint: disable=g-import-not-at-top
    rec.update(status='failed', summary=f'{type(e).__name__}: {e}'[:500],
               traceback=traceback.format_exc()[-3000:])
  write()


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('outdir', nargs='?', default='gpu_check_out')
  p.add_argument('--data', default=None, help='CIFAR-10 image folders')
  p.add_argument('--quick', action='store_true')
  p.add_argument('--allow-cpu', action='store_true')
  p.add_argument('--only', nargs='+', choices=ITEMS)
  p.add_argument('--max-seconds', type=float, default=380)
  p.add_argument('--item', choices=ITEMS)
  p.add_argument('--part')
  p.add_argument('--member-worker', nargs=3)
  args = p.parse_args(argv)
  # Where TensorFlow is missing, its stand-in before anything imports trax
  # (bench/_common imports trax directly; wrn_trax's modules do this too).
  from wrn_trax import _tf_standin  # pylint: disable=g-import-not-at-top
  _tf_standin.install_if_missing()
  if args.member_worker:
    model, batch, seconds = args.member_worker
    return member_worker(model, int(batch), float(seconds))
  if args.item:
    return child(args)
  return parent(args)


if __name__ == '__main__':
  sys.exit(main())
