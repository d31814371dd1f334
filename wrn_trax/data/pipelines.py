"""The trax.data input pipelines over an in-memory `Dataset`."""
import math

import numpy as np

from wrn_trax.data.dataset import CIFAR_PAD, PREPROCESS, _patchable, _trax

# ------------------------------------------------------- trax.data steps


def _check_batch_size(batch_size):
  if (isinstance(batch_size, bool) or
      not isinstance(batch_size, (int, np.integer)) or batch_size <= 0):
    raise ValueError(f'batch_size must be a positive int, got {batch_size!r}.')
  return int(batch_size)


def _check_preprocess(preprocess):
  if preprocess not in PREPROCESS:
    raise ValueError(f'preprocess={preprocess!r} is unknown; expected one of '
                     f'{PREPROCESS}.')
  return preprocess


def BatchArrays(  # pylint: disable=invalid-name
    images, labels, batch_size, *, shuffle=True, seed=0, repeat=True,
    pad_last=False):
  """A trax.data source of whole batches sliced from in-memory arrays.

  Replaces ``TFDS -> Shuffle -> Batch`` for data held in memory. With
  ``shuffle``, every epoch is a fresh permutation from a seeded numpy
  Generator (an exact shuffle; trax's `Shuffle` only mixes within a 1024-slot
  buffer), and batches run across epoch boundaries, as
  ``shuffle().repeat().batch()`` would. Batches are gathered with one fancy
  index, so the arrays are never copied and nothing is padded per example.

  Args:
    images: N x ... array.
    labels: N array.
    batch_size: examples per batch.
    shuffle: permute each epoch; else keep the stored order.
    seed: seed of the permutations.
    repeat: loop forever; else stop after one epoch (the last batch is then
      partial, or padded if ``pad_last``).
    pad_last: (only with repeat=False) pad the last batch to batch_size with
      zero images, label 0 and weight 0, and yield (images, labels, weights)
      triples, weights 1 for real examples.

  Returns:
    A function that takes no input stream and returns the batch iterator.
  """
  batch_size = _check_batch_size(batch_size)
  n = len(images)
  if n == 0:
    raise ValueError('BatchArrays needs at least one example.')

  def epochs(rng):
    while True:
      yield rng.permutation(n) if shuffle else np.arange(n)
      if not repeat:
        return

  def batches(generator=None):
    del generator
    rng = np.random.default_rng(seed)
    pending = np.zeros(0, np.int64)
    for order in epochs(rng):
      pending = np.concatenate([pending, order]) if len(pending) else order
      while len(pending) >= batch_size:
        idx, pending = pending[:batch_size], pending[batch_size:]
        x, y = images[idx], labels[idx]  # One gather: a fresh batch array.
        if pad_last:
          yield x, y, np.ones(batch_size, np.float32)
        else:
          yield x, y
    if len(pending):  # Only reached when not repeating.
      x, y = images[pending], labels[pending]
      if not pad_last:
        yield x, y
        return
      k = batch_size - len(pending)
      x = np.concatenate([x, np.zeros((k,) + x.shape[1:], x.dtype)])
      y = np.concatenate([y, np.zeros(k, y.dtype)])
      w = np.concatenate([np.ones(len(pending), np.float32),
                          np.zeros(k, np.float32)])
      yield x, y, w

  return batches


def RandomCropFlip(pad=CIFAR_PAD, seed=0):  # pylint: disable=invalid-name
  """Batched CIFAR augmentation: reflect-pad, random crop, random flip.

  Zagoruyko & Komodakis (2016), Sec. 3: "random crops from image padded by 4
  pixels on each side, filling missing pixels with reflections of original
  image" plus horizontal flips. (trax's own `cifar10_augmentation_preprocess`
  pads with zeros and works one image at a time in tf.data.) Draws come from
  a numpy Generator seeded with ``seed``, so a stream is reproducible.

  Args:
    pad: pixels of reflection padding on each side.
    seed: seed of the draws.

  Returns:
    A trax.data step mapping (images, labels, ...) batches to augmented ones.
  """
  from wrn_trax.augment import crop_flip_batch, crop_flip_draws  # pylint: disable=g-import-not-at-top

  def augment(generator):
    rng = np.random.default_rng(seed)
    for images, *rest in generator:
      oy, ox, flips = crop_flip_draws(rng, len(images), pad)
      yield (crop_flip_batch(images, oy, ox, flips, pad), *rest)
  return augment


def Standardize(mean, std):  # pylint: disable=invalid-name
  """Maps uint8 image batches to float32 (x - mean) / std per channel.

  Uses a 256-entry lookup table per channel, which is faster than float
  arithmetic on the whole batch and gives the same float32 values.

  Args:
    mean: per-channel means (C,).
    std: per-channel standard deviations (C,).

  Returns:
    A trax.data step mapping (images, labels, ...) batches.
  """
  mean = np.asarray(mean, np.float64)
  std = np.asarray(std, np.float64)
  table = ((np.arange(256, dtype=np.float64)[None, :] - mean[:, None]) /
           std[:, None]).astype(np.float32)  # C x 256.
  return _patchable()._LookupStep(table)


def Rescale(scale=1.0 / 255.0):  # pylint: disable=invalid-name
  """Maps uint8 image batches to float32 x * scale (SVHN: pixels / 255).

  Args:
    scale: the factor.

  Returns:
    A trax.data step mapping (images, labels, ...) batches.
  """
  table = (np.arange(256, dtype=np.float64) * scale).astype(np.float32)
  return _patchable()._LookupStep(table[None, :])


def _LookupStep(table):  # pylint: disable=invalid-name
  """A step mapping uint8 pixels through a C x 256 (or 1 x 256) float table."""
  def lookup(generator):
    for images, *rest in generator:
      if images.dtype != np.uint8:
        raise ValueError(f'expected uint8 images, got {images.dtype}.')
      out = np.empty(images.shape, np.float32)
      for ch in range(images.shape[-1]):
        np.take(table[min(ch, len(table) - 1)], images[..., ch],
                out=out[..., ch])
      yield (out, *rest)
  return lookup


def _preprocess_steps(ds, preprocess, training, seed):
  """The trax.data steps of a preprocessing recipe, in order."""
  if preprocess == 'raw':
    return []
  if preprocess == 'svhn':
    return [Rescale(1.0 / 255.0)]
  steps = []
  if preprocess == 'cifar' and training:
    steps.append(RandomCropFlip(CIFAR_PAD, seed=seed))
  steps.append(Standardize(*ds.channel_stats))
  return steps


def _seeds(seed):
  """Independent (shuffle, augmentation) seeds from one user seed."""
  children = np.random.SeedSequence(seed).spawn(2)
  return [int(c.generate_state(1)[0]) for c in children]


# ---------------------------------------------------------------- pipelines


def train_batches(ds, batch_size, *, preprocess='raw', seed=0):
  """Infinite, shuffled, augmented training batches.

  The pipeline is ``trax.data.Serial(BatchArrays, [RandomCropFlip],
  [Standardize | Rescale], trax.data.AddLossWeights())``; see `PREPROCESS`.

  Args:
    ds: a `Dataset`.
    batch_size: examples per batch (> 0).
    preprocess: one of `PREPROCESS`: 'raw' (uint8, no augmentation, as the
      seed notebooks), 'standardize' (float32, train-split channel stats),
      'cifar' (standardize + reflect-pad-4 random crop + random flip),
      'svhn' (float32 pixels / 255).
    seed: makes the stream reproducible.

  Returns:
    An iterator of (images, labels, weights): images uint8 (raw) or float32,
    labels int32, weights float32 ones.
  """
  trax = _trax()
  batch_size = _check_batch_size(batch_size)
  preprocess = _check_preprocess(preprocess)
  shuffle_seed, augment_seed = _seeds(seed)
  return trax.data.Serial(
      BatchArrays(ds.train_images, ds.train_labels, batch_size,
                  seed=shuffle_seed),
      _preprocess_steps(ds, preprocess, True, augment_seed),
      trax.data.AddLossWeights(),
  )()


def test_batches(ds, batch_size, *, preprocess='raw'):
  """The whole test split, exactly once, in stored order, for exact accuracy.

  The last batch is padded to ``batch_size`` (zero images, label 0) with
  weight 0, so ``sum(correct * w) / sum(w)`` is the exact test accuracy and
  every batch has one shape (one XLA compilation). There are
  `n_test_batches` batches. Eval never augments ('cifar' only standardizes).
  (Called `eval_batches` before; that name still works. The recipe field
  `eval_batches` is something else: the size of the cheap in-training eval.)

  Args:
    ds: a `Dataset`.
    batch_size: examples per batch (> 0).
    preprocess: one of `PREPROCESS`.

  Returns:
    An iterator of (images, labels, weights).
  """
  trax = _trax()
  batch_size = _check_batch_size(batch_size)
  preprocess = _check_preprocess(preprocess)
  return trax.data.Serial(
      BatchArrays(ds.test_images, ds.test_labels, batch_size, shuffle=False,
                  repeat=False, pad_last=True),
      _preprocess_steps(ds, preprocess, False, 0),
      trax.data.AddLossWeights(),
  )()


# The old name of `test_batches` (scripts may call it).
eval_batches = test_batches


def eval_sample_batches(ds, batch_size, *, preprocess='raw', seed=0):
  """Infinite shuffled test batches for trax's in-training `EvalTask`.

  For the cheap periodic estimate (``n_eval_batches=20`` as the seed
  notebooks); use `test_batches` for the exact full-split number.

  Args:
    ds: a `Dataset`.
    batch_size: examples per batch (> 0).
    preprocess: one of `PREPROCESS`; eval never augments.
    seed: makes the stream reproducible.

  Returns:
    An iterator of (images, labels, weights), weights all 1.
  """
  trax = _trax()
  batch_size = _check_batch_size(batch_size)
  preprocess = _check_preprocess(preprocess)
  return trax.data.Serial(
      BatchArrays(ds.test_images, ds.test_labels, batch_size,
                  seed=_seeds(seed)[0]),
      _preprocess_steps(ds, preprocess, False, 0),
      trax.data.AddLossWeights(),
  )()


def n_test_batches(ds, batch_size):
  """Number of batches of `test_batches`: ceil(n_test / batch_size)."""
  batch_size = _check_batch_size(batch_size)
  return math.ceil(len(ds.test_labels) / batch_size)


n_eval_batches = n_test_batches  # its old name
