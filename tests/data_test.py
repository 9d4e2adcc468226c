"""Tests for cil.data: TFDS builders on generated fixtures and real data,
protocols, few-shot splits and the episodic sampler."""

import glob
import gzip
import io
import os
import pickle
import shutil
import tempfile
from unittest import mock
import zipfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from cil import data
from cil.data import builders
from cil.data import fewshot
import cifar_fixture  # tests/, beside this file

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(_ROOT), 'shared', 'data')
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


# ---------------------------------------------------------------------------


class ProtocolTest(parameterized.TestCase):

  LABELS = np.repeat(np.arange(10), 200)

  def test_deterministic_and_nested(self):
    a = data.subsample(self.LABELS, seed=3, fractions=[0.5] * 10)
    b = data.subsample(self.LABELS, seed=3, fractions=[0.5] * 10)
    c = data.subsample(self.LABELS, seed=3, fractions=[0.1] * 10)
    d = data.subsample(self.LABELS, seed=4, fractions=[0.5] * 10)
    np.testing.assert_array_equal(a.indices, b.indices)
    self.assertTrue(set(c.indices) <= set(a.indices))
    self.assertFalse(np.array_equal(a.indices, d.indices))
    np.testing.assert_array_equal(
        np.bincount(self.LABELS[a.indices]), a.class_counts)

  @parameterized.named_parameters(
      ('odd10', 'odd10', [200, 20] * 5, 0.5),
      ('odd25', 'odd25', [200, 50] * 5, 0.30103),
      ('even10', 'even10', [20, 200] * 5, 0.5),
      ('even25', 'even25', [50, 200] * 5, 0.30103),
      ('balanced', 'balanced', [200] * 10, 0.0),
  )
  def test_table1_situations(self, name, counts, degree):
    split = data.get_protocol(name)(self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, counts)
    self.assertAlmostEqual(split.imbalance_degree, degree, places=4)
    self.assertEqual(split.summary()['class_counts'], counts)

  def test_minority_mstar_situation(self):
    for spec, n in (('mstar24', 24), ('minority:k=3,n=7', 7)):
      split = data.get_protocol(spec)(self.LABELS, seed=5)
      k = 5 if spec == 'mstar24' else 3
      self.assertEqual(sorted(split.class_counts)[:k + 1], [n] * k + [200])
      self.assertAlmostEqual(split.imbalance_ratio, 200 / n, places=5)
    # Different seeds choose different minority classes.
    chosen = {tuple(np.flatnonzero(data.get_protocol('mstar24')(
        self.LABELS, seed=s).class_counts < 200)) for s in range(6)}
    self.assertGreater(len(chosen), 1)

  def test_longtail_and_step(self):
    split = data.get_protocol('longtail:ratio=100')(self.LABELS, seed=0)
    self.assertEqual(split.class_counts[0], 200)
    self.assertEqual(split.class_counts[-1], 2)
    self.assertTrue(np.all(np.diff(split.class_counts) <= 0))
    split = data.get_protocol('step:ratio=10,mu=0.3')(self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, [200] * 7 + [20] * 3)

  def test_n_max_caps_the_largest_class(self):
    split = data.get_protocol('step:ratio=10,mu=0.5,n_max=50')(
        self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, [50] * 5 + [5] * 5)
    self.assertAlmostEqual(split.imbalance_degree, 0.5, places=5)
    split = data.get_protocol('longtail:ratio=10,n_max=100')(self.LABELS,
                                                             seed=0)
    self.assertEqual(split.class_counts[0], 100)
    self.assertEqual(split.class_counts[-1], 10)
    # A cap above the smallest class changes nothing.
    split = data.get_protocol('step:ratio=10,mu=0.3,n_max=1000')(
        self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, [200] * 7 + [20] * 3)
    for bad in ('2.5', '-1'):
      with self.assertRaisesRegex(ValueError, 'step: n_max must be a whole '
                                  'number >= 0'):
        data.get_protocol(f'step:ratio=10,n_max={bad}')(self.LABELS, seed=0)

  def test_bad_protocols(self):
    with self.assertRaisesRegex(ValueError, 'Unknown protocol .*odd10'):
      data.get_protocol('odd5')
    with self.assertRaisesRegex(ValueError,
                                "Bad arguments for protocol 'step'"):
      data.get_protocol('step:gamma=2')
    with self.assertRaisesRegex(ValueError, "'ratio' in 'longtail:ratio=abc' "
                                "must be a number, got 'abc'"):
      data.get_protocol('longtail:ratio=abc')
    with self.assertRaisesRegex(ValueError, "'ratio' .* must be finite"):
      data.get_protocol('longtail:ratio=nan')
    with self.assertRaisesRegex(ValueError, 'has 200 examples but .* 300'):
      data.subsample(self.LABELS, seed=0, counts=[300] + [1] * 9)
    with self.assertRaisesRegex(ValueError, 'must be positive integers'):
      data.subsample(self.LABELS, seed=0, counts=[0] + [1] * 9)
    with self.assertRaisesRegex(ValueError, r'`fractions` must be in \(0, 1\]'):
      data.subsample(self.LABELS, seed=0, fractions=[0.0] + [1.0] * 9)
    with self.assertRaisesRegex(ValueError, 'exactly one of'):
      data.subsample(self.LABELS, seed=0)
    with self.assertRaisesRegex(ValueError, r'Classes \[3\] have no examples'):
      data.subsample(np.array([0, 1, 2, 4]), seed=0, fractions=[1.0] * 5)


class EpisodeTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # 12 classes x 30 images; every pixel of an image holds its class id, so
    # a task's images can be checked against its labels.
    labels = np.repeat(np.arange(12), 30)
    images = np.broadcast_to(labels[:, None, None, None],
                             (labels.size, 4, 4, 1)).astype(np.uint8)
    cls.dataset = data.ArrayDataset(
        images=np.ascontiguousarray(images), labels=labels,
        class_names=tuple(str(i) for i in range(12)), name='toy', split='all')
    cls.sampler = data.EpisodeSampler(cls.dataset, ways=5)

  def test_partitions_of_eq21(self):
    parts = data.partitions(15, 5)
    self.assertLen(parts, 30)
    self.assertLen(set(parts), 30)
    for p in parts:
      self.assertEqual(sum(p), 15)
      self.assertEqual(list(p), sorted(p))
      self.assertGreaterEqual(min(p), 1)
    self.assertEqual(parts, sorted(parts))
    self.assertIn((1, 2, 3, 4, 5), parts)
    self.assertEqual(len(data.partitions(5, 5)), 1)

  def test_ochal_schemes(self):
    rng = np.random.default_rng(0)
    self.assertEqual(data.imbalanced_distribution(
        'linear', ways=5, min_shots=1, max_shots=9), (1, 3, 5, 7, 9))
    self.assertEqual(data.imbalanced_distribution(
        'step', ways=5, min_shots=1, max_shots=9, minority=2),
                     (1, 1, 9, 9, 9))
    r = data.imbalanced_distribution('random', ways=5, min_shots=1,
                                     max_shots=9, rng=rng)
    self.assertTrue(all(1 <= n <= 9 for n in r))
    with self.assertRaisesRegex(ValueError, 'Unknown scheme'):
      data.imbalanced_distribution('zipf', ways=5, min_shots=1, max_shots=2)

  def _check_tasks(self, tasks, dist, query):
    for t in range(tasks.classes.shape[0]):
      np.testing.assert_array_equal(
          np.bincount(tasks.support_labels[t], minlength=5),
          tasks.support_counts[t])
      self.assertEqual(sorted(tasks.support_counts[t]), sorted(dist))
      self.assertLen(set(tasks.classes[t]), 5)
      # Pixel value = dataset class: images agree with labels.
      np.testing.assert_array_equal(
          tasks.support_images[t, :, 0, 0, 0],
          tasks.classes[t][tasks.support_labels[t]])
      np.testing.assert_array_equal(
          tasks.query_images[t, :, 0, 0, 0],
          tasks.classes[t][tasks.query_labels[t]])
      np.testing.assert_array_equal(
          np.bincount(tasks.query_labels[t], minlength=5), query(t))

  def test_meta_train_tasks_have_proportional_queries(self):
    dist = (1, 2, 3, 4, 5)
    tasks = self.sampler.sample(np.random.default_rng(0), dist,
                                query_multiple=2, num_tasks=6)
    self.assertEqual(tasks.support_images.shape, (6, 15, 4, 4, 1))
    self.assertEqual(tasks.query_images.shape, (6, 30, 4, 4, 1))
    self._check_tasks(tasks, dist, lambda t: 2 * tasks.support_counts[t])
    # Which class gets which count is drawn per task.
    self.assertGreater(len({tuple(c) for c in tasks.support_counts}), 1)

  def test_meta_test_tasks_have_balanced_queries(self):
    dist = (1, 1, 1, 1, 11)
    tasks = self.sampler.sample(np.random.default_rng(1), dist,
                                query_per_class=15, num_tasks=3)
    self._check_tasks(tasks, dist, lambda t: [15] * 5)

  def test_deterministic_given_seed(self):
    a = self.sampler.sample(np.random.default_rng(7), (3,) * 5,
                            query_per_class=2, num_tasks=2)
    b = self.sampler.sample(np.random.default_rng(7), (3,) * 5,
                            query_per_class=2, num_tasks=2)
    np.testing.assert_array_equal(a.support_images, b.support_images)
    np.testing.assert_array_equal(a.classes, b.classes)

  def test_bad_tasks(self):
    rng = np.random.default_rng(0)
    with self.assertRaisesRegex(ValueError, 'has 4 entries but ways = 5'):
      self.sampler.sample(rng, (1, 2, 3, 4), query_per_class=1)
    with self.assertRaisesRegex(ValueError, 'zero or negative entry'):
      self.sampler.sample(rng, (0, 2, 3, 4, 6), query_per_class=1)
    with self.assertRaisesRegex(ValueError, 'has 30 images but the task asks '
                                'for 31'):
      self.sampler.sample(rng, (1, 1, 1, 1, 11), query_per_class=20)
    with self.assertRaisesRegex(ValueError, 'exactly one of'):
      self.sampler.sample(rng, (3,) * 5)
    with self.assertRaisesRegex(ValueError, 'fewer than ways = 20'):
      data.EpisodeSampler(self.dataset, ways=20)

  def test_check_fits_before_any_draw(self):
    # Every class has 30 images (see the class's dataset).
    self.sampler.check_fits([(1, 1, 1, 1, 11)], query_per_class=19)
    self.sampler.check_fits([(3,) * 5], query_multiple=9)
    with self.assertRaisesRegex(
        ValueError, r'smallest class has 30 images, but support '
        r'\[1, 1, 1, 1, 11\] with 20 queries per class needs 31'):
      self.sampler.check_fits([(3,) * 5, (1, 1, 1, 1, 11)],
                              query_per_class=20)
    with self.assertRaisesRegex(ValueError, 'query_multiple 2 needs 33'):
      self.sampler.check_fits([(1, 1, 1, 1, 11)], query_multiple=2)


if __name__ == '__main__':
  absltest.main()
