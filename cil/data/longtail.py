"""The long-tail benchmarks' datasets, from their standard split lists over
the original images (a manual directory), as TFDS builders that store the
encoded images.

* `imagenet_lt` (Liu et al., CVPR 2019): `ImageNet_LT_train.txt`,
  `ImageNet_LT_val.txt`, `ImageNet_LT_test.txt` in
  `<manual_dir>/imagenet_lt/`, one `relative/path label` per line
  (`train/n01440764/n01440764_10026.JPEG 0`), the paths relative to that
  folder, which holds (or links) the ImageNet image tree. 1,000 classes;
  115,846 training images, 1,280 to 5 per class.
* `places_lt` (the same paper): `Places_LT_{train,val,test}.txt` over the
  Places-365 images in `<manual_dir>/places_lt/`. 365 classes; 62,500
  training images, 4,980 to 5 per class.
* `inaturalist2018` (Van Horn et al., CVPR 2018): `train2018.json` and
  `val2018.json` (COCO style: `images` with `id` and `file_name`,
  `annotations` with `image_id` and `category_id`, `categories`) in
  `<manual_dir>/inaturalist2018/`, over its image tree
  (`train_val2018/...`). 8,142 classes; 437,513 training images; the
  long-tail papers test on `val` (24,426 images).

Each split is written as it is read (`ArrayRecordBuilder.STREAM`: no
TensorFlow, flat memory), its images as their JPEG bytes, so a prepared
split costs its files' size on disk. Bad input is a `cil.errors.DataError`
naming the file and line: a missing list, a listed image that is absent or
unreadable, a label outside the class range, a malformed line or JSON.

The papers report many-, medium- and few-shot accuracy with the
thresholds > 100, 20-100 and < 20 training images
(`cil.metrics.DEFAULT_SHOT_THRESHOLDS`).
"""

import json
import os
from typing import Iterator

import numpy as np

from cil import _extras
from cil import errors
from cil.data import builders
from cil.data import custom

tfds = _extras.require('tensorflow_datasets', what='cil.data')
Image = _extras.require('PIL.Image', what='the long-tail datasets')


def _check_image(path: str, where: str) -> str:
  """`path` if it exists and Pillow can read its header; else a named
  error (`where`: the list line that names it)."""
  if not os.path.isfile(path):
    raise errors.DataError(f'{where}: the image {path} does not exist.')
  try:
    with Image.open(path) as image:
      image.verify()
  except Exception as e:  # pylint: disable=broad-except
    raise errors.DataError(f'{where}: {path} is not a readable image '
                           f'({e}).') from None
  return path


class _LongTailBuilder(builders.ArrayRecordBuilder, skip_registration=True):
  """A long-tail set from split files over an image tree."""

  STREAM = True
  FOLDER = ''           # Under the manual directory.
  NUM_CLASSES = 0
  SPLIT_FILES: dict = {}  # split -> its list file, in FOLDER.

  def _features(self):
    return {
        'image': tfds.features.Image(shape=(None, None, 3),
                                     encoding_format='jpeg'),
        'label': tfds.features.ClassLabel(num_classes=self.NUM_CLASSES),
    }

  def _split_generators(self, dl_manager):
    root = os.path.join(os.fspath(dl_manager.manual_dir))
    builders.check_manual_dir(self.name, root, self.SPLIT_FILES.values(),
                              self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {split: self._generate_examples(root, file)
            for split, file in self.SPLIT_FILES.items()}

  def _generate_examples(self, root: str, file: str) -> Iterator:
    for key, (path, label, where) in enumerate(self._entries(root, file)):
      if not 0 <= label < self.NUM_CLASSES:
        raise errors.DataError(
            f'{where}: label {label} is outside the {self.NUM_CLASSES} '
            f'classes (0 .. {self.NUM_CLASSES - 1}).')
      yield key, {'image': _check_image(path, where), 'label': label}

  def _entries(self, root: str, file: str) -> Iterator:
    """(image path, label, 'file, line N') of each listed image."""
    raise NotImplementedError


class _SplitListBuilder(_LongTailBuilder, skip_registration=True):
  """`relative/path label` lines (Liu et al.'s split files)."""

  def _entries(self, root, file):
    path = os.path.join(root, file)
    with open(path, encoding='utf-8') as f:
      for n, line in enumerate(f, 1):
        if not line.strip():
          continue
        where = f'{path}, line {n}'
        parts = line.split()
        try:
          relative, label = ' '.join(parts[:-1]), int(parts[-1])
          if not relative:
            raise ValueError
        except (ValueError, IndexError):
          raise errors.DataError(
              f'{where}: expected "relative/path label", got '
              f'{line.strip()[:100]!r}.') from None
        yield os.path.join(root, relative.lstrip('/')), label, where


class CilImagenetLt(_SplitListBuilder):
  """ImageNet-LT (Liu et al., CVPR 2019): 1,000 ImageNet classes, a Pareto
  (alpha 6) subsample of the training set, 115,846 images (1,280 to 5 per
  class); balanced val (20 per class) and test (50 per class, from
  ImageNet's validation set)."""

  FOLDER = 'imagenet_lt'
  NUM_CLASSES = 1000
  SPLIT_FILES = {'train': 'ImageNet_LT_train.txt',
                 'val': 'ImageNet_LT_val.txt',
                 'test': 'ImageNet_LT_test.txt'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put ImageNet_LT_{train,val,test}.txt (the split files of Liu et al., '
      'OLTR) in <manual_dir>/imagenet_lt/, beside the ImageNet image tree '
      'they name (train/ and val/ of ILSVRC2012; a symbolic link is fine).')


class CilPlacesLt(_SplitListBuilder):
  """Places-LT (Liu et al., CVPR 2019): 365 Places-365 classes, 62,500
  training images (4,980 to 5 per class); balanced val (20 per class) and
  test (100 per class)."""

  FOLDER = 'places_lt'
  NUM_CLASSES = 365
  SPLIT_FILES = {'train': 'Places_LT_train.txt', 'val': 'Places_LT_val.txt',
                 'test': 'Places_LT_test.txt'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put Places_LT_{train,val,test}.txt (the split files of Liu et al., '
      'OLTR) in <manual_dir>/places_lt/, beside the Places-365 image tree '
      'they name (a symbolic link is fine).')


class CilInaturalist2018(_LongTailBuilder):
  """iNaturalist 2018 (Van Horn et al., CVPR 2018): 8,142 species, 437,513
  training images, naturally long-tailed (1,000 to 2 per class); `val`
  (3 per class) is the long-tail papers' test set."""

  FOLDER = 'inaturalist2018'
  NUM_CLASSES = 8142
  SPLIT_FILES = {'train': 'train2018.json', 'val': 'val2018.json'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put train2018.json and val2018.json (the iNaturalist 2018 '
      'competition annotations) in <manual_dir>/inaturalist2018/, beside the '
      'train_val2018/ image tree they name (a symbolic link is fine).')

  def _entries(self, root, file):
    path = os.path.join(root, file)
    try:
      with open(path, encoding='utf-8') as f:
        record = json.load(f)
      files = {image['id']: image['file_name'] for image in record['images']}
      annotations = record['annotations']
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise errors.DataError(f'{path} is not readable JSON ({e}).') from None
    except (KeyError, TypeError) as e:
      raise errors.DataError(
          f'{path}: expected COCO-style "images" (id, file_name) and '
          f'"annotations" (image_id, category_id); missing {e}.') from None
    for n, annotation in enumerate(annotations):
      where = f'{path}, annotations[{n}]'
      try:
        image_id, label = annotation['image_id'], int(
            annotation['category_id'])
      except (KeyError, TypeError, ValueError):
        raise errors.DataError(f'{where}: expected image_id and an integer '
                               f'category_id.') from None
      if image_id not in files:
        raise errors.DataError(f'{where}: image_id {image_id} is not one of '
                               f'the file\'s images.')
      yield os.path.join(root, files[image_id]), label, where


# The in-memory path's image size when none is set (`--config.image_size`):
# the whole split is held decoded, so it stays small; the field's 224 with
# random-resized crops needs a streaming input pipeline.
IN_MEMORY_SIZE = 64


def read_resized(source, size: int, *, chunk: int = 512
                 ) -> tuple[np.ndarray, np.ndarray]:
  """`(images, labels)` of a long-tail split: every image decoded, resized
  so its shorter side is `size` and centre-cropped, `[n, size, size, 3]`
  uint8, read in chunks (its memory is the result's)."""
  n = len(source)
  images = np.empty((n, size, size, 3), np.uint8)
  labels = np.empty(n, np.int64)
  resize = resizer(size)
  for start in range(0, n, chunk):
    ids = list(range(start, min(n, start + chunk)))
    for i, example in zip(ids, source.__getitems__(ids)):
      images[i] = resize(example['image'])
      labels[i] = example['label']
  return images, labels


def resizer(size: int):
  """A decoded image -> its shorter side resized to `size`, centre-cropped
  to `[size, size, 3]` uint8 (the in-memory and the streamed path's)."""
  return lambda image: custom.to_array(Image.fromarray(image), size, 3)
