"""Tests for cil.data.episodes and cil.data.fewshot: the episodic sampler.
"""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from cil import data


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
    # Counts are whole and positive: not truncated, not silently empty.
    with self.assertRaisesRegex(ValueError, "distribution .*'s entries must "
                                'be whole numbers, got 1.5'):
      self.sampler.sample(rng, (1.5, 2, 3, 4, 6), query_per_class=1)
    for name, value in (('query_per_class', 0), ('query_per_class', -2),
                        ('num_tasks', 0)):
      with self.assertRaisesRegex(ValueError, f'{name} must be at least 1'):
        self.sampler.sample(rng, (1, 2, 3, 4, 6), **{
            'query_per_class': 1, name: value})
    with self.assertRaisesRegex(ValueError, 'query_multiple must be whole '
                                'numbers, got 0.5'):
      self.sampler.sample(rng, (1, 2, 3, 4, 6), query_multiple=0.5)
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

  def test_random_oversampling_by_hand(self):
    from cil.data import episodes  # pylint: disable=g-import-not-at-top
    labels = np.array([2, 0, 2, 2, 1, 1])  # counts [1, 2, 3]
    index, mask = data.random_oversample(labels, 3, 12,
                                         np.random.default_rng(3))
    self.assertEqual(index.shape, (12,))
    self.assertEqual(mask.tolist(), [True] * 9 + [False] * 3)
    kept = index[mask]
    self.assertEqual(np.bincount(labels[kept]).tolist(), [3, 3, 3])
    self.assertTrue(set(range(6)) <= set(kept.tolist()))  # All originals.
    again, _ = data.random_oversample(labels, 3, 12,
                                      np.random.default_rng(3))
    np.testing.assert_array_equal(index, again)
    # A balanced set is its own over-sampling: no duplicate is drawn.
    index, mask = data.random_oversample(np.array([1, 0, 2, 0, 1, 2]), 3,
                                         12, np.random.default_rng(0))
    self.assertEqual(sorted(index[mask].tolist()), list(range(6)))
    with self.assertRaisesRegex(ValueError, 'does not fit size 8'):
      data.random_oversample(labels, 3, 8, np.random.default_rng(0))
    self.assertEqual(episodes.oversampled_size(15, 5), 55)

  def test_oversampled_tasks_are_the_tasks_drawn_without_it(self):
    dist = (1, 1, 1, 2, 10)
    plain = self.sampler.sample(np.random.default_rng(5), dist,
                                query_multiple=1, num_tasks=2)
    ros = self.sampler.sample(np.random.default_rng(5), dist,
                              query_multiple=1, num_tasks=2, oversample=True)
    np.testing.assert_array_equal(plain.support_images, ros.support_images)
    np.testing.assert_array_equal(plain.query_labels, ros.query_labels)
    self.assertIsNone(plain.support_ros_index)
    for t in range(2):
      for part in ('support', 'query'):
        index = getattr(ros, f'{part}_ros_index')[t]
        mask = getattr(ros, f'{part}_ros_mask')[t]
        self.assertEqual(index.shape, (55,))
        labels = getattr(ros, f'{part}_labels')[t][index[mask]]
        self.assertEqual(np.bincount(labels).tolist(), [10] * 5)
    test = self.sampler.sample(np.random.default_rng(5), dist,
                               query_per_class=2, oversample=True)
    self.assertIsNotNone(test.support_ros_index)
    self.assertIsNone(test.query_ros_index)  # Balanced queries: none.


if __name__ == '__main__':
  absltest.main()
