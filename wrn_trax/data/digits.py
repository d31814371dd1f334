"""The ``digits`` source: scikit-learn's bundled 8x8 digits, upscaled to 32x32x3."""

import numpy as np

from wrn_trax.data.dataset import Dataset


def _load_digits():
  """scikit-learn's 1,797 8x8 digits as 32x32x3 uint8, split 1,437 / 360.

  0..16 is scaled to 0..255, each pixel is repeated 4x4 (exact nearest
  neighbour) and the gray channel copied to 3. The split is stratified with a
  fixed seed, so it is the same everywhere.
  """
  from sklearn import datasets as sk_datasets  # pylint: disable=g-import-not-at-top
  from sklearn import model_selection  # pylint: disable=g-import-not-at-top
  digits = sk_datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
  images = images.repeat(4, axis=1).repeat(4, axis=2)
  images = np.repeat(images[..., None], 3, axis=-1)
  labels = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      images, labels, test_size=360, stratify=labels, random_state=0)
  return Dataset('digits', np.ascontiguousarray(x_train), y_train,
                 np.ascontiguousarray(x_test), y_test, 10, 'sklearn digits')
