"""Tests for the peer losses: class-balanced, LDAM, logit-adjusted, VS,
weighted CE, and the post-hoc logit adjustment (cil._losses._peers).
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil import losses
from testutil import COUNTS
from testutil import random_batch


class PeerLossTest(parameterized.TestCase):
  """Peers against hand-computed values and their reductions to CE."""

  def setUp(self):
    super().setUp()
    self.logits, self.labels = random_batch(8, 12, 3)
    self.ce = losses.cross_entropy(self.logits, self.labels)

  def test_class_balanced_weights_by_hand(self):
    # beta = 0.5, counts [1, 3, 2]: w = (1-b)/(1-b^N) = [1, 4/7, 2/3];
    # normalised to sum to C = 3: w * 3 / (1 + 4/7 + 2/3).
    w = np.array([1.0, 4 / 7, 2 / 3])
    w = w * 3 / w.sum()
    got = losses.class_balanced_loss(
        self.logits, self.labels, jnp.array([1, 3, 2]), beta=0.5)
    np.testing.assert_allclose(got, w[self.labels] * self.ce, rtol=1e-5)

  def test_class_balanced_focal_and_beta_zero(self):
    counts = jnp.array([1.0, 30.0, 200.0])
    np.testing.assert_allclose(
        losses.class_balanced_loss(self.logits, self.labels, counts,
                                   beta=0.0), self.ce, rtol=1e-6)
    np.testing.assert_allclose(
        losses.class_balanced_loss(self.logits, self.labels, counts,
                                   beta=0.0, gamma=2.0),
        losses.focal_loss(self.logits, self.labels, gamma=2.0), rtol=1e-6)

  def test_ldam_by_hand(self):
    # counts [1, 16]: margins prop. to [1, 1/2]; max 0.5 -> [0.5, 0.25].
    logits = jnp.zeros((2, 2))
    got = losses.ldam_loss(logits, jnp.array([0, 1]), jnp.array([1, 16]),
                           max_margin=0.5, scale=2.0)
    # scale * (z - margin on true class): [-1, 0] and [0, -0.5].
    expected = [-math.log(math.exp(-1) / (math.exp(-1) + 1)),
                -math.log(math.exp(-0.5) / (math.exp(-0.5) + 1))]
    np.testing.assert_allclose(got, expected, rtol=1e-6)

  def test_ldam_without_margin_is_scaled_cross_entropy(self):
    got = losses.ldam_loss(self.logits, self.labels, jnp.array([1, 5, 9]),
                           max_margin=0.0, scale=1.0)
    # atol: float32 resolves log(1 + d) near p = 1 to ~1e-7 absolute.
    np.testing.assert_allclose(got, self.ce, rtol=1e-6, atol=2e-7)

  def test_logit_adjusted_by_hand(self):
    # Zero logits, tau = 1: softmax(log prior) = prior, so loss = -ln pi_t.
    got = losses.logit_adjusted_loss(
        jnp.zeros((2, 3)), jnp.array([0, 2]), jnp.array([1, 3, 4]))
    np.testing.assert_allclose(
        got, [-math.log(1 / 8), -math.log(4 / 8)], rtol=1e-6)

  def test_logit_adjusted_reduces_to_cross_entropy(self):
    for counts, tau in (([1, 5, 9], 0.0), ([4, 4, 4], 1.0)):
      np.testing.assert_allclose(
          losses.logit_adjusted_loss(self.logits, self.labels,
                                     jnp.array(counts), tau=tau),
          self.ce, rtol=1e-5)

  def test_vs_by_hand(self):
    # counts [1, 4]: Delta = (N / N_max)^gamma = [1/2, 1] at gamma = 1/2,
    # iota = tau log pi = log [1/5, 4/5] at tau = 1.
    logits = jnp.array([[2.0, -1.0], [0.5, 3.0]])
    got = losses.vs_loss(logits, jnp.array([0, 1]), jnp.array([1, 4]),
                         gamma=0.5, tau=1.0)
    z = np.array([[2.0, -1.0], [0.5, 3.0]]) * [0.5, 1.0] + np.log([0.2, 0.8])
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    np.testing.assert_allclose(got, -np.array([log_p[0, 0], log_p[1, 1]]),
                               rtol=1e-6, atol=1e-7)

  def test_vs_limiting_cases_are_la_and_cross_entropy(self):
    counts = jnp.array([1.0, 30.0, 200.0])
    for tau in (0.0, 1.0, 1.7):
      np.testing.assert_allclose(
          losses.vs_loss(self.logits, self.labels, counts, gamma=0.0,
                         tau=tau),
          losses.logit_adjusted_loss(self.logits, self.labels, counts,
                                     tau=tau), rtol=1e-6)
    np.testing.assert_allclose(
        losses.vs_loss(self.logits, self.labels, counts, gamma=0.0, tau=0.0),
        self.ce, rtol=1e-6)
    # Balanced counts: Delta = 1 and iota is a constant shift (no effect).
    np.testing.assert_allclose(
        losses.vs_loss(self.logits, self.labels, jnp.array([5, 5, 5]),
                       gamma=0.7, tau=2.0), self.ce, rtol=1e-5)

  def test_vs_gradient_matches_its_closed_form(self):
    # dL/dz_c = Delta_c (softmax(Delta z + iota)_c - [c = t]) (natural log).
    with jax.enable_x64(True):
      logits, labels = random_batch(3, 5, 3, jnp.float64)
      counts = np.array([2.0, 50.0, 9.0])
      gamma, tau = 0.3, 1.4
      grad = jax.grad(lambda z: losses.vs_loss(
          z, labels, counts, gamma=gamma, tau=tau).sum())(logits)
      delta = (counts / counts.max()) ** gamma
      adjusted = np.asarray(logits) * delta + tau * np.log(
          counts / counts.sum())
      p = np.exp(adjusted - adjusted.max(1, keepdims=True))
      p /= p.sum(1, keepdims=True)
      expected = delta * (p - np.eye(3)[np.asarray(labels)])
      np.testing.assert_allclose(grad, expected, rtol=1e-10, atol=1e-14)

  def test_vs_rejects_negative_gamma_and_infinite_tau(self):
    with self.assertRaisesRegex(ValueError, 'gamma'):
      losses.vs_loss(self.logits, self.labels, jnp.array([1, 2, 3]),
                     gamma=-0.1)
    with self.assertRaisesRegex(ValueError, 'tau'):
      losses.vs_loss(self.logits, self.labels, jnp.array([1, 2, 3]),
                     tau=float('inf'))

  def test_posthoc_adjustment_by_hand(self):
    # counts [3, 1]: pi = [3/4, 1/4]; z - log pi = [0 + 0.2877, 0 + 1.3863]:
    # equal logits now predict the rare class.
    got = losses.posthoc_adjusted_logits(jnp.zeros((1, 2)), [3, 1])
    np.testing.assert_allclose(got, [[math.log(4 / 3), math.log(4)]],
                               rtol=1e-6)
    self.assertEqual(int(jnp.argmax(got)), 1)
    got = losses.posthoc_adjusted_logits(jnp.zeros((2, 5, 2)), [3, 1],
                                         tau=0.5)  # Any leading axes.
    np.testing.assert_allclose(got[1, 4], [0.5 * math.log(4 / 3),
                                           0.5 * math.log(4)], rtol=1e-6)

  def test_posthoc_limiting_cases_are_plain_argmax(self):
    counts = jnp.array([200.0, 30.0, 1.0])
    np.testing.assert_array_equal(
        losses.posthoc_adjusted_logits(self.logits, counts, tau=0.0),
        self.logits)  # tau = 0: unchanged.
    shifted = losses.posthoc_adjusted_logits(self.logits, jnp.full(3, 7.0))
    np.testing.assert_allclose(shifted - self.logits,
                               jnp.full_like(self.logits, math.log(3)),
                               rtol=1e-6)  # Balanced: a constant shift.
    np.testing.assert_array_equal(jnp.argmax(shifted, -1),
                                  jnp.argmax(self.logits, -1))

  def test_posthoc_rejects_bad_counts_and_tau(self):
    with self.assertRaisesRegex(ValueError, 'class_counts'):
      losses.posthoc_adjusted_logits(self.logits, jnp.array([1, 0, 3]))
    with self.assertRaisesRegex(ValueError, 'class_counts'):
      losses.posthoc_adjusted_logits(self.logits, jnp.array([1, 2]))
    with self.assertRaisesRegex(ValueError, 'tau'):
      losses.posthoc_adjusted_logits(self.logits, [1, 2, 3], tau=math.nan)
    with self.assertRaisesRegex(ValueError, 'logits'):
      losses.posthoc_adjusted_logits(jnp.zeros((2, 3), jnp.int32),
                                     [1, 2, 3])

  def test_weighted_cross_entropy_by_hand(self):
    # counts [1, 3, 4]: w = 8 / (3 * N) = [8/3, 8/9, 2/3].
    w = np.array([8 / 3, 8 / 9, 2 / 3])
    got = losses.weighted_cross_entropy(self.logits, self.labels,
                                        jnp.array([1, 3, 4]))
    np.testing.assert_allclose(got, w[self.labels] * self.ce, rtol=1e-5)

  def test_focal_alpha_weights_by_class(self):
    alpha = jnp.array([0.25, 1.0, 2.0])
    np.testing.assert_allclose(
        losses.focal_loss(self.logits, self.labels, gamma=1.0, alpha=alpha),
        alpha[self.labels] * losses.focal_loss(self.logits, self.labels,
                                               gamma=1.0), rtol=1e-6)


class LdamNumericsTest(absltest.TestCase):

  def test_eager_equals_jit_and_stays_finite(self):
    fn = losses.ldam_loss
    jitted = jax.jit(fn)
    for scale in (1.0, 1e4, 1e30):
      logits = jax.random.uniform(jax.random.key(8), (64, 5), minval=-scale,
                                  maxval=scale)
      labels = jax.random.randint(jax.random.key(9), (64,), 0, 5)
      eager = fn(logits, labels, COUNTS)
      self.assertTrue(bool(jnp.all(jnp.isfinite(eager))), msg=scale)
      self.assertTrue(bool(jnp.all(eager >= 0)), msg=scale)
      np.testing.assert_allclose(jitted(logits, labels, COUNTS), eager,
                                 rtol=1e-6, atol=1e-6, err_msg=str(scale))
      grad = jax.grad(lambda z: fn(z, labels, COUNTS).sum())(logits)
      self.assertTrue(bool(jnp.all(jnp.isfinite(grad))), msg=scale)

  def test_matches_the_shifted_logit_definition(self):
    logits, labels = random_batch(10, 32, 5)
    margins = COUNTS ** -0.25
    margins = margins * 0.5 / margins.max()
    adjusted = 30.0 * (logits - jax.nn.one_hot(labels, 5)
                       * margins[labels][:, None])
    expected = -jnp.take_along_axis(jax.nn.log_softmax(adjusted),
                                    labels[:, None], -1)[:, 0]
    np.testing.assert_allclose(losses.ldam_loss(logits, labels, COUNTS),
                               expected, rtol=1e-5, atol=1e-5)


if __name__ == '__main__':
  absltest.main()
