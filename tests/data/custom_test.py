"""Tests for cil.data.custom: your own folders, .npz arrays and prepared
TFDS datasets through `cil.data.load`, and each bad input's named error.
"""

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from cil import data
from cil import errors
from cil.data import builders
from cil.data import custom
from cil.data import preparation
from testutil import ROOT


def _save(path, array, mode=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array, mode).save(path)


def _gray(value, shape=(6, 6)):
  return np.full(shape, value, np.uint8)


class _Base(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.data_dir = os.path.join(self.root, 'prepared')
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)

  def _load(self, spec, split='train', **options):
    return data.load(spec, split, data_dir=self.data_dir,
                     options=custom.Options(**options))


class FolderTest(_Base):

  def test_train_and_test_folders_give_their_splits(self):
    folder = os.path.join(self.root, 'f')
    for split, n in (('train', 3), ('test', 2)):
      for c, value in (('ant', 10), ('bee', 200)):
        for i in range(n):
          _save(os.path.join(folder, split, c, f'{i}.png'), _gray(value))
    train = self._load(f'folder:{folder}')
    test = self._load(f'folder:{folder}', 'test')
    self.assertEqual(train.class_names, ('ant', 'bee'))
    self.assertEqual(train.images.shape, (6, 6, 6, 1))  # Grayscale: 1 channel.
    self.assertEqual(sorted(train.labels.tolist()), [0, 0, 0, 1, 1, 1])
    self.assertEqual(sorted(test.labels.tolist()), [0, 0, 1, 1])
    for ds in (train, test):  # Each image's pixels kept its class's value.
      np.testing.assert_array_equal(ds.images[:, 0, 0, 0],
                                    np.where(ds.labels == 0, 10, 200))

  def test_two_processes_preparing_one_folder_wait_for_each_other(self):
    folder = os.path.join(self.root, 'f')
    for c in ('ant', 'bee'):
      for i in range(3):
        _save(os.path.join(folder, c, f'{i}.png'), _gray(i))
    spec = f'folder:{folder}'
    code = ('from cil import data\n'
            f'print(len(data.load({spec!r}, "train", '
            f'data_dir={self.data_dir!r})))\n')
    # This process holds the preparation (as a first run would) while a
    # second one starts: it waits, saying so, then prepares once.
    with preparation.one_build_at_a_time(spec, self.data_dir):
      child = subprocess.Popen([sys.executable, '-c', code], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
      line = child.stderr.readline()
      self.assertIn(f'another process is preparing {spec}', line)
    out, err = child.communicate(timeout=120)
    self.assertEqual(child.returncode, 0, err)
    self.assertEqual(out.strip(), '4')  # 6 images, 1 per class to test.
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      self.assertLen(self._load(spec), 4)
    self.assertEqual(err.getvalue(), '')  # Prepared: read, not built again.
    self.assertLen(os.listdir(os.path.join(self.data_dir, 'cil_folder')), 1)
    self.assertEqual([n for n in os.listdir(self.data_dir)
                      if n.endswith('.lock')], [])

  def test_a_folder_larger_than_tfds_shuffle_buffer_prepares_without_tf(self):
    # TFDS's shuffler spills to disk through TensorFlow past its buffer
    # (1 GB); a 1 kB buffer stands in for a large folder. Your data is
    # streamed to array_record shards as it is read (here 300-byte shards:
    # several per split), so nothing spills and memory stays flat.
    folder = os.path.join(self.root, 'f')
    for split, n in (('train', 20), ('test', 5)):
      for c, base in (('ant', 0), ('bee', 100)):
        for i in range(n):
          _save(os.path.join(folder, split, c, f'{i:02d}.png'),
                _gray(base + i, (8, 8)))
    with mock.patch('tensorflow_datasets.core.shuffle.MAX_MEM_BUFFER_SIZE',
                    1000), \
        mock.patch.object(builders.ArrayRecordBuilder, 'SHARD_BYTES', 300):
      train = self._load(f'folder:{folder}')
      test = self._load(f'folder:{folder}', 'test')
    self.assertNotIn('tensorflow', sys.modules)
    prepared = os.path.join(self.data_dir, 'cil_folder')
    shards = [n for _, _, names in os.walk(prepared) for n in names
              if 'train.array_record' in n]
    self.assertGreater(len(shards), 3)
    # In the folder's order, every image once, its label its class's.
    np.testing.assert_array_equal(train.images[:, 0, 0, 0],
                                  list(range(20)) + list(range(100, 120)))
    np.testing.assert_array_equal(train.labels, [0] * 20 + [1] * 20)
    self.assertEqual(test.class_counts().tolist(), [5, 5])

  def test_images_of_different_sizes_get_the_median_shorter_side(self):
    folder = os.path.join(self.root, 'mixed')
    sizes = {'ant': [(6, 6), (10, 8), (12, 9)], 'bee': [(5, 7), (8, 8)],
             'cat': [(16, 12), (9, 9), (7, 10), (11, 11)]}
    for c, shapes in sizes.items():
      for split in ('train', 'test'):
        for i, shape in enumerate(shapes):
          _save(os.path.join(folder, split, c, f'{i}.png'), _gray(9, shape))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      train = self._load(f'folder:{folder}')
    # Shorter sides 6, 8, 9, 5, 8, 12, 9, 7, 11 (train and test): median 8.
    self.assertEqual(train.image_shape, (8, 8, 1))
    self.assertRegex(err.getvalue(), r'18 images of \d+ sizes .*resized and '
                     r'centre-cropped to 8x8, the median shorter side '
                     r'\(--config.image_size=S sets another\)')
    self.assertEqual(train.class_counts().tolist(), [3, 2, 4])
    self.assertEqual(self._load(f'folder:{folder}', image_size=5
                                ).image_shape, (5, 5, 1))

  def test_classes_at_the_top_are_split_by_test_fraction_and_seed_zero(self):
    folder = os.path.join(self.root, 'f')
    for c, n in (('a', 10), ('b', 5), ('c', 2)):
      for i in range(n):  # Pixel value i + 20 c: which image is where.
        _save(os.path.join(folder, c, f'{i}.png'),
              _gray(i + 20 * 'abc'.index(c)))
    train = self._load(f'folder:{folder}', test_fraction=0.2)
    test = self._load(f'folder:{folder}', 'test', test_fraction=0.2)
    # round(0.2 n), at least 1 and at most n - 1: 2, 1, 1 test images.
    self.assertEqual(test.class_counts().tolist(), [2, 1, 1])
    self.assertEqual(train.class_counts().tolist(), [8, 4, 1])
    pixels = sorted(train.images[:, 0, 0, 0].tolist()
                    + test.images[:, 0, 0, 0].tolist())
    self.assertEqual(pixels, list(range(10)) + list(range(20, 25))
                     + [40, 41])  # Every image once.
    again = self._load(f'folder:{folder}', 'test', test_fraction=0.2)
    np.testing.assert_array_equal(np.sort(again.images[:, 0, 0, 0]),
                                  np.sort(test.images[:, 0, 0, 0]))

  def test_resize_is_bilinear_then_centre_crop_and_colour_gives_rgb(self):
    folder = os.path.join(self.root, 'f')
    wide = np.zeros((4, 8, 3), np.uint8)
    wide[:, :, 0] = np.arange(8) * 30  # A red ramp left to right.
    _save(os.path.join(folder, 'train', 'x', 'wide.png'), wide)
    _save(os.path.join(folder, 'train', 'y', 'gray.png'), _gray(90, (2, 2)))
    _save(os.path.join(folder, 'test', 'x', 'a.png'), wide)
    _save(os.path.join(folder, 'test', 'y', 'b.png'), _gray(90, (2, 2)))
    train = self._load(f'folder:{folder}', image_size=2)
    self.assertEqual(train.images.shape, (2, 2, 2, 3))  # One RGB: all RGB.
    # Shorter side 4 -> 2: the 8x4 image becomes 4x2, then its middle
    # 2 columns are kept.
    expected = Image.fromarray(wide).resize((4, 2), Image.Resampling.BILINEAR)
    expected = np.asarray(expected)[:, 1:3]
    by_class = dict(zip(train.labels.tolist(), train.images))
    np.testing.assert_array_equal(by_class[0], expected)
    # The 2x2 gray image is already 2x2: unchanged, replicated to RGB.
    np.testing.assert_array_equal(by_class[1], np.full((2, 2, 3), 90))

  def test_sixteen_bit_gray_is_scaled(self):
    folder = os.path.join(self.root, 'f')
    for split in ('train', 'test'):
      for c, value in (('lo', 257 * 3), ('hi', 65535)):
        image = Image.new('I;16', (3, 3))
        image.frombytes(np.full((3, 3), value, '<u2').tobytes())
        os.makedirs(os.path.join(folder, split, c), exist_ok=True)
        image.save(os.path.join(folder, split, c, 'i.png'))
    train = self._load(f'folder:{folder}')
    self.assertEqual(sorted(train.images[:, 0, 0, 0].tolist()), [3, 255])

  def test_prepared_once_and_again_after_a_source_changes(self):
    folder = os.path.join(self.root, 'f')
    for c in ('a', 'b'):
      for i in range(3):
        _save(os.path.join(folder, c, f'{i}.png'), _gray(i))
    self._load(f'folder:{folder}')
    with mock.patch.object(custom.CilFolder, '_generate_examples',
                           side_effect=AssertionError('rebuilt')):
      self._load(f'folder:{folder}', 'test')  # Read, not prepared again.
      _save(os.path.join(folder, 'a', '3.png'), _gray(7))
      with self.assertRaisesRegex(AssertionError, 'rebuilt'):
        self._load(f'folder:{folder}')
    self.assertLen(self._load(f'folder:{folder}'), 3 + 2)  # 1 test each.

  def test_bad_folders_are_named(self):
    def folder(name, layout):
      path = os.path.join(self.root, name)
      for rel, array in layout.items():
        if array is None:
          os.makedirs(os.path.join(path, rel), exist_ok=True)
        elif isinstance(array, bytes):
          os.makedirs(os.path.dirname(os.path.join(path, rel)), exist_ok=True)
          with open(os.path.join(path, rel), 'wb') as f:
            f.write(array)
        else:
          _save(os.path.join(path, rel), array)
      return f'folder:{path}'

    two = {'a/0.png': _gray(1), 'a/1.png': _gray(2), 'b/0.png': _gray(3),
           'b/1.png': _gray(4)}
    cases = [
        ({**two, 'b/2.png': b'not an image'}, r'b/2.png is not a readable '
         r'image'),
        ({**two, 'c': None}, r'Class folder .*/c holds no images'),
        ({'a/0.png': _gray(1), 'a/1.png': _gray(1)}, r'a single class '
         r'folder \(a\)'),
        ({'train/a/0.png': _gray(1), 'train/b/0.png': _gray(1),
          'test/a/0.png': _gray(1), 'test/c/0.png': _gray(1)},
         r"different classes \(only in train: \['b'\]; only in test: "
         r"\['c'\]\)"),
        ({'a/0.png': _gray(1), 'b/0.png': _gray(1), 'b/1.png': _gray(1)},
         r'Class folder .*/a holds one image'),
        ({'readme.txt': b'x'}, r'holds no class folders'),
        # One rule for every entry of a class folder: an image, or named.
        ({**two, 'b/README.txt': b'notes'}, r'b/README.txt is not a '
         r'readable image'),
        ({**two, 'b/nested': None}, r'b/nested is a folder inside the class '
         r'folder'),
        ({**two, 'b/loop.png': 'loop'}, r'b/loop.png is a broken or looping '
         r'symbolic link'),
    ]
    for k, (layout, message) in enumerate(cases):
      for rel, array in list(layout.items()):
        if isinstance(array, str):  # 'loop': a symbolic link to itself.
          del layout[rel]
          link = os.path.join(self.root, f'bad{k}', rel)
          os.makedirs(os.path.dirname(link), exist_ok=True)
          os.symlink(link, link)
      with self.subTest(message):
        with self.assertRaisesRegex(errors.DataError, message):
          self._load(folder(f'bad{k}', layout))
    path = os.path.join(self.root, 'float')
    for c in ('a', 'b'):
      os.makedirs(os.path.join(path, c))
      Image.fromarray(np.ones((3, 3), np.float32), 'F').save(
          os.path.join(path, c, 'f.tif'))
    with self.assertRaisesRegex(errors.DataError, r'f.tif is a 32-bit float'):
      self._load(f'folder:{path}')
    with self.assertRaisesRegex(errors.DataNotFoundError, 'is not a folder'):
      self._load(f'folder:{self.root}/nonexistent')
    # Nothing half-built is left behind by the failures.
    self.assertEqual(os.listdir(os.path.join(self.data_dir, 'cil_folder'))
                     if os.path.isdir(os.path.join(self.data_dir,
                                                   'cil_folder')) else [], [])


class FewShotFolderTest(_Base):

  def test_classes_are_pooled_and_split_disjoint_by_a_seeded_rule(self):
    folder = os.path.join(self.root, 'f')
    names = [f'c{k}' for k in range(6)]
    for k, name in enumerate(names):
      for i in range(4):
        _save(os.path.join(folder, name, f'{i}.png'), _gray(10 * k + i))
    splits = data.load_fewshot(f'folder:{folder}', data_dir=self.data_dir,
                               meta_test_fraction=0.5)
    train, test = splits.train, splits.test
    self.assertEqual(train.num_classes + test.num_classes, 6)
    self.assertEqual(test.num_classes, 3)
    self.assertEmpty(set(train.class_names) & set(test.class_names))
    order = np.random.default_rng(0).permutation(6)
    self.assertEqual(test.class_names,
                     tuple(names[c] for c in np.sort(order[:3])))
    for ds in (train, test):  # Train and test images pooled: 4 per class.
      self.assertEqual(ds.class_counts().tolist(), [4] * 3)
      for label, image in zip(ds.labels, ds.images):
        self.assertEqual(image[0, 0, 0] // 10,
                         names.index(ds.class_names[label]))
    with self.assertRaisesRegex(ValueError, 'meta_test_fraction must be'):
      data.load_fewshot(f'folder:{folder}', data_dir=self.data_dir,
                        meta_test_fraction=1.0)


class NpzTest(_Base):

  def _npz(self, **arrays):
    path = os.path.join(self.root, 'arrays.npz')
    rng = np.random.default_rng(0)
    full = {'x_train': rng.integers(0, 255, (6, 4, 4), np.uint8),
            'y_train': np.array([0, 1, 2, 0, 1, 2]),
            'x_test': rng.integers(0, 255, (3, 4, 4), np.uint8),
            'y_test': np.array([2, 1, 0])}
    full.update(arrays)
    np.savez(path, **{k: v for k, v in full.items() if v is not None})
    return f'npz:{path}', full

  def test_arrays_round_trip_with_class_names(self):
    spec, arrays = self._npz(class_names=np.array(['r', 's', 't']))
    for split in ('train', 'test'):
      ds = self._load(spec, split)
      self.assertEqual(ds.class_names, ('r', 's', 't'))
      order = np.argsort(ds.images.reshape(len(ds), -1).sum(1))
      want = np.argsort(arrays[f'x_{split}'].reshape(len(ds), -1).sum(1))
      np.testing.assert_array_equal(ds.images[order, ..., 0],
                                    arrays[f'x_{split}'][want])
      np.testing.assert_array_equal(ds.labels[order],
                                    arrays[f'y_{split}'][want])

  def test_bad_arrays_are_named(self):
    cases = [
        (dict(y_test=None), r"lacks the arrays \['y_test'\]"),
        (dict(y_train=np.array([0., 1, 2, 0, 1, 2])), 'y_train must hold '
         'integer labels'),
        (dict(y_train=np.array([0, 1, -2, 0, 1, 2])), 'y_train holds '
         'negative labels'),
        (dict(y_train=np.array([0, 1, 2, 0, 1])), r'y_train must hold one '
         r'label per image of x_train \(6\)'),
        (dict(x_train=np.zeros((6, 4, 4), np.float32)), 'x_train must be '
         'uint8 images'),
        (dict(x_test=np.zeros((3, 5, 5), np.uint8)), r'x_train images are '
         r'\(4, 4, 1\) but x_test images \(5, 5, 1\)'),
        (dict(y_train=np.array([0, 1, 0, 0, 1, 0])), r'classes \[2\] have '
         r'no training image'),
        (dict(x_test=np.array([object()] * 3)), 'object arrays are not '
         'read'),
        ('text', r'arrays.npz is not an .npz file \(a zip archive of .npy '
         r'arrays'),
    ]
    for arrays, message in cases:
      with self.subTest(message):
        path = os.path.join(self.root, 'arrays.npz')
        if isinstance(arrays, str):  # Text: not NumPy's advice to unpickle.
          with open(path, 'w') as f:
            f.write('x_train,y_train\n1,2\n')
          spec = f'npz:{path}'
        elif 'x_test' in arrays and arrays['x_test'].dtype == object:
          full = self._npz()[1]
          full['x_test'] = arrays['x_test']
          np.savez(path, **full)  # allow_pickle is np.savez's default.
          spec = f'npz:{path}'
        else:
          spec, _ = self._npz(**arrays)
        with self.assertRaisesRegex(errors.DataError, message):
          self._load(spec)


class ExportTest(_Base):

  def test_export_reads_back_as_a_folder_and_as_arrays(self):
    rng = np.random.default_rng(1)

    def split(n, name):
      return data.ArrayDataset(
          images=rng.integers(0, 255, (n, 5, 5, 1), np.uint8),
          labels=np.arange(n) % 3, class_names=('x', 'y', 'z'), name='t',
          split=name)
    train, test = split(9, 'train'), split(6, 'test')
    for fmt, out in (('folder', os.path.join(self.root, 'out')),
                     ('npz', os.path.join(self.root, 'out.npz'))):
      spec = custom.export(train, test, out, fmt=fmt)
      for want in (train, test):
        got = self._load(spec, want.split)
        self.assertEqual(got.class_names, ('x', 'y', 'z'))
        key = lambda ds: sorted(zip(ds.labels.tolist(),  # noqa: E731
                                    ds.images.reshape(len(ds), -1).tolist()))
        self.assertEqual(key(got), key(want), fmt)
    with self.assertRaisesRegex(ValueError, 'is not empty'):
      custom.export(train, test, os.path.join(self.root, 'out'), fmt='folder')
    with self.assertRaisesRegex(ValueError, 'is an existing file'):
      custom.export(train, test, os.path.join(self.root, 'out.npz'),
                    fmt='folder')

  def test_class_names_from_an_npz_cannot_write_outside_the_export(self):
    # End to end: hostile class_names in a user's .npz, read through TFDS,
    # exported as a folder: refused before anything is written.
    outside = os.path.join(self.root, 'outside')
    rng = np.random.default_rng(0)
    path = os.path.join(self.root, 'hostile.npz')
    for names in (['ok', '../../outside/x', 'z'], ['ok', outside, 'z'],
                  ['ok', '..', 'z']):
      np.savez(path, x_train=rng.integers(0, 255, (6, 4, 4), np.uint8),
               y_train=np.arange(6) % 3,
               x_test=rng.integers(0, 255, (3, 4, 4), np.uint8),
               y_test=np.arange(3), class_names=np.array(names))
      train = self._load(f'npz:{path}')
      test = self._load(f'npz:{path}', 'test')
      out = os.path.join(self.root, 'a', 'b', 'export')
      bad = names[1]
      with self.assertRaisesRegex(errors.DataError, repr(bad).replace(
          '.', r'\.')):
        custom.export(train, test, out, fmt='folder')
      self.assertFalse(os.path.exists(outside), names)
      self.assertFalse(os.path.exists(out), names)
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8), y_train=[0, 1],
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=[0, 1],
             class_names=np.array(['same', 'same']))
    with self.assertRaisesRegex(errors.DataError,
                                r"hostile.npz: class_names \['same'\]"):
      self._load(f'npz:{path}')


class TinyImages(builders.ArrayRecordBuilder,
                 skip_registration=True):
  """Four 3x3 images under other feature names, for `tfds:` specs."""

  def _features(self):
    return {'img': tfds.features.Tensor(shape=(3, 3, 1), dtype=np.uint8),
            'target': tfds.features.ClassLabel(names=['no', 'yes'])}

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(4),
            'test': self._generate_examples(2)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {'img': np.full((3, 3, 1), i, np.uint8), 'target': i % 2}


class TfdsTest(_Base):

  def test_a_prepared_dataset_with_other_feature_names(self):
    TinyImages(data_dir=self.data_dir).download_and_prepare()
    ds = self._load('tfds:tiny_images:1.0.0', image_feature='img',
                    label_feature='target')
    self.assertEqual(ds.class_names, ('no', 'yes'))
    self.assertEqual(sorted(ds.images[:, 0, 0, 0].tolist()), [0, 1, 2, 3])
    np.testing.assert_array_equal(ds.labels, ds.images[:, 0, 0, 0] % 2)
    with self.assertRaisesRegex(
        errors.DataError, r"no feature 'image' \(set by "
        r"--config.image_feature\); the dataset has \['img', 'target'\]"):
      self._load('tfds:tiny_images', label_feature='target')
    with self.assertRaisesRegex(errors.DataNotFoundError,
                                r"split 'val' is not prepared"):
      self._load('tfds:tiny_images', 'val', image_feature='img',
                 label_feature='target')

  def test_metadata_that_names_a_module_is_refused_without_importing_it(self):
    TinyImages(data_dir=self.data_dir).download_and_prepare()
    info = os.path.join(self.data_dir, 'tiny_images', '1.0.0',
                        'features.json')
    with open(info) as f:
      text = f.read()
    marker = os.path.join(self.root, 'imported')
    module = os.path.join(self.root, 'cil_hostile_feature.py')
    with open(module, 'w') as f:  # Top-level code: would run on import.
      f.write(f'open({marker!r}, "w").close()\n')
    name = 'tensorflow_datasets.core.features.tensor_feature.Tensor'
    with open(info, 'w') as f:
      f.write(text.replace(name, 'cil_hostile_feature.Tensor', 1))
    with mock.patch('sys.path', [self.root] + sys.path):
      with self.assertRaisesRegex(
          errors.DataError, r"tfds:tiny_images: its TFDS metadata "
          r"\(features.json\) names the feature class "
          r"'cil_hostile_feature.Tensor', which TFDS does not provide"):
        self._load('tfds:tiny_images', image_feature='img',
                   label_feature='target')
    self.assertFalse(os.path.exists(marker))
    self.assertNotIn('cil_hostile_feature', sys.modules)
    # TFDS's own reading is as it was afterwards.
    self.assertIs(tfds.features.FeatureConnector.cls_from_name.__func__,
                  tfds.features.FeatureConnector.__dict__[
                      'cls_from_name'].__func__)

  def test_an_unprepared_dataset_says_how_to_prepare_it(self):
    with self.assertRaisesRegex(
        errors.DataNotFoundError,
        r"TFDS dataset 'not_here' split 'train' is not prepared in .*"
        r'tfds build not_here --data_dir=.* --file_format=array_record'):
      self._load('tfds:not_here')

  def test_specs_are_checked_before_any_work(self):
    with self.assertRaisesRegex(ValueError, r"names no folder: use "
                                r"folder:/path/to/folder"):
      data.check_name('folder:')
    with self.assertRaisesRegex(ValueError, r"Unknown dataset 'fodler:/x'.*"
                                r'folder:/path, npz:/path.npz'):
      data.check_name('fodler:/x')
    with self.assertRaisesRegex(errors.DataNotFoundError, 'is not a file'):
      data.check_name(f'npz:{self.root}/none.npz')
    with self.assertRaisesRegex(ValueError, 'test_fraction must be in'):
      custom.Options(test_fraction=1.0).check()


if __name__ == '__main__':
  absltest.main()
