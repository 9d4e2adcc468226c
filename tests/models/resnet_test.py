"""Tests for cil.models.resnet's ImageNet-scale ResNets: parameter counts
equal to the references' (torchvision's, which Kang et al.'s code follows),
shapes at a small input, bfloat16 compute with float32 parameters."""

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cil import models

# torchvision's ResNet-50 and ResNeXt-50 (32x4d) for 1,000 classes
# (`sum(p.numel() for p in torchvision.models.resnet50().parameters())`):
# the counts its model documentation states.
_REFERENCE_PARAMETERS = {'resnet50': 25_557_032, 'resnext50': 25_028_904}


def _count(tree) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


class ImageNetResNetTest(parameterized.TestCase):

  @parameterized.parameters('resnet50', 'resnext50')
  def test_parameter_counts_are_torchvisions(self, name):
    # Shapes only (jax.eval_shape): nothing is computed.
    for head, classes, extra in (('', 1000, 0), ('_normed', 1000, -1000),
                                 ('', 8142, 7142 * 2049)):
      model = models.get_model(name + head, classes)
      variables = jax.eval_shape(model.init, jax.random.key(0),
                                 jnp.zeros((1, 64, 64, 3), jnp.uint8))
      self.assertEqual(_count(variables['params']),
                       _REFERENCE_PARAMETERS[name] + extra, name + head)
      # Batch norm's running mean and variance: two per scale.
      self.assertEqual(_count(variables['batch_stats']) % 2, 0)

  def test_torchvision_counts_where_it_is_installed(self):
    try:
      from torchvision import models as tvm  # pylint: disable=all
    except ImportError:
      self.skipTest('torchvision is not installed (the reference only).')
    for name, reference in (('resnet50', tvm.resnet50),
                            ('resnext50', tvm.resnext50_32x4d)):
      self.assertEqual(sum(p.numel() for p in reference().parameters()),
                       _REFERENCE_PARAMETERS[name])

  def test_a_small_input_trains_in_bfloat16_with_float32_parameters(self):
    model = models.ImageNetResNet(num_classes=5, stage_sizes=(1, 1),
                                  groups=4, width_per_group=4,
                                  dtype=jnp.bfloat16)
    x = jnp.asarray(np.random.default_rng(0).integers(
        0, 256, (2, 32, 32, 3)), jnp.uint8)
    variables = model.init(jax.random.key(0), x)
    self.assertTrue(all(p.dtype == jnp.float32
                        for p in jax.tree.leaves(variables['params'])))
    logits, updates = model.apply(variables, x, train=True,
                                  mutable=['batch_stats'])
    self.assertEqual((logits.shape, logits.dtype), ((2, 5), jnp.bfloat16))
    self.assertTrue(bool(jnp.all(jnp.isfinite(logits))))
    self.assertEqual(set(updates), {'batch_stats'})
    normed = models.get_model('resnext50_normed', 3)
    self.assertIsInstance(normed, models.ImageNetResNet)
    self.assertTrue(normed.normed_head)


class GroupedBatchNormTest(absltest.TestCase):

  def test_groups_are_flax_batch_norm_per_part_and_follow_the_first(self):
    # groups=2: each half normalised as nn.BatchNorm would normalise it
    # alone; the running averages are the first half's update (PyTorch's
    # DataParallel keeps device 0's); groups=1 is nn.BatchNorm itself.
    x = jax.random.normal(jax.random.key(0), (8, 3, 3, 4)) * 3 + 1
    kwargs = {'use_running_average': False, 'momentum': 0.9,
              'epsilon': 1e-5}
    flax_bn = nn.BatchNorm(**kwargs)
    variables = flax_bn.init(jax.random.key(1), x)
    variables = {'params': {'scale': jnp.arange(1.0, 5.0),
                            'bias': jnp.arange(4.0) / 10},
                 'batch_stats': {'mean': jnp.full(4, 0.5),
                                 'var': jnp.full(4, 2.0)}}
    halves = [flax_bn.apply(variables, h, mutable=['batch_stats'])
              for h in (x[:4], x[4:])]
    grouped = models.BatchNorm(groups=2, **kwargs)
    y, stats = grouped.apply(variables, x, mutable=['batch_stats'])
    np.testing.assert_allclose(
        y, jnp.concatenate([halves[0][0], halves[1][0]]), rtol=1e-5,
        atol=1e-6)
    for k in ('mean', 'var'):
      np.testing.assert_allclose(stats['batch_stats'][k],
                                 halves[0][1]['batch_stats'][k], rtol=1e-6)
    one = models.BatchNorm(groups=1, **kwargs).apply(
        variables, x, mutable=['batch_stats'])
    whole = flax_bn.apply(variables, x, mutable=['batch_stats'])
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(whole)):
      np.testing.assert_array_equal(a, b)
    # At test time both use the running averages alone.
    np.testing.assert_array_equal(
        models.BatchNorm(groups=2, use_running_average=True).apply(
            variables, x),
        nn.BatchNorm(use_running_average=True).apply(variables, x))
    with self.assertRaisesRegex(ValueError, 'a batch of 8 does not split '
                                'into 3 equal groups'):
      models.BatchNorm(groups=3, **kwargs).apply(variables, x,
                                                 mutable=['batch_stats'])
    # The ResNets pass it to each of their batch norms; the parameters
    # are the same either way.
    for groups in (1, 2):
      model = models.get_model('resnet8', 3, batch_norm_groups=groups)
      shapes = jax.eval_shape(model.init, jax.random.key(0),
                              jnp.zeros((4, 8, 8, 3), jnp.uint8))
      conv = 9 * (3 * 16 + 16 * 16 * 2 + 16 * 32 + 32 * 32 + 32 * 64
                  + 64 * 64)
      batch_norm = 2 * 2 * (16 * 3 + 32 * 2 + 64 * 2)  # + running stats.
      self.assertEqual(_count(shapes), conv + batch_norm + 64 * 3 + 3)

  def test_input_norm_is_torchvision_s_normalize_of_the_scaled_image(self):
    # ToTensor then Normalize(mean, std): the model with input_norm on
    # uint8 pixels equals the model without it on (x / 255 - mean) / std.
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    x = jax.random.randint(jax.random.key(1), (2, 8, 8, 3), 0, 256,
                           jnp.int32).astype(jnp.uint8)
    normed = models.get_model('resnet8', 3, input_norm=(mean, std))
    plain = models.get_model('resnet8', 3)
    variables = plain.init(jax.random.key(0), x)
    by_hand = (np.asarray(x, np.float32) / 255 - np.float32(mean)
               ) / np.float32(std)
    np.testing.assert_allclose(normed.apply(variables, x),
                               plain.apply(variables, by_hand),
                               rtol=1e-5, atol=1e-5)
    self.assertFalse(np.allclose(normed.apply(variables, x),
                                 plain.apply(variables, x), atol=1e-3))


if __name__ == '__main__':
  absltest.main()
