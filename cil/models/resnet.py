"""The CIFAR ResNet-32 (He et al. 2016) as Cao et al.'s long-tail code
builds it, with LDAM's cosine head as an option (Flax Linen).

It keeps `batch_stats` (batch norm's running averages) beside its
parameters; `cil.experiments.classify` carries them.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from cil.models import _kernels


class _CifarBlock(nn.Module):
  """He et al.'s basic block with the parameter-free "option A" shortcut."""
  features: int
  stride: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), use_bias=False,
                             kernel_init=nn.initializers.he_normal(),
                             dtype=self.dtype)
    y = nn.relu(norm()(conv(self.features, strides=self.stride)(x)))
    y = norm()(conv(self.features)(y))
    if self.stride != 1 or x.shape[-1] != self.features:
      # Option A: subsample, then zero-pad the new channels on both sides.
      x = x[:, ::self.stride, ::self.stride, :]
      pad = self.features - x.shape[-1]
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
    return nn.relu(y + x)


class CifarResNet32(nn.Module):
  """ResNet-32 for 32x32 images (He et al. 2016), as in Cao et al.'s code.

  conv 3x3x16 - BN - ReLU - 3 stages of 5 basic blocks (16, 32, 64 filters;
  stride 2 at the start of stages 2 and 3; parameter-free shortcuts) -
  global average pool - dense num_classes: 0.46 M parameters for 10
  classes. `normed_head` gives LDAM's cosine classifier (Cao et al.'s
  `NormedLinear`: unit-norm features times unit-norm class weights), used
  with `ldam`'s scale. Batch norm keeps running averages in `batch_stats`
  (momentum 0.9, PyTorch's 0.1).
  """
  num_classes: int = 10
  blocks_per_stage: int = 5
  normed_head: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _kernels.to_float(x, self.dtype)
    x = nn.Conv(16, (3, 3), use_bias=False,
                kernel_init=nn.initializers.he_normal(), dtype=self.dtype)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)(x))
    for stage, features in enumerate((16, 32, 64)):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        x = _CifarBlock(features, stride, dtype=self.dtype)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if not self.normed_head:
      return nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=nn.initializers.he_normal())(x)
    w = self.param('kernel', nn.initializers.uniform(2.0),
                   (x.shape[-1], self.num_classes), jnp.float32) - 1.0
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
    w = w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), 1e-12)
    return x @ w.astype(self.dtype)
