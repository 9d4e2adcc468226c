"""Tests for cil.detection.synthetic: the harbour-ship generator.
"""

from absl.testing import absltest
import numpy as np

from cil.detection import boxes as B
from cil.detection import synthetic


class SyntheticTest(absltest.TestCase):

  def test_deterministic_in_seed_and_index(self):
    a_img, a_gt = synthetic.make_scene(3, 1, 256)
    b_img, b_gt = synthetic.make_scene(3, 1, 256)
    c_img, _ = synthetic.make_scene(3, 2, 256)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_gt.boxes, b_gt.boxes)
    self.assertFalse(np.array_equal(a_img, c_img))
    self.assertEqual(a_img.shape, (256, 256, 3))
    self.assertEqual(a_img.dtype, np.uint8)

  def test_ship_scale_sets_hull_sizes(self):
    # By default ships shrink with the image (256 px: half the 512-pixel
    # lengths); ship_scale=1 keeps the 512-pixel lengths, capped at
    # size / 2.5.
    lo = {c.name: c.length[0] for c in synthetic.CLASSES}
    hi = {c.name: c.length[1] for c in synthetic.CLASSES}
    for scale, factor in ((None, 0.5), (1.0, 1.0)):
      for i in range(3):
        _, gt = synthetic.make_scene(1, i, 256, ship_scale=scale)
        length = np.maximum(gt.boxes[:, 2], gt.boxes[:, 3])
        for name, value in zip(gt.labels, length):
          self.assertBetween(value, lo[name] * factor - 1e-6,
                             min(hi[name] * factor, 256 / 2.5) + 1e-6)
    with self.assertRaisesRegex(ValueError, 'ship_scale must be positive'):
      synthetic.make_scene(1, 0, 256, ship_scale=0.0)

  def test_long_tail_weights(self):
    w = synthetic.class_weights()
    self.assertLen(w, 15)
    self.assertAlmostEqual(w[0] / w[-1], 45.0)
    self.assertTrue(np.all(np.diff(w) < 0))

  def test_scenes_hold_side_by_side_ships(self):
    # Fig. 1: moored ships whose axis-aligned boxes overlap a lot while the
    # rotated boxes do not overlap at all; and every box is in the image.
    found = False
    for i in range(8):
      _, gt = synthetic.make_scene(0, i, 384)
      corners = B.rbox_to_corners(gt.boxes, xp=np)
      self.assertTrue(np.all((corners >= 0) & (corners <= 384)))
      self.assertTrue(np.all(np.isin(gt.labels, synthetic.CLASS_NAMES)))
      rot = B.rotated_iou(gt.boxes, gt.boxes, xp=np)
      aabb = B.rbox_to_aabb(gt.boxes, xp=np)
      lo = np.maximum(aabb[:, None, :2], aabb[None, :, :2])
      hi = np.minimum(aabb[:, None, 2:], aabb[None, :, 2:])
      inter = np.prod(np.clip(hi - lo, 0, None), -1)
      area = np.prod(aabb[:, 2:] - aabb[:, :2], -1)
      aiou = inter / (area[:, None] + area[None] - inter)
      off = ~np.eye(len(gt.boxes), dtype=bool)
      self.assertLess(rot[off].max(initial=0), 1e-9)
      found |= bool(np.any(aiou[off] > 0.3))
    self.assertTrue(found)


if __name__ == '__main__':
  absltest.main()
