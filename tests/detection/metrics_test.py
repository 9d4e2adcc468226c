"""Tests for cil.detection.metrics: matching, AP, P/R/F1/G-mean.
"""

from absl.testing import absltest
import numpy as np

from cil.detection import boxes as B
from cil.detection import metrics
from testutil import random_boxes


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
      boxes = random_boxes(rng, 4, centre=200.0, side=(10, 40))
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


if __name__ == '__main__':
  absltest.main()


class ApProtocolsTest(absltest.TestCase):
  """`evaluate_protocols`: the paper's AP, VOC07, VOC12 and COCO, by hand."""

  def setUp(self):
    super().setUp()
    # Two ships 2 apart (IoU 8/12 with each other). d1 is the first; d2 at
    # x = 0.8 overlaps the first by IoU 9.2/10.8 = 0.852 and the second by
    # 8.8/11.2 = 0.786. A car with no detection; a boat nobody labelled.
    self.gt = {'im': _img([[0, 0, 10, 10, 0.0], [2, 0, 10, 10, 0.0],
                           [50, 50, 10, 10, 0.0]], ['ship', 'ship', 'car'])}
    self.det = {'im': _img([[0, 0, 10, 10, 0.0], [0.8, 0, 10, 10, 0.0],
                            [90, 90, 10, 10, 0.0]], ['ship', 'ship', 'boat'],
                           scores=[0.9, 0.8, 0.7])}

  def test_four_protocols_by_hand(self):
    result = metrics.evaluate_protocols(self.det, self.gt)
    self.assertEqual(list(result), ['paper', 'voc07', 'voc12', 'coco'])
    ship = {name: r['per_class']['ship'] for name, r in result.items()}
    # VOC matching: d2's best ground truth is the taken first ship, so it is
    # a false positive at every threshold: recall (.5, .5), precision
    # (1, .5). 11 points: r = 0 ... 0.5 reach precision 1 -> 6/11.
    self.assertAlmostEqual(ship['paper'], 6 / 11)
    self.assertAlmostEqual(ship['voc07'], 6 / 11)
    # All points: recall 0 -> 0.5 at precision 1, nothing beyond.
    self.assertAlmostEqual(ship['voc12'], 0.5)
    # COCO matching: d2 takes the free second ship while its IoU 0.786
    # passes, at 0.50 ... 0.75 (AP 1); at 0.80 ... 0.95 it is a false
    # positive (101 points: r = 0.00 ... 0.50 -> 51/101).
    self.assertAlmostEqual(ship['coco'], (6 * 1.0 + 4 * 51 / 101) / 10)
    for name, r in result.items():
      self.assertEqual(r['per_class']['car'], 0.0)  # Missed: AP 0.
      self.assertIsNone(r['per_class']['boat'])     # No ground truth.
      self.assertAlmostEqual(r['mAP'], ship[name] / 2)
    # The paper's column is `evaluate`'s default.
    self.assertAlmostEqual(result['paper']['mAP'],
                           metrics.evaluate(self.det, self.gt)['mAP'])
    table = metrics.protocols_table_markdown(result)
    self.assertIn('| ship | 54.5 | 54.5 | 50.0 | 80.2 |', table)
    self.assertIn('| boat | – | – | – | – |', table)
    self.assertIn('| mAP | 27.3 | 27.3 | 25.0 | 40.1 |', table)

  def test_101_point_ap_and_coco_matching_by_hand(self):
    # Precision 1 up to recall 0.25, then 0.5 up to recall 1 (envelope).
    ap = metrics.average_precision([0.25, 0.25, 0.5, 0.75, 1.0],
                                   [1.0, 0.5, 0.5, 0.5, 0.5],
                                   method='101point')
    self.assertAlmostEqual(ap, (26 * 1.0 + 75 * 0.5) / 101)
    self.assertEqual(metrics.average_precision([], [], method='101point'),
                     0.0)
    _, tp, _ = metrics.match_image(
        self.det['im'].boxes[:2], [0.9, 0.8], self.gt['im'].boxes[:2],
        iou_threshold=0.5, inclusive=True, matching='coco')
    np.testing.assert_array_equal(tp, [True, True])
    _, tp, _ = metrics.match_image(
        self.det['im'].boxes[:2], [0.9, 0.8], self.gt['im'].boxes[:2],
        iou_threshold=0.5, inclusive=True, matching='voc')
    np.testing.assert_array_equal(tp, [True, False])

  def test_bad_protocol_and_matching_are_named(self):
    with self.assertRaisesRegex(ValueError, "Unknown AP protocols.*'voc'"):
      metrics.evaluate_protocols(self.det, self.gt, protocols=('voc',))
    with self.assertRaisesRegex(ValueError, 'matching must be one of'):
      metrics.match_image(np.zeros((1, 5)), [1.0], np.zeros((1, 5)),
                          matching='lvis')
    with self.assertRaisesRegex(ValueError, 'without ground truth'):
      metrics.evaluate_protocols({'other': self.det['im']}, self.gt)
