"""Tests for cil.metrics: confusion matrix, recalls, F1, G-mean, CIs.
"""

import math

from absl.testing import absltest
import numpy as np

from cil import metrics


class MetricsTest(absltest.TestCase):

  def test_hand_made_confusion_matrix(self):
    # Rows true, columns predicted.
    cm = np.array([[4, 1, 0], [0, 3, 1], [2, 0, 2]])
    labels = np.repeat([0, 1, 2], [5, 4, 4])
    predictions = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 0, 0, 2, 2])
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, predictions, 3), cm)
    m = metrics.classification_metrics(cm)
    self.assertAlmostEqual(m['accuracy'], 9 / 13)
    np.testing.assert_allclose(m['per_class_recall'], [0.8, 0.75, 0.5])
    np.testing.assert_allclose(m['per_class_precision'], [4 / 6, 3 / 4, 2 / 3])
    self.assertAlmostEqual(m['balanced_accuracy'], (0.8 + 0.75 + 0.5) / 3)
    # F1 per class: 2PR/(P+R) = 0.727273, 0.75, 0.571429.
    self.assertAlmostEqual(m['macro_f1'], (8 / 11 + 0.75 + 4 / 7) / 3)
    self.assertAlmostEqual(m['g_mean'], (0.8 * 0.75 * 0.5) ** (1 / 3))

  def test_class_without_test_examples_is_left_out(self):
    m = metrics.classification_metrics(np.array([[3, 1], [0, 0]]))
    self.assertTrue(math.isnan(m['per_class_recall'][1]))
    self.assertAlmostEqual(m['balanced_accuracy'], 0.75)

  def test_confidence_interval(self):
    # mean 2, sd 1, n 3: t_{0.975, 2} = 4.302653 -> half-width 2.484138.
    mean, half = metrics.mean_confidence_interval([1.0, 2.0, 3.0])
    self.assertAlmostEqual(mean, 2.0)
    self.assertAlmostEqual(half, 4.302653 / math.sqrt(3), places=5)
    self.assertEqual(metrics.format_mean_ci([0.5, 0.5]), '50.00 ± 0.00')

  def test_bad_predictions(self):
    with self.assertRaisesRegex(ValueError, r'predictions must be in \[0, 2\)'):
      metrics.confusion_matrix(np.array([0, 1]), np.array([0, 2]), 2)


if __name__ == '__main__':
  absltest.main()
