"""Tests for cil.data.longtail: ImageNet-LT, Places-LT and iNaturalist 2018
prepared from fixture trees in their standard layouts (tiny JPEGs, the
real list and JSON formats), their bad cases named, and a smoke run."""

import collections
import dataclasses
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
from PIL import Image

from cil import data
from cil import errors
from cil.data import custom
from cil.data import longtail
from cil.data import streaming


def _jpeg(path: str, value: int, size=(10, 14)) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path, 'JPEG')


# Images per class of each split: a long tail in train, balanced after.
_COUNTS = {'train': [6, 3, 1], 'val': [1, 1, 1], 'test': [2, 2, 2]}


def write_split_lists(root: str, prefix: str) -> dict:
  """An ImageNet-LT/Places-LT tree: images under train/ and val/ and
  `<prefix>_<split>.txt` lists; returns split -> [(value, label)]."""
  written = {}
  for split, counts in _COUNTS.items():
    lines, written[split] = [], []
    for label, n in enumerate(counts):
      for i in range(n):
        value = 40 * label + 5 * i + (100 if split != 'train' else 0)
        folder = 'train' if split == 'train' else 'val'
        rel = f'{folder}/n{label:04d}/{split}_{i}.JPEG'
        _jpeg(os.path.join(root, rel), value)
        lines.append(f'{rel} {label}\n')
        written[split].append((value, label))
    with open(os.path.join(root, f'{prefix}_{split}.txt'), 'w') as f:
      f.writelines(lines)
  return written


def write_inaturalist(root: str) -> dict:
  """An iNaturalist 2018 tree: train_val2018/ images, COCO-style JSON."""
  written = {}
  for split, file in (('train', 'train2018.json'), ('val', 'val2018.json')):
    images, annotations, written[split] = [], [], []
    for label, n in enumerate(_COUNTS[split]):
      for i in range(n):
        value = 40 * label + 5 * i
        rel = f'train_val2018/Plantae/{label}/{split}_{i}.jpg'
        _jpeg(os.path.join(root, rel), value)
        images.append({'id': len(images) + 7, 'file_name': rel,
                       'width': 14, 'height': 10})
        annotations.append({'id': len(annotations),
                            'image_id': images[-1]['id'], 'category_id': label})
        written[split].append((value, label))
    with open(os.path.join(root, file), 'w') as f:
      json.dump({'images': images, 'annotations': annotations,
                 'categories': [{'id': c, 'name': str(c)} for c in range(3)]},
                f)
  return written


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': '', 'CIL_DATA_DIR': ''})
class LongTailTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.root, ignore_errors=True)
    self.manual = os.path.join(self.root, 'manual')

  def _load(self, name, split, data_dir=None):
    return data.load(name, split, manual_dir=self.manual,
                     data_dir=data_dir or os.path.join(self.root, 'prepared'),
                     options=custom.Options(image_size=8))

  def _check(self, name, written):
    for split, entries in written.items():
      ds = self._load(name, split)
      self.assertEqual(ds.images.shape, (len(entries), 8, 8, 3), split)
      # Each image (a flat JPEG) keeps its value and its label, in order.
      np.testing.assert_allclose(ds.images[:, 4, 4, 0],
                                 [v for v, _ in entries], atol=3)
      self.assertEqual(ds.labels.tolist(), [c for _, c in entries])
    return ds

  def test_split_lists_and_json_prepare_as_their_layouts_say(self):
    for name, prefix, classes in (('imagenet_lt', 'ImageNet_LT', 1000),
                                  ('places_lt', 'Places_LT', 365)):
      with self.subTest(name):
        written = write_split_lists(os.path.join(self.manual, name), prefix)
        ds = self._check(name, written)
        self.assertEqual(ds.num_classes, classes)
    with self.subTest('inaturalist2018'):
      written = write_inaturalist(os.path.join(self.manual,
                                               'inaturalist2018'))
      self.assertEqual(self._check('inaturalist2018', written).num_classes,
                       8142)
    # Stored as the JPEG bytes, not decoded pixels.
    prepared = os.path.join(self.root, 'prepared', 'cil_imagenet_lt')
    info = [os.path.join(r, n) for r, _, ns in os.walk(prepared) for n in ns
            if n == 'features.json']
    with open(info[0]) as f:
      self.assertIn('"encodingFormat": "jpeg"', f.read())

  def test_a_classification_run_on_imagenet_lt_keeps_its_long_tail(self):
    from cil.experiments import classify  # pylint: disable=g-import-not-at-top
    import configs  # pylint: disable=g-import-not-at-top
    write_split_lists(os.path.join(self.manual, 'imagenet_lt'), 'ImageNet_LT')
    config = configs.load('classify', 'smoke')
    config.update(dataset='imagenet_lt', manual_dir=self.manual,
                  data_dir=os.path.join(self.root, 'prepared'), image_size=28,
                  protocols=(), losses=('ce', 'ci'), seeds=1, epochs=1)
    cfg = classify.ClassifyConfig.from_config(config)
    # Every class needs training images: the fixture's 3, not 1,000.
    with mock.patch.object(longtail.CilImagenetLt, 'NUM_CLASSES', 3):
      results = classify.run(cfg, os.path.join(self.root, 'w'),
                             show_progress=False)
    run = results['runs'][0]
    self.assertEqual(run['protocol'], 'all')  # Its own long tail.
    self.assertEqual(run['per_seed'][0]['class_counts'], [6, 3, 1])
    self.assertEqual(results['dataset']['test_size'], 6)
    self.assertIn('| ci |', results['table_markdown'])

  def test_inaturalist_is_scored_on_its_val_split(self):
    from cil.experiments import classify  # pylint: disable=g-import-not-at-top
    import configs  # pylint: disable=g-import-not-at-top
    write_inaturalist(os.path.join(self.manual, 'inaturalist2018'))
    config = configs.load('classify', 'smoke')
    config.update(dataset='inaturalist2018', manual_dir=self.manual,
                  data_dir=os.path.join(self.root, 'prepared'), image_size=28,
                  protocols=(), losses=('ce',), seeds=1, epochs=1,
                  test_split='val')
    with mock.patch.object(longtail.CilInaturalist2018, 'NUM_CLASSES', 3):
      results = classify.run(classify.ClassifyConfig.from_config(config),
                             os.path.join(self.root, 'w'),
                             show_progress=False)
    self.assertEqual(results['dataset']['test_size'], 3)  # val: 1 a class.
    self.assertEqual(results['runs'][0]['per_seed'][0]['class_counts'],
                     [6, 3, 1])

  def test_random_resized_crops_stream_and_resume_inside_an_epoch(self):
    from cil.experiments import classify  # pylint: disable=g-import-not-at-top
    import configs  # pylint: disable=g-import-not-at-top
    write_split_lists(os.path.join(self.manual, 'imagenet_lt'), 'ImageNet_LT')
    config = configs.load('classify', 'smoke')
    config.update(dataset='imagenet_lt', manual_dir=self.manual,
                  data_dir=os.path.join(self.root, 'prepared'), image_size=28,
                  protocols=(), losses=('ce',), seeds=1, epochs=2,
                  batch_size=4, augment='resized_crop_flip_jitter',
                  input_pipeline='stream', checkpoint_every_steps=1,
                  decouple=('crt',), decouple_epochs=1)
    cfg = classify.ClassifyConfig.from_config(config)

    class Killed(Exception):
      pass

    def kill_at_4(protocol, loss, step):  # Inside epoch 2 (3 steps each).
      del protocol, loss
      if step == 4:
        raise Killed()

    reads = collections.Counter()  # Images read per split in `whole`.
    chunks = streaming.StreamedSplit.chunks

    def counted(split, indices, *args, start=0, **kwargs):
      reads[split.split] += len(indices) - start
      return chunks(split, indices, *args, start=start, **kwargs)

    with mock.patch.object(longtail.CilImagenetLt, 'NUM_CLASSES', 3):
      with mock.patch.object(streaming.StreamedSplit, 'chunks', counted):
        whole = classify.run(cfg, os.path.join(self.root, 'w1'),
                             show_progress=False)
      workdir = os.path.join(self.root, 'w2')
      with self.assertRaises(Killed):
        classify.run(cfg, workdir, show_progress=False,
                     step_callback=kill_at_4)
      resumed = classify.run(cfg, workdir, show_progress=False)
      # Each batch split over the 4 devices, each image's crop read where
      # it is used, killed inside epoch 2 and resumed.
      split = dataclasses.replace(cfg, data_parallel=-1)
      workdir = os.path.join(self.root, 'w4')
      with self.assertRaises(Killed):
        classify.run(split, workdir, show_progress=False,
                     step_callback=kill_at_4)
      split_run = classify.run(split, workdir, show_progress=False)
      with self.assertRaisesRegex(ValueError, 'augment=resized_crop_flip_'
                                  'jitter crops the stored images as they '
                                  'are read; it needs --config.input_'
                                  'pipeline'):
        classify.run(dataclasses.replace(cfg, input_pipeline='memory'),
                     os.path.join(self.root, 'w3'), show_progress=False)
    a, b = whole['runs'][0], resumed['runs'][0]
    self.assertEqual(whole['config']['augment'], 'resized_crop_flip_jitter')
    self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
    self.assertEqual(a['per_seed'][0]['confusion'],
                     b['per_seed'][0]['confusion'])
    # Split over devices: the same crops (a crop drawn at another position
    # moves the loss by far more than float32 sums in another order).
    c = split_run['runs'][0]
    self.assertEqual(c['settings']['data_parallel'], -1)
    np.testing.assert_allclose(c['train_loss_per_epoch'],
                               a['train_loss_per_epoch'], rtol=1e-5)
    # The test split read once: the model's logits and cRT's features
    # from the same images.
    self.assertEqual(reads['test'], 6)
    # cRT on the streamed split (features read chunk by chunk).
    self.assertEqual(a['per_seed'][0]['crt']['confusion'],
                     b['per_seed'][0]['crt']['confusion'])

  def test_bad_inputs_are_named(self):
    root = os.path.join(self.manual, 'imagenet_lt')
    cases = [
        ('missing list', lambda: os.remove(
            os.path.join(root, 'ImageNet_LT_val.txt')),
         errors.DataNotFoundError, r"is missing \['ImageNet_LT_val.txt'\]"),
        ('absent image', lambda: os.remove(
            os.path.join(root, 'train', 'n0001', 'train_2.JPEG')),
         errors.DataError, r'ImageNet_LT_train.txt, line 9: the image '
         r'.*train_2.JPEG does not exist'),
        ('label out of range', lambda: _append(
            os.path.join(root, 'ImageNet_LT_train.txt'),
            'train/n0000/train_0.JPEG 1000\n'),
         errors.DataError, r'line 11: label 1000 is outside the 1000 '
         r'classes'),
        ('unreadable image', lambda: _overwrite(
            os.path.join(root, 'train', 'n0000', 'train_1.JPEG')),
         errors.DataError, r'line 2: .*train_1.JPEG is not a readable '
         r'image'),
        ('malformed line', lambda: _append(
            os.path.join(root, 'ImageNet_LT_train.txt'), 'no-label\n'),
         errors.DataError, r'line 11: expected "relative/path label", got '
         r"'no-label'"),
    ]
    for k, (what, damage, error, message) in enumerate(cases):
      with self.subTest(what):
        shutil.rmtree(root, ignore_errors=True)
        write_split_lists(root, 'ImageNet_LT')
        damage()
        prepared = os.path.join(self.root, f'prepared{k}')
        with self.assertRaisesRegex(error, message):
          self._load('imagenet_lt', 'train', data_dir=prepared)
        # Nothing half-built is left to be read as prepared.
        self.assertFalse(os.path.exists(os.path.join(
            prepared, 'cil_imagenet_lt', '1.0.0', 'dataset_info.json')))
    inat = os.path.join(self.manual, 'inaturalist2018')
    write_inaturalist(inat)
    with open(os.path.join(inat, 'val2018.json'), 'w') as f:
      json.dump({'images': [], 'annotations': [{'image_id': 3,
                                                'category_id': 0}]}, f)
    with self.assertRaisesRegex(errors.DataError, r'val2018.json, '
                                r'annotations\[0\]: image_id 3 is not one '
                                r'of the file'):
      self._load('inaturalist2018', 'val')
    with open(os.path.join(inat, 'val2018.json'), 'w') as f:
      f.write('{"images": [')
    with self.assertRaisesRegex(errors.DataError,
                                'val2018.json is not readable JSON'):
      self._load('inaturalist2018', 'val',
                 data_dir=os.path.join(self.root, 'other'))


def _append(path: str, text: str) -> None:
  with open(path, 'a') as f:
    f.write(text)


def _overwrite(path: str) -> None:
  with open(path, 'wb') as f:
    f.write(b'\xff\xd8 not a JPEG')


if __name__ == '__main__':
  absltest.main()
