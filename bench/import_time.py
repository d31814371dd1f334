"""How long importing trax through wrn_trax takes, with and without the shallow
inspect.stack.

trax/layers/assert_shape.py calls `inspect.stack()` ~65 times while trax is
imported; wrn_trax._compat.import_trax makes those calls look at two frames
instead of every frame up to the interpreter. Each round runs, in fresh
subprocesses and interleaved so that both see the same machine load:

  after:  python -c "import wrn_trax.models"
  before: WRN_TRAX_SLOW_IMPORT=1 python -c "import wrn_trax.models"  (stdlib stack)

(`wrn_trax.models` imports TensorFlow, gym and trax with the silencing and the
patches; a bare `import wrn_trax` may import none of them.)

and takes wall and CPU (user+sys) seconds of the child. Prints a table and
merges the result into bench/results/import_time.json under --stack.

  python bench/import_time.py --stack ours --rounds 3
"""
import argparse
import fcntl
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'bench', 'results', 'import_time.json')
CODE = 'import wrn_trax.models'


def _versions():
  out = {'python': platform.python_version()}
  for name in ('jax', 'jaxlib', 'tensorflow', 'numpy', 'trax'):
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def _once(slow):
  env = dict(os.environ, JAX_PLATFORMS='cpu', CUDA_VISIBLE_DEVICES='')
  env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
  env.pop('WRN_TRAX_SLOW_IMPORT', None)
  if slow:
    env['WRN_TRAX_SLOW_IMPORT'] = '1'
  start = time.perf_counter()
  proc = subprocess.Popen([sys.executable, '-c', CODE], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  out, err = proc.communicate()
  wall = time.perf_counter() - start
  if proc.returncode:
    raise SystemExit(f'import failed:\n{err.decode()}')
  return wall, out, err


def _run(slow):
  before = os.times()
  wall, out, err = _once(slow)
  after = os.times()
  cpu = ((after.children_user - before.children_user) +
         (after.children_system - before.children_system))
  return {'wall_s': round(wall, 2), 'cpu_s': round(cpu, 2),
          'silent': out == b'' and err == b''}


def _merge(stack, result):
  data = {}
  if os.path.exists(OUT):
    with open(OUT) as f:
      data = json.load(f)
  data[stack] = result
  with open(OUT + '.tmp', 'w') as f:
    json.dump(data, f, indent=1, sort_keys=True)
  os.replace(OUT + '.tmp', OUT)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--stack', default=None,
                      help='name of this stack in the JSON (default: versions)')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--no-write', action='store_true')
  args = parser.parse_args()
  versions = _versions()
  stack = args.stack or (f"py{versions['python']}-jax{versions['jax']}-"
                         f"tf{versions['tensorflow']}")
  rows = {'after': [], 'before': []}
  for i in range(args.rounds):
    for variant in ('after', 'before'):
      r = _run(slow=(variant == 'before'))
      rows[variant].append(r)
      print(f'round {i + 1} {variant:6s} wall {r["wall_s"]:6.1f} s  '
            f'cpu {r["cpu_s"]:6.1f} s', flush=True)
  summary = {}
  for variant, runs in rows.items():
    summary[variant] = {
        'wall_s_median': round(statistics.median(r['wall_s'] for r in runs), 1),
        'cpu_s_median': round(statistics.median(r['cpu_s'] for r in runs), 1),
        'silent': all(r['silent'] for r in runs), 'runs': runs}
  speedup = summary['before']['cpu_s_median'] / max(
      summary['after']['cpu_s_median'], 1e-9)
  print(f'\nimport wrn_trax on {stack} ({args.rounds} rounds, '
        f'{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})')
  print('| variant | wall s (median) | CPU s (median) | silent |')
  print('|---|---:|---:|---|')
  for variant, label in (('before', 'before: full inspect.stack '
                          '(WRN_TRAX_SLOW_IMPORT=1)'),
                         ('after', 'after: shallow stack for assert_shape')):
    s = summary[variant]
    print(f"| {label} | {s['wall_s_median']} | {s['cpu_s_median']} | "
          f"{'yes' if s['silent'] else 'NO'} |")
  print(f'CPU time {speedup:.1f}x less')
  if args.no_write:
    return
  os.makedirs(os.path.dirname(OUT), exist_ok=True)
  lock_path = os.path.join(tempfile.gettempdir(), 'wrn_trax_import_time.lock')
  with open(lock_path, 'w') as lock:  # several stacks may merge at once
    fcntl.flock(lock, fcntl.LOCK_EX)
    _merge(stack, {'versions': versions, 'rounds': args.rounds,
                 'cpus': os.cpu_count(),
                 'loadavg_1min_at_end': round(os.getloadavg()[0], 1),
                 'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
                 'cpu_speedup': round(speedup, 1), **summary})
  print(f'wrote {os.path.relpath(OUT, ROOT)} [{stack}]')


if __name__ == '__main__':
  main()
