"""Tests for `ci_components_loss` (registry 'ci_parts'): CI taken apart.

Each corner of the ablation factorial that is a known loss equals it, the
corners that are new are checked by hand, and the gradient of a mixed
corner against its closed form in float64.
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil import losses
from testutil import random_batch

# lambda = 0.773 (<= 1: CI's factor is (N_max / N_i)^(1/2)).
_COUNTS = jnp.array([500.0, 60.0, 20.0])
_NO_FACTOR = {'low_exponent': 0.0, 'high_exponent': 0.0}


class CiComponentsTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.logits, self.labels = random_batch(4, 16, 3)

  def _parts(self, **hparams):
    return losses.ci_components_loss(self.logits, self.labels, _COUNTS,
                                     **hparams)

  @parameterized.named_parameters(
      ('defaults_are_ci', {}, lambda z, y: losses.ci_loss(z, y, _COUNTS)),
      ('always_half', {'high_exponent': 0.5},
       lambda z, y: losses.ci_loss(z, y, _COUNTS, high_exponent=0.5)),
      ('no_modulation_no_factor_is_ce', {'modulation': 0.0, **_NO_FACTOR},
       lambda z, y: losses.cross_entropy(z, y)),
      ('and_logit_adjusted_is_la',
       {'modulation': 0.0, 'tau': 1.0, **_NO_FACTOR},
       lambda z, y: losses.logit_adjusted_loss(z, y, _COUNTS, tau=1.0)),
      ('no_modulation_cb_weight_is_cb', {'modulation': 0.0, 'cb_beta': 0.99},
       lambda z, y: losses.class_balanced_loss(z, y, _COUNTS, beta=0.99)),
  )
  def test_known_corners_equal_their_losses(self, hparams, reference):
    np.testing.assert_allclose(self._parts(**hparams),
                               reference(self.logits, self.labels),
                               rtol=1e-5, atol=1e-7)

  def test_new_corners_by_hand(self):
    z, y = np.asarray(self.logits, np.float64), np.asarray(self.labels)
    counts = np.asarray(_COUNTS, np.float64)
    log_prior = np.log(counts / counts.sum())

    def p_true(shift):
      a = z + shift
      p = np.exp(a - a.max(1, keepdims=True))
      return (p / p.sum(1, keepdims=True))[np.arange(len(y)), y]

    def modulation(p):
      return (1 - np.sin(math.pi * p / 2)) * np.cos(math.pi * p / 2)

    factor = np.sqrt(counts.max() / counts)[y]
    # CI's factor on plain cross-entropy (no modulation).
    p = p_true(0.0)
    np.testing.assert_allclose(self._parts(modulation=0.0),
                               -factor * np.log(p), rtol=1e-5, atol=1e-7)
    # CI on logit-adjusted logits.
    p = p_true(log_prior)
    np.testing.assert_allclose(self._parts(tau=1.0),
                               -modulation(p) * factor * np.log(p),
                               rtol=1e-5, atol=1e-7)
    # The modulation alone (no factor) and with the class-balanced weight.
    p = p_true(0.0)
    cb = (1 - 0.99) / (1 - 0.99 ** counts)
    cb = (cb * 3 / cb.sum())[y]
    np.testing.assert_allclose(self._parts(**_NO_FACTOR),
                               -modulation(p) * np.log(p),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(self._parts(cb_beta=0.99),
                               -modulation(p) * cb * np.log(p),
                               rtol=1e-5, atol=1e-7)
    # Half the modulation is the mean of the two.
    np.testing.assert_allclose(
        self._parts(modulation=0.5),
        (self._parts() + self._parts(modulation=0.0)) / 2, rtol=1e-5, atol=1e-7)

  def test_gradient_of_modulated_adjusted_loss_matches_closed_form(self):
    # dL/dz_k = dL/dp * p (delta_tk - p_k), p the adjusted probability, with
    # dL/dp of CI (eq. 15) scaled by the factor.
    with jax.enable_x64(True):
      logits, labels = random_batch(5, 6, 3, jnp.float64)
      counts = jnp.asarray(_COUNTS, jnp.float64)
      grad = jax.grad(lambda z: losses.ci_components_loss(
          z, labels, counts, tau=1.0).sum())(logits)
      adjusted = logits + jnp.log(counts / counts.sum())
      p_all = jax.nn.softmax(adjusted)
      p = p_all[jnp.arange(6), labels]
      factor = losses.ci_class_factors(counts)[labels]
      d_dp = losses.ci_grad_p(p, factor)
      expected = (d_dp * p)[:, None] * (jax.nn.one_hot(labels, 3) - p_all)
      np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)

  def test_spec_and_bad_hyperparameters(self):
    fn = losses.get_loss('ci_parts:modulation=0,tau=1')
    np.testing.assert_allclose(
        fn(self.logits, self.labels, _COUNTS),
        self._parts(modulation=0.0, tau=1.0), rtol=1e-6)
    with self.assertRaisesRegex(ValueError, 'modulation'):
      self._parts(modulation=1.5)
    with self.assertRaisesRegex(ValueError, 'cb_beta'):
      self._parts(cb_beta=1.0)
    with self.assertRaisesRegex(ValueError, 'tau'):
      self._parts(tau=float('nan'))


if __name__ == '__main__':
  absltest.main()
