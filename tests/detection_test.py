"""Tests for cil.detection: geometry, rotated IoU and NMS, metrics, data."""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil.detection import anchors as A
from cil.detection import boxes as B
from cil.detection import evaluate
from cil.detection import io as det_io
from cil.detection import metrics
from cil.detection import roi_align
from cil.detection import synthetic

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
  import shapely  # pylint: disable=g-import-not-at-top
except ImportError:  # pragma: no cover
  shapely = None


def _random_boxes(rng, n, *, centre=50.0, side=(0.5, 40.0)):
  return np.stack([rng.uniform(0, centre, n), rng.uniform(0, centre, n),
                   rng.uniform(*side, n), rng.uniform(*side, n),
                   rng.uniform(-4, 4, n)], -1)


def _hard_pairs(rng):
  """Random pairs plus identical, contained, touching, thin and far ones."""
  a, b = _random_boxes(rng, 4000), _random_boxes(rng, 4000)
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
    boxes = B.canonical_rbox(_random_boxes(rng, 100), xp=np)
    back = B.corners_to_rbox(B.rbox_to_corners(boxes, xp=np), xp=np)
    np.testing.assert_allclose(back, boxes, atol=1e-9)

  def test_canonical_form_is_the_same_rectangle(self):
    rng = np.random.default_rng(1)
    boxes = _random_boxes(rng, 200)
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
    boxes = B.canonical_rbox(_random_boxes(rng, 100), xp=np)
    inclined = B.rbox_to_inclined(jnp.asarray(boxes))
    np.testing.assert_allclose(B.inclined_to_rbox(inclined), boxes,
                               atol=1e-4)

  def test_aabb_encloses_the_corners(self):
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 100)
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
    boxes = _random_boxes(rng, 60, centre=60.0, side=(5, 30))
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


def _img(boxes, labels, scores=None, difficult=None):
  return metrics.ImageBoxes(np.asarray(boxes, float).reshape(-1, 5),
                            np.asarray(labels, str), scores, difficult)


class MetricsTest(absltest.TestCase):

  def test_iou_threshold_outside_its_range_is_named(self):
    gt = {'im': _img([[0, 0, 10, 10, 0.0]], ['a'])}
    det = {'im': _img([[50, 50, 10, 10, 0.0]], ['a'], scores=[0.9])}
    for bad, inclusive in ((1.5, False), (-1.0, False), (1.0, False),
                           (0.0, True)):
      with self.assertRaisesRegex(ValueError, 'iou_threshold must be in'):
        metrics.evaluate(det, gt, iou_threshold=bad, inclusive=inclusive)
    # Boxes that never overlap score 0 at any valid threshold.
    self.assertEqual(metrics.evaluate(det, gt, iou_threshold=0.0)['mAP'], 0)

  def test_bootstrap_of_identical_runs_and_bad_arguments(self):
    rng = np.random.default_rng(3)
    gt, det = {}, {}
    for i in range(6):
      boxes = _random_boxes(rng, 4, centre=200.0, side=(10, 40))
      labels = rng.choice(['a', 'b'], 4)
      gt[f'im{i}'] = _img(boxes, labels)
      moved = boxes + rng.normal(0, 3, boxes.shape) * [1, 1, 0, 0, 0]
      det[f'im{i}'] = _img(moved, labels, scores=rng.uniform(0, 1, 4))
    result = metrics.bootstrap_map({'x': det, 'y': det}, gt,
                                   classes=['a', 'b'], baseline='x',
                                   differences=[('x', 'y')], samples=50)
    self.assertAlmostEqual(result['mAP']['x']['value'],
                           metrics.evaluate(det, gt)['mAP'])
    for pair in ('y - x', 'x - y'):
      self.assertEqual(result['difference'][pair],
                       {'value': 0.0, 'low': 0.0, 'high': 0.0})
    self.assertLessEqual(result['mAP']['x']['low'],
                         result['mAP']['x']['value'])
    # One draw equals evaluate() on the drawn images, repeats included.
    names = sorted(gt)
    drawn = np.random.default_rng(5).integers(0, len(names), len(names))
    for method in ('11point', 'area'):
      one = metrics.bootstrap_map({'x': det}, gt, classes=['a', 'b'],
                                  samples=1, seed=5, ap_method=method)
      copies = {f'{names[i]}#{j}': i for j, i in enumerate(drawn)}
      want = metrics.evaluate(
          {k: det[names[i]] for k, i in copies.items()},
          {k: gt[names[i]] for k, i in copies.items()}, classes=['a', 'b'],
          ap_method=method)['mAP']
      self.assertAlmostEqual(one['mAP']['x']['low'], want, places=12)
    with self.assertRaisesRegex(ValueError, "'z' .* is not a run"):
      metrics.bootstrap_map({'x': det}, gt, classes=['a'], baseline='z')
    with self.assertRaisesRegex(ValueError, "'w' .* is not a run"):
      metrics.bootstrap_map({'x': det}, gt, classes=['a'],
                            differences=[('x', 'w')])
    with self.assertRaisesRegex(ValueError, 'samples must be >= 1'):
      metrics.bootstrap_map({'x': det}, gt, classes=['a'], samples=0)

  def test_hand_worked_example(self):
    g1, g2 = [0, 0, 10, 10, 0.0], [50, 50, 10, 10, 0.0]
    gt = {'im': _img([g1, g2], ['a', 'a'])}
    # d1 hits g1 (IoU 1); d2 duplicates g1 (FP); d3 overlaps g2 with IoU
    # 0.5 (shift 10/3: 6.67*10 / (200 - 66.7) = 0.5) so FP; d4 hits g2.
    det = {'im': _img([g1, [0.5, 0, 10, 10, 0], [50 + 10 / 3, 50, 10, 10, 0],
                       g2], ['a'] * 4, scores=[0.9, 0.8, 0.7, 0.6])}
    r = metrics.evaluate(det, gt)
    a = r['per_class']['a']
    # Ranked TP FP FP TP: precision 1, 1/2, 1/3, 1/2; recall .5 .5 .5 1.
    # 11-point: r = 0 ... 0.5 (6 points) reach precision 1; r = 0.6 ... 1
    # (5 points) only the last point, 1/2: (6 + 2.5) / 11.
    self.assertAlmostEqual(a['ap'], 8.5 / 11)
    self.assertEqual((a['tp'], a['fp'], a['fn']), (2, 2, 0))
    self.assertAlmostEqual(a['precision'], 0.5)
    self.assertAlmostEqual(a['recall'], 1.0)
    self.assertAlmostEqual(a['f1'], 2 * 0.5 / 1.5)
    self.assertAlmostEqual(a['gmean'], np.sqrt(0.5))
    # Area: recall 0 -> .5 at precision 1, .5 -> 1 at precision 1/2.
    area = metrics.evaluate(det, gt, ap_method='area')
    self.assertAlmostEqual(area['per_class']['a']['ap'], 0.75)
    self.assertAlmostEqual(r['mAP'], 8.5 / 11)

  def test_threshold_is_strict_by_default(self):
    # Shift 2.5: intersection 75, union 125, IoU exactly 0.6.
    gt = {'im': _img([[0, 0, 10, 10, 0.0]], ['a'])}
    det = {'im': _img([[2.5, 0, 10, 10, 0.0]], ['a'], scores=[1.0])}
    self.assertEqual(float(B.rotated_iou(det['im'].boxes, gt['im'].boxes,
                                         xp=np)[0, 0]), 0.6)
    self.assertEqual(metrics.evaluate(det, gt)['per_class']['a']['tp'], 0)
    inclusive = metrics.evaluate(det, gt, inclusive=True)
    self.assertEqual(inclusive['per_class']['a']['tp'], 1)
    self.assertEqual(inclusive['settings']['comparison'], '>=')

  def test_class_without_ground_truth_or_detections(self):
    gt = {'im': _img([[0, 0, 10, 10, 0.0]], ['a'])}
    det = {'im': _img([[40, 40, 10, 10, 0.0]], ['b'], scores=[0.5])}
    r = metrics.evaluate(det, gt)
    self.assertEqual(list(r['per_class']), ['a', 'b'])
    a, b = r['per_class']['a'], r['per_class']['b']
    self.assertEqual(a['ap'], 0.0)             # No detections: AP 0, P 0.
    self.assertEqual((a['precision'], a['recall'], a['fn']), (0.0, 0.0, 1))
    self.assertIsNone(b['ap'])                 # No ground truth: no AP,
    self.assertEqual(b['fp'], 1)               # but its FP counts overall.
    self.assertEqual(r['mAP'], 0.0)            # Mean over 'a' only.
    self.assertEqual((r['overall']['tp'], r['overall']['fp'],
                      r['overall']['fn']), (0, 1, 1))

  def test_ties_in_score_keep_the_given_order(self):
    g = [0, 0, 10, 10, 0.0]
    gt = {'im': _img([g], ['a'])}
    far = [60, 60, 10, 10, 0.0]
    first_hit = metrics.evaluate(
        {'im': _img([g, far], ['a', 'a'], scores=[0.5, 0.5])}, gt)
    first_miss = metrics.evaluate(
        {'im': _img([far, g], ['a', 'a'], scores=[0.5, 0.5])}, gt)
    self.assertAlmostEqual(first_hit['per_class']['a']['ap'], 1.0)
    # Ranked FP, TP: precision 1/2 at recall 1 for every 11 points.
    self.assertAlmostEqual(first_miss['per_class']['a']['ap'], 0.5)

  def test_difficult_ground_truth_is_ignored(self):
    gt = {'im': _img([[0, 0, 10, 10, 0.0], [40, 0, 10, 10, 0.0]], ['a', 'a'],
                     difficult=[False, True])}
    det = {'im': _img([[40, 0, 10, 10, 0.0], [0, 0, 10, 10, 0.0]], ['a', 'a'],
                      scores=[0.9, 0.8])}
    a = metrics.evaluate(det, gt)['per_class']['a']
    self.assertEqual((a['num_gt'], a['tp'], a['fp']), (1, 1, 0))
    self.assertAlmostEqual(a['ap'], 1.0)

  def test_detections_for_unknown_images(self):
    with self.assertRaisesRegex(ValueError, 'without ground truth.*x'):
      metrics.evaluate({'x': _img([], [], scores=[])}, {})

  def test_markdown_table(self):
    gt = {'im': _img([[0, 0, 10, 10, 0.0]], ['a'])}
    det = {'im': _img([[0, 0, 10, 10, 0.0]], ['a'], scores=[1.0])}
    table = metrics.table_markdown(metrics.evaluate(det, gt))
    self.assertIn('| a | 1 | 1 | 100.0 | 100.0 | 100.0 | 100.0 | 100.0 |',
                  table)
    self.assertIn('IoU > 0.6', table)


class IoTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

  def _write(self, name, text):
    path = os.path.join(self.dir, name)
    with open(path, 'w') as f:
      f.write(text)
    return path

  def test_dota_labels(self):
    path = self._write('a.txt', 'imagesource:GoogleEarth\ngsd:0.6\n'
                       '6 18 14 18 14 22 6 22 tug 0\n'
                       '0 0 4 0 4 2 0 2 tanker 1\n'
                       '1 1 3 1 3 2 1 2 yacht\n')
    gt = det_io.read_dota(path)
    np.testing.assert_allclose(gt.boxes[0], [10, 20, 8, 4, 0])
    self.assertEqual(list(gt.labels), ['tug', 'tanker', 'yacht'])
    self.assertEqual(list(gt.difficult), [False, True, False])
    det_io.write_dota(os.path.join(self.dir, 'b.txt'), gt)
    back = det_io.read_dota(os.path.join(self.dir, 'b.txt'))
    np.testing.assert_allclose(back.boxes, gt.boxes, atol=1e-2)

  def test_malformed_lines_name_file_and_line(self):
    path = self._write('bad.txt', '6 18 14 18 14 22 6 22 tug 0\n'
                       '6 18 14 18 14 22 6 tug\n')
    with self.assertRaisesRegex(ValueError, r'bad\.txt:2: expected 9 or 10'):
      det_io.read_dota(path)
    path = self._write('nan.txt', '6 18 x 18 14 22 6 22 tug 0\n')
    with self.assertRaisesRegex(ValueError, r'nan\.txt:1: corner'):
      det_io.read_dota(path)
    path = self._write('flat.txt', '0 0 4 0 4 0 0 0 tug 0\n')
    with self.assertRaisesRegex(ValueError, r'flat\.txt:1: box of non-pos'):
      det_io.read_dota(path)
    path = self._write('score.txt', '6 18 14 18 14 22 6 22 tug high\n')
    with self.assertRaisesRegex(ValueError, r'score\.txt:1: bad score'):
      det_io.read_detections(path)
    path = self._write('nanscore.txt', '6 18 14 18 14 22 6 22 tug nan\n')
    with self.assertRaisesRegex(ValueError,
                                r'nanscore\.txt:1: the score must be finite'):
      det_io.read_detections(path)

  def test_hrsc_xml(self):
    obj = ('<HRSC_Object><Class_ID>100000005</Class_ID>'
           '<difficult>{d}</difficult><mbox_cx>10</mbox_cx>'
           '<mbox_cy>20</mbox_cy><mbox_w>{w}</mbox_w><mbox_h>4</mbox_h>'
           '<mbox_ang>0.5</mbox_ang></HRSC_Object>')
    path = self._write('h.xml', '<HRSC_Image><HRSC_Objects>'
                       + obj.format(d=0, w=8) + obj.format(d=1, w=9)
                       + '</HRSC_Objects></HRSC_Image>')
    gt = det_io.read_hrsc(path, class_names={'100000005': 'carrier'})
    np.testing.assert_allclose(gt.boxes[0], [10, 20, 8, 4, 0.5])
    self.assertEqual(list(gt.labels), ['carrier', 'carrier'])
    self.assertEqual(list(gt.difficult), [False, True])
    bad = self._write('z.xml', '<HRSC_Image>' + obj.format(d=0, w=0)
                      + '</HRSC_Image>')
    with self.assertRaisesRegex(ValueError, 'z.xml: HRSC_Object 0: box of'):
      det_io.read_hrsc(bad)
    with self.assertRaisesRegex(ValueError, 'not well-formed'):
      det_io.read_hrsc(self._write('y.xml', '<HRSC_Image>'))
    missing = self._write('m.xml', '<a><HRSC_Object><mbox_cx>1</mbox_cx>'
                          '</HRSC_Object></a>')
    with self.assertRaisesRegex(ValueError, 'missing <mbox_cy>'):
      det_io.read_hrsc(missing)

  def test_missing_folder(self):
    with self.assertRaisesRegex(ValueError, 'does not exist'):
      det_io.read_folder(os.path.join(self.dir, 'nope'))


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


class EvaluateCliTest(absltest.TestCase):

  def test_generated_ground_truth_against_perturbed_copy(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=_ROOT)
    subprocess.run([sys.executable, '-m', 'launch.make_ships', '--out',
                    os.path.join(root, 'gt'), '--images', '3', '--size',
                    '256', '--seed', '1'], check=True, cwd=_ROOT, env=env,
                   capture_output=True)
    gt = evaluate.read_ground_truth(os.path.join(root, 'gt'))
    pred_dir = os.path.join(root, 'pred')
    os.makedirs(pred_dir)
    expected = {}
    for image, g in gt.items():
      # Keep every other box, moved by 0.5 px (IoU well above 0.6), and add
      # one far-off false positive of the first kept class.
      keep = np.arange(len(g.boxes)) % 2 == 0
      boxes = g.boxes[keep].copy()
      boxes[:, 0] += 0.5
      labels = list(g.labels[keep])
      boxes = np.concatenate([boxes, [[-500, -500, 10, 5, 0]]])
      labels.append(labels[0])
      scores = np.linspace(1, 0.5, len(labels))
      det_io.write_dota(os.path.join(pred_dir, image + '.txt'),
                        metrics.ImageBoxes(boxes, np.asarray(labels),
                                           scores=scores))
      for label, k in zip(g.labels, keep):
        e = expected.setdefault(str(label), [0, 0, 0])
        e[0 if k else 2] += 1
      expected[labels[0]][1] += 1
    out = os.path.join(root, 'eval')
    run = subprocess.run(
        [sys.executable, '-m', 'launch.evaluate_detections', '--gt',
         os.path.join(root, 'gt'), '--pred', pred_dir, '--out', out],
        check=True, cwd=_ROOT, env=env, capture_output=True, text=True)
    self.assertIn('overall (mAP)', run.stdout)
    with open(os.path.join(out, 'results.json')) as f:
      result = json.load(f)
    for name, (tp, fp, fn) in expected.items():
      e = result['per_class'][name]
      self.assertEqual((e['tp'], e['fp'], e['fn']), (tp, fp, fn), name)
    total = np.sum(list(expected.values()), 0)
    self.assertAlmostEqual(result['overall']['recall'],
                           total[0] / (total[0] + total[2]))
    self.assertAlmostEqual(result['overall']['precision'],
                           total[0] / (total[0] + total[1]))
    self.assertTrue(os.path.exists(os.path.join(out, 'table.md')))

  def test_compare_runs_with_paired_bootstrap(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=_ROOT)
    synthetic.write_dataset(os.path.join(root, 'gt'), images=4, size=256,
                            seed=2)
    gt = evaluate.read_ground_truth(os.path.join(root, 'gt'))
    for run, step in (('perfect', 1), ('half', 2)):
      os.makedirs(os.path.join(root, run))
      for image, g in gt.items():
        keep = np.arange(len(g.boxes)) % step == 0
        det_io.write_dota(os.path.join(root, run, image + '.txt'),
                          metrics.ImageBoxes(g.boxes[keep], g.labels[keep],
                                             scores=np.ones(keep.sum())))
    out = os.path.join(root, 'compare.md')
    cmd = [sys.executable, '-m', 'launch.compare_detections', '--gt',
           os.path.join(root, 'gt'), '--runs',
           f'perfect={root}/perfect,half={root}/half',
           '--differences=perfect:half', '--baseline', 'perfect',
           '--samples', '200', f'--out={out}']
    run = subprocess.run(cmd, check=True, cwd=_ROOT, env=env,
                         capture_output=True, text=True)
    self.assertIn('| half - perfect |', run.stdout)
    self.assertIn('| perfect - half |', run.stdout)
    with open(os.path.join(root, 'compare.json')) as f:
      result = json.load(f)
    boot = result['bootstrap']
    self.assertEqual(boot['mAP']['perfect'],
                     {'value': 1.0, 'low': 1.0, 'high': 1.0})
    # The point mAP is evaluate's; missing half the ships costs AP in every
    # draw, so the paired difference's CI lies below 0.
    half = evaluate.evaluate_folders(os.path.join(root, 'gt'),
                                     os.path.join(root, 'half'), out_dir=None)
    self.assertAlmostEqual(boot['mAP']['half']['value'], half['mAP'])
    self.assertLess(boot['difference']['half - perfect']['high'], 0)
    bad = subprocess.run(cmd[:-4] + ['nobody'], cwd=_ROOT, env=env,
                         capture_output=True, text=True)
    self.assertEqual(bad.returncode, 1)
    self.assertIn("'nobody' (baseline or difference) is not a run",
                  bad.stderr)
    self.assertNotIn('Traceback', bad.stderr)


def _bilinear_reference(features, y, x):
  """One bilinear sample in cells by Detectron2's rule, written out."""
  height, width, channels = features.shape
  if y < -1 or y > height or x < -1 or x > width:
    return np.zeros(channels)
  y, x = max(y, 0.0), max(x, 0.0)
  y0, x0 = min(int(y), height - 1), min(int(x), width - 1)
  y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
  ly = 0.0 if y0 == height - 1 else y - y0
  lx = 0.0 if x0 == width - 1 else x - x0
  return ((1 - ly) * (1 - lx) * features[y0, x0]
          + (1 - ly) * lx * features[y0, x1]
          + ly * (1 - lx) * features[y1, x0] + ly * lx * features[y1, x1])


def _roi_align_reference(features, rois, ph, pw, scale, ratio, aligned):
  """RoIAlign written out sample by sample (Detectron2's definition)."""
  out = np.zeros((len(rois), ph, pw, features.shape[-1]))
  off = 0.5 if aligned else 0.0
  for r, (x1, y1, x2, y2) in enumerate(rois):
    x1, y1, x2, y2 = x1 * scale - off, y1 * scale - off, (
        x2 * scale - off), y2 * scale - off
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
      rw, rh = max(rw, 1.0), max(rh, 1.0)
    for i in range(ph):
      for j in range(pw):
        for a in range(ratio):
          for b in range(ratio):
            out[r, i, j] += _bilinear_reference(
                features, y1 + (i + (a + 0.5) / ratio) * rh / ph,
                x1 + (j + (b + 0.5) / ratio) * rw / pw) / ratio ** 2
  return out


class RoiAlignTest(parameterized.TestCase):

  @parameterized.parameters(True, False)
  def test_matches_the_sample_by_sample_reference(self, aligned):
    rng = np.random.default_rng(6)
    features = rng.standard_normal((9, 11, 3))
    rois = np.array([[0, 0, 64, 64], [10, 20, 50, 30], [-20, -8, 30, 40],
                     [150, 120, 200, 190], [40, 40, 41, 42],
                     [5.5, 7.25, 120.0, 60.5]])
    with jax.enable_x64(True):
      got = jax.jit(roi_align.roi_align, static_argnames=(
          'output_size', 'spatial_scale', 'sampling_ratio', 'aligned'))(
              jnp.asarray(features), jnp.asarray(rois), output_size=(3, 4),
              spatial_scale=1 / 16, sampling_ratio=2, aligned=aligned)
    ref = _roi_align_reference(features, rois, 3, 4, 1 / 16, 2, aligned)
    np.testing.assert_allclose(got, ref, atol=1e-12)

  def test_r2cnn_pooled_sizes_concatenated(self):
    features = jnp.ones((8, 8, 2))
    out = roi_align.multi_roi_align(features, jnp.array([[0., 0, 64, 64]]),
                                    spatial_scale=1 / 8)
    self.assertEqual(out.shape, (1, (49 + 33 + 33) * 2))
    np.testing.assert_allclose(out, 1.0, atol=1e-6)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r'rois must be \[R, 4\]'):
      roi_align.roi_align(jnp.ones((4, 4, 1)), jnp.ones((2, 5)),
                          output_size=(2, 2), spatial_scale=1.0)


def _rotated_roi_align_reference(features, rois, ph, pw, scale, ratio):
  """Rotated RoIAlign sample by sample: walk from corner p0 along the box's
  w edge (toward p1) and h edge (toward p3), then bilinear as Detectron2."""
  out = np.zeros((len(rois), ph, pw, features.shape[-1]))
  corners = B.rbox_to_corners(np.asarray(rois, np.float64), xp=np)
  for r in range(len(rois)):
    p0, p1, _, p3 = corners[r] * scale - 0.5
    for i in range(ph):
      for j in range(pw):
        for a in range(ratio):
          for b in range(ratio):
            fw = (j + (b + 0.5) / ratio) / pw  # Fraction along p0 -> p1.
            fh = (i + (a + 0.5) / ratio) / ph  # Fraction along p0 -> p3.
            x, y = p0 + fw * (p1 - p0) + fh * (p3 - p0)
            out[r, i, j] += _bilinear_reference(features, y, x) / ratio ** 2
  return out


class RotatedRoiAlignTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.align = staticmethod(jax.jit(roi_align.rotated_roi_align,
                                     static_argnames=(
                                         'output_size', 'spatial_scale',
                                         'sampling_ratio', 'aligned')))

  @parameterized.parameters(0.0, 0.3, -0.7, np.pi / 2, -np.pi / 2, np.pi,
                            2.5)
  def test_matches_the_sample_by_sample_reference(self, theta):
    rng = np.random.default_rng(7)
    features = rng.standard_normal((9, 11, 3))
    rois = np.array([[80, 70, 90, 30, 0], [30, 40, 60, 20, 0],
                     [5, 10, 70, 40, 0],  # Partly outside (top left).
                     [170, 140, 60, 50, 0],  # Partly outside (bottom right).
                     [90, 60, 2, 1, 0], [60.5, 81.25, 120.0, 14.5, 0]])
    rois[:, 4] = theta + np.arange(len(rois)) * 0.05 * (theta != 0)
    with jax.enable_x64(True):
      got = self.align(jnp.asarray(features), jnp.asarray(rois),
                       output_size=(3, 5), spatial_scale=1 / 16,
                       sampling_ratio=2)
    ref = _rotated_roi_align_reference(features, rois, 3, 5, 1 / 16, 2)
    np.testing.assert_allclose(got, ref, atol=1e-12)

  def test_zero_angle_is_roi_align_of_the_corners(self):
    rng = np.random.default_rng(8)
    features = jnp.asarray(rng.standard_normal((8, 8, 2)), jnp.float32)
    aabb = jnp.array([[4., 6, 60, 30], [-10, 20, 40, 140]])
    rboxes = B.aabb_to_rbox(aabb)
    for aligned in (True, False):
      got = self.align(features, rboxes, output_size=(4, 3),
                       spatial_scale=1 / 8, aligned=aligned)
      want = roi_align.roi_align(features, aabb, output_size=(4, 3),
                                 spatial_scale=1 / 8, aligned=aligned)
      np.testing.assert_allclose(got, want, atol=1e-5)

  def test_a_half_turn_reverses_the_bins(self):
    # theta + pi is the same rectangle walked from the opposite corner.
    features = jnp.asarray(np.random.default_rng(9).standard_normal(
        (10, 10, 1)), jnp.float32)
    box = jnp.array([[70., 80, 64, 24, 0.4]])
    a = self.align(features, box, output_size=(2, 4), spatial_scale=1 / 16)
    b = self.align(features, box.at[0, 4].add(np.pi), output_size=(2, 4),
                   spatial_scale=1 / 16)
    np.testing.assert_allclose(a, b[:, ::-1, ::-1], atol=1e-5)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r'rois must be \[R, 5\]'):
      roi_align.rotated_roi_align(jnp.ones((4, 4, 1)), jnp.ones((2, 4)),
                                  output_size=(2, 2), spatial_scale=1.0)
    with self.assertRaisesRegex(ValueError, r'features must be \[H, W, C\]'):
      roi_align.rotated_roi_align(jnp.ones((4, 4)), jnp.ones((2, 5)),
                                  output_size=(2, 2), spatial_scale=1.0)


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
        _random_boxes(rng, 20, centre=100.0, side=(5, 40)), xp=np))
    deltas = A.encode_inclined(jnp.asarray(inclined), jnp.asarray(ref))
    np.testing.assert_allclose(A.decode_inclined(deltas, ref), inclined,
                               rtol=1e-5, atol=1e-4)

  def test_rotated_encoding_round_trips_and_takes_the_nearest_form(self):
    rng = np.random.default_rng(10)
    ref = _random_boxes(rng, 30, centre=100.0, side=(5, 60))
    boxes = _random_boxes(rng, 30, centre=100.0, side=(5, 60))
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
