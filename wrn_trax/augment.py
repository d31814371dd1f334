"""CIFAR crop/flip on the host (numpy) and inside the compiled step (jax).

The host functions (`crop_flip_draws`, `crop_flip_example`,
`crop_flip_batch`, also importable from `wrn_trax.data`) define the
augmentation and feed `data.RandomCropFlip`; their device twins (`draws`,
`crop_flip`) and `DevicePreprocess` do the same inside the compiled step
(recipe field ``augment='device'``).

With ``augment='host'`` (the default) the input pipeline of `wrn_trax.data`
crops, flips and standardises every batch in numpy and hands float32 batches
to the compiled step. With ``augment='device'`` the host hands over the uint8
batches as they are sliced (4x fewer bytes to copy, no per-batch numpy work
beyond the gather), and `DevicePreprocess`, the first layer of the model, does
the same work inside the compiled step:

* in 'train' mode with ``pad > 0`` (the 'cifar' preprocessing): a crop offset
  per example, uniform in [0, 2 * pad] on each axis, and a left-right flip
  with probability 0.5, drawn from the layer's rng (the step's rng, as
  Dropout draws its mask); the crop reads the image reflect-padded by ``pad``
  pixels (np.pad's 'reflect', the edge pixel not repeated), exactly as
  `crop_flip_example` defines it;
* in every mode: per-channel ``(x - mean) / std`` in float32 with the
  training split's statistics (`Dataset.channel_stats`), the host's
  `data.Standardize` (whose lookup table rounds once from float64, so values
  may differ from the device's float32 arithmetic by one float32 ulp).

Eval and predict mode (the test evaluation, the in-training eval) only
normalise, as the host path never augments test batches.
"""
import functools

import numpy as np

from wrn_trax import _compat

_compat.ensure_trax()  # TF and gym quietly, then trax, patched: before trax

# pylint: disable=g-import-not-at-top,wrong-import-position,wrong-import-order
import jax
import jax.numpy as jnp
from trax import layers as tl

from wrn_trax import data as data_lib
# pylint: enable=g-import-not-at-top,wrong-import-position,wrong-import-order


# ------------------------------------------------- on the host, in numpy
#
# The pipelines' `data.RandomCropFlip` uses these; `wrn_trax.data` re-exports
# them under the same names.


def crop_flip_draws(rng, n, pad=data_lib.CIFAR_PAD):
  """Draws per-example crop offsets and flips for `crop_flip_batch`.

  Args:
    rng: a numpy Generator.
    n: number of examples.
    pad: reflection padding; offsets lie in [0, 2 * pad].

  Returns:
    (offsets_y, offsets_x, flips): int arrays (n,) and a bool array (n,).
  """
  offsets = rng.integers(0, 2 * pad + 1, size=(n, 2))
  flips = rng.random(n) < 0.5
  return offsets[:, 0], offsets[:, 1], flips


def crop_flip_example(image, offset_y, offset_x, flip, pad=data_lib.CIFAR_PAD):
  """The per-example definition: reflect-pad, crop at an offset, maybe flip.

  Args:
    image: H x W x C array.
    offset_y: top row of the crop in the padded image, in [0, 2 * pad].
    offset_x: left column of the crop in the padded image, in [0, 2 * pad].
    flip: flip left-right after cropping.
    pad: pixels of reflection padding on each side.

  Returns:
    H x W x C array, same dtype.
  """
  h, w = image.shape[:2]
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode='reflect')
  crop = padded[offset_y:offset_y + h, offset_x:offset_x + w]
  return np.ascontiguousarray(crop[:, ::-1] if flip else crop)


@functools.lru_cache(maxsize=16)
def _host_reflect_index(size, pad):
  """Source index of each position of a reflect-padded axis (np.pad reflect)."""
  return np.concatenate([np.arange(pad, 0, -1), np.arange(size),
                         np.arange(size - 2, size - 2 - pad, -1)])


def crop_flip_batch(images, offsets_y, offsets_x, flips, pad=data_lib.CIFAR_PAD):
  """`crop_flip_example` on a whole batch, in one gather and without padding.

  The padded image is never built: each output pixel's source pixel is found
  through the reflection index, and all pixels (C bytes each) are fetched
  with one `np.take`.

  Args:
    images: N x H x W x C array.
    offsets_y: int array (N,), in [0, 2 * pad].
    offsets_x: int array (N,), in [0, 2 * pad].
    flips: bool array (N,).
    pad: pixels of reflection padding; must be < H and < W.

  Returns:
    N x H x W x C array, same dtype.
  """
  n, h, w, c = images.shape
  if not 0 <= pad < min(h, w):
    raise ValueError(f'pad must be in [0, {min(h, w)}) for {h}x{w} images, '
                     f'got {pad}.')
  rows = _host_reflect_index(h, pad)[offsets_y[:, None] + np.arange(h)]
  cols = offsets_x[:, None] + np.arange(w)
  cols = np.where(flips[:, None], cols[:, ::-1], cols)
  cols = _host_reflect_index(w, pad)[cols]
  pixel = (np.arange(n)[:, None, None] * (h * w) + rows[:, :, None] * w +
           cols[:, None, :])
  pixels = np.ascontiguousarray(images).reshape(n * h * w, c)
  return np.take(pixels, pixel.reshape(-1), axis=0).reshape(n, h, w, c)

# ------------------------------------------------ on the device, in jax


def draws(rng, n, pad=data_lib.CIFAR_PAD):
  """Per-example crop offsets and flips, drawn on the device.

  The device counterpart of `crop_flip_draws`: the same distribution
  (offsets uniform in [0, 2 * pad], flips with probability 0.5), another
  random stream (jax's, from ``rng``).

  Args:
    rng: a jax PRNG key.
    n: number of examples.
    pad: reflection padding; offsets lie in [0, 2 * pad].

  Returns:
    (offsets_y, offsets_x, flips): int32 arrays (n,) and a bool array (n,).
  """
  offsets_rng, flips_rng = jax.random.split(rng)
  offsets = jax.random.randint(offsets_rng, (n, 2), 0, 2 * pad + 1,
                               dtype=jnp.int32)
  flips = jax.random.bernoulli(flips_rng, 0.5, (n,))
  return offsets[:, 0], offsets[:, 1], flips


def crop_flip(images, offsets_y, offsets_x, flips, pad=data_lib.CIFAR_PAD):
  """`crop_flip_batch` in jax: one gather, the padded image never built.

  Args:
    images: N x H x W x C array (any dtype; uint8 from the host).
    offsets_y: int array (N,), in [0, 2 * pad].
    offsets_x: int array (N,), in [0, 2 * pad].
    flips: bool array (N,).
    pad: pixels of reflection padding; must be < H and < W.

  Returns:
    N x H x W x C array, same dtype: per example
    ``crop_flip_example(images[i], offsets_y[i], offsets_x[i], flips[i],
    pad)``.
  """
  n, h, w, _ = images.shape
  if not 0 <= pad < min(h, w):
    raise ValueError(f'pad must be in [0, {min(h, w)}) for {h}x{w} images, '
                     f'got {pad}.')
  # The reflection indices are constants of the shapes (numpy, host side).
  reflect_rows = jnp.asarray(_reflect_index(h, pad))
  reflect_cols = jnp.asarray(_reflect_index(w, pad))
  rows = reflect_rows[offsets_y[:, None] + jnp.arange(h)]  # N x H
  cols = offsets_x[:, None] + jnp.arange(w)
  cols = jnp.where(flips[:, None], cols[:, ::-1], cols)
  cols = reflect_cols[cols]  # N x W
  return images[jnp.arange(n)[:, None, None], rows[:, :, None],
                cols[:, None, :]]


@functools.lru_cache(maxsize=16)
def _reflect_index(size, pad):
  # The host's index (np.pad 'reflect'), as int32 for the device.
  return _host_reflect_index(size, pad).astype(np.int32)


def normalize(images, mean, std):
  """float32 ``(x - mean) / std`` per channel (the last axis)."""
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  return (images.astype(jnp.float32) - mean) / std


class DevicePreprocess(tl.Layer):
  """Crop, flip (train mode) and per-channel normalisation, on the device.

  Takes uint8 N x H x W x C batches, returns float32 ones. In 'train' mode
  with ``pad > 0`` it draws a crop offset and a flip per example from its
  rng (`draws`) and applies them (`crop_flip`) before normalising; in 'eval'
  and 'predict' mode, or with ``pad == 0``, it only normalises. It has no
  weights and no state, so a model with it in front checkpoints exactly
  the same arrays as the model alone.
  """

  def __init__(self, mean, std, pad=data_lib.CIFAR_PAD, mode='train'):
    """Creates the layer.

    Args:
      mean: per-channel means (C,) subtracted from the pixels.
      std: per-channel standard deviations (C,) the pixels are divided by.
      pad: reflection padding of the random crop; 0 = no crop and no flip.
      mode: 'train' (augment and normalise), 'eval' or 'predict' (normalise).
    """
    super().__init__(name='DevicePreprocess')
    if mode not in ('train', 'eval', 'predict'):
      raise ValueError(f"mode must be 'train', 'eval' or 'predict', got "
                       f'{mode!r}')
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or (
        pad < 0):
      raise ValueError(f'pad must be an int >= 0, got {pad!r}')
    self._mean = tuple(float(m) for m in np.asarray(mean).ravel())
    self._std = tuple(float(s) for s in np.asarray(std).ravel())
    if len(self._mean) != len(self._std):
      raise ValueError(f'mean has {len(self._mean)} channels but std has '
                       f'{len(self._std)}')
    self._pad = int(pad)
    self._mode = mode

  def forward(self, x):
    """Augments (train mode) and normalises a batch.

    Args:
      x: N x H x W x C images, uint8 (or any dtype whose values are pixels).

    Returns:
      float32 N x H x W x C.
    """
    if x.shape[-1] != len(self._mean):
      raise ValueError(f'DevicePreprocess has statistics for '
                       f'{len(self._mean)} channels, got images of shape '
                       f'{tuple(x.shape)}')
    if self._mode == 'train' and self._pad:
      oy, ox, flips = draws(self.rng, x.shape[0], self._pad)
      x = crop_flip(x, oy, ox, flips, self._pad)
    return normalize(x, np.asarray(self._mean, np.float32),
                     np.asarray(self._std, np.float32))


def host_preprocess(config):
  """The preprocessing the host pipeline applies for a run's config.

  The recipe's `preprocess`, or 'raw' (uint8 batches as sliced) with
  ``augment='device'``, where the model's first layer
  (`augment.DevicePreprocess`) crops, flips and normalises in the compiled
  step. Train, in-training eval, precise-BN and test batches all go through
  this, so both paths normalise every split the same way.
  """
  if config.get('augment', 'host') == 'device':
    return 'raw'
  return config['preprocess']


def preprocess_args(ds, preprocess):
  """(mean, std, pad) of `DevicePreprocess` for a recipe's preprocessing.

  Args:
    ds: the `Dataset` (its training split's channel statistics).
    preprocess: 'cifar' (standardise + crop + flip), 'standardize' or 'svhn'
      (pixels / 255); 'raw' has nothing to do on the device.

  Returns:
    (mean, std, pad): float32 arrays (C,) and an int.

  Raises:
    ValueError: for 'raw' or an unknown preprocessing.
  """
  c = ds.image_shape[-1]
  if preprocess == 'cifar':
    return (*ds.channel_stats, data_lib.CIFAR_PAD)
  if preprocess == 'standardize':
    return (*ds.channel_stats, 0)
  if preprocess == 'svhn':
    return np.zeros(c, np.float32), np.full(c, 255.0, np.float32), 0
  raise ValueError(f"augment='device' needs preprocess 'cifar', 'standardize' "
                   f"or 'svhn', got {preprocess!r} (nothing to do on the "
                   "device; use augment='host')")


def with_preprocess(model, ds, preprocess, mode):
  """``tl.Serial(DevicePreprocess(...), model)`` for a recipe's preprocessing.

  Args:
    model: the network (takes float32 preprocessed images).
    ds: the `Dataset` whose channel statistics normalise.
    preprocess: see `preprocess_args`.
    mode: the mode of the preprocessing layer ('train' augments); may differ
      from the network's (the in-training eval with ``eval_bn='batch'`` runs
      a train-mode network on unaugmented batches).

  Returns:
    A trax layer taking uint8 images.
  """
  mean, std, pad = preprocess_args(ds, preprocess)
  return tl.Serial(DevicePreprocess(mean, std, pad=pad, mode=mode), model)
