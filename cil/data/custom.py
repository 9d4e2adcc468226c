"""Your own data, through the same TFDS path as the built-in datasets.

A dataset spec in place of a registered name (`cil.data.load`,
`--config.dataset=...`):

* `folder:/path`: one sub-folder per class holding its images (any format
  Pillow reads). With `train/` and `test/` sub-folders, each holds the
  class folders and gives that split; otherwise the class folders are at
  the top and each class's images are split at random (seed `split_seed`,
  default 0) so that `round(test_fraction * n)` of its `n` images, at least
  one and at most `n - 1`, go to `test`. Class names are the folder names,
  labels their sorted order. Hidden entries (a leading `.`) are skipped;
  every other entry of a class folder must be an image (a stray text
  file, a sub-folder or a broken symbolic link is an error naming it).
* `npz:/path.npz`: arrays `x_train`, `y_train`, `x_test`, `y_test` (uint8
  images `[n, H, W, C]` or `[n, H, W]`, integer labels in `[0, C)`), as
  `keras.datasets` ships them; optional `class_names` (strings). Read with
  `allow_pickle=False`.
* `tfds:NAME[/CONFIG][:VERSION]`: any TFDS dataset already prepared in
  `data_dir` in `array_record` format, read with `tfds.data_source` (no
  TensorFlow); its image and label features are `image_feature` and
  `label_feature` (default 'image', 'label').

Folders and arrays are prepared once by a TF-free builder (`cil_folder`,
`cil_npz`) into `data_dir/<builder>/<fingerprint>/1.0.0/` and read from
there afterwards; the fingerprint covers every source file's path, size and
modification time and the options that change the images, so an edited
source is prepared again and an unchanged one never is.

Images. Grayscale sources (Pillow modes 1, L, LA, 16-bit I;16 scaled by
1/257, and palettes of grays) give one channel and every other mode three
(RGB; an alpha channel is dropped); 32-bit integer and float images are
refused (their scale to 8 bits is not defined). With
`image_size = 0` images of one size keep it, and images of different sizes
get S = the median of their shorter sides (said in one line when the
folder is prepared). With `image_size = S` (given or so chosen)
each image whose size is not S x S is resized with Pillow's bilinear filter
(antialiased when shrinking) so that its shorter side is S, then centre-
cropped to S x S (a non-square image loses the middle of its longer side's
margins, never gets padding).

Bad input raises `cil.errors.DataError` (or `DataNotFoundError` for a
missing path or an unprepared TFDS dataset) naming the file, folder, array
or feature.

One module (about 530 lines) for the three forms of your own data: they
share the `Options`, the fingerprinted preparation and the error wording,
and a reader compares them in one place.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import zipfile
from typing import Optional

import numpy as np

from cil import _extras
from cil import _validation
from cil import errors
from cil.data import builders
from cil.data import preparation

tfds = _extras.require('tensorflow_datasets', what='cil.data')

KINDS = ('folder', 'npz', 'tfds')
_GRAYSCALE_MODES = ('1', 'L', 'LA', 'I;16', 'I;16B', 'I;16L', 'P')
# Bump to prepare every folder/npz dataset again after a change of how
# images are converted.
_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Options:
  """How a dataset spec is read (the config fields of the same names).

  Attributes:
    image_size: 0 keeps the images' size when they share one (else their
      median shorter side is chosen); S > 0 resizes and
      centre-crops every image to S x S (module docstring).
    test_fraction: for a `folder:` without `train/` and `test/`, the share
      of each class's images put in `test`.
    split_seed: the seed of that split.
    image_feature: the image feature of a `tfds:` dataset.
    label_feature: its label feature.
  """
  image_size: int = 0
  test_fraction: float = 0.2
  split_seed: int = 0
  image_feature: str = 'image'
  label_feature: str = 'label'

  def check(self) -> None:
    if not isinstance(self.image_size, int) or self.image_size < 0:
      raise ValueError(f'image_size must be an integer >= 0 (0 keeps the '
                       f'images\' size), got {self.image_size!r}.')
    if not 0 < self.test_fraction < 1:
      raise ValueError(f'test_fraction must be in (0, 1), got '
                       f'{self.test_fraction!r}.')
    for name in ('image_feature', 'label_feature'):
      if not getattr(self, name):
        raise ValueError(f'{name} must name a feature, got an empty string.')


def parse_spec(spec: str) -> Optional[tuple[str, str]]:
  """`(kind, target)` of a dataset spec such as 'folder:/data/x'; None for
  a registered dataset name (no known `kind:` prefix).

  Raises:
    ValueError: a known kind with nothing after the colon.
  """
  kind, colon, target = str(spec).partition(':')
  if not colon or kind not in KINDS:
    return None
  if not target.strip():
    raise ValueError(f'Dataset spec {spec!r} names no {kind}: use '
                     f'{kind}:{_TARGET_HELP[kind]}.')
  return kind, target.strip()


_TARGET_HELP = {'folder': '/path/to/folder', 'npz': '/path/to/arrays.npz',
                'tfds': 'NAME[/CONFIG][:VERSION]'}


def check_spec(spec: str) -> None:
  """Checks a spec before any work: its kind, and that its path exists.

  Raises:
    ValueError: an unknown form.
    errors.DataNotFoundError: the folder or file does not exist.
  """
  parsed = parse_spec(spec)
  if parsed is None:
    raise ValueError(f'{spec!r} is not a dataset spec; use one of '
                     + ', '.join(f'{k}:{h}' for k, h in _TARGET_HELP.items())
                     + '.')
  kind, target = parsed
  if kind == 'folder' and not os.path.isdir(target):
    raise errors.DataNotFoundError(f'--config.dataset={spec}: {target} is '
                                   f'not a folder.')
  if kind == 'npz' and not os.path.isfile(target):
    raise errors.DataNotFoundError(f'--config.dataset={spec}: {target} is '
                                   f'not a file.')


# -- folders ------------------------------------------------------------


def _visible(folder: str) -> list[str]:
  return sorted(e for e in os.listdir(folder) if not e.startswith('.'))


def _class_folders(folder: str) -> dict[str, list[str]]:
  """class name -> its image paths, sorted; named errors for bad layouts."""
  classes = [e for e in _visible(folder)
             if os.path.isdir(os.path.join(folder, e))]
  if not classes:
    raise errors.DataError(f'{folder} holds no class folders (expected one '
                           f'sub-folder of images per class).')
  out = {}
  for name in classes:
    path = os.path.join(folder, name)
    files = [os.path.join(path, f) for f in _visible(path)]
    for file in files:  # One rule: every visible entry is an image.
      if os.path.isdir(file):
        raise errors.DataError(f'{file} is a folder inside the class folder '
                               f'{path}, which must hold images only.')
      if not os.path.exists(file):
        raise errors.DataError(f'{file} is a broken or looping symbolic '
                               f'link; a class folder must hold images '
                               f'only.')
    if not files:
      raise errors.DataError(f'Class folder {path} holds no images.')
    out[name] = files
  if len(out) < 2:
    raise errors.DataError(f'{folder} holds a single class folder '
                           f'({classes[0]}); classification needs at least '
                           f'two classes.')
  return out


def scan_folder(root: str) -> dict[str, dict[str, list[str]]]:
  """The layout of a `folder:` dataset: `{split: {class: [paths]}}`, split
  'train' and 'test', or 'all' when the classes are at the top."""
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise errors.DataNotFoundError(f'{root} is not a folder.')
  top = _visible(root)
  if 'train' in top and 'test' in top and all(
      os.path.isdir(os.path.join(root, s)) for s in ('train', 'test')):
    layout = {s: _class_folders(os.path.join(root, s))
              for s in ('train', 'test')}
    train, test = set(layout['train']), set(layout['test'])
    if train != test:
      raise errors.DataError(
          f'{root}: train/ and test/ hold different classes (only in train: '
          f'{sorted(train - test)}; only in test: {sorted(test - train)}).')
    return layout
  return {'all': _class_folders(root)}


def _fingerprint(kind: str, files: list[str], settings: dict) -> str:
  """A short hash of the source files' paths, sizes and times, and the
  settings that change what is prepared."""
  h = hashlib.sha256(json.dumps([_FORMAT, kind, settings]).encode())
  for path in files:
    st = os.stat(path)
    h.update(f'{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n'
             .encode())
  return h.hexdigest()[:16]


def _open_image(path: str):
  Image = _extras.require('PIL.Image', what='folder datasets')
  try:
    image = Image.open(path)
    image.load()
    return image
  except Exception as e:  # pylint: disable=broad-except
    raise errors.DataError(f'{path} is not a readable image ({e}).') from None


def _image_plan(paths: list[str], image_size: int, *, source: str = ''
                ) -> tuple[tuple[int, int, int], int]:
  """`((H, W, C), size)`: the prepared images' shape and the square size
  every image is resized and centre-cropped to (0: kept as it is). Reads
  only the headers.

  With `image_size = 0` and images of different sizes, the size is the
  median of their shorter sides, said in one line on stderr.
  """
  Image = _extras.require('PIL.Image', what='folder datasets')
  sizes, gray = {}, True
  shorter = []
  for path in paths:
    try:
      with Image.open(path) as image:
        sizes.setdefault(image.size, path)
        shorter.append(min(image.size))
        mode = image.mode
        gray &= mode in _GRAYSCALE_MODES and not (
            mode == 'P' and _palette_has_colour(image))
    except Exception as e:  # pylint: disable=broad-except
      raise errors.DataError(f'{path} is not a readable image ({e}).'
                             ) from None
    if mode in ('I', 'F'):
      raise errors.DataError(
          f'{path} is a 32-bit {"integer" if mode == "I" else "float"} '
          f'image, whose scale to 8 bits is not defined; save it as an 8- '
          f'or 16-bit image.')
  channels = 1 if gray else 3
  if not image_size and len(sizes) > 1:
    image_size = max(1, int(np.median(shorter)))
    (a, _), (b, _) = list(sizes.items())[:2]
    print(f'cil: {source or "the images"}: {len(paths)} images of '
          f'{len(sizes)} sizes (e.g. {a[0]}x{a[1]}, {b[0]}x{b[1]}); each is '
          f'resized and centre-cropped to {image_size}x{image_size}, the '
          f'median shorter side (--config.image_size=S sets another).',
          file=sys.stderr, flush=True)
  if image_size:
    return (image_size, image_size, channels), image_size
  (w, h), = sizes
  return (h, w, channels), 0


def _palette_has_colour(image) -> bool:
  rgb = np.asarray(image.convert('RGB'))
  return bool(np.any(rgb[..., 0] != rgb[..., 1])
              or np.any(rgb[..., 1] != rgb[..., 2]))


def to_array(image, image_size: int, channels: int) -> np.ndarray:
  """A Pillow image as uint8 `[H, W, channels]` (module docstring: the
  grayscale/RGB rule, the resize to `image_size` and the centre crop)."""
  Image = _extras.require('PIL.Image', what='folder datasets')
  if image.mode.startswith('I;16'):  # 16-bit grayscale: 0..65535 -> 0..255.
    image = Image.fromarray(np.round(
        np.asarray(image, np.float64) / 257).astype(np.uint8))
  image = image.convert('L' if channels == 1 else 'RGB')
  if image_size and image.size != (image_size, image_size):
    w, h = image.size
    scale = image_size / min(w, h)
    size = (max(image_size, round(w * scale)),
            max(image_size, round(h * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left = (size[0] - image_size) // 2
    top = (size[1] - image_size) // 2
    image = image.crop((left, top, left + image_size, top + image_size))
  array = np.asarray(image, np.uint8)
  return array[..., None] if channels == 1 else array


def _split_members(n: int, fraction: float, rng) -> np.ndarray:
  """Booleans `[n]`, True for the test images of one class."""
  n_test = min(max(int(round(fraction * n)), 1), n - 1)
  is_test = np.zeros(n, bool)
  is_test[rng.permutation(n)[:n_test]] = True
  return is_test


class _Planned(builders.ArrayRecordBuilder, skip_registration=True):
  """A builder of your data: `plan` (image shape, class names, source)
  decides its features; one config per source fingerprint."""

  STREAM = True  # Your data can be any size (`ArrayRecordBuilder`).

  def __init__(self, *, plan: dict, **kwargs):
    self._plan = plan
    super().__init__(**kwargs)

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=tuple(self._plan['shape']),
                                      dtype=np.uint8),
        'label': tfds.features.ClassLabel(names=self._plan['classes']),
    }


class CilFolder(_Planned):
  """A folder of class folders of images (`folder:` specs)."""

  def _split_generators(self, dl_manager):
    del dl_manager
    plan = self._plan
    layout = plan['layout']
    if 'all' in layout:
      rng = np.random.default_rng(plan['split_seed'])
      train, test = {}, {}
      for name, paths in layout['all'].items():
        if len(paths) < 2:
          raise errors.DataError(
              f'Class folder {os.path.dirname(paths[0])} holds one image; '
              f'splitting it into train and test needs at least two (or '
              f'give train/ and test/ folders).')
        is_test = _split_members(len(paths), plan['test_fraction'], rng)
        train[name] = [p for p, t in zip(paths, is_test) if not t]
        test[name] = [p for p, t in zip(paths, is_test) if t]
      layout = {'train': train, 'test': test}
    return {s: self._generate_examples(layout[s]) for s in ('train', 'test')}

  def _generate_examples(self, classes):
    size, channels = self._plan['image_size'], self._plan['shape'][2]
    for label, name in enumerate(self._plan['classes']):
      for path in classes[name]:
        array = to_array(_open_image(path), size, channels)
        yield path, {'image': array, 'label': label}


# -- arrays -------------------------------------------------------------


_NPZ_KEYS = ('x_train', 'y_train', 'x_test', 'y_test')


def read_npz(path: str) -> dict:
  """The checked arrays of an `npz:` dataset (module docstring).

  Returns:
    `{'train': (images [n, H, W, C] uint8, labels [n] int64), 'test': ...,
    'class_names': [...]}`.

  Raises:
    cil.errors.DataError: a missing array, a wrong dtype or shape, lengths that
      differ, labels that are not integers in `[0, C)`, a class with no
      training example.
  """
  if not zipfile.is_zipfile(path):  # np.load would try it as a pickle.
    raise errors.DataError(
        f'{path} is not an .npz file (a zip archive of .npy arrays, as '
        f'np.savez writes); save x_train, y_train, x_test, y_test with '
        f'np.savez.')
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except ValueError as e:  # Object arrays need pickle: refused.
    raise errors.DataError(f'{path}: {e} (object arrays are not read; save '
                           f'plain numeric arrays).') from None
  except Exception as e:  # pylint: disable=broad-except
    raise errors.DataError(f'{path} is not a readable .npz file ({e}).'
                           ) from None
  missing = [k for k in _NPZ_KEYS if k not in arrays]
  if missing:
    raise errors.DataError(f'{path} lacks the arrays {missing} (it holds '
                           f'{sorted(arrays)}; expected {list(_NPZ_KEYS)}).')
  out = {}
  for split in ('train', 'test'):
    x, y = arrays[f'x_{split}'], arrays[f'y_{split}']
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
      raise errors.DataError(
          f'{path}: x_{split} must be uint8 images [n, H, W] or [n, H, W, C], '
          f'got {x.dtype} {x.shape}.')
    if x.ndim == 3:
      x = x[..., None]
    y = np.squeeze(y, axis=1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
      raise errors.DataError(
          f'{path}: y_{split} must hold one label per image of x_{split} '
          f'({x.shape[0]}), got shape {y.shape}.')
    if not np.issubdtype(y.dtype, np.integer):
      raise errors.DataError(f'{path}: y_{split} must hold integer labels, '
                             f'got {y.dtype}.')
    if y.size and y.min() < 0:
      raise errors.DataError(f'{path}: y_{split} holds negative labels '
                             f'(min {y.min()}); labels are class indices '
                             f'0 .. C-1.')
    if not y.size:
      raise errors.DataError(f'{path}: x_{split} and y_{split} are empty.')
    out[split] = (x, y.astype(np.int64))
  if out['train'][0].shape[1:] != out['test'][0].shape[1:]:
    raise errors.DataError(
        f'{path}: x_train images are {out["train"][0].shape[1:]} but x_test '
        f'images {out["test"][0].shape[1:]}.')
  num_classes = int(max(out['train'][1].max(), out['test'][1].max())) + 1
  names = [str(i) for i in range(num_classes)]
  if 'class_names' in arrays:
    given = [str(n) for n in arrays['class_names'].reshape(-1)]
    if len(given) < num_classes:
      raise errors.DataError(f'{path}: class_names has {len(given)} names but '
                             f'the labels reach {num_classes - 1}.')
    names = given
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
      raise errors.DataError(f'{path}: class_names {twice[:10]} name more '
                             f'than one class; give every class its own '
                             f'name.')
  absent = sorted(set(range(len(names))) - set(out['train'][1].tolist()))
  if absent:
    raise errors.DataError(f'{path}: classes {absent[:10]} have no training '
                           f'image in y_train.')
  out['class_names'] = names
  return out


class CilNpz(_Planned):
  """Arrays from an `.npz` file (`npz:` specs)."""

  def _split_generators(self, dl_manager):
    del dl_manager
    arrays = read_npz(self._plan['path'])
    return {s: self._generate_examples(*arrays[s]) for s in ('train', 'test')}

  def _generate_examples(self, images, labels):
    for i in range(labels.size):
      yield i, {'image': images[i], 'label': int(labels[i])}


# -- writing ------------------------------------------------------------


def export(train, test, out: str, *, fmt: str) -> str:
  """Writes two `ArrayDataset` splits as a `folder:` or an `npz:` dataset.

  `fmt='folder'`: `out/train/<class>/<i>.png` and `out/test/...`;
  `fmt='npz'`: `out` (a `.npz` path) with `x_train`, `y_train`, `x_test`,
  `y_test` and `class_names`. A way to try the specs on a built-in set, or
  to hand one to another program. Returns the spec that reads it back.
  """
  if fmt == 'npz':
    if not out.endswith('.npz'):
      raise ValueError(f'--out for npz must end in .npz, got {out!r}.')
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    squeeze = (lambda x: x[..., 0]) if train.images.shape[-1] == 1 else (
        lambda x: x)
    np.savez_compressed(out, x_train=squeeze(train.images),
                        y_train=train.labels, x_test=squeeze(test.images),
                        y_test=test.labels,
                        class_names=np.array(train.class_names))
    return f'npz:{os.path.abspath(out)}'
  if fmt != 'folder':
    raise ValueError(f"fmt must be 'folder' or 'npz', got {fmt!r}.")
  Image = _extras.require('PIL.Image', what='folder datasets')
  names = list(train.class_names)
  for name in names:  # Each becomes a folder: it must stay inside `out`.
    try:
      _validation.check_path_component(name, 'Class name')
    except ValueError as e:
      raise errors.DataError(f'{train.name}: {e} Rename the class (e.g. '
                             f'class_names in the .npz) to export it as a '
                             f'folder.') from None
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise errors.DataError(f'{train.name}: class names {twice} are used by '
                           f'more than one class; as folders they would '
                           f'merge. Give every class its own name.')
  if os.path.exists(out) and not os.path.isdir(out):
    raise ValueError(f'--out {out} is an existing file; choose a new --out.')
  if os.path.exists(out) and os.listdir(out):
    raise ValueError(f'{out} exists and is not empty; choose a new --out.')
  for split, ds in (('train', train), ('test', test)):
    for i, (image, label) in enumerate(zip(ds.images, ds.labels)):
      folder = os.path.join(out, split, ds.class_names[label])
      os.makedirs(folder, exist_ok=True)
      Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
          os.path.join(folder, f'{i:06d}.png'))
  return f'folder:{os.path.abspath(out)}'


# -- loading ------------------------------------------------------------


def _prepared(builder_cls, spec: str, data_dir: str, fingerprint: str,
              make_plan) -> 'tfds.core.DatasetBuilder':
  """The prepared builder of a source: read if there, else built once."""
  path = os.path.join(data_dir, builder_cls.name, fingerprint, '1.0.0')
  info = os.path.join(path, 'dataset_info.json')
  if os.path.exists(info):
    return tfds.builder_from_directory(path)
  with preparation.one_build_at_a_time(spec, data_dir):
    if os.path.exists(info):  # Another process prepared it meanwhile.
      return tfds.builder_from_directory(path)
    with preparation.tfds_warnings_held():
      builder = builder_cls(plan=make_plan(), data_dir=data_dir,
                            config=tfds.core.BuilderConfig(
                                name=fingerprint, description=spec))
    with preparation.removing_what_a_failed_build_left(data_dir), \
        preparation.first_build(spec, data_dir):
      builder.download_and_prepare()
  return builder


def load_builder(spec: str, *, data_dir: Optional[str],
                 options: Options) -> 'tfds.core.DatasetBuilder':
  """The prepared TFDS builder of a `folder:` or `npz:` spec."""
  kind, target = parse_spec(spec)
  options.check()
  data_dir = data_dir or tfds.core.constants.get_default_data_dir()
  target = os.path.abspath(os.path.expanduser(target))
  if kind == 'folder':
    layout = scan_folder(target)
    files = [p for classes in layout.values() for ps in classes.values()
             for p in ps]
    settings = {'image_size': options.image_size}
    if 'all' in layout:
      settings.update(test_fraction=options.test_fraction,
                      split_seed=options.split_seed)

    def make_plan():
      shape, size = _image_plan(files, options.image_size, source=target)
      return {'layout': layout, 'classes': sorted(next(iter(
          layout.values()))), **settings, 'shape': shape, 'image_size': size}
    return _prepared(CilFolder, spec, data_dir,
                     _fingerprint(kind, files, settings), make_plan)
  if not os.path.isfile(target):
    raise errors.DataNotFoundError(f'{target} is not a file.')

  def make_npz_plan():
    arrays = read_npz(target)
    return {'path': target, 'classes': arrays['class_names'],
            'shape': arrays['train'][0].shape[1:]}
  return _prepared(CilNpz, spec, data_dir, _fingerprint(kind, [target], {}),
                   make_npz_plan)


@contextlib.contextmanager
def _no_feature_imports(spec: str):
  """While reading a `tfds:` dataset's metadata, a feature class that TFDS
  has not registered is refused instead of imported: TFDS imports the
  module a `features.json` names, which would run that module's code from
  a file of the dataset's folder."""
  connector = tfds.features.FeatureConnector
  original = connector.__dict__['cls_from_name']

  def cls_from_name(cls, python_class_name):
    # pylint: disable-next=protected-access
    if python_class_name not in cls._registered_features:
      raise errors.DataError(
          f'--config.dataset={spec}: its TFDS metadata (features.json) names '
          f'the feature class {python_class_name!r}, which TFDS does not '
          f'provide; cil reads only TFDS\'s own features and imports no '
          f'module a dataset file names (it would run that module\'s code). '
          f'Prepare the dataset with TFDS\'s features.')
    return original.__func__(cls, python_class_name)

  connector.cls_from_name = classmethod(cls_from_name)
  try:
    yield
  finally:
    connector.cls_from_name = original


def tfds_source(spec: str, split: str, *, data_dir: Optional[str],
                options: Options):
  """`(source, info, image_key, label_key)` of a prepared `tfds:` dataset.

  Raises:
    errors.DataNotFoundError: not prepared in `data_dir` (in array_record
      format), or no such split.
    cil.errors.DataError: no such feature.
  """
  _, name = parse_spec(spec)
  options.check()
  where = data_dir or tfds.core.constants.get_default_data_dir()
  try:
    with _no_feature_imports(spec):
      source = tfds.data_source(name, split=split, data_dir=data_dir,
                                download=False)
  except errors.DataError:
    raise
  except (tfds.core.registered.DatasetNotFoundError, AssertionError,
          FileNotFoundError, NotImplementedError, ValueError) as e:
    first = str(e).split('\n')[0][:300]
    raise errors.DataNotFoundError(
        f'--config.dataset={spec}: TFDS dataset {name!r} split {split!r} is '
        f'not prepared in {where} in array_record format ({first}). Prepare '
        f'it with: tfds build {name.split(":")[0]} --data_dir={where} '
        f'--file_format=array_record (needs TensorFlow), or pass '
        f'--config.data_dir.') from None
  info = source.dataset_info
  features = info.features
  for what, key in (('image_feature', options.image_feature),
                    ('label_feature', options.label_feature)):
    if key not in features:
      raise errors.DataError(
          f'--config.dataset={spec}: no feature {key!r} (set by '
          f'--config.{what}); the dataset has {sorted(features.keys())}.')
  return source, info, options.image_feature, options.label_feature
