"""Records or compares the versions of a stack's preinstalled packages.

  python .ci/check_stack_unchanged.py save  BEFORE.json
  python .ci/check_stack_unchanged.py check BEFORE.json   # exit 1 if any changed

Run with the stack's own python. The packages are those a Colab/Kaggle image
ships with CUDA builds; `pip install wrn_trax` must leave every one alone.
"""
import importlib.metadata
import json
import sys

PACKAGES = ('jax', 'jaxlib', 'tensorflow', 'tensorflow-text', 'numpy', 'keras')


def versions():
  out = {}
  for name in PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def main(argv):
  mode, path = argv[1], argv[2]
  now = versions()
  if mode == 'save':
    with open(path, 'w') as f:
      json.dump(now, f, indent=1)
    print('stack before install:', ' '.join(f'{k}={v}' for k, v in now.items()))
    return 0
  with open(path) as f:
    before = json.load(f)
  changed = {k: (before.get(k), v) for k, v in now.items() if before.get(k) != v}
  if changed:
    for k, (a, b) in changed.items():
      print(f'stack CHANGED by install: {k} {a} -> {b}')
    return 1
  print('stack unchanged by install:', ' '.join(f'{k}={v}' for k, v in now.items()))
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
