"""ResNets of the long-tail references (Flax Linen), each with LDAM's
cosine head as an option:

* the CIFAR ResNet-32 (He et al. 2016) as Cao et al.'s code builds it
  (`kaidic/LDAM-DRW`, `models/resnet_cifar.py`);
* ResNet-50 and ResNeXt-50 (32x4d) for ImageNet-LT, iNaturalist 2018 and
  Places-LT (Kang et al. 2020, `facebookresearch/classifier-balancing`,
  `models/ResNext.py`; Menon et al. 2021), torchvision's layout
  (`torchvision/models/resnet.py`: the stride on the 3x3 convolution of a
  bottleneck, projection shortcuts): 25,557,032 and 25,028,904 parameters
  for 1,000 classes, as torchvision's (`tests/models/resnet_test.py`).

They keep `batch_stats` (batch norm's running averages, momentum 0.9 in
Flax's convention, PyTorch's 0.1) beside their parameters;
`cil.experiments.classify` carries them. `dtype` is the computation's
(bfloat16 for mixed precision); parameters stay float32.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from cil.models import _kernels


def _batch_norm(train: bool, dtype):
  """Batch norm with PyTorch's `BatchNorm2d` defaults in Flax's terms
  (momentum 0.9, epsilon 1e-5), as every reference ResNet here uses."""
  return functools.partial(nn.BatchNorm, use_running_average=not train,
                           momentum=0.9, epsilon=1e-5, dtype=dtype)


def _conv(dtype, **kwargs):
  """A bias-free convolution with He-normal weights (the references')."""
  return functools.partial(nn.Conv, use_bias=False, dtype=dtype,
                           kernel_init=nn.initializers.he_normal(), **kwargs)


class _CifarBlock(nn.Module):
  """He et al.'s basic block with the parameter-free "option A" shortcut."""
  features: int
  stride: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    norm = _batch_norm(train, self.dtype)
    conv = _conv(self.dtype, kernel_size=(3, 3))
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
    x = _conv(self.dtype)(16, (3, 3))(x)
    x = nn.relu(_batch_norm(train, self.dtype)()(x))
    for stage, features in enumerate((16, 32, 64)):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        x = _CifarBlock(features, stride, dtype=self.dtype)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if not self.normed_head:
      return nn.Dense(self.num_classes, dtype=self.dtype,
                      kernel_init=nn.initializers.he_normal())(x)
    return NormedLinear(self.num_classes, dtype=self.dtype)(x)


class NormedLinear(nn.Module):
  """Cao et al.'s `NormedLinear`: unit-norm features times unit-norm class
  weights (cosines in [-1, 1]; LDAM scales them by its `s`). Weights drawn
  uniformly from [-1, 1], as the reference's `uniform_(-1, 1)`."""
  num_classes: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', nn.initializers.uniform(2.0),
                        (x.shape[-1], self.num_classes), jnp.float32)
    return self.unit_features(x) @ self.unit_weights(kernel).astype(
        self.dtype)

  @staticmethod
  def unit_features(x):
    """`[..., D]` inputs scaled to unit norm."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)

  @staticmethod
  def unit_weights(kernel):
    """`[D, C]` class weights of the stored `kernel` (drawn in [0, 2),
    shifted by -1), each column scaled to unit norm."""
    w = kernel - 1.0
    return w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), 1e-12)


class _Bottleneck(nn.Module):
  """torchvision's `Bottleneck`: 1x1, 3x3 (stride, `groups`), 1x1 (x4),
  a projection shortcut (1x1 conv + BN) where the shape changes."""
  planes: int
  stride: int
  groups: int
  width: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    norm = _batch_norm(train, self.dtype)
    conv = _conv(self.dtype)
    out = 4 * self.planes
    y = nn.relu(norm()(conv(self.width, (1, 1))(x)))
    y = nn.relu(norm()(conv(self.width, (3, 3), strides=self.stride,
                            padding=1, feature_group_count=self.groups)(y)))
    y = norm()(conv(out, (1, 1))(y))
    if self.stride != 1 or x.shape[-1] != out:
      x = norm()(conv(out, (1, 1), strides=self.stride)(x))
    return nn.relu(y + x)


class ImageNetResNet(nn.Module):
  """ResNet-50 (`groups=1, width_per_group=64`) or ResNeXt-50 32x4d
  (`groups=32, width_per_group=4`) for 224x224 images, torchvision's
  layout: conv 7x7/2 x64 - BN - ReLU - max-pool 3x3/2 - four stages of
  bottlenecks (3, 4, 6, 3; 64 to 512 planes, stride 2 from the second
  stage) - global average pool - dense (or `NormedLinear`) head."""
  num_classes: int = 1000
  stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  groups: int = 1
  width_per_group: int = 64
  normed_head: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _kernels.to_float(x, self.dtype)
    x = _conv(self.dtype)(64, (7, 7), strides=2, padding=3)(x)
    x = nn.relu(_batch_norm(train, self.dtype)()(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, blocks in enumerate(self.stage_sizes):
      planes = 64 * 2 ** stage
      width = planes * self.width_per_group // 64 * self.groups
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = _Bottleneck(planes, stride, self.groups, width,
                        dtype=self.dtype)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if self.normed_head:
      return NormedLinear(self.num_classes, dtype=self.dtype)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)
