"""The CPU reference for the GPU check's real-data item (run once, committed).

Trains stock-WRN-22-1 with the notebook recipe for 300 steps, seed 0,
float32, on the CIFAR-10 JPEG copy, exactly as bench/device/check.py's
`real_data` item does on the GPU, and writes bench/device/cpu_reference.json
(the test error on the whole test split, the command, the versions).

  nice python bench/device/cpu_reference.py --data /tmp/cifar10-jpeg
"""
import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))

# What both the reference and the GPU item train.
REAL_DATA = dict(model='stock-WRN-22-1', recipe='notebook', steps=300, seed=0,
                 precision='float32')


def train_real_data(folder, workdir):
  import wrn_trax  # pylint: disable=g-import-not-at-top
  kw = dict(REAL_DATA)
  model = kw.pop('model')
  return wrn_trax.train(model, dataset='cifar10', data_dir=folder,
                        workdir=workdir, verbose=False, **kw)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--data', required=True)
  p.add_argument('--out', default=os.path.join(HERE, 'cpu_reference.json'))
  a = p.parse_args()
  t0 = time.perf_counter()
  workdir = tempfile.mkdtemp(prefix='wrn_cpu_ref_')
  s = train_real_data(a.data, workdir)
  with open(os.path.join(workdir, 'config.json')) as f:
    config = json.load(f)
  s = dict(s, versions=config.get('versions'), device=config.get('device'))
  rec = dict(REAL_DATA, test_error=s['test_error'], status=s['status'],
             step=s['step'], eval_examples=s['eval_examples'],
             seconds=time.perf_counter() - t0,
             command='nice python bench/device/cpu_reference.py --data '
             '/tmp/cifar10-jpeg', versions=s.get('versions'),
             device=s.get('device'))
  with open(a.out, 'w') as f:
    json.dump(rec, f, indent=1, sort_keys=True, default=str)
    f.write('\n')
  print(json.dumps(rec, default=str))


if __name__ == '__main__':
  main()
