"""Augmentation on the device (`wrn_trax.augment`, recipe field `augment`).

The device path is tested as the host one is (tests/test_data.py): given the
same offsets and flips, the jax crop/flip is exactly `data.crop_flip_example`
per example; the layer's own draws are uniform offsets and fair flips, one per
example; eval mode only normalises, as the host's test batches are; the draws
are seeded by the rng; and the host path is what it was.
"""
import os

import jax
import numpy as np
import pytest
from trax import shapes

from wrn_trax import augment
from wrn_trax import data
from wrn_trax import recipes
from wrn_trax import runio
from wrn_trax import train as train_lib

TINY = 'WRN-10-1'


def _images(rng, n, h=32, w=32, c=3):
  return rng.integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _small(n_train=64, n_test=23):
  rng = np.random.default_rng(0)
  return data.from_arrays(
      _images(rng, n_train), rng.integers(0, 5, n_train),
      _images(rng, n_test), rng.integers(0, 5, n_test), n_classes=5)


def _host_standardize(images, mean, std):
  """The host's `data.Standardize` step on one batch."""
  return next(data.Standardize(mean, std)(iter([(images,)])))[0]


def _layer(mean, std, pad=data.CIFAR_PAD, mode='train', shape=(8, 32, 32, 3)):
  layer = augment.DevicePreprocess(mean, std, pad=pad, mode=mode)
  layer.init(shapes.ShapeDtype(shape, np.uint8))
  return layer


def _run(layer, x, rng):
  return np.asarray(jax.jit(
      lambda x, rng: layer.pure_fn(x, (), (), rng)[0])(x, rng))


# ------------------------------------------------- against the definition


def test_device_crop_flip_equals_per_example_definition():
  rng = np.random.default_rng(6)
  images = _images(rng, 2 * 9 * 9)
  oy, ox = np.meshgrid(np.arange(9), np.arange(9), indexing='ij')
  oy = np.tile(oy.ravel(), 2)
  ox = np.tile(ox.ravel(), 2)
  flips = np.repeat([False, True], 81)  # Every offset, flipped or not.
  out = np.asarray(jax.jit(augment.crop_flip)(images, oy, ox, flips))
  assert out.dtype == np.uint8
  for i in range(len(images)):
    np.testing.assert_array_equal(
        out[i], data.crop_flip_example(images[i], oy[i], ox[i], flips[i]))
  np.testing.assert_array_equal(
      out, data.crop_flip_batch(images, oy, ox, flips))


def test_device_crop_flip_non_square_and_bad_pad():
  rng = np.random.default_rng(7)
  images = _images(rng, 6, h=10, w=7, c=1)
  oy, ox, flips = data.crop_flip_draws(rng, 6, pad=3)
  out = np.asarray(augment.crop_flip(images, oy, ox, flips, pad=3))
  for i in range(6):
    np.testing.assert_array_equal(
        out[i], data.crop_flip_example(images[i], oy[i], ox[i], flips[i], 3))
  with pytest.raises(ValueError, match='pad must be in'):
    augment.crop_flip(images, oy, ox, flips, pad=7)


def test_train_mode_is_crop_flip_of_its_draws_then_standardize():
  ds = _small()
  mean, std = ds.channel_stats
  x = ds.train_images[:16]
  layer = _layer(mean, std, shape=x.shape)
  rng = jax.random.PRNGKey(3)
  out = _run(layer, x, rng)
  assert out.dtype == np.float32 and out.shape == x.shape
  oy, ox, flips = (np.asarray(a) for a in augment.draws(rng, 16))
  expect = np.stack([data.crop_flip_example(x[i], oy[i], ox[i], flips[i])
                     for i in range(16)])
  # The host standardizes through a float64-rounded table: one ulp apart.
  np.testing.assert_allclose(out, _host_standardize(expect, mean, std),
                             rtol=1e-6, atol=1e-6)


# Enough draws that 5 sigma of a proportion near 1/9 is about 0.01.
_N = 4096
_BATCHES = 5


def _recover_draws(out, pad=data.CIFAR_PAD):
  """Offsets and flips of position-coded images (channel 0 = row, 1 = col).

  Output row `pad` reads padded row offset_y + pad, i.e. source row
  offset_y (no reflection there); likewise column `pad` (unflipped) or
  W - 1 - pad (flipped) reads source column offset_x.
  """
  w = out.shape[2]
  flips = out[:, pad, w // 2, 1] > out[:, pad, w // 2 + 1, 1]
  oy = out[:, pad, 0, 0]
  ox = np.where(flips, out[:, pad, w - 1 - pad, 1], out[:, pad, pad, 1])
  return oy.astype(int), ox.astype(int), flips


def test_layer_draws_are_uniform_fair_and_per_example():
  rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing='ij')
  coded = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
  x = np.broadcast_to(coded, (_N, 32, 32, 3)).copy()
  layer = _layer(np.zeros(3), np.ones(3), shape=x.shape)
  fn = jax.jit(lambda x, rng: layer.pure_fn(x, (), (), rng)[0])
  oys, oxs, flipss = [], [], []
  for k in range(_BATCHES):
    out = np.asarray(fn(x, jax.random.PRNGKey(100 + k)))
    oy, ox, flips = _recover_draws(out)
    # What was recovered is what was done: the per-example definition.
    for i in range(0, _N, 97):
      np.testing.assert_array_equal(
          out[i], data.crop_flip_example(x[i], oy[i], ox[i], flips[i]))
    oys.append(oy)
    oxs.append(ox)
    flipss.append(flips)
  oy, ox, flips = map(np.concatenate, (oys, oxs, flipss))
  n = len(oy)
  tol = 5 * np.sqrt((1 / 9) * (8 / 9) / n)
  for offsets in (oy, ox):
    assert set(offsets) == set(range(9))  # [0, 2 * pad], nothing else.
    freq = np.bincount(offsets, minlength=9) / n
    np.testing.assert_allclose(freq, 1 / 9, atol=tol)
  # The two axes are drawn independently: all 81 pairs, evenly.
  joint = np.bincount(9 * oy + ox, minlength=81) / n
  np.testing.assert_allclose(joint, 1 / 81,
                             atol=5 * np.sqrt((1 / 81) * (80 / 81) / n))
  assert abs(flips.mean() - 0.5) < 5 * np.sqrt(0.25 / n)
  # Flips are independent of the offsets.
  for value in range(9):
    sel = flips[ox == value]
    assert abs(sel.mean() - 0.5) < 5 * np.sqrt(0.25 / len(sel))


def test_device_draws_match_the_host_distribution():
  """`augment.draws` and `data.crop_flip_draws`: same support and odds."""
  n = 60_000
  dy, dx, df = (np.asarray(a) for a in augment.draws(jax.random.PRNGKey(0), n))
  hy, hx, hf = data.crop_flip_draws(np.random.default_rng(0), n)
  tol = 2 * 5 * np.sqrt((1 / 9) * (8 / 9) / n)  # of a difference of two
  for d, h in ((dy, hy), (dx, hx)):
    assert d.min() == h.min() == 0 and d.max() == h.max() == 2 * data.CIFAR_PAD
    np.testing.assert_allclose(np.bincount(d, minlength=9) / n,
                               np.bincount(h, minlength=9) / n, atol=tol)
  assert abs(df.mean() - hf.mean()) < 2 * 5 * np.sqrt(0.25 / n)


# ------------------------------------------------ eval, seeds, selection


@pytest.mark.parametrize('mode', ['eval', 'predict'])
def test_eval_mode_only_normalises_as_the_host_test_batches(mode):
  ds = _small()
  mean, std = ds.channel_stats
  layer = _layer(mean, std, mode=mode)
  raw = data.eval_batches(ds, 8, preprocess='raw')
  host = data.eval_batches(ds, 8, preprocess='cifar')
  for (xr, yr, wr), (xh, yh, wh) in zip(raw, host):
    assert xr.dtype == np.uint8
    for rng in (jax.random.PRNGKey(0), jax.random.PRNGKey(1)):
      np.testing.assert_allclose(_run(layer, xr, rng), xh, rtol=1e-6,
                                 atol=1e-6)
    np.testing.assert_array_equal(yr, yh)
    np.testing.assert_array_equal(wr, wh)


def test_no_pad_only_normalises_and_svhn_is_pixels_over_255():
  ds = _small()
  x = ds.train_images[:8]
  mean, std, pad = augment.preprocess_args(ds, 'standardize')
  assert pad == 0
  out = _run(_layer(mean, std, pad=pad), x, jax.random.PRNGKey(0))
  np.testing.assert_allclose(out, _host_standardize(x, *ds.channel_stats),
                             rtol=1e-6, atol=1e-6)
  mean, std, pad = augment.preprocess_args(ds, 'svhn')
  out = _run(_layer(mean, std, pad=pad), x, jax.random.PRNGKey(0))
  host = next(data.train_batches(
      data.from_arrays(x, np.zeros(8, int), x, np.zeros(8, int)), 8,
      preprocess='svhn'))[0]
  np.testing.assert_allclose(np.sort(out.ravel()), np.sort(host.ravel()),
                             rtol=1e-6)
  with pytest.raises(ValueError, match="augment='host'"):
    augment.preprocess_args(ds, 'raw')


def test_same_rng_same_batch_other_rng_other_batch():
  ds = _small()
  layer = _layer(*ds.channel_stats, shape=(64, 32, 32, 3))
  x = ds.train_images
  a = _run(layer, x, jax.random.PRNGKey(5))
  np.testing.assert_array_equal(a, _run(layer, x, jax.random.PRNGKey(5)))
  assert not np.array_equal(a, _run(layer, x, jax.random.PRNGKey(6)))


def test_layer_checks_its_arguments():
  with pytest.raises(ValueError, match='mode'):
    augment.DevicePreprocess([0.0], [1.0], mode='training')
  with pytest.raises(ValueError, match='pad'):
    augment.DevicePreprocess([0.0], [1.0], pad=-1)
  with pytest.raises(ValueError, match='channels'):
    augment.DevicePreprocess([0.0, 1.0], [1.0])
  layer = augment.DevicePreprocess([0.0], [1.0])
  # trax wraps the ValueError in its LayerError, with the message.
  from trax.layers import base  # pylint: disable=g-import-not-at-top
  with pytest.raises(base.LayerError, match='statistics for 1 channels'):
    layer.pure_fn(np.zeros((2, 8, 8, 3), np.uint8), (), (),
                  jax.random.PRNGKey(0))


def test_recipe_field_defaults_to_host_and_is_checked():
  for name in recipes.RECIPES:
    assert recipes.get(name, 'cifar10')['augment'] == 'host'
  assert recipes.get('paper', 'cifar10', augment='device')['augment'] == (
      'device')
  with pytest.raises(ValueError, match='augment must be one of'):
    recipes.get('paper', 'cifar10', augment='gpu')
  with pytest.raises(ValueError, match="got 'raw'"):
    recipes.get('seed', 'cifar10', augment='device')  # preprocess='raw'
  with pytest.raises(ValueError, match='runs on jax only'):
    recipes.get('paper', 'cifar10', augment='device',
                backend='tensorflow-numpy')


def _loop_of(ds, **overrides):
  """The Loop `train` builds for `ds`, without training or writing."""
  import tempfile  # pylint: disable=g-import-not-at-top
  c = train_lib.make_config(TINY, 'cifar10', 'smoke', batch_size=8,
                            **overrides)
  c = train_lib.resolve(c, ds)  # on the CPU: one device, 'auto' is float32
  built = train_lib.build_loop(c, ds, tempfile.mkdtemp(prefix='wrn_aug_'))
  return c, built


def _has_device_preprocess(layer):
  return any(isinstance(sub, augment.DevicePreprocess)
             for sub in train_lib._sublayers(layer))  # pylint: disable=protected-access


def test_host_path_is_unchanged_and_device_path_is_wired():
  ds = _small()
  c, run = _loop_of(ds)  # the smoke recipe on cifar10: 'cifar', 'host'
  loop = run.loop
  assert (c['preprocess'], c['augment']) == ('cifar', 'host')
  assert train_lib.host_preprocess(c) == 'cifar'
  for model in (loop.model, loop.eval_model, run.eval_model, run.bn_model):
    assert not _has_device_preprocess(model)
  # The training stream is data.train_batches of the recipe's preprocessing.
  x = loop.tasks[0].sample_batch[0]  # the first batch
  assert x.dtype == np.float32
  seed = c['seed'] * 1_000_003
  np.testing.assert_array_equal(
      x, next(data.train_batches(ds, 8, preprocess='cifar', seed=seed))[0])

  c, run = _loop_of(ds, augment='device', eval_bn='batch')
  loop = run.loop
  assert train_lib.host_preprocess(c) == 'raw'
  x = loop.tasks[0].sample_batch[0]  # the first batch
  assert x.dtype == np.uint8  # 4x fewer bytes to copy
  np.testing.assert_array_equal(
      x, next(data.train_batches(ds, 8, preprocess='raw', seed=seed))[0])
  modes = {name: [s._mode for s in train_lib._sublayers(m)  # pylint: disable=protected-access
                  if isinstance(s, augment.DevicePreprocess)]
           for name, m in (('train', loop.model), ('loop eval', loop.eval_model),
                           ('eval', run.eval_model), ('bn', run.bn_model))}
  # The in-training eval with eval_bn='batch' never augments.
  assert modes == {'train': ['train'], 'loop eval': ['eval'],
                   'eval': ['eval'], 'bn': ['train']}


@pytest.mark.slow
def test_device_path_trains_and_the_record_says_so(tmp_path):
  """Digits with the 'cifar' preprocessing, on the device: a few steps."""
  workdir = str(tmp_path / 'run')
  summary = train_lib.train(model=TINY, dataset='digits', recipe='smoke',
                            steps=3, workdir=workdir, preprocess='cifar',
                            augment='device', eval_every=3, eval_batches=1,
                            precise_bn_batches=2, verbose=False)
  assert summary['status'] == 'done' and summary['step'] == 3
  assert summary['eval_examples'] == 360
  assert 0.0 <= summary['test_error'] <= 1.0
  config = runio.read_json(os.path.join(workdir, 'config.json'))
  assert (config['augment'], config['preprocess']) == ('device', 'cifar')
  assert '_augmentdevice_' in config['run_name']
  # The checkpoint is the network alone: with the host's preprocessing it
  # gives the run's own running-BN figure (eval normalises the same way).
  ckpt = train_lib.load_checkpoint(workdir)
  again = train_lib.evaluate(ckpt['model'], ckpt['weights'], ckpt['state'],
                             data.load('digits'), 32, config['preprocess'])
  assert again['error'] == pytest.approx(summary['test_error_running_bn'],
                                         abs=1.5 / 360)
  # Same folder, the other path: a clear error naming the field.
  with pytest.raises(ValueError, match="augment: 'device' there, 'host' now"):
    train_lib.check_same_run(config, dict(config, augment='host'), workdir)
