"""trax 1.4.1 on jax 0.10: the shims in wrn_trax._compat, exercised for real."""
import subprocess

import jax
import numpy as np

from wrn_trax import _compat

_TWO_DEVICES = """
import os, sys
os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
import jax, wrn_trax
assert jax.local_device_count() == 2
x = jax.device_put_replicated(jax.numpy.arange(3.0), jax.local_devices())
assert x.shape == (2, 3) and len(x.sharding.device_set) == 2
s = wrn_trax.train(model='WRN-10-1', dataset='digits', recipe='smoke', steps=4,
                   eval_every=2, checkpoint_every=2, workdir=sys.argv[1],
                   verbose=False)
print(s['status'], s['step'], s['eval_examples'])
"""


def test_loop_trains_data_parallel_on_two_devices(tmp_path, python,
                                                   subprocess_env):
  r = subprocess.run([python, '-c', _TWO_DEVICES, str(tmp_path / 'run')],
                     env=subprocess_env, capture_output=True, text=True,
                     timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert r.stdout.strip().splitlines()[-1] == 'done 4 360'


def test_tree_unflatten_with_arrays_in_the_tree():
  from trax import fastmath  # pylint: disable=g-import-not-at-top
  tree = (jax.numpy.zeros(2), (), [jax.numpy.ones(3), None])
  flat = [np.full(2, 5.0), np.full(3, 7.0)]
  out, rest = fastmath.tree_unflatten(flat, tree, copy_from_tree=[None, ()])
  assert rest == []
  np.testing.assert_array_equal(out[0], flat[0])
  assert out[1] == () and out[2][1] is None
  np.testing.assert_array_equal(out[2][0], flat[1])


def test_device_put_replicated_shim():
  x = _compat._device_put_replicated(np.arange(4.0), jax.local_devices()[:1])  # pylint: disable=protected-access
  assert x.shape == (1, 4)
  np.testing.assert_array_equal(np.asarray(x)[0], np.arange(4.0))
