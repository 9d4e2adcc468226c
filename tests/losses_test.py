"""Tests for cil.losses: values, closed-form gradients, identities, errors."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cil import losses

# Counts whose imbalance degree is <= 1 (square-root factor) and > 1 (eighth
# root), used by every test that depends on the CI factor f.
LOW_DEGREE_COUNTS = (9.0, 1.0, 4.0, 3.0, 2.0)     # lambda = 0.40 -> f = sqrt
HIGH_DEGREE_COUNTS = (4096.0, 1.0, 16.0, 2.0, 300.0)  # lambda = 1.93 -> 1/8
DEGREE_CASES = (
    ('lambda_le_1', LOW_DEGREE_COUNTS, 0.5),
    ('lambda_gt_1', HIGH_DEGREE_COUNTS, 0.125),
)


def _binary_logits(p):
  """Logits of a two-class softmax whose class-0 probability is exactly p."""
  return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)


def _random_batch(seed, batch, num_classes, dtype=jnp.float32, scale=3.0):
  key_z, key_y = jax.random.split(jax.random.key(seed))
  logits = scale * jax.random.normal(key_z, (batch, num_classes), dtype)
  labels = jax.random.randint(key_y, (batch,), 0, num_classes)
  return logits, labels


# ---------------------------------------------------------------------------
# Imbalance measures and factors.


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


# The eq. (5) ablation rules (`RESULTS.md`), as ci_loss keyword arguments.
RULE_CASES = (
    ('paper', {}),
    ('always_half', {'high_exponent': 0.5}),
    ('always_eighth', {'low_exponent': 0.125}),
    ('ramp', {'transition_width': 1.0}),
    ('threshold', {'threshold': 0.3, 'low_exponent': 0.25}),
)


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


class LossSpecTest(parameterized.TestCase):

  def test_split_and_canonical(self):
    self.assertEqual(losses.split_spec(' CI : high_exponent=0.5 '),
                     ('ci', {'high_exponent': 0.5}))
    self.assertEqual(losses.canonical_spec('fl:gamma=1'), 'focal:gamma=1.0')
    self.assertEqual(
        losses.canonical_spec('ci:transition_width=1,low_exponent=0.25'),
        'ci:low_exponent=0.25,transition_width=1.0')

  def test_get_loss_binds_the_spec_and_resolve_merges_the_table(self):
    logits, labels = _random_batch(3, 8, 5)
    counts = jnp.array(HIGH_DEGREE_COUNTS)
    spec = 'ci:high_exponent=0.5'
    np.testing.assert_allclose(
        losses.get_loss(spec)(logits, labels, counts),
        losses.ci_loss(logits, labels, counts, high_exponent=0.5))
    table = {'ci': {'log_base': 2.0, 'high_exponent': 0.125}}
    self.assertEqual(losses.resolve_hparams(spec, table),
                     {'log_base': 2.0, 'high_exponent': 0.5})

  @parameterized.parameters(
      ('ci:', 'no key=value'),
      ('ci:gamma=2', "takes no hyperparameter 'gamma'"),
      ('ci:threshold', 'must be key=value'),
      ('ci:threshold=high', "must be a number, got 'high'"),
      ('ci:threshold=nan', 'must be finite'),
      ('ci:threshold=1,threshold=2', "sets 'threshold' twice"),
      ('cix:threshold=1', "Unknown loss 'cix'"),
  )
  def test_bad_specs_are_named(self, spec, message):
    with self.assertRaisesRegex(ValueError, message):
      losses.split_spec(spec)


# ---------------------------------------------------------------------------
# Closed-form derivatives, eq. (13)-(15), against jax.grad in float64.


class ClosedFormGradientTest(chex.TestCase):

  P_GRID = np.concatenate([
      np.geomspace(1e-6, 1e-2, 9), np.linspace(0.02, 0.98, 25),
      1 - np.geomspace(1e-2, 1e-6, 9)])

  def _grad_wrt_p(self, loss_of_logits):
    """jax.grad with respect to p of loss(binary logits with p_0 = p)."""
    def loss_of_p(p):
      return loss_of_logits(_binary_logits(p)[None, :], jnp.array([0]))[0]
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
          _binary_logits(q)[None], jnp.array([0]), jnp.array([1., 1.]))[0]))(p)
      self.assertGreater(float(jnp.max(jnp.abs(extracted - autodiff))), 0.1)
      chex.assert_trees_all_close(
          autodiff, losses.ci_grad_p(p, 1.0), rtol=1e-9)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(*DEGREE_CASES)
  def test_ci_logit_gradient_matches_autodiff(self, counts, unused_exponent):
    with jax.enable_x64(True):
      logits, labels = _random_batch(0, 32, 5, jnp.float64)
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
      logits, labels = _random_batch(2, 16, 4, jnp.float64)
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
          _binary_logits(q)[None, :], jnp.array([0]), counts,
          **hparams)[0]))(p)
      chex.assert_trees_all_close(
          got, losses.ci_grad_p(p, factor), rtol=1e-8, atol=1e-12)

  def test_check_grads_on_every_loss(self):
    with jax.enable_x64(True):
      logits, labels = _random_batch(1, 6, 4, jnp.float64, scale=1.0)
      counts = jnp.array([40.0, 3.0, 9.0, 1.0])
      for name in losses.LOSS_NAMES:
        fn = losses.get_loss(name)
        hparams = {'scale': 1.0} if name == 'ldam' else {}
        jax.test_util.check_grads(
            lambda z, fn=fn, h=hparams: fn(z, labels, counts, **h),
            (logits,), order=2, modes=('rev',), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------
# Identities and hand-computed values.


class IdentityTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_focal_gamma_zero_is_cross_entropy(self):
    logits, labels = _random_batch(2, 16, 6)
    chex.assert_trees_all_close(
        self.variant(lambda z, y: losses.focal_loss(z, y, gamma=0.0))(
            logits, labels),
        self.variant(losses.cross_entropy)(logits, labels), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_ci_balanced_counts_is_modulated_cross_entropy(self):
    logits, labels = _random_batch(3, 16, 6)
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
    z = _binary_logits(p)
    majority = losses.ci_loss(z, jnp.zeros(50, int), jnp.array([256, 1]))
    minority = losses.ci_loss(z[:, ::-1], jnp.ones(50, int),
                              jnp.array([256, 1]))
    np.testing.assert_allclose(minority, 2 * majority, rtol=1e-5)

  def test_majority_ci_lies_below_cross_entropy(self):
    p = jnp.linspace(0.001, 0.999, 200)
    z, y = _binary_logits(p), jnp.zeros(200, int)
    ci = losses.ci_loss(z, y, jnp.array([256, 1]))
    self.assertTrue(bool(jnp.all(ci <= losses.cross_entropy(z, y))))
    self.assertTrue(bool(jnp.all(ci >= 0)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_natural_log_cross_entropy_matches_optax(self):
    logits, labels = _random_batch(4, 32, 10)
    chex.assert_trees_all_close(
        self.variant(lambda z, y: losses.cross_entropy(
            z, y, log_base=math.e))(logits, labels),
        optax.softmax_cross_entropy_with_integer_labels(logits, labels),
        rtol=1e-6)

  def test_base_ten_is_natural_log_over_ln10(self):
    logits, labels = _random_batch(5, 8, 3)
    counts = jnp.array([10.0, 2.0, 1.0])
    for name in losses.LOSS_NAMES:
      fn = losses.get_loss(name)
      np.testing.assert_allclose(
          fn(logits, labels, counts) * math.log(10),
          fn(logits, labels, counts, log_base=math.e), rtol=1e-5,
          err_msg=name)

  def test_where_masks_loss_and_gradient(self):
    logits, labels = _random_batch(6, 6, 4)
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
    logits, labels = _random_batch(7, 8, 5)
    counts = jnp.asarray(HIGH_DEGREE_COUNTS)
    got = losses.ci_loss(logits.astype(jnp.bfloat16), labels, counts)
    self.assertEqual(got.dtype, jnp.float32)
    np.testing.assert_allclose(
        got, losses.ci_loss(logits.astype(jnp.bfloat16).astype(jnp.float32),
                            labels, counts), rtol=1e-6)


class PeerLossTest(parameterized.TestCase):
  """Peers against hand-computed values and their reductions to CE."""

  def setUp(self):
    super().setUp()
    self.logits, self.labels = _random_batch(8, 12, 3)
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
    expected = [-math.log10(math.exp(-1) / (math.exp(-1) + 1)),
                -math.log10(math.exp(-0.5) / (math.exp(-0.5) + 1))]
    np.testing.assert_allclose(got, expected, rtol=1e-6)

  def test_ldam_without_margin_is_scaled_cross_entropy(self):
    got = losses.ldam_loss(self.logits, self.labels, jnp.array([1, 5, 9]),
                           max_margin=0.0, scale=1.0)
    # atol: float32 resolves log(1 + d) near p = 1 to ~1e-7 absolute.
    np.testing.assert_allclose(got, self.ce, rtol=1e-6, atol=2e-7)

  def test_logit_adjusted_by_hand(self):
    # Zero logits, tau = 1: softmax(log prior) = prior, so loss = -log10 pi_t.
    got = losses.logit_adjusted_loss(
        jnp.zeros((2, 3)), jnp.array([0, 2]), jnp.array([1, 3, 4]))
    np.testing.assert_allclose(
        got, [-math.log10(1 / 8), -math.log10(4 / 8)], rtol=1e-6)

  def test_logit_adjusted_reduces_to_cross_entropy(self):
    for counts, tau in (([1, 5, 9], 0.0), ([4, 4, 4], 1.0)):
      np.testing.assert_allclose(
          losses.logit_adjusted_loss(self.logits, self.labels,
                                     jnp.array(counts), tau=tau),
          self.ce, rtol=1e-5)

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


# ---------------------------------------------------------------------------
# Registry, transformations, numerical safety.


class RegistryTest(parameterized.TestCase):

  def test_names(self):
    self.assertEqual(set(losses.LOSS_NAMES),
                     {'ce', 'focal', 'ci', 'cb', 'ldam', 'la', 'wce'})
    self.assertIs(losses.get_loss('CI'), losses.ci_loss)
    self.assertIs(losses.get_loss('fl'), losses.get_loss('focal'))

  def test_unknown_name_lists_choices(self):
    with self.assertRaisesRegex(ValueError, r"Unknown loss 'cie'.*ce, focal"):
      losses.get_loss('cie')

  @parameterized.parameters(*losses.LOSS_NAMES)
  def test_uniform_call_shape_under_jit_vmap_grad(self, name):
    fn = losses.get_loss(name)
    logits, labels = _random_batch(9, 4 * 6, 5)
    logits, labels = logits.reshape(4, 6, 5), labels.reshape(4, 6)
    # Per-task counts, traced, one task with lambda > 1.
    counts = jnp.array([[1, 2, 1, 1, 1], [3, 3, 3, 3, 3],
                        [1, 1, 1, 1, 11], [5000, 1, 1, 1, 1]], jnp.float32)

    def task_loss(z, y, c):
      return fn(z, y, c).mean()

    batched = jax.jit(jax.vmap(jax.value_and_grad(task_loss)))(
        logits, labels, counts)
    for t in range(4):
      loss, grad = jax.value_and_grad(task_loss)(
          logits[t], labels[t], counts[t])
      np.testing.assert_allclose(batched[0][t], loss, rtol=1e-5)
      np.testing.assert_allclose(batched[1][t], grad, rtol=1e-4, atol=1e-7)


class NumericalSafetyTest(parameterized.TestCase):

  @parameterized.parameters(*losses.LOSS_NAMES)
  def test_finite_for_extreme_logits_float32(self, name):
    fn = losses.get_loss(name)
    big = 1e4
    logits = jnp.array([
        [big, -big, 0.0, 0.0],     # p -> 1
        [-big, big, 0.0, 0.0],     # p -> 0
        [big, big, -big, -big],    # p = 1/2
        [0.0, 0.0, 0.0, 0.0],
        [-big, -big, -big, -big],
        [1e-3, 0.0, 0.0, 0.0],
    ], jnp.float32)
    labels = jnp.zeros(6, jnp.int32)
    counts = jnp.array([1.0, 1e6, 3.0, 20.0])
    for hparams in ({}, {'gamma': 0.5}) if name in ('focal', 'cb') else ({},):
      loss, grad = jax.jit(jax.value_and_grad(
          lambda z, h=hparams: fn(z, labels, counts, **h).sum()))(logits)
      per_example = jax.jit(lambda z, h=hparams: fn(z, labels, counts, **h))(
          logits)
      self.assertTrue(bool(jnp.isfinite(loss)), msg=f'{name} {hparams}')
      self.assertTrue(bool(jnp.all(jnp.isfinite(grad))), msg=name)
      self.assertTrue(bool(jnp.all(per_example >= 0)), msg=name)

  def test_closed_forms_finite_near_the_ends(self):
    p = jnp.array([1e-30, 1e-7, 0.5, 1 - 1e-7, 1.0], jnp.float32)
    self.assertTrue(bool(jnp.all(jnp.isfinite(losses.ci_grad_p(p, 2.0)))))
    self.assertTrue(bool(jnp.all(jnp.isfinite(
        losses.focal_grad_p(p, gamma=2.0)))))
    logits = jnp.array([[1e4, -1e4], [-1e4, 1e4]])
    g = losses.ci_loss_grad_logits(logits, jnp.array([0, 0]),
                                   jnp.array([1.0, 256.0]))
    self.assertTrue(bool(jnp.all(jnp.isfinite(g))))

  # Slow (~75 s on 2 cores): every example has new shapes, so each loss and
  # its gradient compile again, eagerly, op by op.
  @pytest.mark.slow
  @hypothesis.settings(max_examples=15, deadline=None, derandomize=True)
  @hypothesis.given(
      batch=st.integers(1, 6), num_classes=st.integers(1, 6),
      seed=st.integers(0, 2**16), log_scale=st.floats(-2.0, 4.0),
      counts=st.lists(st.floats(0.5, 1e5), min_size=6, max_size=6),
      gamma=st.floats(0.0, 5.0))
  def test_property_finite_nonnegative(self, batch, num_classes, seed,
                                       log_scale, counts, gamma):
    logits, labels = _random_batch(seed, batch, num_classes,
                                   scale=10.0 ** log_scale)
    counts = jnp.asarray(counts[:num_classes])
    for name in losses.LOSS_NAMES:
      hparams = {'gamma': gamma} if name in ('focal', 'cb') else {}
      fn = losses.get_loss(name)
      loss = fn(logits, labels, counts, **hparams)
      grad = jax.grad(lambda z, fn=fn, h=hparams: fn(
          z, labels, counts, **h).sum())(logits)
      chex.assert_shape(loss, (batch,))
      self.assertTrue(bool(jnp.all(jnp.isfinite(loss))), msg=name)
      self.assertTrue(bool(jnp.all(loss >= 0)), msg=name)
      self.assertTrue(bool(jnp.all(jnp.isfinite(grad))), msg=name)


# ---------------------------------------------------------------------------
# Bad input: a ValueError that names the problem.


class BadInputTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.logits, self.labels = _random_batch(10, 4, 3)
    self.counts = jnp.array([5.0, 2.0, 1.0])

  @parameterized.named_parameters(
      ('zero', [5.0, 0.0, 1.0], 'must be positive.*classes \\[1\\]'),
      ('negative', [5.0, 2.0, -1.0], 'must be positive'),
      ('nan', [5.0, float('nan'), 1.0], 'must be finite'),
      ('inf', [float('inf'), 2.0, 1.0], 'must be finite'),
      ('too_long', [5.0, 2.0, 1.0, 1.0], 'length 4 but `logits` has 3'),
      ('rank_2', [[5.0, 2.0, 1.0]], '`class_counts` must have rank 1'),
      ('empty', [], 'at least one entry'),
  )
  def test_bad_class_counts(self, counts, message):
    counts = jnp.asarray(counts)
    for name in losses.LOSS_NAMES:
      with self.assertRaisesRegex(ValueError, message, msg=name):
        losses.get_loss(name)(self.logits, self.labels, counts)

  @parameterized.parameters(losses.imbalance_degree, losses.imbalance_ratio,
                            losses.ci_class_factors)
  def test_bad_counts_for_measures(self, fn):
    with self.assertRaisesRegex(ValueError, 'must be positive'):
      fn(jnp.array([3, 0]))

  @parameterized.named_parameters(('too_big', 3), ('negative', -1))
  def test_label_out_of_range(self, bad):
    labels = self.labels.at[1].set(bad)
    for name in losses.LOSS_NAMES:
      with self.assertRaisesRegex(ValueError, r'`labels` must be in \[0, 3\)',
                                  msg=name):
        losses.get_loss(name)(self.logits, labels, self.counts)

  def test_masked_out_of_range_label_is_allowed(self):
    labels = self.labels.at[1].set(-1)
    where = jnp.array([True, False, True, True])
    self.assertEqual(
        losses.ci_loss(self.logits, labels, self.counts, where=where).shape,
        (4,))

  @parameterized.named_parameters(
      # Logits [..., C] take labels [...] (optax's shapes).
      ('logits_rank_1', lambda s: (s.logits[0], s.labels[:1]),
       r'`labels` has shape \(1,\) but integer labels need .*: \(\)'),
      ('logits_rank_3', lambda s: (s.logits[None], s.labels),
       r'`labels` has shape \(4,\) but integer labels need .*: \(1, 4\)'),
      ('logits_int', lambda s: (jnp.ones((4, 3), jnp.int32), s.labels),
       '`logits` must be a floating-point'),
      # Floating labels are soft labels: they need the logits' shape.
      ('labels_float', lambda s: (s.logits, s.labels.astype(jnp.float32)),
       r'Soft \(probability\) `labels` must have the shape of `logits`'),
      ('labels_one_hot_int', lambda s: (
          s.logits, jax.nn.one_hot(s.labels, 3, dtype=jnp.int32)),
       '`labels` must have rank 1'),
      ('batch_mismatch', lambda s: (s.logits, s.labels[:3]),
       'batch size 3 but `logits` has batch size 4'),
  )
  def test_bad_shapes_raise_eagerly_and_under_jit(self, make, message):
    logits, labels = make(self)
    for name in ('ci', 'ce', 'focal', 'cb', 'ldam', 'la', 'wce'):
      fn = losses.get_loss(name)
      with self.assertRaisesRegex(ValueError, message, msg=name):
        fn(logits, labels, self.counts)
      with self.assertRaisesRegex(ValueError, message, msg=f'jit {name}'):
        jax.jit(fn)(logits, labels, self.counts)

  def test_counts_length_raises_under_jit(self):
    with self.assertRaisesRegex(ValueError, 'length 2 but `logits` has 3'):
      jax.jit(losses.ci_loss)(self.logits, self.labels, jnp.ones(2))

  def test_bad_where(self):
    with self.assertRaisesRegex(ValueError, '`where` must be a boolean'):
      losses.ci_loss(self.logits, self.labels, self.counts, where=jnp.ones(4))
    with self.assertRaisesRegex(ValueError, '`where` has length 3'):
      losses.ci_loss(self.logits, self.labels, self.counts,
                     where=jnp.ones(3, bool))

  def test_bad_hyperparameters(self):
    z, y, c = self.logits, self.labels, self.counts
    with self.assertRaisesRegex(ValueError, '`gamma` must be >= 0'):
      losses.focal_loss(z, y, gamma=-1.0)
    with self.assertRaisesRegex(ValueError, r'`beta` must be in \[0, 1\)'):
      losses.class_balanced_loss(z, y, c, beta=1.0)
    with self.assertRaisesRegex(ValueError, '`log_base` must be'):
      losses.ci_loss(z, y, c, log_base=1.0)
    with self.assertRaisesRegex(ValueError, '`scale` must be'):
      losses.ldam_loss(z, y, c, scale=0.0)
    with self.assertRaisesRegex(ValueError, '`alpha` has length 2'):
      losses.focal_loss(z, y, alpha=jnp.ones(2))
    with self.assertRaisesRegex(ValueError, r'`p` must lie in \(0, 1\]'):
      losses.ci_grad_p(jnp.array([0.0, 0.5]), 1.0)
    with self.assertRaisesRegex(ValueError, r'`p` must lie in \(0, 1\)'):
      losses.focal_grad_p(jnp.array([1.0]), gamma=0.5)

  def test_traced_out_of_range_label_stays_finite(self):
    # Not checkable under jit (documented): clipped, never NaN.
    loss = jax.jit(losses.ci_loss)(self.logits, self.labels.at[0].set(7),
                                   self.counts)
    self.assertTrue(bool(jnp.all(jnp.isfinite(loss))))


# ---------------------------------------------------------------------------
# optax's shapes, soft labels, transfer guard, numerics (issue 13).

_COUNTS = jnp.array([50.0, 5.0, 1.0, 20.0, 400.0])


class OptaxShapesTest(parameterized.TestCase):

  @parameterized.parameters(*losses.LOSS_NAMES)
  def test_leading_axes_axis_and_vmap_equal_the_flat_result(self, name):
    fn = losses.get_loss(name)
    logits, labels = _random_batch(3, 12, 5)
    flat = fn(logits, labels, _COUNTS)
    seq = fn(logits.reshape(3, 4, 5), labels.reshape(3, 4), _COUNTS)
    np.testing.assert_allclose(seq, flat.reshape(3, 4), rtol=1e-6)
    # The class axis first, as `axis=0`.
    first = fn(logits.T, labels, _COUNTS, axis=0)
    np.testing.assert_allclose(first, flat, rtol=1e-6)
    # Per-example calls under vmap: logits [C], a scalar label.
    per_example = jax.vmap(lambda z, y: fn(z, y, _COUNTS))(logits, labels)
    np.testing.assert_allclose(per_example, flat, rtol=1e-6)
    # `where` broadcasts against the batch shape [3, 4].
    rows = jnp.array([True, False, True])[:, None]
    masked = fn(logits.reshape(3, 4, 5), labels.reshape(3, 4), _COUNTS,
                where=rows)
    np.testing.assert_allclose(
        masked, jnp.where(rows, flat.reshape(3, 4), 0.0), rtol=1e-6)

  def test_shape_errors_name_the_shapes(self):
    logits = jnp.zeros((2, 3, 4))
    with self.assertRaisesRegex(ValueError, r'`labels` has shape \(2,\) but '
                                r'integer labels need .* \(2, 3\)'):
      losses.ci_loss(logits, jnp.zeros(2, jnp.int32), jnp.ones(4))
    with self.assertRaisesRegex(ValueError, '`axis` must index an axis'):
      losses.ci_loss(logits, jnp.zeros((2, 3), jnp.int32), jnp.ones(4),
                     axis=3)
    with self.assertRaisesRegex(ValueError, 'must broadcast to the batch'):
      losses.ci_loss(logits, jnp.zeros((2, 3), jnp.int32), jnp.ones(4),
                     where=jnp.ones(4, bool))
    with self.assertRaisesRegex(ValueError, 'has length 5 but `logits` has '
                                '4 classes'):
      losses.get_loss('ce')(logits, jnp.zeros((2, 3), jnp.int32),
                            jnp.ones(5))

  def test_closed_form_gradient_keeps_the_logits_shape(self):
    logits, labels = _random_batch(4, 6, 5)
    flat = losses.ci_loss_grad_logits(logits, labels, _COUNTS)
    seq = losses.ci_loss_grad_logits(
        jnp.moveaxis(logits.reshape(2, 3, 5), -1, 1), labels.reshape(2, 3),
        _COUNTS, axis=1)
    self.assertEqual(seq.shape, (2, 5, 3))
    np.testing.assert_allclose(jnp.moveaxis(seq, 1, -1).reshape(6, 5), flat,
                               rtol=1e-6)


def _direct_soft_ci(logits, y, counts):
  """sum_c y_c f_c (1 - sin(pi p_c / 2)) cos(pi p_c / 2) (-log10 p_c)."""
  p = jax.nn.softmax(logits, axis=-1)
  f = losses.ci_class_factors(counts)
  a = jnp.pi * p / 2
  return jnp.sum(y * f * (1 - jnp.sin(a)) * jnp.cos(a)
                 * -jnp.log(p) / jnp.log(10.0), axis=-1)


class SoftLabelsTest(parameterized.TestCase):

  @parameterized.parameters(*losses.LOSS_NAMES)
  def test_one_hot_soft_labels_equal_integer_labels(self, name):
    fn = losses.get_loss(name)
    logits, labels = _random_batch(5, 8, 5)
    one_hot = jax.nn.one_hot(labels, 5)
    np.testing.assert_allclose(fn(logits, one_hot, _COUNTS),
                               fn(logits, labels, _COUNTS), rtol=2e-5,
                               atol=1e-6)
    grads = [jax.grad(lambda z, y=y: fn(z, y, _COUNTS).sum())(logits)
             for y in (one_hot, labels)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=2e-4, atol=1e-6)

  def test_soft_ci_matches_the_direct_formula_and_closed_form(self):
    with jax.enable_x64(True):
      logits = 2.0 * jax.random.normal(jax.random.key(6), (6, 5),
                                       jnp.float64)
      y = jax.nn.softmax(jax.random.normal(jax.random.key(7), (6, 5),
                                           jnp.float64))
      counts = _COUNTS.astype(jnp.float64)
      np.testing.assert_allclose(losses.ci_loss(logits, y, counts),
                                 _direct_soft_ci(logits, y, counts),
                                 rtol=1e-10)
      autodiff = jax.grad(
          lambda z: _direct_soft_ci(z, y, counts).sum())(logits)
      np.testing.assert_allclose(
          jax.grad(lambda z: losses.ci_loss(z, y, counts).sum())(logits),
          autodiff, rtol=1e-9, atol=1e-12)
      np.testing.assert_allclose(
          losses.ci_loss_grad_logits(logits, y, counts), autodiff,
          rtol=1e-9, atol=1e-12)

  def test_bad_soft_labels_are_named(self):
    logits = jnp.zeros((2, 3))
    with self.assertRaisesRegex(ValueError, 'Soft .* must have the shape'):
      losses.ci_loss(logits, jnp.zeros((2, 4)), jnp.ones(3))
    with self.assertRaisesRegex(ValueError, 'finite and non-negative'):
      losses.ci_loss(logits, jnp.array([[0.5, 0.5, 0.0], [-0.1, 1.1, 0.0]]),
                     jnp.ones(3))


class TransferGuardTest(absltest.TestCase):

  def test_checks_run_under_a_disallowing_transfer_guard(self):
    logits = jax.device_put(np.zeros((4, 5), np.float32))
    labels = jax.device_put(np.array([0, 1, 2, 3], np.int32))
    bad = jax.device_put(np.array([0, 1, 7, 3], np.int32))
    counts = jax.device_put(np.arange(1.0, 6.0, dtype=np.float32))
    with jax.transfer_guard('disallow'):
      for name in losses.LOSS_NAMES:
        fn = losses.get_loss(name)
        # Labels and counts closed over (concrete): checked at trace time.
        out = jax.jit(lambda z, fn=fn: fn(z, labels, counts))(logits)
        self.assertEqual(out.shape, (4,))
      with self.assertRaisesRegex(ValueError, r'got out-of-range values \[7\]'):
        jax.jit(lambda z: losses.ci_loss(z, bad, counts))(logits)


class LdamNumericsTest(absltest.TestCase):

  def test_eager_equals_jit_and_stays_finite(self):
    fn = losses.ldam_loss
    jitted = jax.jit(fn)
    for scale in (1.0, 1e4, 1e30):
      logits = jax.random.uniform(jax.random.key(8), (64, 5), minval=-scale,
                                  maxval=scale)
      labels = jax.random.randint(jax.random.key(9), (64,), 0, 5)
      eager = fn(logits, labels, _COUNTS)
      self.assertTrue(bool(jnp.all(jnp.isfinite(eager))), msg=scale)
      self.assertTrue(bool(jnp.all(eager >= 0)), msg=scale)
      np.testing.assert_allclose(jitted(logits, labels, _COUNTS), eager,
                                 rtol=1e-6, atol=1e-6, err_msg=str(scale))
      grad = jax.grad(lambda z: fn(z, labels, _COUNTS).sum())(logits)
      self.assertTrue(bool(jnp.all(jnp.isfinite(grad))), msg=scale)

  def test_matches_the_shifted_logit_definition(self):
    logits, labels = _random_batch(10, 32, 5)
    margins = _COUNTS ** -0.25
    margins = margins * 0.5 / margins.max()
    adjusted = 30.0 * (logits - jax.nn.one_hot(labels, 5)
                       * margins[labels][:, None])
    expected = -jnp.take_along_axis(jax.nn.log_softmax(adjusted),
                                    labels[:, None], -1)[:, 0] / jnp.log(10.0)
    np.testing.assert_allclose(losses.ldam_loss(logits, labels, _COUNTS),
                               expected, rtol=1e-5, atol=1e-5)


class HyperparameterErrorsTest(absltest.TestCase):

  def test_named_errors(self):
    logits, labels = jnp.zeros((2, 3)), jnp.array([0, 1])
    with self.assertRaisesRegex(ValueError, '`tau` must be a finite scalar'):
      losses.logit_adjusted_loss(logits, labels, [1, 2, 3], tau=float('nan'))
    with self.assertRaisesRegex(ValueError, '`alpha` must be finite and '
                                'non-negative'):
      losses.focal_loss(logits, labels, alpha=jnp.array([1.0, -1.0, 1.0]))
    for counts in ([1e39, 1.0, 1.0], [1e-40, 1.0, 1.0]):
      with self.assertRaisesRegex(ValueError, "within float32's range"):
        losses.ci_loss(logits, labels, np.array(counts))


class CheckedModeTest(absltest.TestCase):

  def test_checked_loss_raises_the_named_errors_inside_jit(self):
    step = jax.jit(losses.checked(losses.get_loss('ci')))
    logits, counts = jnp.zeros((3, 4)), jnp.array([1.0, 2.0, 3.0, 4.0])
    err, loss = step(logits, jnp.array([0, 1, 2]), counts)
    err.throw()  # Nothing wrong.
    np.testing.assert_allclose(
        loss, losses.ci_loss(logits, jnp.array([0, 1, 2]), counts))
    for labels, bad_counts, message in (
        (jnp.array([0, 9, 2]), counts, r'`labels` must be in \[0, 4\)'),
        (jnp.array([0, 1, 2]), counts.at[1].set(0.0),
         '`class_counts` must be positive and finite'),
        (jnp.full((3, 4), -0.25), counts,
         'Soft `labels` must be finite and non-negative')):
      err, _ = step(logits, labels, bad_counts)
      with self.assertRaisesRegex(Exception, message):
        err.throw()
    # Masked rows are not checked, as in eager calls.
    err, _ = step(logits, jnp.array([0, -1, 2]), counts,
                  where=jnp.array([True, False, True]))
    err.throw()


if __name__ == '__main__':
  absltest.main()
