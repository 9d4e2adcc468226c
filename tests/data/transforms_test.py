"""Tests for cil.data.transforms: torchvision's crop rule and results, and
random transforms read by position through a streamed split."""

import math

from absl.testing import absltest
import numpy as np
from PIL import Image

from cil.data import streaming
from cil.data import transforms

# torchvision is the reference, not a dependency: its tests skip without it.
try:
  import torch
  from torchvision import transforms as tvt
  from torchvision.transforms import functional as tvf
except ImportError:
  torch = None


def _image(h, w, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


class TransformsTest(absltest.TestCase):

  def test_crop_boxes_keep_torchvisions_area_and_ratio_bounds(self):
    rng = np.random.default_rng(0)
    for h, w in ((40, 60), (100, 30), (7, 9)):
      for _ in range(200):
        top, left, ch, cw = transforms.resized_crop_box(h, w, rng)
        self.assertTrue(0 <= top and top + ch <= h and 0 <= left
                        and left + cw <= w, (h, w, top, left, ch, cw))
        if (ch, cw) != (h, w):  # Not the fallback: the drawn area/ratio.
          # Rounding to whole pixels moves both by at most a pixel.
          self.assertGreaterEqual((ch + 1) * (cw + 1), 0.08 * h * w)
          # The drawn ratio w/h lies in [3/4, 4/3] before rounding.
          self.assertGreaterEqual((cw + 0.5) / (ch - 0.5), 3 / 4)
          self.assertLessEqual((cw - 0.5) / (ch + 0.5), 4 / 3)
    # No crop can be drawn (an impossible area): the central crop, its
    # ratio clamped to 4/3, as torchvision falls back.
    self.assertEqual(
        transforms.resized_crop_box(10, 100, rng, scale=(2.0, 3.0)),
        (0, 43, 10, 13))
    self.assertEqual(
        transforms.resized_crop_box(30, 30, rng, scale=(2.0, 3.0)),
        (0, 0, 30, 30))

  def test_random_resized_crop_flip_is_a_function_of_its_generator(self):
    augment = transforms.random_resized_crop_flip(16)
    image = _image(40, 60)
    a = augment(image, np.random.default_rng(3))
    b = augment(image, np.random.default_rng(3))
    self.assertEqual((a.shape, a.dtype), ((16, 16, 3), np.uint8))
    np.testing.assert_array_equal(a, b)
    outs = [augment(image, np.random.default_rng(s)) for s in range(40)]
    self.assertGreater(len({o.tobytes() for o in outs}), 35)
    # A flat image is flat after any crop; a left-right ramp shows flips.
    ramp = np.tile(np.arange(60, dtype=np.uint8)[None, :, None] * 4,
                   (40, 1, 3))
    flips = [augment(ramp, np.random.default_rng(s)) for s in range(200)]
    flipped = np.mean([f[8, 0, 0] > f[8, -1, 0] for f in flips])
    self.assertBetween(flipped, 0.4, 0.6)
    # Grey images keep their channel axis.
    grey = augment(_image(20, 20)[..., :1], np.random.default_rng(0))
    self.assertEqual(grey.shape, (16, 16, 1))

  def test_centre_crop_of_a_resized_image_is_torchvisions(self):
    if torch is None:
      self.skipTest('torchvision is not installed (the reference only).')
    for h, w in ((50, 80), (90, 40), (64, 64)):
      image = _image(h, w, seed=h)
      ours = transforms.resize_centre_crop(32)(image)
      reference = tvt.Compose([tvt.Resize(36), tvt.CenterCrop(32)])(
          Image.fromarray(image))
      np.testing.assert_array_equal(ours, np.asarray(reference))

  def test_the_crop_and_resize_of_a_box_is_torchvisions(self):
    if torch is None:
      self.skipTest('torchvision is not installed (the reference only).')
    image = _image(50, 70)
    for seed in range(5):
      rng = np.random.default_rng(seed)
      top, left, h, w = transforms.resized_crop_box(50, 70, rng)
      ours = transforms._resize(image, (24, 24),
                                (left, top, left + w, top + h))
      reference = tvf.resized_crop(Image.fromarray(image), top, left, h, w,
                                   [24, 24])
      np.testing.assert_array_equal(ours, np.asarray(reference))

  def test_colour_jitter_is_torchvisions_on_the_same_draw(self):
    if torch is None:
      self.skipTest('torchvision is not installed (the reference only).')
    jitter = tvt.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4,
                             hue=0)
    for seed in range(8):
      image = _image(20, 30, seed=seed)
      torch.manual_seed(seed)
      fn_idx, b, c, s, _ = jitter.get_params(
          jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
      torch.manual_seed(seed)
      reference = np.asarray(jitter(Image.fromarray(image)))
      order = [int(i) for i in fn_idx if i < 3]  # Hue (3) is off.
      ours = transforms.adjust_colour(image, order, (b, c, s))
      np.testing.assert_array_equal(ours, reference)

  def test_colour_jitter_draws_every_order_and_factors_in_range(self):
    rng = np.random.default_rng(0)
    draws = [transforms.colour_jitter_params(rng) for _ in range(300)]
    self.assertLen({order for order, _ in draws}, 6)
    factors = np.array([f for _, f in draws])
    self.assertBetween(factors.min(), 0.6, 0.62)
    self.assertBetween(factors.max(), 1.38, 1.4)
    # Factors of 1 change nothing; a grey image stays grey (saturation) and
    # brightness 0.5 halves it (Pillow truncates).
    image = _image(6, 7)
    np.testing.assert_array_equal(
        transforms.adjust_colour(image, (2, 0, 1), (1.0, 1.0, 1.0)), image)
    grey = np.repeat(image[..., :1], 3, axis=-1)
    np.testing.assert_array_equal(
        transforms.adjust_colour(grey, (2,), (0, 0, 1.4)), grey)
    np.testing.assert_array_equal(
        transforms.adjust_colour(image, (0,), (0.5, 0, 0)), image // 2)
    # In the random transform: a function of the generator, jittered.
    augment = transforms.random_resized_crop_flip(16, jitter=0.4)
    plain = transforms.random_resized_crop_flip(16)
    a, b = (augment(image, np.random.default_rng(4)) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    self.assertFalse(np.array_equal(
        a, plain(image, np.random.default_rng(4))))
    self.assertEqual(augment(image[..., :1], rng).shape, (16, 16, 1))

  def test_a_read_from_a_position_draws_the_whole_reads_crops(self):
    images = [_image(20 + i, 30, seed=i) for i in range(6)]
    split = streaming.open_split(
        _Source([{'image': im, 'label': i % 2} for i, im in
                 enumerate(images)]), name='t', split='train',
        image_key='image', label_key='label',
        class_names=lambda labels, texts: ('a', 'b'),
        transform=transforms.resize_centre_crop(8))
    indices = np.array([5, 0, 3, 3, 1, 2, 4, 0])
    augment = transforms.random_resized_crop_flip(8)
    whole = np.concatenate(list(split.chunks(indices, 2, transform=augment,
                                             seed=11)))
    tail = np.concatenate(list(split.chunks(indices, 2, start=4,
                                            transform=augment, seed=11)))
    np.testing.assert_array_equal(tail, whole[4:])
    by_four = np.concatenate(list(split.chunks(indices, 4, transform=augment,
                                               seed=11)))
    np.testing.assert_array_equal(by_four, whole)  # Whatever the chunks.
    self.assertFalse(np.array_equal(whole[2], whole[3]))  # Own draws.
    other = np.concatenate(list(split.chunks(indices, 2, transform=augment,
                                             seed=12)))
    self.assertFalse(np.array_equal(other, whole))
    # One device's share of each batch (columns 1 and 3 of batches of 4),
    # read with its positions in the plan: the whole read's images there.
    share = (np.arange(2)[:, None] * 4 + np.array([1, 3])).reshape(-1)
    part = np.concatenate(list(split.chunks(
        indices[share], 2, transform=augment, seed=11, positions=share)))
    np.testing.assert_array_equal(part, whole[share])
    unplaced = np.concatenate(list(split.chunks(
        indices[share], 2, transform=augment, seed=11)))
    self.assertFalse(np.array_equal(unplaced, whole[share]))
    with self.assertRaisesRegex(ValueError, '3 positions for 8 indices'):
      next(split.chunks(indices, 2, positions=share[:3]))
    # Without a transform, the split's own: the centre crop.
    np.testing.assert_array_equal(
        next(split.chunks(indices, 8)),
        np.stack([transforms.resize_centre_crop(8)(images[i])
                  for i in indices]))
    with self.assertRaisesRegex(ValueError, '5 indices are not a whole '
                                'number of chunks of 2'):
      next(split.chunks(indices, 2, start=3))
    self.assertEqual(math.prod(whole.shape), 8 * 8 * 8 * 3)


class _Source:
  """A random-access source over a list of examples."""

  def __init__(self, examples):
    self._examples = examples

  def __len__(self):
    return len(self._examples)

  def __getitem__(self, i):
    return self._examples[i]

  def __getitems__(self, ids):
    return [self._examples[i] for i in ids]


if __name__ == '__main__':
  absltest.main()
