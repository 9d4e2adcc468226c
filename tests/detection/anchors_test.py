"""Tests for cil.detection.anchors: anchors, encodings, assignment.
"""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from cil.detection import anchors as A
from cil.detection import boxes as B
from testutil import random_boxes


class AnchorTest(absltest.TestCase):

  def test_anchor_grid(self):
    anchors = A.make_anchors((2, 3), 16, sizes=(32, 64),
                             ratios=(0.25, 1.0, 4.0))
    self.assertEqual(anchors.shape, (2 * 3 * 6, 4))
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    np.testing.assert_allclose(np.sqrt(w * h)[:6], [32] * 3 + [64] * 3,
                               rtol=1e-6)
    np.testing.assert_allclose((h / w)[:3], [0.25, 1, 4], rtol=1e-6)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    np.testing.assert_allclose(centres[0], [8, 8])
    np.testing.assert_allclose(centres[6], [24, 8])   # Next cell along x.
    np.testing.assert_allclose(centres[18], [8, 24])  # Next row.

  def test_encode_decode_round_trips(self):
    rng = np.random.default_rng(7)
    ref = np.concatenate([rng.uniform(0, 50, (20, 2)),
                          rng.uniform(60, 120, (20, 2))], -1)
    boxes = np.concatenate([rng.uniform(0, 50, (20, 2)),
                            rng.uniform(60, 120, (20, 2))], -1)
    w = (10.0, 10.0, 5.0, 5.0)
    deltas = A.encode_aabb(jnp.asarray(boxes), jnp.asarray(ref), weights=w)
    np.testing.assert_allclose(A.decode_aabb(deltas, ref, weights=w), boxes,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(A.encode_aabb(ref, ref), 0.0, atol=1e-6)
    inclined = np.asarray(B.rbox_to_inclined(
        random_boxes(rng, 20, centre=100.0, side=(5, 40)), xp=np))
    deltas = A.encode_inclined(jnp.asarray(inclined), jnp.asarray(ref))
    np.testing.assert_allclose(A.decode_inclined(deltas, ref), inclined,
                               rtol=1e-5, atol=1e-4)

  def test_rotated_encoding_round_trips_and_takes_the_nearest_form(self):
    rng = np.random.default_rng(10)
    ref = random_boxes(rng, 30, centre=100.0, side=(5, 60))
    boxes = random_boxes(rng, 30, centre=100.0, side=(5, 60))
    w = (10.0, 10.0, 5.0, 5.0, 10.0)
    with jax.enable_x64(True):
      deltas = np.asarray(A.encode_rbox(jnp.asarray(boxes), jnp.asarray(ref),
                                        weights=w))
      back = np.asarray(A.decode_rbox(jnp.asarray(deltas), jnp.asarray(ref),
                                      weights=w))
      # The same rectangle (perhaps in another form): rotated IoU 1.
      iou = np.asarray(B.rotated_iou_pairwise(jnp.asarray(back),
                                              jnp.asarray(boxes)))
      np.testing.assert_allclose(iou, 1.0, atol=1e-9)
      # The angle target is within [-pi/4, pi/4), and the equivalent forms
      # of a box (theta + pi; w, h swapped and theta + pi/2) give one target.
      self.assertTrue(np.all(np.abs(deltas[:, 4] / 10) <= np.pi / 4 + 1e-12))
      half_turn = boxes + [0, 0, 0, 0, np.pi]
      swapped = boxes[:, [0, 1, 3, 2, 4]] + [0, 0, 0, 0, np.pi / 2]
      for same in (half_turn, swapped, swapped - [0, 0, 0, 0, 2 * np.pi]):
        np.testing.assert_allclose(
            A.encode_rbox(jnp.asarray(same), jnp.asarray(ref), weights=w),
            deltas, atol=1e-9)
      np.testing.assert_allclose(A.encode_rbox(jnp.asarray(ref),
                                               jnp.asarray(ref)), 0,
                                 atol=1e-12)
    # Hand value: 10 px along a reference turned by 90 degrees is +x in its
    # frame; a box turned 100 degrees from it is 10 degrees off once swapped.
    ref = jnp.array([50., 50, 20, 10, np.pi / 2])
    box = jnp.array([50., 60, 40, 5, np.pi / 2 + np.radians(100)])
    np.testing.assert_allclose(
        A.encode_rbox(box, ref), [10 / 20, 0, np.log(5 / 20), np.log(40 / 10),
                                  np.radians(10)], atol=1e-5)

  def test_assignment_on_hand_made_boxes(self):
    anchors = jnp.array([[0., 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30],
                         [100, 100, 110, 110]])
    gt = jnp.array([[0., 0, 10, 10], [21, 21, 31, 31], [0, 0, 1, 1]])
    valid = jnp.array([True, True, False])  # The last one is padding.
    iou = A.aabb_iou(anchors, gt)
    # Anchor 1 vs GT 0: 25 / 175; anchor 2 vs GT 1: 81 / 119 = 0.68.
    np.testing.assert_allclose(iou[1, 0], 25 / 175, rtol=1e-6)
    np.testing.assert_allclose(iou[2, 1], 81 / 119, rtol=1e-6)
    labels, matched = A.assign(iou, valid, positive=0.7, negative=0.3,
                               allow_low_quality=False)
    np.testing.assert_array_equal(labels, [1, 0, -1, 0])
    labels, matched = A.assign(iou, valid, positive=0.7, negative=0.3)
    np.testing.assert_array_equal(labels, [1, 0, 1, 0])  # GT 1's best.
    np.testing.assert_array_equal(np.asarray(matched)[[0, 2]], [0, 1])
    labels, _ = A.assign(iou, jnp.zeros(3, bool), positive=0.7,
                         negative=0.3)
    np.testing.assert_array_equal(labels, [0, 0, 0, 0])  # No objects.

  def test_sampling_has_fixed_size_and_fraction(self):
    labels = jnp.array([1, 0, 0, 1, -1, 0, 0, 1, 0, 0, 0, 0, 0, -1])
    sample = jax.jit(A.sample, static_argnames=('num', 'positive_fraction'))
    idx, mask = sample(jax.random.key(0), labels, num=8,
                       positive_fraction=0.25)
    self.assertEqual(idx.shape, (8,))
    self.assertTrue(bool(mask.all()))
    picked = np.asarray(labels)[np.asarray(idx)]
    np.testing.assert_array_equal(picked, [1, 1] + [0] * 6)
    self.assertLen(set(np.asarray(idx).tolist()), 8)
    idx, mask = sample(jax.random.key(1), jnp.array([1, 0, -1, -1]), num=8,
                       positive_fraction=0.5)
    np.testing.assert_array_equal(mask, [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(idx[:2], [0, 1])


if __name__ == '__main__':
  absltest.main()
