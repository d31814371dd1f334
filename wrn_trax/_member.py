"""One member of a local sweep, in its own process: `python -m wrn_trax._member SPEC`.

`sweep._launch_member` writes SPEC (a JSON object: workdir, config, result)
and starts this with the environment of the member's slot (its
CUDA_VISIBLE_DEVICES, and a memory cap where GPUs are shared). The member
trains through `sweep._run_member`, as an in-process member would, and
writes `result`: its summary and what it saw (environment, pid, start and
end times), which the driver reads back.
"""
import os
import sys
import time

# What the member process was started with, recorded in its result.
SEEN = ('CUDA_VISIBLE_DEVICES', 'XLA_PYTHON_CLIENT_MEM_FRACTION',
        'XLA_PYTHON_CLIENT_PREALLOCATE', 'JAX_COMPILATION_CACHE_DIR')


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 1:
    print('usage: python -m wrn_trax._member SPEC.json (written by '
          'wrn_trax.sweep)', file=sys.stderr)
    return 2
  started = time.time()
  env = {k: os.environ.get(k) for k in SEEN}
  from wrn_trax import runio  # pylint: disable=g-import-not-at-top
  spec = runio.read_json(argv[0])
  from wrn_trax import sweep  # pylint: disable=g-import-not-at-top
  summary = sweep._run_member(  # pylint: disable=protected-access
      dict(workdir=spec['workdir'], config=spec['config']), True)
  runio.write_json(spec['result'], dict(
      summary=summary,
      member=dict(env=env, pid=os.getpid(), started=started,
                  ended=time.time())))
  return 0


if __name__ == '__main__':
  sys.exit(main())
