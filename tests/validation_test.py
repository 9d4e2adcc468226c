"""Tests for cil._validation: the input checks of the public functions and
the configs, each error naming its argument or field."""

import dataclasses

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil import _validation as v


@dataclasses.dataclass(frozen=True)
class _Config:
  a: int
  b: str = 'x'


@dataclasses.dataclass(frozen=True)
class _Outer:
  seeds: int
  inner: _Config


class ArrayChecksTest(parameterized.TestCase):

  def test_rank_dtype_and_logits(self):
    v.check_rank(jnp.zeros((2, 3)), 2, 'logits')
    with self.assertRaisesRegex(ValueError, r'`x` must have rank 1, got '
                                r'shape \(2, 3\) \(rank 2\)'):
      v.check_rank(jnp.zeros((2, 3)), 1, 'x')
    with self.assertRaisesRegex(ValueError, '`logits` must be a floating'):
      v.check_floating(jnp.zeros(2, jnp.int32), 'logits')
    with self.assertRaisesRegex(ValueError, 'integer class indices'):
      v.check_integer(jnp.zeros(2), 'labels')
    with self.assertRaisesRegex(ValueError, 'at least one class'):
      v.check_logits(jnp.zeros((2, 0)))

  def test_values_are_checked_eagerly_and_skipped_when_traced(self):
    with self.assertRaisesRegex(ValueError, 'class_counts'):
      v.check_class_counts(jnp.array([3.0, 0.0]), 2)
    with self.assertRaisesRegex(ValueError, 'class_counts'):
      v.check_class_counts(jnp.array([3.0, 1.0]), 3)
    seen = []

    @jax.jit
    def traced(counts):
      seen.append(v.is_concrete(counts))
      v.check_class_counts(counts, 2)  # Skipped: values unknown here.
      return counts

    traced(jnp.array([3.0, 0.0]))
    self.assertEqual(seen, [False])
    self.assertTrue(v.is_concrete(np.zeros(2)))

  @parameterized.parameters(0.0, 1.0, -2.0, float('inf'))
  def test_log_base(self, bad):
    with self.assertRaisesRegex(ValueError, '`log_base` must be a positive'):
      v.check_log_base(bad)


class ConfigChecksTest(absltest.TestCase):

  def test_config_fields_names_unknown_and_missing_fields(self):
    self.assertEqual(v.config_fields({'a': 1}, _Config, 'test config'),
                     {'a': 1})
    with self.assertRaisesRegex(ValueError, 'Unknown test config field.*: c; '
                                'known: a, b'):
      v.config_fields({'a': 1, 'c': 2}, _Config, 'test config')
    with self.assertRaisesRegex(ValueError, 'test config lacks field.*: a'):
      v.config_fields({'b': 'y'}, _Config, 'test config')

  def test_positive_fields_nested(self):
    v.check_positive_fields(_Outer(2, _Config(1)), ('seeds', 'inner.a'))
    with self.assertRaisesRegex(ValueError, 'field inner.a must be a '
                                'positive integer, got 0'):
      v.check_positive_fields(_Outer(2, _Config(0)), ('seeds', 'inner.a'),
                              'x config')

  def test_names_and_spec_arguments(self):
    self.assertEqual(v.as_names('losses', 'ci'), ('ci',))
    self.assertEqual(v.as_names('losses', [' ce', 'ci ']), ('ce', 'ci'))
    with self.assertRaisesRegex(ValueError, 'losses holds an empty name'):
      v.as_names('losses', ('ce', ' '))
    self.assertEqual(v.spec_arguments('ratio=10, mu=0.5', 's', 'Protocol'),
                     {'ratio': 10.0, 'mu': 0.5})
    for text, message in (('ratio', 'must be key=value'),
                          ('ratio=a', 'must be a number'),
                          ('ratio=inf', 'must be finite'),
                          ('mu=1,mu=2', "sets 'mu' twice")):
      with self.assertRaisesRegex(ValueError, message):
        v.spec_arguments(text, 'step:' + text, 'Protocol')


if __name__ == '__main__':
  absltest.main()
