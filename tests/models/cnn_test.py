"""Tests for cil.models: shapes, parameters, lowerings of Conv3x3, batch
norm, pooling and its derivatives.
"""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil import models
from cil.models import _kernels


class ModelsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('lenet', 'lenet', (2, 28, 28, 1), 10, 431_080),      # Caffe LeNet.
      ('aconvnet', 'aconvnet', (2, 88, 88, 1), 10, 303_498),  # Chen et al.
      ('conv4', 'conv4', (2, 28, 28, 1), 5, 112_261),
      ('conv4_84', 'conv4', (2, 84, 84, 3), 5, 121_093),  # MAML: 1600 -> 5.
      ('digits_cnn', 'digits_cnn', (2, 8, 8, 1), 10, 151_306),
  )
  def test_shapes_and_parameter_counts(self, name, shape, classes, size):
    model = models.get_model(name, classes)
    x = jnp.zeros(shape, jnp.uint8)
    params = model.init(jax.random.key(0), x)
    self.assertEqual(set(params), {'params'})  # No mutable collections.
    self.assertEqual(sum(p.size for p in jax.tree.leaves(params)), size)
    self.assertEqual(model.apply(params, x).shape, (shape[0], classes))

  def test_cifar_resnet32_matches_cao_et_al(self):
    # He et al.'s CIFAR ResNet-32 as in Cao et al.'s code: 0.46 M
    # parameters (464,154 with a 10-class dense head; the cosine head has no
    # bias), batch norm with running averages.
    for name, size in (('resnet32', 464_154), ('resnet32_normed', 464_144)):
      model = models.get_model(name, 10)
      x = jnp.zeros((2, 32, 32, 3), jnp.uint8)
      variables = jax.jit(functools.partial(model.init, train=False))(
          jax.random.key(0), x)
      self.assertEqual(set(variables), {'params', 'batch_stats'})
      self.assertEqual(
          sum(p.size for p in jax.tree.leaves(variables['params'])), size)
      convs = [k for k in jax.tree_util.tree_flatten_with_path(
          variables['params'])[0] if 'Conv' in jax.tree_util.keystr(k[0])]
      self.assertLen(convs, 31)  # 1 + 3 stages x 5 blocks x 2.

  def test_resnet8_is_the_n1_member_of_the_family(self):
    # 6n + 2 = 8 layers: 7 convolutions and the head, on MNIST's 28 x 28 x 1:
    # 3*3*1*16 + 3*3*16*16*2 + 3*3*16*32 + 3*3*32*32 + 3*3*32*64 + 3*3*64*64
    # convolution weights, two BN parameters per channel of each of the 7
    # convolutions, and a 64 x 10 head with bias.
    conv = 9 * (16 + 16 * 16 * 2 + 16 * 32 + 32 * 32 + 32 * 64 + 64 * 64)
    batch_norm = 2 * (16 * 3 + 32 * 2 + 64 * 2)
    model = models.get_model('resnet8', 10)
    variables = jax.jit(functools.partial(model.init, train=False))(
        jax.random.key(0), jnp.zeros((2, 28, 28, 1), jnp.uint8))
    self.assertEqual(
        sum(p.size for p in jax.tree.leaves(variables['params'])),
        conv + batch_norm + 64 * 10 + 10)
    self.assertEqual(model.apply(variables, jnp.zeros((3, 28, 28, 1),
                                                      jnp.uint8)).shape,
                     (3, 10))

  def test_conv4_uses_the_batch_statistics(self):
    model = models.Conv4(num_classes=5, features=8)
    x = jax.random.uniform(jax.random.key(1), (6, 28, 28, 1))
    params = model.init(jax.random.key(0), x)
    full = model.apply(params, x)
    alone = model.apply(params, x[:3])
    # Transductive batch norm: an example's output depends on its batch.
    self.assertGreater(float(jnp.max(jnp.abs(full[:3] - alone))), 1e-4)

  def test_conv4_bfloat16_keeps_float32_parameters_and_logits(self):
    x = jax.random.uniform(jax.random.key(1), (6, 16, 16, 3))
    full = models.Conv4(num_classes=5, features=8)
    half = models.Conv4(num_classes=5, features=8, dtype=jnp.bfloat16)
    params = full.init(jax.random.key(0), x)
    for leaf in jax.tree.leaves(half.init(jax.random.key(0), x)):
      self.assertEqual(leaf.dtype, jnp.float32)
    logits = half.apply(params, x)
    self.assertEqual(logits.dtype, jnp.float32)
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    reference = full.apply(params, x)
    np.testing.assert_allclose(logits, reference, atol=0.1, rtol=0.05)
    self.assertGreater(float(jnp.max(jnp.abs(logits - reference))), 0.0)

  def test_reshape_max_pool_equals_flax_valid_pool(self):
    import flax.linen as nn  # pylint: disable=g-import-not-at-top
    x = jax.random.normal(jax.random.key(2), (2, 7, 9, 3))
    np.testing.assert_array_equal(_kernels.max_pool_2x2(x),
                                  nn.max_pool(x, (2, 2), (2, 2)))

  def test_max_pool_gradients_equal_jax_max_to_second_order(self):
    # Without ties, the custom VJP's first and second derivatives are
    # those of JAX's own `max` (float64); odd edges get no gradient.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(8), (2, 5, 7, 3), jnp.float64)
      w = jax.random.normal(jax.random.key(9), (2, 2, 3, 3), jnp.float64)
      v = jax.random.normal(jax.random.key(10), x.shape, jnp.float64)

      def jax_max(x):
        return x[:, :4, :6].reshape(2, 2, 2, 3, 2, 3).max(axis=(2, 4))

      def second_order(pool):
        def inner(x):
          g = jax.grad(lambda y: jnp.sum(jnp.sin(pool(y)) * w))(x)
          return jnp.sum(g * v) + jnp.sum(jnp.cos(pool(x)))
        return jax.value_and_grad(inner)(x)

      pool = _kernels.max_pool_2x2
      np.testing.assert_array_equal(pool(x), jax_max(x))
      for a, b in zip(second_order(pool), second_order(jax_max)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
      g = jax.grad(lambda y: jnp.sum(pool(y)))(x)
      self.assertEqual(float(jnp.sum(jnp.abs(g[:, 4:]))), 0.0)
      self.assertEqual(float(jnp.sum(jnp.abs(g[:, :, 6:]))), 0.0)

  def test_max_pool_tie_gradient_goes_to_the_first_maximum(self):
    # PyTorch's convention (row-major in the window), not an even split.
    x = jnp.array([[0., 1., 1., 1.], [1., 1., 0., 1.]]).reshape(1, 2, 4, 1)
    g = jax.grad(lambda y: jnp.sum(_kernels.max_pool_2x2(y)))(x)
    np.testing.assert_array_equal(
        g.reshape(2, 4), [[0., 1., 1., 0.], [0., 0., 0., 0.]])

  def test_im2col_and_winograd_convs_equal_xla_conv_to_second_order(self):
    # Values, gradients and the gradient of a gradient (what MAML's
    # meta-step differentiates) agree between the lowerings, in float64.
    # Odd H (5) and even W (6): Winograd pads to whole 2x2 tiles and crops.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(3), (2, 5, 6, 3), jnp.float64)
      k = jax.random.normal(jax.random.key(4), (3, 3, 3, 4), jnp.float64)
      ct = jax.random.normal(jax.random.key(5), (2, 5, 6, 4), jnp.float64)

      def xla(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

      def second_order(conv):
        def inner(k, x):  # A squared norm of the first-order gradients.
          dx, dk = jax.vjp(conv, x, k)[1](ct)
          return jnp.sum(dx ** 2) + jnp.sum(jnp.sin(dk))
        return jax.grad(inner, (0, 1))(k, x)

      want = second_order(xla)
      for conv in (_kernels.conv3x3_im2col, _kernels.conv3x3_winograd):
        with self.subTest(conv.__name__):
          np.testing.assert_allclose(conv(x, k), xla(x, k), rtol=1e-12,
                                     atol=1e-12)
          for a, b in zip(second_order(conv), want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)

  def test_winograd_conv_handles_odd_widths_in_float32(self):
    # Both sizes odd, 16 channels (Conv3x3's Winograd threshold): float32
    # rounding of the transforms stays near im2col's.
    x = jax.random.normal(jax.random.key(6), (2, 7, 9, 16))
    k = jax.random.normal(jax.random.key(7), (3, 3, 16, 8)) * 0.1
    np.testing.assert_allclose(_kernels.conv3x3_winograd(x, k),
                               _kernels.conv3x3_im2col(x, k), rtol=1e-4,
                               atol=1e-5)

  def test_fused_norm_relu_pool_equals_unfused_to_second_order(self):
    # Pooling before the affine map and ReLU is exact for either sign of the
    # scale (channel 1 is negative, channel 2 zero), and so are its first-
    # and second-order derivatives, in float64. Odd sizes are floored.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(6), (3, 5, 7, 3), jnp.float64)
      scale = jnp.array([1.5, -0.7, 0.0], jnp.float64)
      bias = jnp.array([0.1, 0.3, -0.2], jnp.float64)
      ct = jax.random.normal(jax.random.key(7), (3, 2, 3, 3), jnp.float64)

      def unfused(x, scale, bias):
        mean = jnp.mean(x, (0, 1, 2))
        var = jnp.mean(jnp.square(x - mean), (0, 1, 2))
        y = (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias
        return _kernels.max_pool_2x2(jax.nn.relu(y))

      fused = _kernels.batch_norm_relu_pool

      def second_order(fn):
        def inner(scale, bias, x):
          grads = jax.vjp(fn, x, scale, bias)[1](ct)
          return sum(jnp.sum(jnp.sin(g)) for g in grads)
        return jax.grad(inner, (0, 1, 2))(scale, bias, x)

      np.testing.assert_allclose(fused(x, scale, bias),
                                 unfused(x, scale, bias), atol=1e-12)
      for a, b in zip(second_order(fused), second_order(unfused)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)

  def test_one_pass_statistics_hold_for_a_large_mean_in_float32(self):
    # The variance is E[d^2] - E[d]^2 of shifted values: with a channel mean
    # 1e4 times its spread, the unshifted one-pass form loses every digit
    # in float32 (variances 8 and 128 for 1.13 and 1.04); the shifted one
    # stays within float32's rounding of the inputs (ulp 2e-3 at 3e4) of
    # the two-pass float64 normalisation.
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((4, 6, 6, 2)) + [1e4, -3e4]).astype(np.float32)
    scale, bias = np.array([1.0, -2.0]), np.array([0.5, 0.0])
    got = _kernels.batch_norm_relu_pool(
        jnp.asarray(x), jnp.asarray(scale, jnp.float32),
        jnp.asarray(bias, jnp.float32), relu=False, pool=False)
    x64 = x.astype(np.float64)
    want = ((x64 - x64.mean((0, 1, 2))) / np.sqrt(x64.var((0, 1, 2)) + 1e-5)
            * scale + bias)
    np.testing.assert_allclose(got, want, atol=1e-2)

  def test_conv4_lowerings_share_parameters_and_outputs(self):
    # 16 filters: blocks 2-4 have the channels 'winograd' needs to use
    # Winograd (block 1's 3 channels fall back to im2col).
    x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))
    outs, trees = [], []
    for impl in models.CONV_IMPLS:
      model = models.Conv4(num_classes=5, features=16, conv_impl=impl)
      params = model.init(jax.random.key(0), x)
      trees.append(jax.tree.map(jnp.shape, params))
      outs.append(model.apply(params, x))
    # Winograd did run: its float32 rounding differs from im2col's.
    by_impl = dict(zip(models.CONV_IMPLS, outs))
    self.assertFalse(np.array_equal(by_impl['winograd'], by_impl['im2col']))
    for tree, out in zip(trees[1:], outs[1:]):
      self.assertEqual(tree, trees[0])
      np.testing.assert_allclose(out, outs[0], rtol=1e-4, atol=1e-4)
    self.assertIn('Conv_3', trees[0]['params'])  # nn.Conv's names.
    with self.assertRaisesRegex(ValueError, "impl must be 'winograd'"):
      models.Conv4(num_classes=5, conv_impl='fft').init(jax.random.key(0), x)

  @parameterized.named_parameters(
      # LeNet's two layers, then odd sizes, even kernels (K = 4 reads a
      # padded row), K = 1 and K = 2.
      ('lenet_conv1', (28, 28, 1), 5, 3), ('lenet_conv2', (12, 12, 4), 5, 6),
      ('odd_sizes', (13, 11, 3), 3, 4), ('even_kernel', (10, 9, 2), 4, 3),
      ('kernel_6', (11, 12, 2), 6, 3), ('kernel_2', (9, 9, 2), 2, 3),
      ('kernel_1', (7, 8, 1), 1, 2))
  def test_s2d_conv_pool_equals_conv_then_pool_to_second_order(
      self, hwc, k, f):
    # Values, gradients (input and kernel) and the gradient of a gradient,
    # in float64, against XLA's convolution followed by max_pool_2x2.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(3), (2,) + hwc, jnp.float64)
      kernel = jax.random.normal(jax.random.key(4), (k, k, hwc[-1], f),
                                 jnp.float64)

      def reference(x, kernel):
        return _kernels.max_pool_2x2(jax.lax.conv_general_dilated(
            x, kernel, (1, 1), 'VALID',
            dimension_numbers=('NHWC', 'HWIO', 'NHWC')))

      want = reference(x, kernel)
      ct = jax.random.normal(jax.random.key(5), want.shape, jnp.float64)

      def second_order(fn):
        def inner(k, x):
          dx, dk = jax.vjp(fn, x, k)[1](ct)
          return jnp.sum(dx ** 2) + jnp.sum(jnp.sin(dk))
        return jax.vjp(fn, x, kernel)[1](ct), jax.grad(inner, (0, 1))(
            kernel, x)

      got = models.conv_pool_s2d(x, kernel)
      self.assertEqual(got.shape, want.shape)
      np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
      for a, b in zip(jax.tree.leaves(second_order(models.conv_pool_s2d)),
                      jax.tree.leaves(second_order(reference))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)

  def test_s2d_conv_pool_refuses_a_kernel_that_does_not_fit(self):
    x = jnp.zeros((1, 6, 6, 2))
    with self.assertRaisesRegex(ValueError, r'\[K, K, C, F\] with C = 2'):
      models.conv_pool_s2d(x, jnp.zeros((3, 3, 1, 4)))
    with self.assertRaisesRegex(ValueError, r'\[K, K, C, F\]'):
      models.conv_pool_s2d(x, jnp.zeros((3, 2, 2, 4)))
    with self.assertRaisesRegex(ValueError, r'input \(6x6\) is smaller'):
      models.conv_pool_s2d(x, jnp.zeros((7, 7, 2, 4)))

  def test_s2d_conv_pool_tie_gradient_goes_to_the_first_maximum(self):
    # A constant image ties all four outputs of every window (the flat
    # background of MNIST does): as max_pool_2x2, the whole gradient goes
    # to the window's first (top-left) output, so the kernel's gradient is
    # the sum of the top-left patches, not a quarter of each.
    x = jnp.ones((1, 6, 6, 1))
    kernel = jnp.ones((3, 3, 1, 1))
    got = jax.grad(lambda k: jnp.sum(models.conv_pool_s2d(x, k)))(kernel)
    want = jax.grad(lambda k: jnp.sum(_kernels.max_pool_2x2(
        jax.lax.conv_general_dilated(
            x, k, (1, 1), 'VALID',
            dimension_numbers=('NHWC', 'HWIO', 'NHWC')))))(kernel)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, jnp.full((3, 3, 1, 1), 4.0))

  def test_s2d_conv_pool_gradients_under_vmap_equal_one_by_one(self):
    # Seeds vmapped over their own kernels and inputs (`seed_parallel=
    # 'vmap'`): the input gradient's two-branch cond then has a batched
    # predicate, and must still give each seed its own gradients. Seed 1's
    # output gradient is seed 0's negated, so where the predicate reads a
    # nonzero entry the two seeds take different branches.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(6), (2, 2, 12, 12, 4),
                            jnp.float64)
      kernel = jax.random.normal(jax.random.key(7), (2, 5, 5, 4, 3),
                                 jnp.float64)
      ct = jax.random.normal(jax.random.key(8), (2, 4, 4, 3), jnp.float64)
      ct = jnp.stack([ct, -ct])

      def grads(x, kernel, ct):
        return jax.vjp(models.conv_pool_s2d, x, kernel)[1](ct)

      got = jax.vmap(grads)(x, kernel, ct)
      for seed in range(2):
        want = grads(x[seed], kernel[seed], ct[seed])
        for a, b in zip(got, want):
          np.testing.assert_allclose(a[seed], b, rtol=1e-12, atol=1e-12)

  def test_lenet_lowerings_share_parameters_and_outputs(self):
    # The same parameter tree and initial values (nn.Conv's names and
    # initialisers); 'xla' is what LeNet computed with nn.Conv; 's2d_train'
    # is 's2d' in training and 'xla' when scoring.
    x = jax.random.randint(jax.random.key(1), (4, 28, 28, 1), 0, 256
                           ).astype(jnp.uint8)
    nets = {impl: models.LeNet(10, conv_pool=impl)
            for impl in models.CONV_POOL_IMPLS}
    params = {impl: net.init(jax.random.key(0), x)
              for impl, net in nets.items()}
    for impl in models.CONV_POOL_IMPLS:
      jax.tree.map(np.testing.assert_array_equal, params[impl],
                   params['xla'])
    self.assertEqual(sorted(params['xla']['params']),
                     ['Conv_0', 'Conv_1', 'Dense_0', 'Dense_1'])
    v = params['xla']
    xla = nets['xla'].apply(v, x)
    s2d = nets['s2d'].apply(v, x)
    self.assertFalse(np.array_equal(s2d, xla))  # s2d did run.
    np.testing.assert_allclose(s2d, xla, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(nets['s2d_train'].apply(v, x), xla)
    np.testing.assert_array_equal(
        nets['s2d_train'].apply(v, x, train=True),
        nets['s2d'].apply(v, x, train=True))
    with self.assertRaisesRegex(ValueError, "conv_pool must be 'xla'"):
      models.LeNet(10, conv_pool='fft').init(jax.random.key(0), x)

  def test_conv4_too_small_input_names_the_fix(self):
    with self.assertRaisesRegex(ValueError, 'at least 16x16.*lower `pools`'):
      models.Conv4(num_classes=5).init(jax.random.key(0),
                                       jnp.zeros((1, 8, 8, 1)))

  def test_unknown_model(self):
    with self.assertRaisesRegex(ValueError, 'Unknown model .*lenet'):
      models.get_model('resnet', 10)


if __name__ == '__main__':
  absltest.main()
