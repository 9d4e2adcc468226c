"""Tests for the imbalance measures and the CI class factor, eq. (1), (2),
(5) (cil._losses._imbalance).
"""

import math

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil import losses
from testutil import DEGREE_CASES
from testutil import HIGH_DEGREE_COUNTS
from testutil import LOW_DEGREE_COUNTS
from testutil import RULE_CASES


class ImbalanceMeasuresTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('one_minority', [1, 5, 5, 5, 5], 0.1398, 5.0),
      ('staircase', [1, 2, 3, 4, 5], 0.2831, 5.0),
      ('one_majority', [1, 1, 1, 1, 5], 0.5592, 5.0),
      ('one_majority_11', [1, 1, 1, 1, 11], 0.8331, 11.0),
      ('balanced', [3, 3, 3, 3, 3], 0.0, 1.0),
      ('binary_256', [256, 1], 1.2041, 256.0),
      ('mnist_odd_10pct', [5923, 674, 5958, 613, 5842, 542, 5918, 627, 5851,
                           595], None, None),
  )
  def test_paper_table(self, counts, expected_lambda, expected_rho):
    lam = losses.imbalance_degree(jnp.array(counts))
    rho = losses.imbalance_ratio(jnp.array(counts))
    if expected_lambda is None:  # MNIST: 5 classes at ~10 % -> lambda ~ 0.5.
      self.assertAlmostEqual(float(lam), 0.5, delta=0.01)
      self.assertAlmostEqual(float(rho), 5958 / 542, places=3)
    else:
      self.assertAlmostEqual(float(lam), expected_lambda, places=4)
      self.assertAlmostEqual(float(rho), expected_rho, places=4)

  @parameterized.named_parameters(('10pct', 0.10, 0.5), ('25pct', 0.25, 0.3010))
  def test_mnist_protocol_degree(self, fraction, expected):
    counts = jnp.array([1000.0, 1000.0 * fraction] * 5)
    self.assertAlmostEqual(
        float(losses.imbalance_degree(counts)), expected, places=4)

  def test_accepts_python_lists_and_float_counts(self):
    self.assertAlmostEqual(
        float(losses.imbalance_degree([2.5, 25.0])), 0.5, places=5)

  def test_traced_counts_under_jit_and_vmap(self):
    counts = jnp.array([[1, 2, 3, 4, 5], [3, 3, 3, 3, 3], [1, 1, 1, 1, 11]])
    lam = jax.jit(jax.vmap(losses.imbalance_degree))(counts)
    np.testing.assert_allclose(lam, [0.2831, 0.0, 0.8331], atol=1e-4)


class CiClassFactorsTest(parameterized.TestCase):

  def test_binary_256_to_1_gives_1_and_2(self):
    # lambda = 1.204 > 1, so f = 256 ** (1/8) = 2 for the minority (paper).
    np.testing.assert_allclose(
        losses.ci_class_factors(jnp.array([256, 1])), [1.0, 2.0], rtol=1e-6)

  @parameterized.named_parameters(*DEGREE_CASES)
  def test_exponent_follows_imbalance_degree(self, counts, exponent):
    counts = np.array(counts)
    expected = (counts.max() / counts) ** exponent
    for fn in (losses.ci_class_factors, jax.jit(losses.ci_class_factors)):
      np.testing.assert_allclose(fn(jnp.array(counts)), expected, rtol=1e-6)

  def test_lambda_exactly_one_takes_square_root_branch(self):
    # [100, 1]: lambda = log10(100) / 2 = 1 exactly -> paper's lambda <= 1.
    np.testing.assert_allclose(
        losses.ci_class_factors(jnp.array([100.0, 1.0])), [1.0, 10.0],
        rtol=1e-6)

  def test_branch_is_chosen_per_task_under_vmap(self):
    counts = jnp.array([LOW_DEGREE_COUNTS, HIGH_DEGREE_COUNTS])
    factors = jax.jit(jax.vmap(losses.ci_class_factors))(counts)
    for row, (_, c, e) in zip(factors, DEGREE_CASES):
      c = np.array(c)
      np.testing.assert_allclose(row, (c.max() / c) ** e, rtol=1e-6)


class CiFactorRuleTest(parameterized.TestCase):
  """The exponents, threshold and ramp of eq. (5) as hyperparameters."""

  def test_defaults_are_the_paper_rule(self):
    for counts, exponent in ((LOW_DEGREE_COUNTS, 0.5),
                             (HIGH_DEGREE_COUNTS, 0.125)):
      c = np.array(counts)
      np.testing.assert_allclose(
          losses.ci_class_factors(
              c, threshold=1.0, low_exponent=0.5, high_exponent=0.125,
              transition_width=0.0),
          (c.max() / c) ** exponent, rtol=1e-6)
    self.assertEqual(
        {k: losses.default_hparams('ci')[k] for k in (
            'threshold', 'low_exponent', 'high_exponent',
            'transition_width')},
        {'threshold': 1.0, 'low_exponent': 0.5, 'high_exponent': 0.125,
         'transition_width': 0.0})

  @parameterized.named_parameters(
      ('always_half_low', {'high_exponent': 0.5}, LOW_DEGREE_COUNTS, 0.5),
      ('always_half_high', {'high_exponent': 0.5}, HIGH_DEGREE_COUNTS, 0.5),
      ('always_eighth_low', {'low_exponent': 0.125}, LOW_DEGREE_COUNTS,
       0.125),
      ('always_eighth_high', {'low_exponent': 0.125}, HIGH_DEGREE_COUNTS,
       0.125),
      # lambda 0.40 is above a threshold of 0.3: the high exponent.
      ('threshold_moves', {'threshold': 0.3}, LOW_DEGREE_COUNTS, 0.125),
  )
  def test_constant_rules(self, hparams, counts, exponent):
    c = np.array(counts)
    np.testing.assert_allclose(losses.ci_class_factors(c, **hparams),
                               (c.max() / c) ** exponent, rtol=1e-6)

  def test_ramp_is_linear_in_lambda_and_equals_the_step_outside(self):
    # [N, 1]: lambda = log10(N) / 2. Width 1 ramps over 0.5 <= lambda <= 1.5.
    def minority_exponent(n, **kw):
      f = float(losses.ci_class_factors([n, 1.0], **kw)[1])
      return math.log(f) / math.log(n)
    for lam, expected in ((0.4, 0.5), (0.5, 0.5), (0.75, 0.40625),
                          (1.0, 0.3125), (1.25, 0.21875), (1.5, 0.125),
                          (1.7, 0.125)):
      n = 10 ** (2 * lam)
      self.assertAlmostEqual(
          minority_exponent(n, transition_width=1.0), expected, places=5)
    # Outside the ramp the factor is the paper's.
    for lam in (0.3, 1.6):
      n = 10 ** (2 * lam)
      np.testing.assert_allclose(
          losses.ci_class_factors([n, 1.0], transition_width=1.0),
          losses.ci_class_factors([n, 1.0]), rtol=1e-6)

  def test_ramp_removes_the_jump_at_lambda_one(self):
    # Paper: at rho ~ 100 the minority factor falls from 10 to 1.78 as
    # lambda crosses 1; with a ramp the two sides agree to first order.
    below, above = 100 / 1.001, 100 * 1.001  # [N, 1], lambda = 1 -+ 2e-4
    step = [float(losses.ci_class_factors([n, 1.0])[1]) for n in (below,
                                                                  above)]
    ramp = [float(losses.ci_class_factors([n, 1.0],
                                          transition_width=1.0)[1])
            for n in (below, above)]
    self.assertGreater(step[0] - step[1], 8.0)
    self.assertLess(abs(ramp[0] - ramp[1]), 0.01)

  @parameterized.named_parameters(*RULE_CASES)
  def test_loss_uses_the_rule(self, hparams):
    # Equal logits: loss_i / loss_of_majority == f_i under every rule.
    counts = jnp.array(HIGH_DEGREE_COUNTS)
    logits = jnp.zeros((5, 5))
    loss = losses.ci_loss(logits, jnp.arange(5), counts, **hparams)
    np.testing.assert_allclose(
        loss / loss[0], losses.ci_class_factors(counts, **hparams),
        rtol=1e-5)

  def test_traced_hyperparameters_under_jit_and_vmap(self):
    counts = jnp.array(LOW_DEGREE_COUNTS)
    widths = jnp.array([0.0, 1.0, 2.0])
    got = jax.jit(jax.vmap(lambda w: losses.ci_class_factors(
        counts, transition_width=w)))(widths)
    for row, w in zip(got, (0.0, 1.0, 2.0)):
      np.testing.assert_allclose(
          row, losses.ci_class_factors(counts, transition_width=w),
          rtol=1e-6)

  @parameterized.parameters(
      ('threshold', -1.0), ('low_exponent', -0.5), ('high_exponent', math.nan),
      ('transition_width', -0.1), ('transition_width', math.inf))
  def test_bad_rule_hyperparameters_are_named(self, name, value):
    for call in (
        lambda: losses.ci_class_factors([4, 1], **{name: value}),
        lambda: losses.ci_loss(jnp.zeros((1, 2)), jnp.array([0]), [4, 1],
                               **{name: value}),
        lambda: losses.ci_loss_grad_logits(
            jnp.zeros((1, 2)), jnp.array([0]), [4, 1], **{name: value})):
      with self.assertRaisesRegex(ValueError, f'`{name}` must be finite '
                                  'and >= 0'):
        call()


if __name__ == '__main__':
  absltest.main()
