"""The paper's classifiers (Flax Linen): LeNet for MNIST, a small CNN for
the 8x8 digits, and A-ConvNets for MSTAR's SAR chips.

Each maps uint8 or float images `[batch, H, W, C]` to logits
`[batch, num_classes]`; uint8 input is scaled to [0, 1] inside. Parameters
are a plain pytree (`{'params': ...}`), so they can be vmapped over seeds.
"""

import flax.linen as nn
import jax.numpy as jnp

from cil.models import _kernels
from cil.models.resnet import NormedLinear


class LeNet(nn.Module):
  """LeNet as configured for MNIST by Caffe and CoSen CNN (Khan et al. 2017).

  conv 5x5x20 - max-pool 2 - conv 5x5x50 - max-pool 2 - dense 500 - ReLU -
  dense num_classes (valid convolutions, no activation after the convs, as
  Caffe's lenet_train_test.prototxt).

  Attributes:
    conv_pool: how each convolution and the max-pool after it are computed
      (`CONV_POOL_IMPLS`; the same parameters and function either way):
      'xla' (XLA's convolution, then `max_pool_2x2`), 's2d'
      (`conv_pool_s2d`), or 's2d_train' ('s2d' when called with
      `train=True`, 'xla' otherwise: the CPU policy's,
      `cil.runtime.Policy.classify_conv_pool`, since on XLA:CPU the
      space-to-depth form's gradients are faster and XLA's forward pass is).
    normed_head: LDAM's cosine classifier (`NormedLinear`) as the last
      layer, as Cao et al. train LDAM (`lenet_normed`).
  """
  num_classes: int = 10
  dtype: jnp.dtype = jnp.float32
  conv_pool: str = 'xla'
  normed_head: bool = False

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.conv_pool not in CONV_POOL_IMPLS:
      raise ValueError(
          'LeNet.conv_pool must be '
          + ' or '.join(repr(i) for i in CONV_POOL_IMPLS)
          + f', got {self.conv_pool!r}.')
    impl = self.conv_pool
    if impl == 's2d_train':
      impl = 's2d' if train else 'xla'
    x = _kernels.to_float(x, self.dtype)
    x = _ConvPool(20, impl, self.dtype, name='Conv_0')(x)
    x = _ConvPool(50, impl, self.dtype, name='Conv_1')(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(500, dtype=self.dtype)(x))
    if self.normed_head:
      return NormedLinear(self.num_classes, dtype=self.dtype)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


# `LeNet.conv_pool`'s choices.
CONV_POOL_IMPLS = ('xla', 's2d', 's2d_train')


class _ConvPool(nn.Module):
  """A valid 5x5 convolution with bias, then a 2x2 max-pool.

  Parameters are those of `nn.Conv(features, (5, 5), padding='VALID')`
  (`kernel [5, 5, C, F]`, `bias [F]`, the same initialisers, and the name
  its parent gives), so `impl` does not change checkpoints. 'xla' computes
  what `nn.Conv` then `max_pool_2x2` did; 's2d' is `conv_pool_s2d`, with
  the bias added after the pool (a max commutes with adding a constant:
  the same value, rounding included, as floating-point addition is
  monotone).
  """
  features: int
  impl: str
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (5, 5, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
    if self.impl == 's2d':
      return _kernels.conv_pool_s2d(x, kernel) + bias
    return _kernels.max_pool_2x2(_kernels.xla_conv_valid(x, kernel) + bias)


class DigitsCNN(nn.Module):
  """A small CNN for the 8x8 digits.

  conv 3x3x32 - ReLU - conv 3x3x64 - ReLU - max-pool 2 - dense 128 - ReLU -
  dense num_classes (same-padded convolutions).
  """
  num_classes: int = 10
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    x = _kernels.to_float(x, self.dtype)
    x = nn.relu(nn.Conv(32, (3, 3), dtype=self.dtype)(x))
    x = nn.relu(nn.Conv(64, (3, 3), dtype=self.dtype)(x))
    x = _kernels.max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(128, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


class AConvNet(nn.Module):
  """A-ConvNets for 88x88 SAR chips (Chen et al. 2016), all-convolutional.

  conv 5x5x16 - pool - conv 5x5x32 - pool - conv 6x6x64 - pool -
  conv 5x5x128 - dropout 0.5 - conv 3x3xC (valid; ReLU after each hidden
  conv; 2x2 max-pools). The spatial size goes 88-84-42-38-19-14-7-3-1.
  """
  num_classes: int = 10
  dropout_rate: float = 0.5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _kernels.to_float(x, self.dtype)
    for features, kernel in ((16, 5), (32, 5), (64, 6)):
      x = nn.relu(nn.Conv(features, (kernel, kernel), padding='VALID',
                          dtype=self.dtype)(x))
      x = _kernels.max_pool_2x2(x)
    x = nn.relu(nn.Conv(128, (5, 5), padding='VALID', dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Conv(self.num_classes, (3, 3), padding='VALID', dtype=self.dtype)(x)
    return x.reshape(x.shape[0], -1)
