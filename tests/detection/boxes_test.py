"""Tests for cil.detection.boxes: conversions, rotated IoU (against
shapely), rotated NMS.
"""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil.detection import boxes as B
from testutil import random_boxes

try:
  import shapely  # pylint: disable=g-import-not-at-top
except ImportError:  # pragma: no cover
  shapely = None


def _hard_pairs(rng):
  """Random pairs plus identical, contained, touching, thin and far ones."""
  a, b = random_boxes(rng, 4000), random_boxes(rng, 4000)
  b[:300] = a[:300]                                     # Identical.
  b[300:600] = a[300:600]
  b[300:600, 2:4] *= rng.uniform(0.1, 0.9, (300, 1))    # Contained, centred.
  b[600:700] = a[600:700]
  b[600:700, 0] += a[600:700, 2] * np.cos(a[600:700, 4])  # Touching along w.
  b[600:700, 1] += a[600:700, 2] * np.sin(a[600:700, 4])
  a[700:800, 4] = 0.0                                   # Axis-aligned, touching
  b[700:800] = a[700:800]                               # at a shared side.
  b[700:800, 1] += a[700:800, 3]
  b[800:1000, 3] = rng.uniform(1e-3, 1e-2, 200)        # Degenerate thin boxes.
  b[1000:1100] = a[1000:1100]
  b[1000:1100, 3] = 1e-3                                # Thin, inside.
  b[1100:1200] = a[1100:1200]
  b[1100:1200, 4] += np.pi / 2                          # Same, w/h swapped:
  b[1100:1200, 2:4] = a[1100:1200, 3:1:-1]              # IoU 1.
  b[1200:1300, :2] += 500                               # Far apart.
  return a, b


def _shapely_iou(a, b):
  pa = shapely.polygons(B.rbox_to_corners(a, xp=np))
  pb = shapely.polygons(B.rbox_to_corners(b, xp=np))
  inter = shapely.area(shapely.intersection(pa, pb))
  return inter / (shapely.area(pa) + shapely.area(pb) - inter)


class GeometryTest(parameterized.TestCase):

  def test_corners_order_and_round_trip(self):
    box = np.array([10.0, 20.0, 8.0, 4.0, 0.0])
    np.testing.assert_allclose(
        B.rbox_to_corners(box, xp=np),
        [[6, 18], [14, 18], [14, 22], [6, 22]])  # TL, TR, BR, BL on screen.
    rng = np.random.default_rng(0)
    boxes = B.canonical_rbox(random_boxes(rng, 100), xp=np)
    back = B.corners_to_rbox(B.rbox_to_corners(boxes, xp=np), xp=np)
    np.testing.assert_allclose(back, boxes, atol=1e-9)

  def test_canonical_form_is_the_same_rectangle(self):
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 200)
    canon = B.canonical_rbox(boxes, xp=np)
    self.assertTrue(np.all(canon[:, 4] >= -np.pi / 4 - 1e-12))
    self.assertTrue(np.all(canon[:, 4] < np.pi / 4 + 1e-12))
    np.testing.assert_allclose(B.rbox_to_aabb(canon, xp=np),
                               B.rbox_to_aabb(boxes, xp=np), atol=1e-9)
    np.testing.assert_allclose(
        B.rotated_iou_pairwise(canon, boxes, xp=np), 1.0, atol=1e-9)

  def test_inclined_round_trip_and_hand_value(self):
    box = np.array([10.0, 20.0, 8.0, 4.0, 0.0])
    np.testing.assert_allclose(B.rbox_to_inclined(box, xp=np),
                               [6, 18, 14, 18, 4])
    rng = np.random.default_rng(2)
    boxes = B.canonical_rbox(random_boxes(rng, 100), xp=np)
    inclined = B.rbox_to_inclined(jnp.asarray(boxes))
    np.testing.assert_allclose(B.inclined_to_rbox(inclined), boxes,
                               atol=1e-4)

  def test_aabb_encloses_the_corners(self):
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 100)
    corners = B.rbox_to_corners(boxes, xp=np)
    aabb = B.rbox_to_aabb(boxes, xp=np)
    np.testing.assert_allclose(aabb[:, :2], corners.min(1), atol=1e-9)
    np.testing.assert_allclose(aabb[:, 2:], corners.max(1), atol=1e-9)


@absltest.skipIf(shapely is None, 'shapely is not installed')
class RotatedIouTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.a, cls.b = _hard_pairs(np.random.default_rng(4))
    cls.ref = _shapely_iou(cls.a, cls.b)

  def test_float64_numpy_matches_shapely(self):
    got = B.rotated_iou_pairwise(self.a, self.b, xp=np)
    self.assertLess(np.abs(got - self.ref).max(), 1e-9)
    np.testing.assert_allclose(got[:300], 1.0, atol=1e-12)    # Identical.
    np.testing.assert_allclose(got[1100:1200], 1.0, atol=1e-9)
    np.testing.assert_allclose(got[700:800], 0.0, atol=1e-12)  # Touching.
    np.testing.assert_array_equal(got[1200:1300], 0.0)

  def test_float64_jit_matches_shapely(self):
    with jax.enable_x64(True):
      got = jax.jit(B.rotated_iou_pairwise)(jnp.asarray(self.a),
                                            jnp.asarray(self.b))
      self.assertLess(float(np.abs(np.asarray(got) - self.ref).max()), 1e-9)

  def test_float32_jit_matches_shapely(self):
    got = jax.jit(B.rotated_iou_pairwise)(
        jnp.asarray(self.a, jnp.float32), jnp.asarray(self.b, jnp.float32))
    self.assertEqual(got.dtype, jnp.float32)
    self.assertLess(float(np.abs(np.asarray(got) - self.ref).max()), 2e-4)

  def test_thin_boxes_and_near_collinear_copies_in_float32(self):
    rng = np.random.default_rng(12)
    n = 2000
    w = rng.uniform(10, 100, n)
    t = np.stack([rng.uniform(0, 50, n), rng.uniform(0, 50, n), w,
                  w / 10 ** rng.uniform(0, 5, n),  # Aspect ratios to 1e5.
                  rng.uniform(-4, 4, n)], -1)
    f32 = jax.jit(B.rotated_iou_pairwise)

    def iou32(a, b):
      return np.asarray(f32(jnp.asarray(a, jnp.float32),
                            jnp.asarray(b, jnp.float32)), np.float64)

    # A thin box with itself: ~1 (it was 0 above aspect ~8,400), never > 1.
    self_iou = iou32(t, t)
    self.assertGreater(self_iou.min(), 0.99)
    self.assertLessEqual(self_iou.max(), 1.0)
    np.testing.assert_allclose(B.rotated_iou_pairwise(t, t, xp=np), 1.0,
                               atol=1e-9)
    # Copies shifted across the long axis by up to 2 h: within the bound
    # the docstring states, against shapely on the float32-rounded inputs.
    d = rng.uniform(1e-3, 2.0, n) * t[:, 3]
    s = t.copy()
    s[:, 0] -= np.sin(t[:, 4]) * d
    s[:, 1] += np.cos(t[:, 4]) * d
    r32 = lambda x: x.astype(np.float32).astype(np.float64)  # noqa: E731
    err = np.abs(iou32(t, s) - _shapely_iou(r32(t), r32(s)))
    coord = np.maximum(np.abs(r32(t)[:, :2]).max(1), t[:, 2])
    bound = 64 * np.finfo(np.float32).eps * coord / t[:, 3]
    self.assertTrue(np.all(err <= bound), msg=f'{(err / bound).max()}')
    # The example: a 100 x 10 box moved 0.01 px across its long
    # axis (exact IoU 0.998002; the former tolerance merged the edges).
    a = np.array([[10.0, 20.0, 100.0, 10.0, 0.4]])
    b = a + [[-0.01 * np.sin(0.4), 0.01 * np.cos(0.4), 0, 0, 0]]
    self.assertAlmostEqual(float(iou32(a, b)[0]),
                           float(_shapely_iou(a, b)[0]), delta=2e-6)
    # NMS keeps one of two identical thin boxes.
    thin = jnp.asarray([[0.0, 0.0, 100.0, 1e-3, 0.0]] * 2, jnp.float32)
    _, mask = B.rotated_nms(thin, jnp.array([0.9, 0.8]), iou_threshold=0.5,
                            max_output=2)
    self.assertEqual(int(mask.sum()), 1)

  def test_matrix_form_and_symmetry(self):
    a, b = self.a[:30], self.b[:20]
    iou = jax.jit(B.rotated_iou)(jnp.asarray(a), jnp.asarray(b))
    self.assertEqual(iou.shape, (30, 20))
    ref = _shapely_iou(np.repeat(a, 20, 0), np.tile(b, (30, 1)))
    np.testing.assert_allclose(iou, ref.reshape(30, 20), atol=2e-4)
    np.testing.assert_allclose(B.rotated_iou(a, b, xp=np),
                               B.rotated_iou(b, a, xp=np).T, atol=1e-9)

  def test_zero_size_box_has_zero_iou(self):
    a = np.array([[0.0, 0.0, 10.0, 0.0, 0.3]])
    self.assertEqual(float(B.rotated_iou(a, a, xp=np)[0, 0]), 0.0)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r'`a` must be \[n, 5\]'):
      B.rotated_iou(jnp.zeros((3, 4)), jnp.zeros((2, 5)))


class NmsTest(absltest.TestCase):

  def test_hand_made(self):
    boxes = jnp.array([[0, 0, 10, 4, 0.0],
                       [0.5, 0, 10, 4, 0.05],   # IoU ~0.8 with box 0.
                       [30, 30, 10, 4, 1.0],
                       [0, 0, 4, 10, 0.0]])     # IoU 0.25 with box 0.
    scores = jnp.array([0.9, 0.95, 0.5, 0.8])
    nms = jax.jit(B.rotated_nms, static_argnames=('max_output',))
    idx, mask = nms(boxes, scores, iou_threshold=0.5, max_output=6)
    np.testing.assert_array_equal(idx, [1, 3, 2, 0, 0, 0])
    np.testing.assert_array_equal(mask, [1, 1, 1, 0, 0, 0])
    idx, mask = nms(boxes, scores, iou_threshold=0.5, max_output=2,
                    valid=jnp.array([True, False, True, True]))
    np.testing.assert_array_equal(idx, [0, 3])
    np.testing.assert_array_equal(mask, [1, 1])

  def test_matches_a_plain_greedy_reference(self):
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 60, centre=60.0, side=(5, 30))
    scores = rng.random(60)
    idx, mask = B.rotated_nms(jnp.asarray(boxes, jnp.float32),
                              jnp.asarray(scores, jnp.float32),
                              iou_threshold=0.3, max_output=60)
    iou = B.rotated_iou(boxes, boxes, xp=np)
    kept = []
    for i in np.argsort(-scores, kind='stable'):
      if all(iou[i, j] <= 0.3 for j in kept):
        kept.append(i)
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(mask)], kept)


if __name__ == '__main__':
  absltest.main()
