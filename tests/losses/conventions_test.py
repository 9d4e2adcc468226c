"""Tests for the conventions every loss follows (cil._losses._common):
optax's shapes and `axis`, soft labels, masking, numerical safety, named
errors for bad input, no host transfers.
"""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cil import losses
from testutil import COUNTS
from testutil import random_batch


def _direct_soft_ci(logits, y, counts):
  """sum_c y_c f_c (1 - sin(pi p_c / 2)) cos(pi p_c / 2) (-ln p_c)."""
  p = jax.nn.softmax(logits, axis=-1)
  f = losses.ci_class_factors(counts)
  a = jnp.pi * p / 2
  return jnp.sum(y * f * (1 - jnp.sin(a)) * jnp.cos(a)
                 * -jnp.log(p), axis=-1)


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
    logits, labels = random_batch(seed, batch, num_classes,
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


class BadInputTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.logits, self.labels = random_batch(10, 4, 3)
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
    for name in losses.LOSS_NAMES:
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


class OptaxShapesTest(parameterized.TestCase):

  @parameterized.parameters(*losses.LOSS_NAMES)
  def test_leading_axes_axis_and_vmap_equal_the_flat_result(self, name):
    fn = losses.get_loss(name)
    logits, labels = random_batch(3, 12, 5)
    flat = fn(logits, labels, COUNTS)
    seq = fn(logits.reshape(3, 4, 5), labels.reshape(3, 4), COUNTS)
    np.testing.assert_allclose(seq, flat.reshape(3, 4), rtol=1e-6)
    # The class axis first, as `axis=0`.
    first = fn(logits.T, labels, COUNTS, axis=0)
    np.testing.assert_allclose(first, flat, rtol=1e-6)
    # Per-example calls under vmap: logits [C], a scalar label.
    per_example = jax.vmap(lambda z, y: fn(z, y, COUNTS))(logits, labels)
    np.testing.assert_allclose(per_example, flat, rtol=1e-6)
    # `where` broadcasts against the batch shape [3, 4].
    rows = jnp.array([True, False, True])[:, None]
    masked = fn(logits.reshape(3, 4, 5), labels.reshape(3, 4), COUNTS,
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
    logits, labels = random_batch(4, 6, 5)
    flat = losses.ci_loss_grad_logits(logits, labels, COUNTS)
    seq = losses.ci_loss_grad_logits(
        jnp.moveaxis(logits.reshape(2, 3, 5), -1, 1), labels.reshape(2, 3),
        COUNTS, axis=1)
    self.assertEqual(seq.shape, (2, 5, 3))
    np.testing.assert_allclose(jnp.moveaxis(seq, 1, -1).reshape(6, 5), flat,
                               rtol=1e-6)


class SoftLabelsTest(parameterized.TestCase):

  @parameterized.parameters(*losses.LOSS_NAMES)
  def test_one_hot_soft_labels_equal_integer_labels(self, name):
    fn = losses.get_loss(name)
    logits, labels = random_batch(5, 8, 5)
    one_hot = jax.nn.one_hot(labels, 5)
    np.testing.assert_allclose(fn(logits, one_hot, COUNTS),
                               fn(logits, labels, COUNTS), rtol=2e-5,
                               atol=1e-6)
    grads = [jax.grad(lambda z, y=y: fn(z, y, COUNTS).sum())(logits)
             for y in (one_hot, labels)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=2e-4, atol=1e-6)

  def test_soft_ci_matches_the_direct_formula_and_closed_form(self):
    with jax.enable_x64(True):
      logits = 2.0 * jax.random.normal(jax.random.key(6), (6, 5),
                                       jnp.float64)
      y = jax.nn.softmax(jax.random.normal(jax.random.key(7), (6, 5),
                                           jnp.float64))
      counts = COUNTS.astype(jnp.float64)
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
    # Rows must sum to 1: twice a distribution would double every loss.
    doubled = jnp.array([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    for name in losses.LOSS_NAMES:
      with self.subTest(name), self.assertRaisesRegex(
          ValueError, r'must sum to 1 .*0.0001 allowed in float32.*off by 1'):
        losses.get_loss(name)(logits, doubled, jnp.ones(3))
    # The tolerance follows the labels' precision; masked rows are skipped.
    near = jnp.array([[0.502, 0.503, 0.0], [0.0, 1.0, 0.0]])
    with self.assertRaisesRegex(ValueError, 'off by 0.005'):
      losses.ci_loss(logits, near, jnp.ones(3))
    losses.ci_loss(logits, near.astype(jnp.bfloat16), jnp.ones(3))
    losses.ci_loss(logits, doubled, jnp.ones(3),
                   where=jnp.array([False, False]))


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


class ArgumentOrderTest(parameterized.TestCase):
  """The common slips are named for what they look like, not reported as
  a shape error from deep inside (PyTorch's long-tail losses take the
  counts first; batch 8, 3 classes here)."""

  def setUp(self):
    super().setUp()
    self.logits = jnp.zeros((8, 3))
    self.labels = jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
    self.counts = jnp.array([100.0, 10.0, 1.0])

  @parameterized.parameters('ci', 'ldam', 'la', 'vs', 'cb', 'wce')
  def test_counts_and_labels_swapped(self, name):
    with self.assertRaisesRegex(ValueError, r'look swapped\. The order is '
                                r'`loss\(logits, labels, class_counts\)`'):
      losses.get_loss(name)(self.logits, self.counts, self.labels)

  def test_counts_where_the_labels_go(self):
    with self.assertRaisesRegex(ValueError, 'class counts where the labels '
                                'go'):
      losses.cross_entropy(self.logits, self.counts)

  def test_labels_where_the_counts_go(self):
    with self.assertRaisesRegex(ValueError, 'labels where the counts go'):
      losses.ci_loss(self.logits, self.labels, self.labels)

  def test_logits_with_the_class_axis_first(self):
    with self.assertRaisesRegex(ValueError, r'^`labels` has shape \(8,\) '
                                r'and `class_counts` \(3,\): `logits` '
                                r'\(3, 8\) look like `\[num_classes, '
                                r'batch\]`.*axis=0'):
      losses.ci_loss(self.logits.T, self.labels, self.counts)
    # What the message suggests works.
    np.testing.assert_allclose(
        losses.ci_loss(self.logits.T, self.labels, self.counts, axis=0),
        losses.ci_loss(self.logits, self.labels, self.counts))


if __name__ == '__main__':
  absltest.main()
