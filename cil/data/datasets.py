"""Datasets as in-memory NumPy arrays, loaded through TFDS.

`load(name, split)` returns an `ArrayDataset` (uint8 images `[n, H, W, C]`,
int64 labels `[n]`). Everything goes through `tfds.data_source`, which reads
`array_record` files without TensorFlow:

* `digits` (default everywhere): scikit-learn's bundled 8x8 digits, built by
  the project's `cil_digits` builder; needs no download.
* `mnist`, `omniglot`: if a manual directory is configured (argument
  `manual_dir`, or the environment variable `CIL_MANUAL_DIR`), the project's
  TF-free builders `cil_mnist` / `cil_omniglot` prepare them from the files
  TFDS itself would download, found in `<manual_dir>/mnist/` and
  `<manual_dir>/omniglot/`. Otherwise the stock TFDS datasets `mnist` /
  `omniglot` are read, which must already be prepared in array_record format
  (`tfds build mnist --file_format=array_record`, which needs TensorFlow).
* `mini_imagenet`, `mstar_soc`: project builders, from
  `<manual_dir>/mini_imagenet/` and `<manual_dir>/mstar_soc/` (layouts in
  `cil.data.builders`).

Prepared datasets live in `data_dir` (argument, else `CIL_DATA_DIR`, else
TFDS's default `~/tensorflow_datasets`).
"""

import dataclasses
import hashlib
import json
import os
from typing import Optional

from absl import logging
import numpy as np

from cil import _extras
from cil import errors
from cil.data import builders
from cil.data import custom
from cil.data import longtail
from cil.data import preparation
from cil.data import streaming

tfds = _extras.require('tensorflow_datasets', what='cil.data')

DATA_DIR_ENV = 'CIL_DATA_DIR'
MANUAL_DIR_ENV = 'CIL_MANUAL_DIR'
# How a user sets the manual directory, for error messages.
_MANUAL_DIR_SETTINGS = ('the manual_dir argument, --config.manual_dir on a '
                        f'launcher, or ${MANUAL_DIR_ENV}')

# name -> (project builder class, manual sub-directory or None, stock TFDS
# name or None, splits).
_DATASETS = {
    'digits': (builders.CilDigits, None, None, ('train', 'test')),
    'mnist': (builders.CilMnist, 'mnist', 'mnist', ('train', 'test')),
    'omniglot': (builders.CilOmniglot, 'omniglot', 'omniglot',
                 ('train', 'test', 'small1', 'small2')),
    'mini_imagenet': (builders.MiniImagenet, 'mini_imagenet', None,
                      ('train', 'val', 'test')),
    'mstar_soc': (builders.MstarSoc, 'mstar_soc', None, ('train', 'test')),
    'cifar10': (builders.CilCifar10, 'cifar10', None, ('train', 'test')),
    'cifar100': (builders.CilCifar100, 'cifar100', None, ('train', 'test')),
    'imagenet_lt': (longtail.CilImagenetLt, 'imagenet_lt', None,
                    ('train', 'val', 'test')),
    'places_lt': (longtail.CilPlacesLt, 'places_lt', None,
                  ('train', 'val', 'test')),
    'inaturalist2018': (longtail.CilInaturalist2018, 'inaturalist2018', None,
                        ('train', 'val')),
}
# The long-tail benchmarks: already long-tailed (a run keeps every example
# by default), stored as encoded images of many sizes.
LONG_TAIL_NAMES = ('imagenet_lt', 'places_lt', 'inaturalist2018')
DATASET_NAMES = tuple(_DATASETS)


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """A split held in memory.

  Attributes:
    images: `[n, H, W, C]` uint8.
    labels: `[n]` int64 class indices in `[0, num_classes)`.
    class_names: one name per class.
    name: dataset name.
    split: split name (plus any selection applied).
  """
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]
  name: str
  split: str

  def __post_init__(self):
    if self.images.ndim != 4 or self.images.dtype != np.uint8:
      raise ValueError(f'images must be uint8 [n, H, W, C], got '
                       f'{self.images.dtype} {self.images.shape}.')
    if self.labels.shape != self.images.shape[:1]:
      raise ValueError(f'labels {self.labels.shape} do not match images '
                       f'{self.images.shape}.')

  def __len__(self) -> int:
    return int(self.labels.size)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  def class_counts(self) -> np.ndarray:
    return np.bincount(self.labels, minlength=self.num_classes)

  def subset(self, indices: np.ndarray, split: str) -> 'ArrayDataset':
    """The examples at `indices`, as a split named `split`."""
    return ArrayDataset(self.images[indices], self.labels[indices],
                        self.class_names, self.name, split)

  def record(self) -> dict:
    """What identifies this data: size, classes and a SHA-256 of the
    images, labels and class names (a workdir claims it, so a resume
    cannot train on other data; `cil.workdir.Workdir.claim_data`)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(self.class_names),
                              list(self.images.shape)]).encode())
    digest.update(np.ascontiguousarray(self.labels, np.int64).tobytes())
    digest.update(np.ascontiguousarray(self.images).data)
    return {'examples': len(self), 'classes': self.num_classes,
            'sha256': digest.hexdigest()}

  def take(self, indices, split: Optional[str] = None) -> 'ArrayDataset':
    """The examples at `indices` (same classes)."""
    indices = np.asarray(indices)
    return dataclasses.replace(self, images=self.images[indices],
                               labels=self.labels[indices],
                               split=split or f'{self.split}[subset]')

  def select_classes(self, classes, split: Optional[str] = None
                     ) -> 'ArrayDataset':
    """Only the given classes, relabelled 0..len(classes)-1 in that order."""
    classes = np.asarray(classes)
    remap = np.full(self.num_classes, -1)
    remap[classes] = np.arange(classes.size)
    keep = remap[self.labels] >= 0
    return ArrayDataset(
        images=self.images[keep], labels=remap[self.labels[keep]],
        class_names=tuple(self.class_names[c] for c in classes),
        name=self.name, split=split or f'{self.split}[classes]')


def _resolve(path: Optional[str], env: str) -> Optional[str]:
  path = path or os.environ.get(env) or None
  return os.path.abspath(os.path.expanduser(path)) if path else None


def _read_all(source) -> dict:
  """Reads every example of a `tfds.data_source` into stacked arrays."""
  n = len(source)
  try:  # One batched read: much faster than n single reads.
    examples = source.__getitems__(list(range(n))) if n else []
  except TypeError:  # tfds.testing.mock_data's source lacks batched reads.
    examples = [source[i] for i in range(n)]
  if not examples:
    raise ValueError('The split is empty.')
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


_SOURCE_FILE = 'cil_manual_dir.txt'


def _warn_if_other_source(name: str, prepared: str, manual: str) -> None:
  """A prepared dataset is reused as is: say so if its source differs."""
  path = os.path.join(prepared, _SOURCE_FILE)
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    built_from = f.read().strip()
  if built_from != os.path.abspath(manual):
    logging.warning(
        '%s in %s was prepared from %s; the manual directory %s is not read '
        '(datasets are built once). Delete %s to rebuild from it.', name,
        prepared, built_from, os.path.abspath(manual), prepared)


def _build(builder, name: str, manual: Optional[str]) -> None:
  """Prepares a built-in dataset (from `manual`, its manual directory)."""
  try:
    root = builder.data_dir_root
    with preparation.removing_what_a_failed_build_left(root), \
        preparation.first_build(name, root):
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual))
  except FileNotFoundError as e:  # The builder names what is missing.
    raise errors.DataNotFoundError(
        f'{e} (the manual directory is {_MANUAL_DIR_SETTINGS})') from None
  if manual:  # Remember the source, to say so if it changes later.
    with open(os.path.join(builder.data_dir, _SOURCE_FILE), 'w',
              encoding='utf-8') as f:
      f.write(os.path.abspath(manual) + '\n')


def check_name(name: str) -> None:
  """Raises ValueError unless `name` is a registered dataset or a dataset
  spec (`folder:`, `npz:`, `tfds:`; `cil.data.custom`) whose path exists."""
  if name in _DATASETS:
    return
  if custom.parse_spec(name) is None:
    raise ValueError(f'Unknown dataset {name!r}; known: '
                     f'{", ".join(DATASET_NAMES)}, or your own data as '
                     f'folder:/path, npz:/path.npz or '
                     f'tfds:NAME[/CONFIG][:VERSION].')
  custom.check_spec(name)


def load(name: str, split: str, *, data_dir: Optional[str] = None,
         manual_dir: Optional[str] = None,
         options: Optional[custom.Options] = None) -> ArrayDataset:
  """Loads a whole split into memory through TFDS.

  Args:
    name: one of `DATASET_NAMES` (digits, mnist, omniglot, mini_imagenet,
      mstar_soc, cifar10, cifar100), or a spec of your own data:
      `folder:/path`, `npz:/path.npz` or `tfds:NAME[/CONFIG][:VERSION]`
      (`cil.data.custom`).
    split: a split of that dataset (e.g. 'train', 'test'; specs have
      'train' and 'test').
    data_dir: where prepared TFDS datasets live (default `$CIL_DATA_DIR`, else
      TFDS's default).
    manual_dir: root of manually downloaded files (default `$CIL_MANUAL_DIR`);
      each dataset reads `<manual_dir>/<name>/`.
    options: how a spec is read (`cil.data.custom.Options`: image size,
      test fraction, TFDS feature names); None for the defaults.

  Returns:
    An `ArrayDataset`.

  Raises:
    ValueError: unknown dataset or split.
    FileNotFoundError: the data is neither prepared nor in the manual dir;
      the message says which files are expected where.
    cil.errors.DataError: your own data is malformed (the file is named).
  """
  check_name(name)
  if name not in _DATASETS:
    return _load_custom(name, split, _resolve(data_dir, DATA_DIR_ENV),
                        options or custom.Options())
  source, info = _builtin_source(name, split, data_dir, manual_dir)
  if name in LONG_TAIL_NAMES:
    size = (options or custom.Options()).image_size or longtail.IN_MEMORY_SIZE
    with preparation.tfds_warnings_held():  # "OpenCV is not installed".
      images, labels = longtail.read_resized(source, size)
    return ArrayDataset(images=images, labels=labels,
                        class_names=_class_names(info, {}, labels),
                        name=name, split=split)
  arrays = _read_all(source)
  images = arrays['image']
  if images.ndim == 3:
    images = images[..., None]
  labels = arrays['label'].astype(np.int64)
  return ArrayDataset(
      images=np.ascontiguousarray(images.astype(np.uint8)),
      labels=labels,
      class_names=_class_names(info, arrays, labels),
      name=name, split=split)


def _builtin_source(name: str, split: str, data_dir: Optional[str],
                    manual_dir: Optional[str]):
  """`(source, info)` of a registered dataset's split, prepared first if
  it is not (`load`'s Raises)."""
  builder_cls, manual_sub, stock_name, splits = _DATASETS[name]
  if split not in splits:
    raise ValueError(f'Unknown split {split!r} of {name}; known: '
                     f'{", ".join(splits)}.')
  data_dir = _resolve(data_dir, DATA_DIR_ENV)
  manual_root = _resolve(manual_dir, MANUAL_DIR_ENV)

  if manual_sub is None or manual_root is not None or stock_name is None:
    with preparation.tfds_warnings_held():
      builder = builder_cls(data_dir=data_dir)
      prepared = builder.is_prepared()
    if not prepared:
      manual = os.path.join(manual_root, manual_sub) if (
          manual_sub and manual_root) else None
      if manual_sub and manual is None:
        raise errors.DataNotFoundError(
            f'{name} is not prepared in {builder.data_dir} and no manual '
            f'directory is set ({_MANUAL_DIR_SETTINGS}).\n'
            f'{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}')
      root = builder.data_dir_root
      with preparation.one_build_at_a_time(name, root):
        with preparation.tfds_warnings_held():
          builder = builder_cls(data_dir=data_dir)  # Prepared meanwhile?
          prepared = builder.is_prepared()
        if not prepared:
          _build(builder, name, manual)
    elif manual_sub and manual_root is not None:
      _warn_if_other_source(name, builder.data_dir,
                            os.path.join(manual_root, manual_sub))
    if split not in builder.info.splits:
      raise errors.DataNotFoundError(
          f'{name}: split {split!r} was not built (built: '
          f'{", ".join(builder.info.splits)}); add its files to the manual '
          f'directory and delete {builder.data_dir} to rebuild.')
    source = builder.as_data_source(split=split)
    info = builder.info
  else:
    try:
      source = tfds.data_source(stock_name, split=split, data_dir=data_dir,
                                download=False)
    except (tfds.core.registered.DatasetNotFoundError, AssertionError,
            FileNotFoundError, NotImplementedError, ValueError) as e:
      raise errors.DataNotFoundError(
          f'{name}: the stock TFDS dataset {stock_name!r} is not prepared in '
          f'array_record format ({e}).\nEither set a manual directory '
          f'({_MANUAL_DIR_SETTINGS}) whose '
          f'{manual_sub}/ holds the source files, which the project builds '
          f'without TensorFlow:\n{builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}\n'
          f'or prepare the stock dataset (needs TensorFlow): tfds build '
          f'{stock_name} --file_format=array_record') from None
    info = getattr(source, 'dataset_info', None)

  return source, info


def _custom_source(spec: str, split: str, data_dir: Optional[str],
                   options: custom.Options):
  """`(source, info, image_key, label_key)` of a spec's split."""
  kind, _ = custom.parse_spec(spec)
  if kind == 'tfds':
    return custom.tfds_source(spec, split, data_dir=data_dir,
                              options=options)
  if split not in ('train', 'test'):
    raise ValueError(f'Unknown split {split!r} of {spec}; known: train, '
                     f'test.')
  builder = custom.load_builder(spec, data_dir=data_dir, options=options)
  return builder.as_data_source(split=split), builder.info, 'image', 'label'


def _source(name: str, split: str, data_dir: Optional[str],
            manual_dir: Optional[str], options: custom.Options):
  """`(source, info, image_key, label_key)` of any dataset's split (a
  registered one or a spec), prepared first if it is not."""
  check_name(name)
  if name in _DATASETS:
    return (*_builtin_source(name, split, data_dir, manual_dir), 'image',
            'label')
  return _custom_source(name, split, _resolve(data_dir, DATA_DIR_ENV),
                        options)


def stream(name: str, split: str, *, data_dir: Optional[str] = None,
           manual_dir: Optional[str] = None,
           options: Optional[custom.Options] = None
           ) -> streaming.StreamedSplit:
  """A split to read as it is used (`cil.data.streaming`): `load`'s
  arguments, preparation and errors, but only the labels are held in
  memory; images are read by index through Grain."""
  options = options or custom.Options()
  source, info, image_key, label_key = _source(name, split, data_dir,
                                               manual_dir, options)
  transform = None
  if name in LONG_TAIL_NAMES:
    size = options.image_size or longtail.IN_MEMORY_SIZE
    transform = longtail.resizer(size)
  try:
    files = [os.fspath(f) for f in info.splits[split].filepaths]
  except (AttributeError, KeyError, TypeError):
    files = []
  with preparation.tfds_warnings_held():  # "OpenCV is not installed".
    return streaming.open_split(
        source, name=name, split=split, image_key=image_key,
        label_key=label_key, transform=transform, files=files,
        class_names=lambda labels, texts: _named(info, labels, texts))


# Decoded training images above this size are streamed by default: held in
# memory, a split costs about five times its decoded size at its peak (the
# arrays, their device copy, the batches; a 491 MB split peaked at 2.5 GB:
# docs/performance.md), streamed a few chunks.
STREAM_ABOVE_BYTES = 256 << 20


def default_pipeline(name: str, split: str, *,
                     data_dir: Optional[str] = None,
                     manual_dir: Optional[str] = None,
                     options: Optional[custom.Options] = None) -> str:
  """'stream' when the split's images, decoded, exceed
  `STREAM_ABOVE_BYTES`, else 'memory' (from the prepared dataset's
  metadata: its example count and image shape; prepares it if needed)."""
  options = options or custom.Options()
  source, info, image_key, _ = _source(name, split, data_dir, manual_dir,
                                       options)
  if name in LONG_TAIL_NAMES:
    size = options.image_size or longtail.IN_MEMORY_SIZE
    shape = (size, size, 3)
  else:
    try:
      shape = tuple(info.features[image_key].shape)
    except (AttributeError, KeyError, TypeError):
      shape = np.asarray(source[0][image_key]).shape
  if any(d is None for d in shape):
    shape = np.asarray(source[0][image_key]).shape
  decoded = len(source) * int(np.prod(shape))
  return 'stream' if decoded > STREAM_ABOVE_BYTES else 'memory'


def _named(info, labels, texts) -> tuple[str, ...]:
  """Class names from a `class_name` text feature, by label."""
  names = list(_class_names(info, {}, labels))
  for label, value in texts.items():
    names[label] = _text(value)
  return tuple(names)


def _load_custom(spec: str, split: str, data_dir: Optional[str],
                 options: custom.Options) -> ArrayDataset:
  """`load` of a `folder:`, `npz:` or `tfds:` spec."""
  source, info, image_key, label_key = _custom_source(
      spec, split, data_dir, options)
  try:
    arrays = _read_all(source)
  except ValueError:
    raise errors.DataError(f'{spec}: split {split!r} is empty.') from None
  images, labels = arrays[image_key], arrays[label_key]
  if images.dtype != np.uint8 or images.ndim not in (3, 4):
    raise errors.DataError(
        f'{spec}: feature {image_key!r} must be uint8 images [H, W] or '
        f'[H, W, C] of one size, got {images.dtype} {images.shape[1:]} '
        f'(set --config.image_feature).')
  if images.ndim == 3:
    images = images[..., None]
  if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1 or (
      labels.min() < 0):
    raise errors.DataError(
        f'{spec}: feature {label_key!r} must hold non-negative integer class '
        f'labels, got {labels.dtype} {labels.shape[1:]} (set '
        f'--config.label_feature).')
  labels = labels.astype(np.int64)
  feature = info.features[label_key] if info is not None else None
  if getattr(feature, 'names', None):
    names = tuple(feature.names)
  else:
    names = tuple(str(i) for i in range(int(labels.max()) + 1))
  return ArrayDataset(images=np.ascontiguousarray(images), labels=labels,
                      class_names=names, name=spec, split=split)


def _text(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def _class_names(info, arrays, labels) -> tuple[str, ...]:
  """Names from the examples' text features, else the ClassLabel, else ids."""
  num_classes = int(labels.max()) + 1
  feature = None
  try:
    feature = info.features['label']
    num_classes = max(num_classes, int(feature.num_classes))
  except (AttributeError, KeyError, TypeError):
    pass
  names = [str(i) for i in range(num_classes)]
  if 'class_name' in arrays:
    for label, value in zip(labels, arrays['class_name']):
      names[label] = _text(value)
  elif 'character' in arrays and 'alphabet' in arrays:
    for label, a, c in zip(labels, arrays['alphabet'], arrays['character']):
      names[label] = f'{_text(a)}/{_text(c)}'
  elif feature is not None and getattr(feature, 'names', None):
    names = list(feature.names)
  return tuple(names)
