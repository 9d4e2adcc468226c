"""TensorFlow-free TFDS builders of the project.

Each builder writes `array_record` files with plain uint8 `Tensor` features,
so it builds and is read (`tfds.data_source`) without TensorFlow. They exist
because the stock TFDS `mnist`/`omniglot` builders need TensorFlow to prepare,
and because miniImageNet and MSTAR must be downloaded by hand.

Builders and what their manual directory must hold:

* `cil_digits`: nothing (scikit-learn's bundled 8x8 digits).
* `cil_mnist`: `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
  `t10k-images-idx3-ubyte.gz`, `t10k-labels-idx1-ubyte.gz` (the IDX files
  TFDS's `mnist` downloads).
* `cil_omniglot`: any of `images_background.zip` (split `train`),
  `images_evaluation.zip` (`test`), `images_background_small1.zip`
  (`small1`), `images_background_small2.zip` (`small2`), the zips TFDS's
  `omniglot` downloads.
* `mini_imagenet`: `mini-imagenet-cache-{train,val,test}.pkl`, dicts with
  `image_data` uint8 [n, 84, 84, 3] and `class_dict` {class: [indices]}.
* `cil_cifar10`, `cil_cifar100`: the extracted python-version archives,
  `cifar-10-batches-py/` (`data_batch_1` ... `_5`, `test_batch`,
  `batches.meta`) and `cifar-100-python/` (`train`, `test`, `meta`; fine
  labels).
* `mstar_soc`: `train/<CLASS>/<chips>` (17 deg depression) and
  `test/<CLASS>/<chips>` (15 deg), CLASS one of the 10 SOC targets, chips as
  PNG/JPEG/BMP/TIFF images of at least 88x88 pixels.

Use them through `cil.data.load` (which picks the manual dir and data dir);
or directly:

    builder = cil.data.builders.CilMnist(data_dir=DATA_DIR)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=MANUAL_DIR))

One module for the builders (about 600 lines): each is a short reader of
its dataset's own files over the shared `ArrayRecordBuilder`, and they are
read side by side when a dataset's layout is checked against another's.
"""

import contextlib
import glob
import gzip
import io
import os
import pickle
import re
import tempfile
import zipfile
import zlib
from typing import Iterable

import numpy as np

from cil import _extras
from cil import errors

tfds = _extras.require('tensorflow_datasets', what='cil.data')

_FILE_FORMAT = 'array_record'


def check_manual_dir(name: str, manual_dir, required: Iterable[str],
                     instructions: str) -> str:
  """Raises FileNotFoundError naming the missing files and what to do."""
  manual_dir = os.fspath(manual_dir) if manual_dir is not None else None
  if manual_dir is None or not os.path.isdir(manual_dir):
    raise FileNotFoundError(
        f'{name}: manual directory {manual_dir!r} does not exist.\n'
        f'{instructions}')
  missing = [f for f in required
             if not os.path.exists(os.path.join(manual_dir, f))]
  if missing:
    raise FileNotFoundError(
        f'{name}: manual directory {manual_dir} is missing {missing}.\n'
        f'{instructions}')
  return manual_dir


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder,
                         skip_registration=True):
  """The project builders' shared set-up (and your own: `cil.data.custom`):
  array_record output, features from `_features()`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', _FILE_FORMAT)
    # TFDS makes an empty `tmp*tfds` folder in $TMPDIR whenever it looks
    # for a not-yet-prepared dataset's metadata on GCS, and never removes
    # it: remove the empty ones this constructor left.
    pattern = os.path.join(tempfile.gettempdir(), 'tmp*tfds')
    before = set(glob.glob(pattern))
    try:
      super().__init__(**kwargs)
    finally:
      for path in set(glob.glob(pattern)) - before:
        with contextlib.suppress(OSError):
          os.rmdir(path)  # Only if empty.

  # TFDS's writer holds a split's examples to shuffle them and, past 1 GB,
  # spills them to disk through TensorFlow (not a dependency). Builders of
  # sets that can be that large stream instead (`_generate_splits`):
  # examples go to array_record shards in generation order as they come,
  # so memory stays flat and no TensorFlow is needed (the runners draw
  # their own orders from seeds). The built-in small sets keep TFDS's
  # writer, so they prepare exactly as before.
  STREAM = False
  SHARD_BYTES = 256 << 20  # A new shard after this many serialized bytes.

  def _features(self) -> dict:
    raise NotImplementedError

  def _generate_splits(self, dl_manager, download_config):
    if not self.STREAM:
      return super()._generate_splits(dl_manager, download_config)
    generators = self._split_generators(dl_manager)
    return [self._stream_split(name, generator)
            for name, generator in generators.items()]

  def _stream_split(self, split: str, generator) -> 'tfds.core.SplitInfo':
    """Writes one split's examples to array_record shards as they come."""
    array_record = _extras.require('array_record.python.array_record_module',
                                   what='streamed dataset preparation')
    template = self._get_filename_template(split_name=split)
    features = self.info.features
    serializer = tfds.core.example_serializer.ExampleSerializer(
        features.get_serialized_info())
    folder = os.fspath(template.data_dir)
    temporary, lengths, total = [], [], 0
    writer = None
    for _, example in generator:
      if writer is None:
        temporary.append(os.path.join(folder, f'.{split}-{len(temporary)}'
                                      '.array_record'))
        writer = array_record.ArrayRecordWriter(temporary[-1], 'group_size:1')
        lengths.append(0)
        shard_bytes = 0
      data = serializer.serialize_example(features.encode_example(example))
      writer.write(data)
      lengths[-1] += 1
      shard_bytes += len(data)
      total += len(data)
      if shard_bytes >= self.SHARD_BYTES:
        writer.close()
        writer = None
    if writer is not None:
      writer.close()
    if not lengths:
      raise errors.DataError(f'{self.name}: split {split!r} has no examples.')
    for path, final in zip(temporary,
                           template.sharded_filepaths(len(temporary))):
      os.replace(path, os.fspath(final))
    return tfds.core.SplitInfo(name=split, shard_lengths=lengths,
                               num_bytes=total, filename_template=template)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict(self._features()),
        supervised_keys=('image', 'label'),
    )


# ---------------------------------------------------------------------------


class CilDigits(ArrayRecordBuilder):
  """scikit-learn's bundled handwritten digits (UCI optdigits test set).

  1,797 real 8x8 images of 10 classes, shipped inside scikit-learn, so this
  builds with no download. Pixel values 0..16 are scaled to 0..255. Split:
  within each class, a fixed permutation (seed 0) puts two thirds in `train`
  (1,198 images) and the rest in `test` (599).
  """

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
        'label': tfds.features.ClassLabel(num_classes=10),
    }

  def _split_generators(self, dl_manager):
    del dl_manager
    datasets = _extras.require('sklearn.datasets', what='the digits dataset')
    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    rng = np.random.default_rng(0)
    is_train = np.zeros(labels.size, bool)
    for c in range(10):
      members = np.flatnonzero(labels == c)
      members = members[rng.permutation(members.size)]
      is_train[members[:int(round(members.size * 2 / 3))]] = True
    return {
        'train': self._generate_examples(images, labels, is_train),
        'test': self._generate_examples(images, labels, ~is_train),
    }

  def _generate_examples(self, images, labels, keep):
    for i in np.flatnonzero(keep):
      yield int(i), {'image': images[i][..., None], 'label': int(labels[i])}


# ---------------------------------------------------------------------------

_MNIST_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (optionally gzip-compressed) into a uint8 array."""
  opener = gzip.open if path.endswith('.gz') else open
  try:
    with opener(path, 'rb') as f:
      data = f.read()
  except (EOFError, OSError, zlib.error) as e:  # gzip.BadGzipFile: OSError.
    raise ValueError(f'{path} is damaged or truncated ({type(e).__name__}: '
                     f'{e}); download it again.') from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f'{path} is not an IDX file of unsigned bytes.')
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big')
                for i in range(ndim))
  offset = 4 + 4 * ndim
  expected = int(np.prod(shape))
  if len(data) - offset != expected:
    raise ValueError(f'{path}: header says shape {shape} ({expected} bytes) '
                     f'but holds {len(data) - offset} bytes.')
  return np.frombuffer(data, np.uint8, offset=offset).reshape(shape)


class CilMnist(ArrayRecordBuilder):
  """MNIST (LeCun, Cortes and Burges) from its four IDX files, TF-free."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put the four MNIST IDX files (train-images-idx3-ubyte.gz, '
      'train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, '
      't10k-labels-idx1-ubyte.gz; from the MNIST site or any mirror) in '
      '<manual_dir>/mnist/ and run\n  python -c "import cil.data as d; '
      "d.load('mnist', 'train', manual_dir='<manual_dir>')\"")

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
        'label': tfds.features.ClassLabel(num_classes=10),
    }

  def _split_generators(self, dl_manager):
    manual_dir = check_manual_dir(
        'mnist', dl_manager._manual_dir,  # pylint: disable=protected-access
        [f for pair in _MNIST_FILES.values() for f in pair],
        self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {split: self._generate_examples(manual_dir, *files)
            for split, files in _MNIST_FILES.items()}

  def _generate_examples(self, manual_dir, image_file, label_file):
    images = read_idx(os.path.join(manual_dir, image_file))
    labels = read_idx(os.path.join(manual_dir, label_file))
    if images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
      raise ValueError(f'{image_file}/{label_file}: unexpected shapes '
                       f'{images.shape} / {labels.shape}.')
    if labels.size and labels.max() > 9:
      bad = np.flatnonzero(labels > 9)
      raise ValueError(f'{os.path.join(manual_dir, label_file)}: labels must '
                       f'be digits 0-9; entries {bad[:5].tolist()} hold '
                       f'{labels[bad[:5]].tolist()}.')
    for i in range(labels.size):
      yield i, {'image': images[i][..., None], 'label': int(labels[i])}


# ---------------------------------------------------------------------------

_OMNIGLOT_ZIPS = {
    'train': 'images_background.zip',
    'test': 'images_evaluation.zip',
    'small1': 'images_background_small1.zip',
    'small2': 'images_background_small2.zip',
}


class CilOmniglot(ArrayRecordBuilder):
  """Omniglot (Lake et al. 2015) from the repository's zips, TF-free.

  Each present zip becomes a split (train = images_background, test =
  images_evaluation, small1, small2). `label` is the character's index within
  its split, characters sorted by (alphabet, character folder); `alphabet` and
  `character` keep the names. Images are the original 105x105 binary drawings
  (0 = stroke, 255 = background), one channel.
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put any of images_background.zip, images_evaluation.zip, '
      'images_background_small1.zip, images_background_small2.zip (from the '
      'Omniglot repository, github.com/brendenlake/omniglot, python/) in '
      '<manual_dir>/omniglot/.')

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=(105, 105, 1), dtype=np.uint8),
        'label': tfds.features.Tensor(shape=(), dtype=np.int64),
        'alphabet': tfds.features.Text(),
        'character': tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    manual_dir = dl_manager._manual_dir  # pylint: disable=protected-access
    present = {s: z for s, z in _OMNIGLOT_ZIPS.items()
               if manual_dir and os.path.exists(os.path.join(manual_dir, z))}
    if not present:
      check_manual_dir('omniglot', manual_dir, [_OMNIGLOT_ZIPS['small1']],
                       self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {s: self._generate_examples(os.path.join(manual_dir, z))
            for s, z in present.items()}

  def _generate_examples(self, path):
    try:
      yield from self._read_omniglot_zip(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
      raise ValueError(f'{path} is damaged or truncated ({type(e).__name__}: '
                       f'{e}); download it again.') from None

  def _read_omniglot_zip(self, path):
    Image = _extras.require('PIL.Image', what='cil.data')
    with zipfile.ZipFile(path) as zf:
      pngs = sorted(n for n in zf.namelist() if n.lower().endswith('.png'))
      # <root>/<alphabet>/<character>/<drawing>.png
      chars = sorted({tuple(n.split('/')[-3:-1]) for n in pngs})
      if not chars:
        raise ValueError(f'{path} holds no <alphabet>/<character>/*.png.')
      index = {c: i for i, c in enumerate(chars)}
      for name in pngs:
        alphabet, character = name.split('/')[-3:-1]
        with zf.open(name) as f:
          image = np.asarray(Image.open(io.BytesIO(f.read())).convert('L'))
        if image.shape != (105, 105):
          raise ValueError(f'{path}:{name}: expected 105x105, got '
                           f'{image.shape}.')
        yield name, {'image': image[..., None],
                     'label': index[(alphabet, character)],
                     'alphabet': alphabet, 'character': character}


# ---------------------------------------------------------------------------

_MINI_IMAGENET_FILES = {
    split: f'mini-imagenet-cache-{split}.pkl' for split in ('train', 'val',
                                                            'test')}


class MiniImagenet(ArrayRecordBuilder):
  """miniImageNet (Vinyals et al. 2016; Ravi & Larochelle 2017 class split).

  Built from the widely used cache pickles: 64 train, 16 val and 20 test
  classes of 600 84x84 RGB images. `label` is the class's index within its
  split (class names sorted); `class_name` keeps the WordNet id.
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Put mini-imagenet-cache-train.pkl, mini-imagenet-cache-val.pkl and '
      'mini-imagenet-cache-test.pkl (each a dict with "image_data": uint8 '
      '[n, 84, 84, 3] and "class_dict": {class: [indices]}, as distributed '
      'with the Ravi & Larochelle split) in <manual_dir>/mini_imagenet/.')

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=(84, 84, 3), dtype=np.uint8),
        'label': tfds.features.Tensor(shape=(), dtype=np.int64),
        'class_name': tfds.features.Text(),
    }

  def _split_generators(self, dl_manager):
    manual_dir = check_manual_dir(
        'mini_imagenet',
        dl_manager._manual_dir,  # pylint: disable=protected-access
        _MINI_IMAGENET_FILES.values(), self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {s: self._generate_examples(os.path.join(manual_dir, f))
            for s, f in _MINI_IMAGENET_FILES.items()}

  def _generate_examples(self, path):
    with open(path, 'rb') as f:
      cache = safe_unpickle(f, path=path)
    if not isinstance(cache, dict) or not {'image_data', 'class_dict'} <= set(
        cache):
      raise ValueError(f'{path}: expected a dict with "image_data" and '
                       f'"class_dict".')
    images = np.asarray(cache['image_data'])
    if images.dtype != np.uint8 or images.shape[1:] != (84, 84, 3):
      raise ValueError(f'{path}: image_data must be uint8 [n, 84, 84, 3], got '
                       f'{images.dtype} {images.shape}.')
    for label, name in enumerate(sorted(cache['class_dict'])):
      for i in cache['class_dict'][name]:
        yield int(i), {'image': images[i], 'label': label, 'class_name': name}


# ---------------------------------------------------------------------------


# What the dataset pickles (CIFAR's python version, the miniImageNet
# caches) may name: NumPy's array and scalar reconstruction (both module
# paths, NumPy 1 and 2; protocol 5 builds arrays from buffers) and the
# codec protocol-2 pickles use for bytes.
# Containers, strings, bytes and numbers need no name at all.
_PICKLE_GLOBALS = frozenset({
    ('numpy', 'ndarray'), ('numpy', 'dtype'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'),
    ('numpy._core.multiarray', '_reconstruct'),
    ('numpy._core.multiarray', 'scalar'),
    ('numpy.core.numeric', '_frombuffer'),  # Protocol 5's arrays.
    ('numpy._core.numeric', '_frombuffer'),
    ('_codecs', 'encode'),
})


class UnsafePickleError(errors.DataError, pickle.UnpicklingError):
  """A pickle asked for something a dataset file never holds (a
  `DataError`: launchers report it in one line)."""


class _DataUnpickler(pickle.Unpickler):
  """An unpickler that builds only data (`_PICKLE_GLOBALS`), as
  `torch.load(weights_only=True)` does: a crafted file in a manual
  directory cannot run code when the dataset is prepared."""

  def __init__(self, file, *, path: str, **kwargs):
    super().__init__(file, **kwargs)
    self._path = path

  def find_class(self, module: str, name: str):
    if (module, name) in _PICKLE_GLOBALS:
      return super().find_class(module, name)
    raise UnsafePickleError(
        f'{self._path} asks to load {module}.{name}, which a dataset file '
        f'never holds; it was not loaded (a dataset pickle holds only '
        f'containers, strings, numbers and NumPy arrays).')


def safe_unpickle(file, *, path: str, **kwargs) -> object:
  """`pickle.load(file, **kwargs)` restricted to data (`_DataUnpickler`).

  Raises:
    UnsafePickleError: the pickle names a callable or class outside
      `_PICKLE_GLOBALS` (nothing of it is run).
  """
  return _DataUnpickler(file, path=path, **kwargs).load()


def _unpickle_cifar(path: str) -> object:
  """Unpickles a CIFAR archive file; a damaged or truncated one is named."""
  try:
    with open(path, 'rb') as f:
      return safe_unpickle(f, path=path, encoding='bytes')
  except UnsafePickleError:
    raise
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
          AttributeError, IndexError) as e:
    raise ValueError(f'{path} is damaged or truncated ({type(e).__name__}: '
                     f'{e}); extract it again from the CIFAR archive.'
                     ) from None


def read_cifar_pickle(path: str, label_key: str) -> tuple[np.ndarray,
                                                          np.ndarray]:
  """One CIFAR python-version batch: `[n, 32, 32, 3]` uint8 images, labels.

  The files of `cifar-10-python.tar.gz` / `cifar-100-python.tar.gz` are
  pickled dicts (byte-string keys) with `data`, uint8 `[n, 3072]` in
  channel-major order, and `labels` (CIFAR-10) or `fine_labels`
  (CIFAR-100). A damaged or truncated file is named.
  """
  batch = _unpickle_cifar(path)
  if not isinstance(batch, dict):
    raise ValueError(f'{path}: expected a pickled dict, got '
                     f'{type(batch).__name__}.')
  batch = {k.decode() if isinstance(k, bytes) else k: v
           for k, v in batch.items()}
  if 'data' not in batch or label_key not in batch:
    raise ValueError(f'{path}: expected keys "data" and "{label_key}", got '
                     f'{sorted(batch)}.')
  data = np.asarray(batch['data'])
  labels = np.asarray(batch[label_key], np.int64)
  if (data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072
      or labels.shape != data.shape[:1]):
    raise ValueError(f'{path}: "data" must be uint8 [n, 3072] with n '
                     f'"{label_key}", got {data.dtype} {data.shape} and '
                     f'{labels.shape[0] if labels.ndim else "scalar"} '
                     f'labels.')
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


class _Cifar(ArrayRecordBuilder):
  """Shared CIFAR builder: the python-version pickles, TF-free."""

  FOLDER = ''
  FILES: dict = {}
  META = ('', '')  # (file, key of the class names)
  LABEL_KEY = ''
  NUM_CLASSES = 0

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=(32, 32, 3), dtype=np.uint8),
        'label': tfds.features.ClassLabel(num_classes=self.NUM_CLASSES),
        'class_name': tfds.features.Text(),
    }

  def _read_class_names(self, manual_dir: str) -> list:
    """Class names from the archive's meta file."""
    path = os.path.join(manual_dir, self.FOLDER, self.META[0])
    meta = _unpickle_cifar(path)
    try:
      names = [n.decode() if isinstance(n, bytes) else str(n)
               for n in meta[self.META[1].encode()]]
    except (KeyError, TypeError, AttributeError, IndexError) as e:
      raise ValueError(f'{path} is damaged or truncated ({type(e).__name__}'
                       f': {e}); extract it again from the CIFAR archive.'
                       ) from None
    if len(names) != self.NUM_CLASSES:
      raise ValueError(f'{path}: {self.META[1]} lists {len(names)} classes, '
                       f'expected {self.NUM_CLASSES}.')
    return names

  def _split_generators(self, dl_manager):
    required = [os.path.join(self.FOLDER, f)
                for files in self.FILES.values() for f in files]
    required.append(os.path.join(self.FOLDER, self.META[0]))
    manual_dir = check_manual_dir(
        self.name, dl_manager._manual_dir,  # pylint: disable=protected-access
        required, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    names = self._read_class_names(manual_dir)
    return {split: self._generate_examples(
        [os.path.join(manual_dir, self.FOLDER, f) for f in files], names)
            for split, files in self.FILES.items()}

  def _generate_examples(self, paths, names):
    key = 0
    for path in paths:
      images, labels = read_cifar_pickle(path, self.LABEL_KEY)
      if labels.size and (labels.min() < 0
                          or labels.max() >= self.NUM_CLASSES):
        raise ValueError(f'{path}: labels must be in [0, '
                         f'{self.NUM_CLASSES}), got range [{labels.min()}, '
                         f'{labels.max()}].')
      for image, label in zip(images, labels):
        yield key, {'image': image, 'label': int(label),
                    'class_name': names[label]}
        key += 1


class CilCifar10(_Cifar):
  """CIFAR-10 (Krizhevsky 2009) from `cifar-10-batches-py/`, TF-free."""

  FOLDER = 'cifar-10-batches-py'
  FILES = {'train': tuple(f'data_batch_{i}' for i in range(1, 6)),
           'test': ('test_batch',)}
  META = ('batches.meta', 'label_names')
  LABEL_KEY = 'labels'
  NUM_CLASSES = 10
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/'
      'cifar.html, "CIFAR-10 python version") into <manual_dir>/cifar10/, '
      'so that <manual_dir>/cifar10/cifar-10-batches-py/ holds data_batch_1 '
      '... data_batch_5, test_batch and batches.meta.')


class CilCifar100(_Cifar):
  """CIFAR-100 (fine labels) from `cifar-100-python/`, TF-free."""

  FOLDER = 'cifar-100-python'
  FILES = {'train': ('train',), 'test': ('test',)}
  META = ('meta', 'fine_label_names')
  LABEL_KEY = 'fine_labels'
  NUM_CLASSES = 100
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Extract cifar-100-python.tar.gz (https://www.cs.toronto.edu/~kriz/'
      'cifar.html, "CIFAR-100 python version") into <manual_dir>/cifar100/, '
      'so that <manual_dir>/cifar100/cifar-100-python/ holds train, test and '
      'meta.')


# ---------------------------------------------------------------------------

MSTAR_SOC_CLASSES = ('2S1', 'BMP2', 'BRDM_2', 'BTR60', 'BTR70', 'D7', 'T62',
                     'T72', 'ZIL131', 'ZSU_23_4')
_MSTAR_CROP = 88
_IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def _normalise_class(name: str) -> str:
  return re.sub(r'[^0-9A-Z]', '', name.upper())


class MstarSoc(ArrayRecordBuilder):
  """MSTAR, 10-class standard operating condition (SOC), 88x88 center crops.

  Train: chips at 17 deg depression; test: 15 deg. Each chip is converted to
  one-channel uint8 and center-cropped to 88x88, as A-ConvNets (Chen et al.
  2016) used. Folder names are matched to the 10 classes ignoring case and
  punctuation (BRDM-2, brdm_2, BRDM2 are one class).
  """

  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'MSTAR is distributed by the AFRL/SDMS (MSTAR public targets). Convert '
      'the chips to images and lay them out as\n'
      '  <manual_dir>/mstar_soc/train/<CLASS>/*.png   (17 deg depression)\n'
      '  <manual_dir>/mstar_soc/test/<CLASS>/*.png    (15 deg depression)\n'
      f'with CLASS in {", ".join(MSTAR_SOC_CLASSES)} (PNG, JPEG, BMP or TIFF, '
      'at least 88x88 pixels).')

  def _features(self):
    return {
        'image': tfds.features.Tensor(shape=(_MSTAR_CROP, _MSTAR_CROP, 1),
                                      dtype=np.uint8),
        'label': tfds.features.ClassLabel(names=MSTAR_SOC_CLASSES),
    }

  def _split_generators(self, dl_manager):
    manual_dir = check_manual_dir(
        'mstar_soc', dl_manager._manual_dir,  # pylint: disable=protected-access
        ['train', 'test'], self.MANUAL_DOWNLOAD_INSTRUCTIONS)
    return {s: self._generate_examples(os.path.join(manual_dir, s))
            for s in ('train', 'test')}

  def _generate_examples(self, split_dir):
    Image = _extras.require('PIL.Image', what='cil.data')
    known = {_normalise_class(c): i for i, c in enumerate(MSTAR_SOC_CLASSES)}
    folders = sorted(d for d in os.listdir(split_dir)
                     if os.path.isdir(os.path.join(split_dir, d)))
    unknown = [d for d in folders if _normalise_class(d) not in known]
    if unknown:
      raise ValueError(f'{split_dir}: folders {unknown} are not MSTAR SOC '
                       f'classes ({", ".join(MSTAR_SOC_CLASSES)}).')
    found = {known[_normalise_class(d)] for d in folders}
    if len(found) != len(MSTAR_SOC_CLASSES):
      missing = [c for i, c in enumerate(MSTAR_SOC_CLASSES) if i not in found]
      raise ValueError(f'{split_dir}: no folder for classes {missing}.')
    for folder in folders:
      label = known[_normalise_class(folder)]
      for name in sorted(os.listdir(os.path.join(split_dir, folder))):
        if not name.lower().endswith(_IMAGE_SUFFIXES):
          continue
        path = os.path.join(split_dir, folder, name)
        image = np.asarray(Image.open(path).convert('L'))
        h, w = image.shape
        if h < _MSTAR_CROP or w < _MSTAR_CROP:
          raise ValueError(f'{path}: chip is {h}x{w}, smaller than '
                           f'{_MSTAR_CROP}x{_MSTAR_CROP}.')
        top, left = (h - _MSTAR_CROP) // 2, (w - _MSTAR_CROP) // 2
        crop = image[top:top + _MSTAR_CROP, left:left + _MSTAR_CROP]
        yield f'{folder}/{name}', {'image': crop[..., None], 'label': label}
