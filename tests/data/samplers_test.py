"""Tests for cil.data.samplers: Kang et al.'s re-sampling schedules."""

from absl.testing import absltest
import numpy as np

from cil.data import samplers


class SamplersTest(absltest.TestCase):

  def test_class_probabilities_by_hand(self):
    counts = [100, 25, 0, 4]  # Class 2 has no example: never drawn.
    p = lambda s, **kw: samplers.class_probabilities(counts, s, **kw)  # noqa
    np.testing.assert_allclose(p('instance'), np.array(counts) / 129)
    np.testing.assert_allclose(p('class_balanced'), [1 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(p('sqrt'), np.array([10, 5, 0, 2]) / 17)
    np.testing.assert_allclose(p('progressive', epoch=0, epochs=4),
                               p('instance'))
    # t = e / (E - 1): class-balanced at the last epoch (Kang et al.).
    np.testing.assert_allclose(p('progressive', epoch=1, epochs=3),
                               (p('instance') + p('class_balanced')) / 2)
    np.testing.assert_allclose(p('progressive', epoch=3, epochs=4),
                               p('class_balanced'))
    np.testing.assert_allclose(p('progressive', epoch=0, epochs=1),
                               p('instance'))

  def test_instance_is_the_permutation_the_runners_always_drew(self):
    indices = np.arange(10, 60)
    labels = np.arange(100) % 3
    order = samplers.epoch_order(indices, labels, 'instance', seed=4,
                                 epoch=2)
    np.testing.assert_array_equal(
        order, indices[np.random.default_rng([4, 2, 7]).permutation(50)])

  def test_resampling_follows_the_probabilities_and_repeats_exactly(self):
    labels = np.repeat([0, 1, 2], [900, 90, 10])
    indices = np.arange(1000)
    for sampler, expected in (('class_balanced', [1 / 3] * 3),
                              ('sqrt', np.sqrt([900, 90, 10])
                               / np.sqrt([900, 90, 10]).sum())):
      order = samplers.epoch_order(indices, labels, sampler, seed=0, epoch=1)
      self.assertEqual(order.size, 1000)  # As many draws as examples.
      freq = np.bincount(labels[order], minlength=3) / 1000
      # Binomial spread of 1000 draws: under 0.016; 0.05 is > 3 sigma.
      np.testing.assert_allclose(freq, expected, atol=0.05)
      # Within a class every example can be drawn (the 10 of class 2).
      self.assertLen(set(order[labels[order] == 2]), 10)
      np.testing.assert_array_equal(  # A function of (seed, epoch).
          order, samplers.epoch_order(indices, labels, sampler, seed=0,
                                      epoch=1))
      self.assertFalse(np.array_equal(order, samplers.epoch_order(
          indices, labels, sampler, seed=0, epoch=2)))
    # A subset of the split: only its own indices are drawn.
    subset = np.arange(0, 1000, 7)
    order = samplers.epoch_order(subset, labels, 'progressive', seed=1,
                                 epoch=3, epochs=5)
    self.assertTrue(set(order) <= set(subset))

  def test_class_aware_draws_the_references_epoch(self):
    # Kang et al.'s ClassAwareSampler: C x n_max draws; visits of 4
    # consecutive examples of one class; every class once per pass.
    labels = np.repeat([0, 1, 2], [50, 9, 3])
    indices = np.arange(2, 62)  # A subset: 48, 9, 3 of the classes.
    order = samplers.class_aware_order(indices, labels, seed=0, epoch=0)
    self.assertEqual(order.size, 3 * 48)
    self.assertTrue(set(order) <= set(indices))
    visits = labels[order].reshape(-1, 4)
    self.assertTrue(np.all(visits == visits[:, :1]))  # One class a visit.
    for start in range(0, visits.shape[0] - 2, 3):  # Each pass: each class.
      self.assertEqual(sorted(visits[start:start + 3, 0]), [0, 1, 2])
    np.testing.assert_array_equal(np.bincount(labels[order]), [48] * 3)
    # Within a class, a cycle: the 3 of class 2 each drawn before a repeat.
    rare = order[labels[order] == 2]
    for start in range(0, rare.size - 2, 3):
      self.assertLen(set(rare[start:start + 3]), 3)
    np.testing.assert_array_equal(order, samplers.class_aware_order(
        indices, labels, seed=0, epoch=0))
    self.assertFalse(np.array_equal(order, samplers.class_aware_order(
        indices, labels, seed=0, epoch=1)))

  def test_bad_arguments_are_named(self):
    with self.assertRaisesRegex(ValueError, 'sampler must be one of'):
      samplers.class_probabilities([1, 2], 'balanced')
    with self.assertRaisesRegex(ValueError, 'needs the run'):
      samplers.epoch_order(np.arange(3), np.arange(3), 'progressive',
                           seed=0, epoch=0)
    with self.assertRaisesRegex(ValueError, 'epoch 5 of 5'):
      samplers.class_probabilities([1, 2], 'progressive', epoch=5, epochs=5)
    with self.assertRaisesRegex(ValueError, 'non-negative'):
      samplers.class_probabilities([1, -2], 'sqrt')


if __name__ == '__main__':
  absltest.main()
