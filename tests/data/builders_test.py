"""Tests for cil.data.datasets and cil.data.builders: the TF-free TFDS
builders, damaged files named, the real data where present.
"""

import glob
import gzip
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from unittest import mock
import zipfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

import cifar_fixture  # tests/, beside this file
import testutil
from cil import data
from cil.data import builders
from cil.data import fewshot
from testutil import ROOT


SHARED_DATA = os.path.join(os.path.dirname(ROOT), 'shared', 'data')


_ENV = {'CIL_DATA_DIR': '', 'CIL_MANUAL_DIR': ''}


def _tempdir(test):
  path = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b''.join(
      int(n).to_bytes(4, 'big') for n in array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _png_bytes(array):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format='PNG')
  return buf.getvalue()


# Environment variables must not leak in from the shell running the tests.
@mock.patch.dict(os.environ, _ENV)
class _WritesAFile:
  """A pickle payload that, unpickled by `pickle.load`, writes a file."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (os.system, (f'touch {self.path}',))


class BuilderTest(parameterized.TestCase):
  """Each builder, through TFDS, on fixtures generated here."""

  def setUp(self):
    super().setUp()
    self.data_dir = _tempdir(self)
    self.manual = _tempdir(self)

  def test_digits_is_embedded(self):
    train = data.load('digits', 'train', data_dir=self.data_dir)
    test = data.load('digits', 'test', data_dir=self.data_dir)
    self.assertEqual(train.images.shape, (1198, 8, 8, 1))
    self.assertLen(test, 599)
    self.assertEqual(train.num_classes, 10)
    np.testing.assert_array_equal(
        train.class_counts() + test.class_counts(),
        [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    self.assertEqual(train.images.max(), 255)

  def test_a_first_build_prints_one_line_and_no_tfds_output(self):
    code = ('from absl import logging; logging.set_verbosity({v}); '
            'from cil import data; data.load("digits", "train", '
            'data_dir={d!r})')
    quiet = subprocess.run(
        [sys.executable, '-c', code.format(v='logging.WARNING',
                                           d=self.data_dir)],
        capture_output=True, text=True, check=True, cwd=ROOT)
    self.assertEqual(
        quiet.stdout + quiet.stderr,
        f'cil: preparing digits in {self.data_dir} (first run) ...\n')
    # -v 1 (debug) shows TFDS's own output, as before.
    verbose = subprocess.run(
        [sys.executable, '-c', code.format(v='logging.DEBUG',
                                           d=_tempdir(self))],
        capture_output=True, text=True, check=True, cwd=ROOT)
    self.assertIn('has no dataset_info.json', verbose.stderr)
    self.assertIn('Downloading and preparing dataset',
                  verbose.stdout + verbose.stderr)

  def test_mnist_from_idx_files(self):
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(self.manual, 'mnist'))
    expected = {}
    for split, prefix, n in (('train', 'train', 12), ('test', 't10k', 5)):
      images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
      labels = np.arange(n) % 10
      _write_idx(os.path.join(self.manual, 'mnist',
                              f'{prefix}-images-idx3-ubyte.gz'), images)
      _write_idx(os.path.join(self.manual, 'mnist',
                              f'{prefix}-labels-idx1-ubyte.gz'), labels)
      expected[split] = (images, labels)
    for split, (images, labels) in expected.items():
      ds = data.load('mnist', split, data_dir=self.data_dir,
                     manual_dir=self.manual)
      # TFDS shuffles example order; match examples by content.
      got = {ds.images[i].tobytes(): ds.labels[i] for i in range(len(ds))}
      want = {images[i][..., None].tobytes(): labels[i]
              for i in range(labels.size)}
      self.assertEqual(got, want)
    # Prepared once: another manual dir is not read, and the user is told.
    other = _tempdir(self)
    with self.assertLogs(level='WARNING') as logged:
      data.load('mnist', 'train', data_dir=self.data_dir, manual_dir=other)
    self.assertRegex('\n'.join(logged.output),
                     f'was prepared from {self.manual}/mnist; the manual '
                     f'directory {other}/mnist is not read')

  def test_builders_leave_no_empty_tfds_folders_in_tmp(self):
    pattern = os.path.join(tempfile.gettempdir(), 'tmp*tfds')
    before = set(glob.glob(pattern))
    builders.CilMnist(data_dir=self.data_dir)  # Not prepared: TFDS looks
    builders.CilOmniglot(data_dir=self.data_dir)  # on GCS (a temp folder).
    self.assertEqual(set(glob.glob(pattern)) - before, set())

  def test_mnist_missing_files_are_named(self):
    os.makedirs(os.path.join(self.manual, 'mnist'))
    with self.assertRaisesRegex(FileNotFoundError,
                                r"missing \['train-images-idx3-ubyte.gz'"):
      data.load('mnist', 'train', data_dir=self.data_dir,
                manual_dir=self.manual)

  def test_missing_manual_dir_says_where(self):
    with self.assertRaisesRegex(FileNotFoundError,
                                'mini-imagenet-cache-train.pkl'):
      data.load('mini_imagenet', 'train', data_dir=self.data_dir)
    with self.assertRaisesRegex(FileNotFoundError, 'does not exist'):
      data.load('mstar_soc', 'train', data_dir=self.data_dir,
                manual_dir=os.path.join(self.manual, 'nowhere'))

  def test_omniglot_from_zip(self):
    rng = np.random.default_rng(1)
    os.makedirs(os.path.join(self.manual, 'omniglot'))
    path = os.path.join(self.manual, 'omniglot',
                        'images_background_small1.zip')
    with zipfile.ZipFile(path, 'w') as zf:
      for alphabet in ('Greek', 'Korean'):
        for char in ('character01', 'character02'):
          for k in range(3):
            image = np.where(rng.random((105, 105)) < 0.1, 0, 255)
            zf.writestr(f'images_background_small1/{alphabet}/{char}/'
                        f'{k:02d}.png', _png_bytes(image.astype(np.uint8)))
    ds = data.load('omniglot', 'small1', data_dir=self.data_dir,
                   manual_dir=self.manual)
    self.assertEqual(ds.images.shape, (12, 105, 105, 1))
    self.assertEqual(ds.class_names, ('Greek/character01', 'Greek/character02',
                                      'Korean/character01',
                                      'Korean/character02'))
    np.testing.assert_array_equal(ds.class_counts(), [3, 3, 3, 3])
    self.assertEqual(set(np.unique(ds.images)), {0, 255})
    with self.assertRaisesRegex(FileNotFoundError, "split 'small2' was not"):
      data.load('omniglot', 'small2', data_dir=self.data_dir,
                manual_dir=self.manual)

  def test_full_omniglot_fewshot_split_with_rotations(self):
    rng = np.random.default_rng(4)
    os.makedirs(os.path.join(self.manual, 'omniglot'))
    for zip_name, chars in (('images_background', 3),
                            ('images_evaluation', 2)):
      with zipfile.ZipFile(os.path.join(self.manual, 'omniglot',
                                        f'{zip_name}.zip'), 'w') as zf:
        for c in range(chars):
          for k in range(2):
            image = np.where(rng.random((105, 105)) < 0.2, 0, 255)
            zf.writestr(f'{zip_name}/Alpha{zip_name[7]}/character{c:02d}/'
                        f'{k}.png', _png_bytes(image.astype(np.uint8)))
    splits = data.load_fewshot('omniglot', data_dir=self.data_dir,
                               manual_dir=self.manual)
    # 5 characters: all but the last are meta-train (1200 on the full set).
    self.assertEqual(splits.train.num_classes, 4 * 4)
    self.assertEqual(splits.test.num_classes, 1 * 4)
    self.assertEqual(splits.train.images.shape[1:], (28, 28, 1))
    self.assertEmpty(set(splits.train.class_names)
                     & set(splits.test.class_names))
    # Class c + 4k holds the images of class c rotated by k * 90 degrees.
    first = splits.train.images[splits.train.labels == 0]
    rotated = splits.train.images[splits.train.labels == 4]
    np.testing.assert_array_equal(np.rot90(first, 1, axes=(1, 2)), rotated)

  def _mini_imagenet_fixture(self, classes_per_split=(3, 16, 20)):
    os.makedirs(os.path.join(self.manual, 'mini_imagenet'))
    rng = np.random.default_rng(2)
    start = 0
    for split, n_classes in zip(('train', 'val', 'test'), classes_per_split):
      names = [f'n{start + c:08d}' for c in range(n_classes)]
      start += n_classes
      images = rng.integers(0, 256, (2 * n_classes, 84, 84, 3), np.uint8)
      class_dict = {name: [2 * c, 2 * c + 1] for c, name in enumerate(names)}
      with open(os.path.join(self.manual, 'mini_imagenet',
                             f'mini-imagenet-cache-{split}.pkl'), 'wb') as f:
        pickle.dump({'image_data': images, 'class_dict': class_dict}, f)

  def test_mini_imagenet_from_pickles_and_paper_split(self):
    self._mini_imagenet_fixture()
    splits = data.load_fewshot('mini_imagenet', data_dir=self.data_dir,
                               manual_dir=self.manual)
    self.assertEqual(splits.train.images.shape, (6, 84, 84, 3))
    self.assertEqual(splits.val.num_classes, 16)
    self.assertEqual(splits.test.num_classes, 20)
    paper = data.load_fewshot('mini_imagenet', class_split='paper',
                              data_dir=self.data_dir, manual_dir=self.manual)
    self.assertEqual((paper.val.num_classes, paper.test.num_classes),
                     (12, 24))
    self.assertEmpty(set(paper.val.class_names) & set(paper.test.class_names))
    self.assertEmpty(set(paper.train.class_names) & set(paper.test.class_names))

  def test_a_pickle_that_would_run_code_is_refused(self):
    marker = os.path.join(self.manual, 'pwned')
    path = os.path.join(self.manual, 'data_batch_1')
    with open(path, 'wb') as f:
      pickle.dump({b'data': _WritesAFile(marker)}, f)
    with self.assertRaisesRegex(builders.UnsafePickleError,
                                'data_batch_1 asks to load posix.system|'
                                'data_batch_1 asks to load os.system'):
      builders.read_cifar_pickle(path, 'labels')
    self.assertFalse(os.path.exists(marker))
    # Through a launcher, as a user meets it: one line, no traceback, no
    # code run.
    manual = os.path.join(self.manual, 'launcher')
    root, _ = cifar_fixture.write_cifar(manual, n=2)
    with open(os.path.join(root, 'data_batch_2'), 'wb') as f:
      pickle.dump({b'data': _WritesAFile(marker)}, f)
    result = testutil.launch(
        'launch.export_dataset', '--dataset=cifar10', f'--manual_dir={manual}',
        f'--data_dir={self.data_dir}', f'--out={self.manual}/out.npz',
        '--format=npz', env={'CIL_HUGE_PAGES': '0'})
    self.assertEqual(result.returncode, 1, result.stderr)
    lines = [line for line in result.stderr.splitlines()
             if not line.startswith('cil: preparing')]
    self.assertLen(lines, 1, result.stderr)
    self.assertRegex(lines[0], r'^error: .*data_batch_2 asks to load '
                     r'(posix|os)\.system')
    self.assertFalse(os.path.exists(marker))
    # What the dataset files hold loads, in every pickle protocol (2 is the
    # CIFAR archives'; it pickles bytes through _codecs.encode).
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    for protocol in (2, 4, 5):
      with open(path, 'wb') as f:
        pickle.dump({b'data': array, b'labels': [1, 2, 3],
                     b'names': [b'a', 'b']}, f, protocol=protocol)
      with open(path, 'rb') as f:
        loaded = builders.safe_unpickle(f, path=path, encoding='bytes')
      np.testing.assert_array_equal(loaded[b'data'], array)
      self.assertEqual(loaded[b'names'], [b'a', 'b'])

  def test_mini_imagenet_bad_pickle(self):
    os.makedirs(os.path.join(self.manual, 'mini_imagenet'))
    for split in ('train', 'val', 'test'):
      with open(os.path.join(self.manual, 'mini_imagenet',
                             f'mini-imagenet-cache-{split}.pkl'), 'wb') as f:
        pickle.dump({'images': []}, f)
    with self.assertRaisesRegex(ValueError, 'image_data'):
      data.load('mini_imagenet', 'train', data_dir=self.data_dir,
                manual_dir=self.manual)

  def test_cifar10_and_cifar100_from_the_python_pickles(self):
    _, written = cifar_fixture.write_cifar(self.manual)
    train = data.load('cifar10', 'train', data_dir=self.data_dir,
                      manual_dir=self.manual)
    test = data.load('cifar10', 'test', data_dir=self.data_dir,
                     manual_dir=self.manual)
    self.assertEqual(train.images.shape, (50, 32, 32, 3))
    self.assertEqual(test.class_names,
                     tuple(f'cifar10_class{c}' for c in range(10)))
    # Pixels and labels survive the channel-major layout (TFDS shuffles the
    # order, so compare the sets of (image, label) pairs).

    def pairs(images, labels):
      return sorted((im.tobytes(), int(y)) for im, y in zip(images, labels))
    self.assertEqual(pairs(test.images, test.labels),
                     pairs(*written['test_batch']))
    self.assertEqual(
        pairs(train.images, train.labels),
        pairs(*(np.concatenate([written[f'data_batch_{i}'][j]
                                for i in range(1, 6)]) for j in (0, 1))))
    # Cao et al.'s long tail on top: N_i = 5 * 5^(-i/9), floored.
    split = data.get_protocol('longtail:ratio=5')(train.labels, seed=0)
    np.testing.assert_array_equal(split.class_counts,
                                  np.floor(5 * 5.0 ** (-np.arange(10) / 9)))

    _, written = cifar_fixture.write_cifar(self.manual,
                                           cifar_fixture.CIFAR100, n=4)
    test = data.load('cifar100', 'test', data_dir=self.data_dir,
                     manual_dir=self.manual)
    self.assertEqual(test.num_classes, 100)
    self.assertEqual(test.class_names[3], 'cifar100_class3')  # Labels 1-4.
    self.assertEqual(pairs(test.images, test.labels), pairs(*written['test']))

  def test_cifar_damaged_and_missing_files_are_named(self):
    root, _ = cifar_fixture.write_cifar(self.manual)
    path = os.path.join(root, 'data_batch_3')
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
    with self.assertRaisesRegex(ValueError, r'data_batch_3 is damaged or '
                                r'truncated'):
      data.load('cifar10', 'train', data_dir=self.data_dir,
                manual_dir=self.manual)
    with open(path, 'wb') as f:
      pickle.dump({b'data': np.zeros((2, 100), np.uint8),
                   b'labels': [0, 1]}, f)
    with self.assertRaisesRegex(ValueError, r'data_batch_3: "data" must be '
                                r'uint8 \[n, 3072\]'):
      data.load('cifar10', 'train', data_dir=self.data_dir,
                manual_dir=self.manual)
    os.remove(path)
    with self.assertRaisesRegex(FileNotFoundError, r"cil_cifar10: manual "
                                r"directory .* is missing \['cifar-10-"
                                r"batches-py/data_batch_3'\]"):
      data.load('cifar10', 'train', data_dir=self.data_dir,
                manual_dir=self.manual)

  def test_mstar_center_crop_and_class_folders(self):
    rng = np.random.default_rng(3)
    chips = {}
    for split in ('train', 'test'):
      for c, name in enumerate(builders.MSTAR_SOC_CLASSES):
        # Folder spellings vary between distributions of MSTAR.
        folder = name.replace('_', '-').lower() if c % 2 else name
        os.makedirs(os.path.join(self.manual, 'mstar_soc', split, folder))
        chip = rng.integers(0, 256, (100, 100), np.uint8)
        Image.fromarray(chip).save(os.path.join(
            self.manual, 'mstar_soc', split, folder, 'hb0001.png'))
        chips[(split, c)] = chip[6:94, 6:94]
    for split in ('train', 'test'):
      ds = data.load('mstar_soc', split, data_dir=self.data_dir,
                     manual_dir=self.manual)
      self.assertEqual(ds.images.shape, (10, 88, 88, 1))
      self.assertEqual(ds.class_names, builders.MSTAR_SOC_CLASSES)
      for image, label in zip(ds.images, ds.labels):
        np.testing.assert_array_equal(image[..., 0], chips[(split, label)])

  def test_mstar_unknown_class_folder(self):
    os.makedirs(os.path.join(self.manual, 'mstar_soc', 'train', 'TANK'))
    os.makedirs(os.path.join(self.manual, 'mstar_soc', 'test'))
    with self.assertRaisesRegex(ValueError, r"folders \['TANK'\] are not"):
      data.load('mstar_soc', 'train', data_dir=self.data_dir,
                manual_dir=self.manual)

  def test_unknown_names(self):
    with self.assertRaisesRegex(ValueError, 'Unknown dataset .*digits, mnist'):
      data.load('cifar', 'train')
    with self.assertRaisesRegex(ValueError, "Unknown split 'val' of digits"):
      data.load('digits', 'val')
    with self.assertRaisesRegex(ValueError, 'Unknown few-shot dataset'):
      data.load_fewshot('cifar')

  def test_bad_idx_file(self):
    path = os.path.join(self.manual, 'bad.gz')
    with gzip.open(path, 'wb') as f:
      f.write(b'\x00\x00\x08\x01\x00\x00\x00\x05abc')
    with self.assertRaisesRegex(ValueError, 'holds 3 bytes'):
      builders.read_idx(path)

  def test_damaged_files_are_named(self):
    # A truncated gzip file (the download stopped).
    path = os.path.join(self.manual, 'cut.gz')
    with gzip.open(path, 'wb') as f:
      f.write(bytes(range(256)) * 64)
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
    with self.assertRaisesRegex(ValueError, r'cut\.gz is damaged or '
                                r'truncated \(EOFError'):
      builders.read_idx(path)
    # An IDX label file holding a label outside 0-9.
    labels = os.path.join(self.manual, 'labels.gz')
    images = os.path.join(self.manual, 'images.gz')
    _write_idx(labels, np.array([3, 12, 1], np.uint8))
    _write_idx(images, np.zeros((3, 28, 28), np.uint8))
    builder = builders.CilMnist(data_dir=self.data_dir)
    with self.assertRaisesRegex(ValueError, r'labels\.gz: labels must be '
                                r'digits 0-9; entries \[1\] hold \[12\]'):
      list(builder._generate_examples(self.manual, 'images.gz', 'labels.gz'))
    # A damaged Omniglot zip.
    bad_zip = os.path.join(self.manual, 'images_background_small1.zip')
    with open(bad_zip, 'wb') as f:
      f.write(b'PK\x03\x04 not really a zip')
    builder = builders.CilOmniglot(data_dir=self.data_dir)
    with self.assertRaisesRegex(ValueError, r'small1\.zip is damaged or '
                                r'truncated \(BadZipFile'):
      list(builder._generate_examples(bad_zip))
    # Bytes flipped inside a compressed member (zlib or CRC error).
    flipped = os.path.join(self.manual, 'images_background_small2.zip')
    with zipfile.ZipFile(flipped, 'w', zipfile.ZIP_DEFLATED) as zf:
      zf.writestr('root/Latin/character01/a.png',
                  _png_bytes(np.random.default_rng(0).integers(
                      0, 256, (105, 105), dtype=np.uint8)))
    with open(flipped, 'r+b') as f:
      blob = bytearray(f.read())
      for i in range(60, 160):
        blob[i] ^= 0xA5
      f.seek(0)
      f.write(blob)
    with self.assertRaisesRegex(ValueError, r'small2\.zip is damaged or '
                                r'truncated'):
      list(builder._generate_examples(flipped))

  def test_a_failed_build_leaves_the_data_dir_as_it_was(self):
    # A damaged source file stops the build; so does an extracting
    # builder's error after TFDS made its `tmp*tfds` extraction folder.
    os.makedirs(os.path.join(self.data_dir, 'kept'))  # Existing: kept.
    os.makedirs(os.path.join(self.manual, 'mnist'))
    for name in ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
                 't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'):
      with open(os.path.join(self.manual, 'mnist', name), 'wb') as f:
        f.write(b'\x1f\x8b not gzip')
    with self.assertRaisesRegex(ValueError, 'damaged or truncated'):
      data.load('mnist', 'train', data_dir=self.data_dir,
                manual_dir=self.manual)
    self.assertEqual(os.listdir(self.data_dir), ['kept'])

    def extract_then_fail(builder, dl_manager):
      del builder
      os.makedirs(os.path.join(dl_manager.download_dir, 'extracted',
                               'tmpab12cdtfds'))
      raise ValueError('archive.zip is damaged')
    with mock.patch.object(builders.CilOmniglot, '_split_generators',
                           extract_then_fail):
      with self.assertRaisesRegex(ValueError, 'archive.zip is damaged'):
        data.load('omniglot', 'train', data_dir=self.data_dir,
                  manual_dir=self.manual)
    self.assertEqual(os.listdir(self.data_dir), ['kept'])


@mock.patch.dict(os.environ, _ENV)
class StockTfdsTest(absltest.TestCase):
  """Without a manual dir, the stock TFDS datasets are read (mocked here)."""

  def test_stock_mnist_through_data_source(self):
    with tfds.testing.mock_data(num_examples=7):
      ds = data.load('mnist', 'train', data_dir=tempfile.gettempdir())
    self.assertEqual(ds.images.shape, (7, 28, 28, 1))
    self.assertEqual(ds.num_classes, 10)

  def test_stock_omniglot_feeds_fewshot_resize(self):
    with tfds.testing.mock_data(num_examples=6):
      ds = data.load('omniglot', 'test', data_dir=tempfile.gettempdir())
    self.assertEqual(ds.images.shape[1:], (105, 105, 3))
    small = fewshot.resize(ds, 28, invert=True)
    self.assertEqual(small.images.shape, (6, 28, 28, 1))

  def test_unprepared_stock_dataset_explains_both_ways(self):
    with self.assertRaisesRegex(FileNotFoundError,
                                'tfds build mnist --file_format=array_record'):
      data.load('mnist', 'train', data_dir=_tempdir(self))


@absltest.skipUnless(os.path.isdir(SHARED_DATA), 'needs ../shared/data')
@mock.patch.dict(os.environ, _ENV)
class RealDataTest(absltest.TestCase):
  """The real MNIST and Omniglot files, through the same code a user runs."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = tempfile.mkdtemp()

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.data_dir, ignore_errors=True)
    super().tearDownClass()

  def test_mnist_counts_and_table1_protocol(self):
    train = data.load('mnist', 'train', data_dir=self.data_dir,
                      manual_dir=SHARED_DATA)
    np.testing.assert_array_equal(
        train.class_counts(),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
    split = data.get_protocol('odd10')(train.labels, seed=0)
    np.testing.assert_array_equal(split.class_counts[1::2],
                                  [674, 613, 542, 627, 595])
    self.assertAlmostEqual(split.imbalance_degree, 0.5, delta=0.01)

  def test_omniglot_small_is_alphabet_disjoint(self):
    splits = data.load_fewshot('omniglot_small', data_dir=self.data_dir,
                               manual_dir=SHARED_DATA)
    train_alphabets = {n.split('/')[0] for n in splits.train.class_names}
    test_alphabets = {n.split('/')[0] for n in splits.test.class_names}
    self.assertEqual(test_alphabets,
                     {'Japanese_(katakana)', 'Sanskrit', 'Tagalog'})
    self.assertEmpty(train_alphabets & test_alphabets)
    self.assertEqual(splits.train.images.shape[1:], (28, 28, 1))
    # Strokes are bright after inversion: most pixels are dark background.
    self.assertLess(splits.train.images.mean(), 80)
    np.testing.assert_array_equal(np.unique(splits.test.class_counts()), [20])


if __name__ == '__main__':
  absltest.main()
