"""Tests for cil.data.protocols: the imbalance protocols.
"""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from cil import data


class ProtocolTest(parameterized.TestCase):

  LABELS = np.repeat(np.arange(10), 200)

  def test_deterministic_and_nested(self):
    a = data.subsample(self.LABELS, seed=3, fractions=[0.5] * 10)
    b = data.subsample(self.LABELS, seed=3, fractions=[0.5] * 10)
    c = data.subsample(self.LABELS, seed=3, fractions=[0.1] * 10)
    d = data.subsample(self.LABELS, seed=4, fractions=[0.5] * 10)
    np.testing.assert_array_equal(a.indices, b.indices)
    self.assertTrue(set(c.indices) <= set(a.indices))
    self.assertFalse(np.array_equal(a.indices, d.indices))
    np.testing.assert_array_equal(
        np.bincount(self.LABELS[a.indices]), a.class_counts)

  @parameterized.named_parameters(
      ('odd10', 'odd10', [200, 20] * 5, 0.5),
      ('odd25', 'odd25', [200, 50] * 5, 0.30103),
      ('even10', 'even10', [20, 200] * 5, 0.5),
      ('even25', 'even25', [50, 200] * 5, 0.30103),
      ('balanced', 'balanced', [200] * 10, 0.0),
  )
  def test_table1_situations(self, name, counts, degree):
    split = data.get_protocol(name)(self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, counts)
    self.assertAlmostEqual(split.imbalance_degree, degree, places=4)
    self.assertEqual(split.summary()['class_counts'], counts)

  def test_minority_mstar_situation(self):
    for spec, n in (('mstar24', 24), ('minority:k=3,n=7', 7)):
      split = data.get_protocol(spec)(self.LABELS, seed=5)
      k = 5 if spec == 'mstar24' else 3
      self.assertEqual(sorted(split.class_counts)[:k + 1], [n] * k + [200])
      self.assertAlmostEqual(split.imbalance_ratio, 200 / n, places=5)
    # Different seeds choose different minority classes.
    chosen = {tuple(np.flatnonzero(data.get_protocol('mstar24')(
        self.LABELS, seed=s).class_counts < 200)) for s in range(6)}
    self.assertGreater(len(chosen), 1)

  def test_longtail_and_step(self):
    split = data.get_protocol('longtail:ratio=100')(self.LABELS, seed=0)
    self.assertEqual(split.class_counts[0], 200)
    self.assertEqual(split.class_counts[-1], 2)
    self.assertTrue(np.all(np.diff(split.class_counts) <= 0))
    split = data.get_protocol('step:ratio=10,mu=0.3')(self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, [200] * 7 + [20] * 3)

  def test_n_max_caps_the_largest_class(self):
    split = data.get_protocol('step:ratio=10,mu=0.5,n_max=50')(
        self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, [50] * 5 + [5] * 5)
    self.assertAlmostEqual(split.imbalance_degree, 0.5, places=5)
    split = data.get_protocol('longtail:ratio=10,n_max=100')(self.LABELS,
                                                             seed=0)
    self.assertEqual(split.class_counts[0], 100)
    self.assertEqual(split.class_counts[-1], 10)
    # A cap above the smallest class changes nothing.
    split = data.get_protocol('step:ratio=10,mu=0.3,n_max=1000')(
        self.LABELS, seed=0)
    np.testing.assert_array_equal(split.class_counts, [200] * 7 + [20] * 3)
    for bad in ('2.5', '-1'):
      with self.assertRaisesRegex(ValueError, 'step: n_max must be a whole '
                                  'number >= 0'):
        data.get_protocol(f'step:ratio=10,n_max={bad}')(self.LABELS, seed=0)

  def test_bad_protocols(self):
    with self.assertRaisesRegex(ValueError, 'Unknown protocol .*odd10'):
      data.get_protocol('odd5')
    with self.assertRaisesRegex(ValueError,
                                "Bad arguments for protocol 'step'"):
      data.get_protocol('step:gamma=2')
    with self.assertRaisesRegex(ValueError, "'ratio' in 'longtail:ratio=abc' "
                                "must be a number, got 'abc'"):
      data.get_protocol('longtail:ratio=abc')
    with self.assertRaisesRegex(ValueError, "'ratio' .* must be finite"):
      data.get_protocol('longtail:ratio=nan')
    with self.assertRaisesRegex(ValueError, 'has 200 examples but .* 300'):
      data.subsample(self.LABELS, seed=0, counts=[300] + [1] * 9)
    with self.assertRaisesRegex(ValueError, 'must be positive integers'):
      data.subsample(self.LABELS, seed=0, counts=[0] + [1] * 9)
    with self.assertRaisesRegex(ValueError, r'`fractions` must be in \(0, 1\]'):
      data.subsample(self.LABELS, seed=0, fractions=[0.0] + [1.0] * 9)
    with self.assertRaisesRegex(ValueError, 'exactly one of'):
      data.subsample(self.LABELS, seed=0)
    with self.assertRaisesRegex(ValueError,
                                r'1 of 5 classes \(3\) have no examples'):
      data.subsample(np.array([0, 1, 2, 4]), seed=0, fractions=[1.0] * 5)


if __name__ == '__main__':
  absltest.main()
