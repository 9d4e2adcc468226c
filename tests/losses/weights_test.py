"""Tests for the per-class weights and the weighted mean (cil._losses._weights)
against the reference formulas, computed by hand in float64."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil import losses


def _reference_effective_number(counts, beta):
  """Cui et al.'s / LDAM-DRW's NumPy code: (1 - beta) / (1 - beta^N),
  normalised to sum to C."""
  counts = np.asarray(counts, np.float64)
  weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
  return weights / np.sum(weights) * len(counts)


class WeightsTest(parameterized.TestCase):

  @parameterized.parameters(0.9999, 0.999, 0.9, 0.5)
  def test_effective_number_equals_the_reference(self, beta):
    for counts in ([5000, 2000, 500, 50, 5], [1, 1, 1], [12406, 1, 300]):
      np.testing.assert_allclose(
          losses.effective_number_weights(jnp.array(counts, jnp.float32),
                                          beta=beta),
          _reference_effective_number(counts, beta), rtol=2e-6)

  def test_effective_number_limits_and_leading_axes(self):
    counts = np.array([[5000.0, 50.0], [10.0, 10.0]])
    w = losses.effective_number_weights(counts, beta=0.9999)
    self.assertEqual(w.shape, (2, 2))
    np.testing.assert_allclose(
        w[0], _reference_effective_number(counts[0], 0.9999), rtol=2e-6)
    np.testing.assert_allclose(w[1], [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(  # beta = 0: no re-weighting.
        losses.effective_number_weights(counts[0], beta=0.0), [1.0, 1.0])
    # Traced beta (inside jit) gives the same weights.
    traced = jax.jit(lambda b: losses.effective_number_weights(
        counts[0].astype(np.float32), beta=b))(0.9999)
    np.testing.assert_allclose(traced, w[0], rtol=1e-4)

  def test_drw_schedule_switches_at_its_epoch(self):
    counts = jnp.array([5000.0, 500.0, 50.0])
    for epoch in (0, 159):
      np.testing.assert_allclose(losses.drw_class_weights(
          counts, epoch=epoch, drw_epoch=160), [1.0, 1.0, 1.0])
    for epoch in (160, 199):
      np.testing.assert_allclose(
          losses.drw_class_weights(counts, epoch=epoch, drw_epoch=160),
          _reference_effective_number([5000, 500, 50], 0.9999), rtol=2e-6)

  def test_inverse_frequency_by_hand(self):
    np.testing.assert_allclose(
        losses.inverse_frequency_weights(jnp.array([60.0, 30.0, 10.0])),
        [100 / 180, 100 / 90, 100 / 30], rtol=1e-6)
    # The weights of weighted_cross_entropy.
    logits = jnp.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]])
    labels = jnp.array([2, 1])
    counts = jnp.array([60.0, 30.0, 10.0])
    w = losses.inverse_frequency_weights(counts)
    np.testing.assert_allclose(
        losses.weighted_cross_entropy(logits, labels, counts),
        w[labels] * losses.cross_entropy(logits, labels), rtol=1e-6)

  def test_weighted_mean_is_pytorchs_weight_reduction(self):
    per_example = jnp.array([1.0, 2.0, 4.0, 8.0])
    labels = jnp.array([0, 1, 1, 2])
    weights = jnp.array([0.5, 1.0, 3.0])
    # sum_i w_{y_i} l_i / sum_i w_{y_i} = (0.5 + 2 + 4 + 24) / 5.5.
    np.testing.assert_allclose(
        losses.weighted_mean(per_example, labels, weights), 30.5 / 5.5,
        rtol=1e-6)
    where = jnp.array([True, True, False, True])
    np.testing.assert_allclose(
        losses.weighted_mean(per_example, labels, weights, where=where),
        26.5 / 4.5, rtol=1e-6)
    # A masked example's label is not checked, and no weight gives 0.
    self.assertEqual(float(losses.weighted_mean(
        per_example, jnp.array([0, 1, 1, -1]), weights,
        where=jnp.zeros(4, bool))), 0.0)

  def test_bad_input_is_named(self):
    with self.assertRaisesRegex(ValueError, '`beta` must be in'):
      losses.effective_number_weights(jnp.array([3.0, 1.0]), beta=1.0)
    with self.assertRaisesRegex(ValueError, 'class_counts'):
      losses.effective_number_weights(jnp.array([3.0, 0.0]))
    with self.assertRaisesRegex(ValueError, 'class_counts'):
      losses.inverse_frequency_weights(jnp.array(3.0))
    with self.assertRaisesRegex(ValueError, r'`labels` must be in \[0, 3\)'):
      losses.weighted_mean(jnp.ones(2), jnp.array([0, 3]), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, 'shape of `per_example`'):
      losses.weighted_mean(jnp.ones(2), jnp.array([0, 1, 2]), jnp.ones(3))


if __name__ == '__main__':
  absltest.main()
