"""Tests for CE, focal and CI (cil._losses._classification): identities
between them and with optax.
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import losses
from testutil import binary_logits
from testutil import DEGREE_CASES
from testutil import HIGH_DEGREE_COUNTS
from testutil import random_batch


class IdentityTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_focal_gamma_zero_is_cross_entropy(self):
    logits, labels = random_batch(2, 16, 6)
    chex.assert_trees_all_close(
        self.variant(lambda z, y: losses.focal_loss(z, y, gamma=0.0))(
            logits, labels),
        self.variant(losses.cross_entropy)(logits, labels), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ci_balanced_counts_is_modulated_cross_entropy(self):
    logits, labels = random_batch(3, 16, 6)
    p = jnp.take_along_axis(jax.nn.softmax(logits), labels[:, None], 1)[:, 0]
    a = math.pi / 2 * p
    expected = (1 - jnp.sin(a)) * jnp.cos(a) * losses.cross_entropy(
        logits, labels)
    got = self.variant(losses.ci_loss)(logits, labels, jnp.full(6, 50.0))
    chex.assert_trees_all_close(got, expected, rtol=1e-4, atol=1e-7)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*DEGREE_CASES)
  def test_ci_is_zero_at_p_one(self, counts, unused_exponent):
    logits = jnp.array([[1e4, 0, 0, 0, 0], [0, 0, 80.0, 0, 0]])
    labels = jnp.array([0, 2])
    counts = jnp.asarray(counts)
    loss = self.variant(losses.ci_loss)(logits, labels, counts)
    np.testing.assert_array_equal(loss, [0.0, 0.0])
    grad = self.variant(jax.grad(
        lambda z: losses.ci_loss(z, labels, counts).sum()))(logits)
    np.testing.assert_array_equal(grad, jnp.zeros_like(grad))

  @parameterized.named_parameters(*DEGREE_CASES)
  def test_ci_scales_with_true_class_factor(self, counts, unused_exponent):
    # Same p for every class: loss_i / loss_max-class == f_i.
    counts = jnp.asarray(counts)
    logits = jnp.tile(jnp.array([[0.3, -0.2, 0.1, 0.0, 0.5]]), (5, 1))
    logits = logits.at[jnp.arange(5), jnp.arange(5)].set(1.7)
    loss = losses.ci_loss(logits, jnp.arange(5), counts)
    # Each row puts 1.7 on its true class; the other logits differ, so
    # normalise by the balanced-count loss of the same row.
    ratio = loss / losses.ci_loss(logits, jnp.arange(5), jnp.ones(5))
    np.testing.assert_allclose(
        ratio, losses.ci_class_factors(counts), rtol=1e-5)

  def test_minority_of_256_to_1_always_twice_majority(self):
    # Paper, Fig. 2: "the value of loss in the blue line is always twice that
    # of the loss in the yellow line".
    p = jnp.linspace(0.01, 0.99, 50)
    z = binary_logits(p)
    majority = losses.ci_loss(z, jnp.zeros(50, int), jnp.array([256, 1]))
    minority = losses.ci_loss(z[:, ::-1], jnp.ones(50, int),
                              jnp.array([256, 1]))
    np.testing.assert_allclose(minority, 2 * majority, rtol=1e-5)

  def test_majority_ci_lies_below_cross_entropy(self):
    p = jnp.linspace(0.001, 0.999, 200)
    z, y = binary_logits(p), jnp.zeros(200, int)
    ci = losses.ci_loss(z, y, jnp.array([256, 1]))
    self.assertTrue(bool(jnp.all(ci <= losses.cross_entropy(z, y))))
    self.assertTrue(bool(jnp.all(ci >= 0)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_cross_entropy_by_default_is_optax(self):
    logits, labels = random_batch(4, 32, 10)
    chex.assert_trees_all_close(
        self.variant(losses.cross_entropy)(logits, labels),
        optax.softmax_cross_entropy_with_integer_labels(logits, labels),
        rtol=1e-6)
    chex.assert_trees_all_close(
        jax.grad(lambda z: losses.cross_entropy(z, labels).sum())(logits),
        jax.grad(lambda z: optax.softmax_cross_entropy_with_integer_labels(
            z, labels).sum())(logits), rtol=1e-5, atol=1e-7)

  def test_natural_log_by_default_and_base_ten_over_ln10(self):
    logits, labels = random_batch(5, 8, 3)
    counts = jnp.array([10.0, 2.0, 1.0])
    for name in losses.LOSS_NAMES:
      fn = losses.get_loss(name)
      np.testing.assert_array_equal(
          fn(logits, labels, counts),
          fn(logits, labels, counts, log_base=math.e), err_msg=name)
      np.testing.assert_allclose(
          fn(logits, labels, counts, log_base=10.0) * math.log(10),
          fn(logits, labels, counts), rtol=1e-5, err_msg=name)

  def test_where_masks_loss_and_gradient(self):
    logits, labels = random_batch(6, 6, 4)
    labels = labels.at[2].set(-1)  # Padding label on a masked row is fine.
    where = jnp.array([True, True, False, True, False, True])
    counts = jnp.array([1.0, 2.0, 3.0, 400.0])
    for name in losses.LOSS_NAMES:
      # LDAM's default scale 30 saturates random logits to p = 1 (loss 0).
      fn = losses.get_loss(name)
      h = {'scale': 1.0} if name == 'ldam' else {}
      loss = fn(logits, labels, counts, where=where, **h)
      np.testing.assert_array_equal(loss[~where], 0.0, err_msg=name)
      self.assertTrue(bool(jnp.all(loss[where] > 0)), msg=name)
      grad = jax.grad(lambda z, fn=fn: fn(z, labels, counts, where=where,
                                          **h).sum())(logits)
      np.testing.assert_array_equal(grad[~where], 0.0, err_msg=name)

  def test_single_class_is_zero_and_finite(self):
    logits, labels = jnp.array([[3.0], [-2.0]]), jnp.array([0, 0])
    for name in losses.LOSS_NAMES:
      fn = losses.get_loss(name)
      np.testing.assert_array_equal(
          fn(logits, labels, jnp.array([7.0])), [0.0, 0.0], err_msg=name)
      grad = jax.grad(lambda z, fn=fn: fn(z, labels, jnp.array([7.0])).sum())(
          logits)
      self.assertTrue(bool(jnp.all(jnp.isfinite(grad))), msg=name)

  def test_bfloat16_logits_are_computed_in_float32(self):
    logits, labels = random_batch(7, 8, 5)
    counts = jnp.asarray(HIGH_DEGREE_COUNTS)
    got = losses.ci_loss(logits.astype(jnp.bfloat16), labels, counts)
    self.assertEqual(got.dtype, jnp.float32)
    np.testing.assert_allclose(
        got, losses.ci_loss(logits.astype(jnp.bfloat16).astype(jnp.float32),
                            labels, counts), rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
