"""Tests for the loss registry, loss specs, hyperparameter tables and the
opt-in checked mode (cil._losses._registry).
"""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil import losses
from testutil import HIGH_DEGREE_COUNTS
from testutil import random_batch


class LossSpecTest(parameterized.TestCase):

  def test_split_and_canonical(self):
    self.assertEqual(losses.split_spec(' CI : high_exponent=0.5 '),
                     ('ci', {'high_exponent': 0.5}))
    self.assertEqual(losses.canonical_spec('fl:gamma=1'), 'focal:gamma=1.0')
    self.assertEqual(
        losses.canonical_spec('ci:transition_width=1,low_exponent=0.25'),
        'ci:low_exponent=0.25,transition_width=1.0')

  def test_get_loss_binds_the_spec_and_resolve_merges_the_table(self):
    logits, labels = random_batch(3, 8, 5)
    counts = jnp.array(HIGH_DEGREE_COUNTS)
    spec = 'ci:high_exponent=0.5'
    np.testing.assert_allclose(
        losses.get_loss(spec)(logits, labels, counts),
        losses.ci_loss(logits, labels, counts, high_exponent=0.5))
    table = {'ci': {'log_base': 2.0, 'high_exponent': 0.125}}
    self.assertEqual(losses.resolve_hparams(spec, table),
                     {'log_base': 2.0, 'high_exponent': 0.5})
    # One LossSpec from spec and table: the spec's value wins, once.
    bound = losses.get_loss(spec, table)
    self.assertEqual(bound, losses.LossSpec(
        'ci', (('high_exponent', 0.5), ('log_base', 2.0))))
    self.assertEqual(str(bound), 'ci:high_exponent=0.5,log_base=2.0')
    self.assertIs(losses.get_loss(bound), bound)
    np.testing.assert_allclose(
        bound(logits, labels, counts),
        losses.ci_loss(logits, labels, counts, high_exponent=0.5,
                       log_base=2.0))
    # A keyword given in the call overrides the bound one.
    np.testing.assert_allclose(
        bound(logits, labels, counts, log_base=10.0),
        losses.ci_loss(logits, labels, counts, high_exponent=0.5,
                       log_base=10.0))

  def test_a_loss_spec_is_a_static_argument(self):
    logits, labels = random_batch(3, 8, 5)
    counts = jnp.array(HIGH_DEGREE_COUNTS)
    traces = []

    @functools.partial(jax.jit, static_argnames='loss')
    def mean_loss(z, y, c, *, loss):
      traces.append(loss)
      return loss(z, y, c).mean()

    for spec in ('ci', 'CI', 'ci:high_exponent=0.5'):
      mean_loss(logits, labels, counts, loss=losses.get_loss(spec))
    self.assertEqual([str(t) for t in traces],
                     ['ci', 'ci:high_exponent=0.5'])

  def test_loss_spec_names_a_canonical_loss(self):
    with self.assertRaisesRegex(ValueError, "canonical loss name.*'fl'"):
      losses.LossSpec('fl')

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


class RegistryTest(parameterized.TestCase):

  def test_names(self):
    self.assertEqual(set(losses.LOSS_NAMES),
                     {'ce', 'focal', 'ci', 'cb', 'ldam', 'la', 'wce', 'vs',
                      'ci_parts'})
    self.assertEqual(losses.get_loss('CI'), losses.LossSpec('ci'))
    self.assertEqual(losses.get_loss('fl'), losses.get_loss('focal'))
    self.assertEqual(hash(losses.get_loss('fl')),
                     hash(losses.LossSpec('focal')))

  def test_unknown_name_lists_choices(self):
    with self.assertRaisesRegex(ValueError, r"Unknown loss 'cie'.*ce, focal"):
      losses.get_loss('cie')

  @parameterized.parameters(*losses.LOSS_NAMES)
  def test_uniform_call_shape_under_jit_vmap_grad(self, name):
    fn = losses.get_loss(name)
    logits, labels = random_batch(9, 4 * 6, 5)
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
    np.testing.assert_allclose(  # One float32 ulp apart (jit vs eager).
        loss, losses.ci_loss(logits, jnp.array([0, 1, 2]), counts),
        rtol=1e-6)
    for labels, bad_counts, message in (
        (jnp.array([0, 9, 2]), counts, r'`labels` must be in \[0, 4\)'),
        (jnp.array([0, 1, 2]), counts.at[1].set(0.0),
         '`class_counts` must be positive and finite'),
        (jnp.full((3, 4), -0.25), counts,
         'Soft `labels` must be finite, non-negative and sum to 1'),
        (jnp.full((3, 4), 0.5), counts,  # Rows summing to 2.
         r'sum to 1 \(within 0.0001\)'),
        (jnp.full((3, 4), jnp.nan), counts, 'must be finite')):
      err, _ = step(logits, labels, bad_counts)
      with self.assertRaisesRegex(Exception, message):
        err.throw()
    # Masked rows are not checked, as in eager calls.
    err, _ = step(logits, jnp.array([0, -1, 2]), counts,
                  where=jnp.array([True, False, True]))
    err.throw()


if __name__ == '__main__':
  absltest.main()
