"""Tests for the closed-form derivatives (13)-(15), eq. (15) as corrected,
against jax.grad in float64 (cil._losses._closed_form).
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from cil import losses
from testutil import binary_logits
from testutil import DEGREE_CASES
from testutil import random_batch
from testutil import RULE_CASES


class ClosedFormGradientTest(chex.TestCase):

  P_GRID = np.concatenate([
      np.geomspace(1e-6, 1e-2, 9), np.linspace(0.02, 0.98, 25),
      1 - np.geomspace(1e-2, 1e-6, 9)])

  def _grad_wrt_p(self, loss_of_logits):
    """jax.grad with respect to p of loss(binary logits with p_0 = p)."""
    def loss_of_p(p):
      return loss_of_logits(binary_logits(p)[None, :], jnp.array([0]))[0]
    return self.variant(jax.vmap(jax.grad(loss_of_p)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_cross_entropy_matches_eq13(self):
    with jax.enable_x64(True):
      p = jnp.asarray(self.P_GRID)
      got = self._grad_wrt_p(losses.cross_entropy)(p)
      chex.assert_trees_all_close(
          got, losses.cross_entropy_grad_p(p), rtol=1e-9)
      self.assertEqual(got.dtype, jnp.float64)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.0, 0.5, 1.0, 2.0, 5.0)
  def test_focal_matches_eq14(self, gamma):
    with jax.enable_x64(True):
      p = jnp.asarray(self.P_GRID)
      got = self._grad_wrt_p(
          lambda z, y: losses.focal_loss(z, y, gamma=gamma))(p)
      chex.assert_trees_all_close(
          got, losses.focal_grad_p(p, gamma=gamma), rtol=1e-8, atol=1e-12)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      # Class 0 is the minority of a binary task; f_0 = (N_max / N_0)^e.
      ('lambda_le_1', (1.0, 9.0), 3.0),            # lambda 0.48: 9 ** (1/2)
      ('lambda_gt_1', (1.0, 1000.0), 1000 ** 0.125),  # lambda 1.5: 1000**(1/8)
      ('majority', (5.0, 1.0), 1.0),
  )
  def test_ci_matches_corrected_eq15(self, counts, factor):
    with jax.enable_x64(True):
      p = jnp.asarray(self.P_GRID)
      counts = jnp.asarray(counts)
      got = self._grad_wrt_p(
          lambda z, y: losses.ci_loss(z, y, counts))(p)
      chex.assert_trees_all_close(
          got, losses.ci_grad_p(p, factor), rtol=1e-8, atol=1e-12)

  def test_extracted_eq15_is_not_the_derivative(self):
    # The PDF's text of (15) dropped -(pi/2) and a pair of parentheses. The
    # literal extracted form disagrees with jax.grad; the corrected one agrees.
    with jax.enable_x64(True):
      p = jnp.linspace(0.05, 0.95, 19)
      a = math.pi / 2 * p
      extracted = -1 / math.log(10) * (
          jnp.cos(a) * (1 - jnp.sin(a)) / p
          + jnp.log(p) * jnp.cos(math.pi * p) + jnp.sin(a))
      autodiff = jax.vmap(jax.grad(lambda q: losses.ci_loss(
          binary_logits(q)[None], jnp.array([0]), jnp.array([1., 1.]))[0]))(p)
      self.assertGreater(float(jnp.max(jnp.abs(extracted - autodiff))), 0.1)
      chex.assert_trees_all_close(
          autodiff, losses.ci_grad_p(p, 1.0), rtol=1e-9)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*DEGREE_CASES)
  def test_ci_logit_gradient_matches_autodiff(self, counts, unused_exponent):
    with jax.enable_x64(True):
      logits, labels = random_batch(0, 32, 5, jnp.float64)
      counts = jnp.asarray(counts)
      where = jnp.arange(32) % 7 != 3
      for mask in (None, where):
        autodiff = self.variant(jax.grad(
            lambda z, m=mask: losses.ci_loss(z, labels, counts, where=m).sum()
        ))(logits)
        closed = self.variant(
            lambda z, m=mask: losses.ci_loss_grad_logits(
                z, labels, counts, where=m))(logits)
        chex.assert_trees_all_close(autodiff, closed, rtol=1e-9, atol=1e-14)

  @parameterized.named_parameters(*RULE_CASES)
  def test_ci_logit_gradient_matches_autodiff_under_every_rule(self, hparams):
    # Counts with lambda = 0.98, inside every rule's interesting range.
    with jax.enable_x64(True):
      logits, labels = random_batch(2, 16, 4, jnp.float64)
      counts = jnp.array([900.0, 3.0, 40.0, 2.0])
      autodiff = jax.grad(lambda z: losses.ci_loss(
          z, labels, counts, **hparams).sum())(logits)
      closed = losses.ci_loss_grad_logits(logits, labels, counts, **hparams)
      chex.assert_trees_all_close(autodiff, closed, rtol=1e-9, atol=1e-14)

  @parameterized.named_parameters(*RULE_CASES)
  def test_ci_matches_eq15_with_the_rules_factor(self, hparams):
    with jax.enable_x64(True):
      p = jnp.asarray(self.P_GRID)
      counts = jnp.array([1.0, 90.0])  # Minority class 0, lambda 0.98.
      factor = losses.ci_class_factors(counts, **hparams)[0]
      got = jax.vmap(jax.grad(lambda q: losses.ci_loss(
          binary_logits(q)[None, :], jnp.array([0]), counts,
          **hparams)[0]))(p)
      chex.assert_trees_all_close(
          got, losses.ci_grad_p(p, factor), rtol=1e-8, atol=1e-12)

  def test_check_grads_on_every_loss(self):
    with jax.enable_x64(True):
      logits, labels = random_batch(1, 6, 4, jnp.float64, scale=1.0)
      counts = jnp.array([40.0, 3.0, 9.0, 1.0])
      for name in losses.LOSS_NAMES:
        fn = losses.get_loss(name)
        hparams = {'scale': 1.0} if name == 'ldam' else {}
        jax.test_util.check_grads(
            lambda z, fn=fn, h=hparams: fn(z, labels, counts, **h),
            (logits,), order=2, modes=('rev',), atol=1e-6, rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
