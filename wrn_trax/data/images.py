"""Image folders (``train/<class>/*.png|jpg``): the threaded decoder and its ``.npz`` cache."""
import concurrent.futures
import dataclasses
import functools
import glob
import hashlib
import os
import sys
import tempfile

import numpy as np

from wrn_trax import runio
from wrn_trax.data.dataset import _CLASS_NAMES, _patchable, from_arrays

# Image folders: file types read, the cache file name beside the data, the
# cache format version (part of the fingerprint) and the most decoding threads
# (at most 2 per core: PIL releases the GIL while decoding, and reads wait on
# the disk).
_IMAGE_EXTS = ('.png', '.jpg', '.jpeg')
_CACHE_NAME = '.wrn_trax_cache.npz'
_CACHE_VERSION = 1
_DECODE_THREADS = 8


# ------------------------------------------------------------ image folders


def _norm_class(name):
  """A class folder name as compared with a data set's label names."""
  return name.strip().lower().replace(' ', '_').replace('-', '_')


def _is_image(name):
  return (not name.startswith('.') and
          os.path.splitext(name)[1].lower() in _IMAGE_EXTS)


def _class_dirs(split_dir):
  """Sorted names of the (non-hidden) subfolders of a split folder."""
  try:
    entries = list(os.scandir(split_dir))
  except OSError:
    return []
  return sorted(e.name for e in entries
                if e.is_dir() and not e.name.startswith('.'))


def _find_image_folder(name, data_dir, looked):
  """Returns the folder holding train/<class>/ and test/<class>/, or None.

  Looks at ``data_dir`` and one level deeper (Kaggle mounts data sets as
  ``/kaggle/input/<slug>/...``). For cifar10/cifar100, a candidate whose
  class folders match that data set's labels is preferred.
  """
  candidates = [data_dir] + sorted(
      p for p in glob.glob(os.path.join(glob.escape(data_dir), '*'))
      if os.path.isdir(p) and os.path.basename(p) not in ('train', 'test'))
  looked.append(os.path.join(data_dir, 'train', '<class>', '*.png|jpg'))
  if len(candidates) > 1:
    looked.append(os.path.join(data_dir, '*', 'train', '<class>', '*.png|jpg'))
  found = []
  for candidate in candidates:
    if (_class_dirs(os.path.join(candidate, 'train')) and
        _class_dirs(os.path.join(candidate, 'test'))):
      found.append(candidate)
  if name in _CLASS_NAMES:
    want = set(_CLASS_NAMES[name])
    for candidate in found:
      got = {_norm_class(c)
             for c in _class_dirs(os.path.join(candidate, 'train'))}
      if got == want:
        return candidate
  return found[0] if found else None


def _list_images(folder):
  """The images of folder/train and folder/test, by class folder.

  Returns:
    (class_names, files): class_names, the sorted class folder names of
    ``train/``; files, {'train': [(relpath, class_index, size, mtime_ns)],
    'test': [...]}, sorted by class then file name.

  Raises:
    ValueError: a split has no class folders or a class folder no images,
      or test/ has a class that train/ lacks.
  """
  classes = _class_dirs(os.path.join(folder, 'train'))
  files = {}
  for split in ('train', 'test'):
    split_dir = os.path.join(folder, split)
    split_classes = _class_dirs(split_dir)
    extra = sorted(set(split_classes) - set(classes))
    if extra:
      raise ValueError(
          f'{split_dir}: class folders {extra} are not in '
          f'{os.path.join(folder, "train")}; train/ and test/ need the same '
          f'class folders.')
    rows = []
    for label, cls in enumerate(classes):
      cls_dir = os.path.join(split_dir, cls)
      if cls not in split_classes:  # Only in test/: a class without tests.
        continue
      entries = sorted((e for e in os.scandir(cls_dir)
                        if _is_image(e.name) and e.is_file()),
                       key=lambda e: e.name)
      if not entries:
        raise ValueError(
            f'{cls_dir}: no images (expected files ending in '
            f'{", ".join(_IMAGE_EXTS)}); remove the folder or add its images.')
      for e in entries:
        st = e.stat()
        rows.append((f'{split}/{cls}/{e.name}', label, st.st_size,
                     st.st_mtime_ns))
    if not rows:
      raise ValueError(f'{split_dir}: no class folders with images.')
    files[split] = rows
  return classes, files


def _fingerprint(classes, files):
  """A hash of the file list, sizes and mtimes (and the cache format)."""
  h = hashlib.sha256(f'wrn_trax image folder cache v{_CACHE_VERSION}\n'
                     .encode())
  h.update(('\n'.join(classes) + '\n').encode())
  for split in ('train', 'test'):
    for rel, label, size, mtime in files[split]:
      h.update(f'{rel}\t{label}\t{size}\t{mtime}\n'.encode())
  return h.hexdigest()


def _cache_paths(folder):
  """Cache files to try, in order: beside the data, then the cache dir.

  ``$WRN_TRAX_CACHE``, when set, is the only place (so a read-only or shared
  data folder is never written to).
  """
  base = 'image-folder-' + hashlib.sha256(
      os.path.abspath(folder).encode()).hexdigest()[:16] + '.npz'
  env = os.environ.get('WRN_TRAX_CACHE')
  if env:
    return [os.path.join(os.path.expanduser(env), base)]
  home = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return [os.path.join(folder, _CACHE_NAME),
          os.path.join(home, 'wrn_trax', base)]


def _read_cache(path, fingerprint):
  """The cached arrays at path if they match fingerprint, else None.

  A missing file is None quietly; an unreadable or corrupt one is None with a
  one-line notice on stderr (it will be rebuilt).
  """
  if not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as z:
      if str(z['fingerprint']) != fingerprint:
        return None
      out = {k: z[k] for k in ('train_images', 'train_labels', 'test_images',
                               'test_labels', 'class_names')}
    for k in ('train', 'test'):
      if (out[f'{k}_images'].dtype != np.uint8 or
          out[f'{k}_images'].ndim != 4 or
          len(out[f'{k}_images']) != len(out[f'{k}_labels'])):
        raise ValueError(f'bad {k} arrays')
    return out
  except Exception as e:  # pylint: disable=broad-except
    print(f'wrn_trax.data: ignoring unreadable image cache {path} '
          f'({type(e).__name__}: {e}); rebuilding it.', file=sys.stderr)
    return None


def _write_cache(paths, arrays):
  """Writes the cache atomically to the first writable path; returns it."""
  for path in paths:
    tmp = None
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.npz',
                                 dir=os.path.dirname(path))
      os.fchmod(fd, runio.file_mode(path))  # the umask, not mkstemp's 0600
      with os.fdopen(fd, 'wb') as f:
        np.savez(f, **arrays)
      os.replace(tmp, path)
      return path
    except OSError:
      if tmp is not None and os.path.exists(tmp):
        try:
          os.remove(tmp)
        except OSError:
          pass
  print(f'wrn_trax.data: could not write the image cache to any of {paths} '
        f'(set WRN_TRAX_CACHE to a writable folder); the next load decodes '
        f'again.', file=sys.stderr)
  return None


def _decode_images(name, folder, rows, size, resize):
  """Decodes rows' images into one uint8 N x H x W x 3 array, in threads.

  Args:
    name: the data set name, for messages.
    folder: the root the relative paths start from.
    rows: [(relpath, label, size, mtime)].
    size: (W, H) every image must have (or is resized to).
    resize: resize other sizes (bilinear); else raise ValueError.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  w, h = size
  out = np.empty((len(rows), h, w, 3), np.uint8)

  def decode(start, stop):
    for i in range(start, stop):
      path = os.path.join(folder, rows[i][0])
      try:
        with Image.open(path) as im:
          if im.mode != 'RGB':
            im = im.convert('RGB')  # Greyscale, palette, RGBA, CMYK -> RGB.
          if im.size != (w, h):
            if not resize:
              raise ValueError(
                  f'{path}: {im.size[0]}x{im.size[1]} pixels, but {name} '
                  f'images must all be {w}x{h}; resize the folder to {w}x{h} '
                  f'or use dataset=\'folder\', which resizes.')
            im = im.resize((w, h), Image.BILINEAR)
          out[i] = np.asarray(im)
      except (OSError, SyntaxError) as e:  # PIL's errors for bad files.
        raise ValueError(f'{path}: not a readable PNG/JPEG image ({e}); '
                         f'remove or replace the file.') from None

  n = len(rows)
  workers = max(1, min(_patchable()._DECODE_THREADS,
                       2 * (os.cpu_count() or 1)))
  chunk = max(256, -(-n // (workers * 8)))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futures = [pool.submit(decode, i, min(i + chunk, n))
               for i in range(0, n, chunk)]
    try:
      for fut in futures:
        fut.result()
    except BaseException:
      for fut in futures:  # A bad file: stop the chunks not yet started.
        fut.cancel()
      raise
  return out


def _first_size(folder, rows):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  path = os.path.join(folder, rows[0][0])
  try:
    with Image.open(path) as im:
      return im.size
  except (OSError, SyntaxError) as e:
    raise ValueError(f'{path}: not a readable PNG/JPEG image ({e}); remove or '
                     f'replace the file.') from None


def _load_image_folder(name, folder):
  """Loads train/<class>/* and test/<class>/* images, through the cache."""
  folder = os.path.abspath(folder)
  classes, files = _list_images(folder)
  if name in _CLASS_NAMES:
    official = _CLASS_NAMES[name]
    got = [_norm_class(c) for c in classes]
    if sorted(got) != sorted(official):
      missing = sorted(set(official) - set(got))
      unknown = sorted(set(got) - set(official))
      raise ValueError(
          f'{os.path.join(folder, "train")}: the class folders do not match '
          f'{name}\'s {len(official)} labels (missing: {missing[:10]}, '
          f'unknown: {unknown[:10]}). Name the folders as {name}\'s labels '
          f'({", ".join(official[:5])}, ...) or use dataset=\'folder\'.')
  fingerprint = _fingerprint(classes, files)
  paths = _cache_paths(folder)
  cached, cache_path = None, None
  for path in paths:
    cached = _read_cache(path, fingerprint)
    if cached is not None:
      cache_path = path
      break
  if cached is None:
    size = _first_size(folder, files['train'])
    resize = name not in _CLASS_NAMES
    if not resize and size != (32, 32):
      raise ValueError(
          f'{os.path.join(folder, files["train"][0][0])}: {size[0]}x{size[1]} '
          f'pixels, but {name} images are 32x32; use dataset=\'folder\' for '
          f'other sizes.')
    decode = functools.partial(_decode_images, name, folder, size=size,
                               resize=resize)
    cached = {
        'train_images': decode(files['train']),
        'train_labels': np.array([r[1] for r in files['train']], np.int32),
        'test_images': decode(files['test']),
        'test_labels': np.array([r[1] for r in files['test']], np.int32),
        'class_names': np.array(classes, dtype=str),
        'fingerprint': np.array(fingerprint),
    }
    cache_path = _write_cache(paths, cached)
  folder_classes = [str(c) for c in cached['class_names']]
  if name in _CLASS_NAMES:  # Folder order (sorted) -> the data set's order.
    index = {c: i for i, c in enumerate(_CLASS_NAMES[name])}
    remap = np.array([index[_norm_class(c)] for c in folder_classes],
                     np.int32)
    class_names = _CLASS_NAMES[name]
  else:
    remap = np.arange(len(folder_classes), dtype=np.int32)
    class_names = tuple(folder_classes)
  ds = from_arrays(cached['train_images'], remap[cached['train_labels']],
                   cached['test_images'], remap[cached['test_labels']],
                   n_classes=len(class_names), name=name)
  source = f'image folder @ {folder}'
  if cache_path:
    source += f' (cache {cache_path})'
  return dataclasses.replace(ds, source=source, class_names=class_names)
