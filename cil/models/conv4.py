"""MAML's Conv4 (Finn et al. 2017) with transductive batch statistics, and
its 3x3 convolution with a choice of lowering (Flax Linen).

Parameters are a plain pytree, so they can be adapted in MAML's inner
loop and differentiated to second order.
"""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from cil.models import _kernels


class BatchStatNorm(nn.Module):
  """Batch normalisation with the current batch's statistics only.

  MAML's transductive batch norm (Finn et al. 2017): mean and variance over
  batch and spatial axes of the input, learned scale and bias, and no running
  averages, so the parameters stay a plain pytree.

  `relu=True` and `pool=True` fuse the ReLU and a 2x2 max-pool that follow
  it (`batch_norm_relu_pool`): the same values, cheaper. `mask` (`[B]`
  bool) takes the statistics over the masked examples only.
  """
  epsilon: float = 1e-5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, relu: bool = False, pool: bool = False,
               mask: Optional[jax.Array] = None):
    features = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (features,))
    bias = self.param('bias', nn.initializers.zeros, (features,))
    return _kernels.batch_norm_relu_pool(
        x, scale.astype(self.dtype), bias.astype(self.dtype),
        epsilon=self.epsilon, relu=relu, pool=pool, mask=mask)


# `Conv3x3`'s lowerings.
CONV_IMPLS = ('winograd', 'im2col', 'xla')
# Input channels below which 'winograd' computes by im2col instead.
WINOGRAD_MIN_CHANNELS = 16


class Conv3x3(nn.Module):
  """A same-padded 3x3 convolution with bias, with a selectable lowering.

  Parameters are those of `nn.Conv(features, (3, 3))` (`kernel [3, 3, C, F]`,
  `bias [F]`, same initialisers), so the lowering can change without
  changing checkpoints.

  Attributes:
    features: output channels.
    impl: 'winograd' (`conv3x3_winograd`, or `conv3x3_im2col` for inputs
      of fewer than `WINOGRAD_MIN_CHANNELS` channels), 'im2col'
      (`conv3x3_im2col`) or 'xla' (`lax.conv_general_dilated`, the
      default). The model takes what it is given: the runners pass the
      backend policy's choice (`cil.runtime.Policy.maml_conv_impl`: im2col
      on CPUs and GPUs, Winograd for first-order MAML on the CPU).
    add_bias: False where a batch norm follows: its mean subtraction
      cancels a per-channel bias exactly, so the parameter is kept (the
      same parameters as `nn.Conv`) but not added, which saves a pass over
      the output in every derivative; its gradient is then exactly zero,
      as it is mathematically.
  """
  features: int
  impl: str = 'xla'
  add_bias: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (3, 3, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    kernel = kernel.astype(self.dtype)
    impl = self.impl
    if impl == 'winograd' and x.shape[-1] >= WINOGRAD_MIN_CHANNELS:
      y = _kernels.conv3x3_winograd(x, kernel)
    elif impl in ('winograd', 'im2col'):
      y = _kernels.conv3x3_im2col(x, kernel)
    elif impl == 'xla':
      y = jax.lax.conv_general_dilated(
          x, kernel, (1, 1), 'SAME',
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    else:
      raise ValueError(
          'Conv3x3.impl must be '
          + ' or '.join(repr(i) for i in CONV_IMPLS) + f', got {self.impl!r}.')
    return y + bias.astype(self.dtype) if self.add_bias else y


class Conv4(nn.Module):
  """MAML's 4-block CNN: 4 x [conv 3x3 (same), norm, ReLU, max-pool 2] + dense.

  Pooling floors odd sizes, as MAML and the PyTorch reference
  (`nn.MaxPool2d(2)`): 84 -> 42 -> 21 -> 10 -> 5 (a 1600-wide dense input
  with 64 filters), 28 -> 14 -> 7 -> 3 -> 1.

  The same function, computed in a cheaper order: the pool runs before the
  normalisation's affine map and the ReLU (`batch_norm_relu_pool`), and
  the conv bias, which batch norm cancels, is not added. Together faster
  for MAML's second-order meta-step on the CPU (docs/performance.md).

  Attributes:
    num_classes: output size.
    features: filters per block (64 as in the paper; 32 is MAML's choice for
      miniImageNet).
    norm: 'batch' (transductive batch statistics, `BatchStatNorm`) or 'none'.
    pools: how many of the blocks (the first ones) max-pool; 4 as MAML, 3
      for 8x8 inputs (8 -> 4 -> 2 -> 1).
    conv_impl: lowering of the convolutions (`Conv3x3.impl`, default
      XLA's); `cil.runtime.Policy.maml_conv_impl` gives the backend's
      fastest for a MAML order (im2col on CPUs and GPUs, Winograd for
      first order on the CPU), which the few-shot runner passes.
    dtype: the computation dtype (parameters stay float32); the logits are
      returned in at least float32, so a loss never runs in bfloat16.
  """
  num_classes: int = 5
  features: int = 64
  norm: str = 'batch'
  pools: int = 4
  conv_impl: str = 'xla'
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False,
               mask: Optional[jax.Array] = None):
    """Logits `[B, num_classes]` of images `x` `[B, H, W, C]`; `mask`
    (`[B]` bool, optional) restricts batch norm's statistics to the masked
    images, as `cil.maml` passes for an over-sampled set's padding."""
    del train
    if self.norm not in ('batch', 'none'):
      raise ValueError(f"Conv4.norm must be 'batch' or 'none', got "
                       f'{self.norm!r}.')
    x = _kernels.to_float(x, self.dtype)
    if min(x.shape[1:3]) < 2 ** self.pools:
      raise ValueError(f'Conv4 with {self.pools} pools needs inputs of at '
                       f'least {2 ** self.pools}x{2 ** self.pools}, got '
                       f'{x.shape[1:3]}; lower `pools`.')
    for block in range(4):
      x = Conv3x3(self.features, impl=self.conv_impl,
                  add_bias=self.norm != 'batch', dtype=self.dtype,
                  name=f'Conv_{block}')(x)
      pool = block < self.pools
      if self.norm == 'batch':
        x = BatchStatNorm(dtype=self.dtype)(x, relu=True, pool=pool,
                                            mask=mask)
      else:  # ReLU commutes with the max-pool: pool first, ReLU on 1/4.
        x = nn.relu(_kernels.max_pool_2x2(x) if pool else x)
    x = x.reshape(x.shape[0], -1)
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(x)
    # Losses in at least float32 (a bfloat16 model's logits are upcast).
    return logits.astype(jnp.promote_types(self.dtype, jnp.float32))
