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
import jax
import jax.numpy as jnp

from cil.models import _kernels


class BatchNorm(nn.BatchNorm):
  """Flax's `BatchNorm` whose training statistics may be per group.

  `groups` > 1 normalises each of that many equal, consecutive parts of
  the batch by its own mean and variance, as PyTorch's `nn.DataParallel`
  (or DDP without SyncBN) does on that many GPUs, each GPU's share a group;
  the running averages follow the first group, as theirs follow device 0's
  replica (`DataParallel` keeps only its in-place updates; DDP broadcasts
  rank 0's buffers). `groups=1` is `nn.BatchNorm` itself (the same
  variables, names and values): statistics over the whole batch.
  """
  groups: int = 1

  @nn.compact
  def __call__(self, x, use_running_average=None, *, mask=None):
    running = nn.merge_param('use_running_average', self.use_running_average,
                             use_running_average)
    if self.groups == 1 or running:
      return super().__call__(x, use_running_average, mask=mask)
    if mask is not None or self.axis != -1:
      raise ValueError('BatchNorm with groups > 1 takes no mask and '
                       'normalises the last axis only.')
    if x.shape[0] % self.groups:
      raise ValueError(f'BatchNorm: a batch of {x.shape[0]} does not split '
                       f'into {self.groups} equal groups.')
    features = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', nn.initializers.zeros,
                            None, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', nn.initializers.ones,
                           None, (features,), jnp.float32)
    scale = self.param('scale', self.scale_init, (features,),
                       self.param_dtype)
    bias = self.param('bias', self.bias_init, (features,), self.param_dtype)
    # Flax's arithmetic per group: float32 statistics, the fast variance.
    g = x.reshape(self.groups, -1, *x.shape[1:]).astype(
        jnp.promote_types(x.dtype, jnp.float32))
    axes = tuple(range(1, g.ndim - 1))
    mean = jnp.mean(g, axes, keepdims=True)
    var = jnp.maximum(0.0, jnp.mean(jnp.square(g), axes, keepdims=True)
                      - jnp.square(mean))
    if not self.is_initializing():
      first = (0,) + (0,) * len(axes)
      ra_mean.value = (self.momentum * ra_mean.value
                       + (1 - self.momentum) * mean[first])
      ra_var.value = (self.momentum * ra_var.value
                      + (1 - self.momentum) * var[first])
    y = (g - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias
    return y.reshape(x.shape).astype(self.dtype or x.dtype)


def _batch_norm(train: bool, dtype, groups: int = 1):
  """Batch norm with PyTorch's `BatchNorm2d` defaults in Flax's terms
  (momentum 0.9, epsilon 1e-5), as every reference ResNet here uses;
  `groups` as `BatchNorm`'s."""
  return functools.partial(BatchNorm, use_running_average=not train,
                           momentum=0.9, epsilon=1e-5, dtype=dtype,
                           groups=groups)


def _conv(dtype, **kwargs):
  """A bias-free convolution with He-normal weights (the references')."""
  return functools.partial(nn.Conv, use_bias=False, dtype=dtype,
                           kernel_init=nn.initializers.he_normal(), **kwargs)


class _CifarBlock(nn.Module):
  """He et al.'s basic block with the parameter-free "option A" shortcut."""
  features: int
  stride: int
  dtype: jnp.dtype = jnp.float32
  batch_norm_groups: int = 1  # `BatchNorm.groups`

  @nn.compact
  def __call__(self, x, train: bool):
    norm = _batch_norm(train, self.dtype, self.batch_norm_groups)
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
  batch_norm_groups: int = 1  # `BatchNorm.groups`
  input_norm: tuple = ()  # `_kernels.to_float`'s: per-channel mean, std

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _kernels.to_float(x, self.dtype, self.input_norm)
    x = _conv(self.dtype)(16, (3, 3))(x)
    x = nn.relu(_batch_norm(train, self.dtype, self.batch_norm_groups)()(x))
    for stage, features in enumerate((16, 32, 64)):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        x = _CifarBlock(features, stride, dtype=self.dtype,
                        batch_norm_groups=self.batch_norm_groups)(x, train)
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
  batch_norm_groups: int = 1  # `BatchNorm.groups`

  @nn.compact
  def __call__(self, x, train: bool):
    norm = _batch_norm(train, self.dtype, self.batch_norm_groups)
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
  batch_norm_groups: int = 1  # `BatchNorm.groups`
  input_norm: tuple = ()  # `_kernels.to_float`'s: per-channel mean, std

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _kernels.to_float(x, self.dtype, self.input_norm)
    x = _conv(self.dtype)(64, (7, 7), strides=2, padding=3)(x)
    x = nn.relu(_batch_norm(train, self.dtype, self.batch_norm_groups)()(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, blocks in enumerate(self.stage_sizes):
      planes = 64 * 2 ** stage
      width = planes * self.width_per_group // 64 * self.groups
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        x = _Bottleneck(planes, stride, self.groups, width,
                        dtype=self.dtype,
                        batch_norm_groups=self.batch_norm_groups)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    if self.normed_head:
      return NormedLinear(self.num_classes, dtype=self.dtype)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)
