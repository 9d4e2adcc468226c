"""Convolutional classifiers used in the paper's experiments (Flax Linen).

All models map uint8 or float images `[batch, H, W, C]` to logits
`[batch, num_classes]`; uint8 input is scaled to [0, 1] inside. Parameters
are a plain pytree (`{'params': ...}`), so they can be vmapped over seeds
and adapted in MAML inner loops; only the CIFAR ResNet-32 also keeps
`batch_stats` (batch norm's running averages; `cil.experiments.classify`
carries them).
"""

import functools
import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _to_float(x: jax.Array, dtype) -> jax.Array:
  if jnp.issubdtype(x.dtype, jnp.integer):
    return x.astype(dtype) / 255.0
  return x.astype(dtype)


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
  """
  num_classes: int = 10
  dtype: jnp.dtype = jnp.float32
  conv_pool: str = 'xla'

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
    x = _to_float(x, self.dtype)
    x = _ConvPool(20, impl, self.dtype, name='Conv_0')(x)
    x = _ConvPool(50, impl, self.dtype, name='Conv_1')(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(500, dtype=self.dtype)(x))
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
      return conv_pool_s2d(x, kernel) + bias
    return max_pool_2x2(_xla_conv_valid(x, kernel) + bias)


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
    x = _to_float(x, self.dtype)
    x = nn.relu(nn.Conv(32, (3, 3), dtype=self.dtype)(x))
    x = nn.relu(nn.Conv(64, (3, 3), dtype=self.dtype)(x))
    x = max_pool_2x2(x)
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
    x = _to_float(x, self.dtype)
    for features, kernel in ((16, 5), (32, 5), (64, 6)):
      x = nn.relu(nn.Conv(features, (kernel, kernel), padding='VALID',
                          dtype=self.dtype)(x))
      x = max_pool_2x2(x)
    x = nn.relu(nn.Conv(128, (5, 5), padding='VALID', dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.Conv(self.num_classes, (3, 3), padding='VALID', dtype=self.dtype)(x)
    return x.reshape(x.shape[0], -1)


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
    x = _to_float(x, self.dtype)
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
    return batch_norm_relu_pool(x, scale.astype(self.dtype),
                                bias.astype(self.dtype),
                                epsilon=self.epsilon, relu=relu, pool=pool,
                                mask=mask)


def batch_norm_relu_pool(x: jax.Array, scale: jax.Array, bias: jax.Array, *,
                         epsilon: float = 1e-5, relu: bool = True,
                         pool: bool = True,
                         mask: Optional[jax.Array] = None) -> jax.Array:
  """`max_pool_2x2(relu(batch_norm(x)))` with the pool moved first.

  Args:
    x: `[B, H, W, C]`.
    scale, bias: `[C]`, the normalisation's affine parameters.
    epsilon: added to the variance.
    relu: apply a ReLU after the normalisation.
    pool: then a 2x2 max-pool (`max_pool_2x2`).
    mask: optional `[B]` bool; the statistics are then those of the masked
      examples only (an over-sampled set's padding must not shift them);
      every example is still normalised.

  Returns:
    `[B, H/2, W/2, C]` if pool else `[B, H, W, C]`.

  The statistics are those of the whole `x` (or of its masked examples); the
  normalisation is then an affine map `a * x + b` per channel, and
  `relu(a * x + b)` is monotone in `x`: non-decreasing where `a >= 0`,
  non-increasing where `a < 0`. So the max over a window of the normalised
  output is the normalised max of `x` (or of its min where `a < 0`), and
  the affine map and ReLU run on a quarter of the elements, in the forward
  pass and in every derivative of it. Gradients are the same as the
  unfused order's almost everywhere (a window's gradient goes to its
  arg-max either way; ties at ReLU's zero carry zero gradient in both).

  The statistics take one pass over `x`, not two: the variance is
  `E[d^2] - E[d]^2` of `d = x - c`, where `c` is one sample of each
  channel (its first element, held constant). The shift keeps the
  subtraction well conditioned when a channel's mean is large against its
  spread (the error scales with `(mean - c)^2 / var`, and `c` is drawn from
  the channel's own values); it changes no derivative, since the variance
  does not depend on `c`. In MAML's second-order meta-step every
  derivative of the statistics then also reads `x` once fewer.
  """
  axes = tuple(range(x.ndim - 1))
  shift = jax.lax.stop_gradient(x[(0,) * len(axes)])
  d = x - shift
  if mask is None:
    mean_d = jnp.mean(d, axes)
    mean_sq = jnp.mean(jnp.square(d), axes)
  else:
    w = mask.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
    n = jnp.maximum(jnp.sum(w), 1) * math.prod(x.shape[1:-1])
    mean_d = jnp.sum(w * d, axes) / n
    mean_sq = jnp.sum(w * jnp.square(d), axes) / n
  var = jnp.maximum(mean_sq - jnp.square(mean_d), 0.0)
  mean = mean_d + shift
  a = scale * jax.lax.rsqrt(var + epsilon)
  b = bias - mean * a
  if pool:
    # sign(a) (no gradient): max of s * x, times s, is max(x) or min(x).
    s = jax.lax.stop_gradient(jnp.where(a >= 0, 1.0, -1.0).astype(x.dtype))
    x = s * max_pool_2x2(x * s)
  y = x * a + b
  return nn.relu(y) if relu else y


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """2x2 max-pool, stride 2, floor semantics (odd edges dropped).

  Written as reshape-and-max rather than `reduce_window` (its gradient is a
  select instead of a scatter under XLA:CPU), with its own VJP: each
  window's gradient goes to its first maximum (row-major within the
  window; PyTorch's `MaxPool2d` convention), found once in the forward
  pass and kept as an int8 index, so the backward pass is one select that
  writes the input's gradient. JAX's rule for `max` instead splits a tie
  evenly, for which it builds a float mask and counts the maxima of every
  window, in every derivative. Without ties both give the same gradients,
  to every order (the index has no derivative); with ties (flat image
  regions) both are valid subgradients. MAML's first-order meta-step took
  0.93-0.96x the time with it, second order 0.98x (medians of interleaved
  comparisons of `benchmarks/maml_step.py`'s step; docs/performance.md).
  """
  b, h, w, c = x.shape
  return _max_pool_even(x[:, :h - h % 2, :w - w % 2])


@jax.custom_vjp
def _max_pool_even(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _max_pool_even_fwd(x):
  # Through the custom rule again, so that differentiating this forward
  # pass (MAML's second order) uses it too, not JAX's rule for `max`.
  out = _max_pool_even(x)
  b, h, w, c = x.shape
  win = x.reshape(b, h // 2, 2, w // 2, 2, c)
  return out, _first_maximum(
      [win[:, :, i // 2, :, i % 2, :] for i in range(3)], out)


def _first_maximum(window: Sequence[jax.Array], out: jax.Array
                   ) -> jax.Array:
  """Which of a window's 4 elements (row-major) is its first maximum
  `out`, as int8, from its first 3 elements (the 4th if none)."""
  first, second, third = (w == out for w in window)
  index = jnp.where(first, 0, jnp.where(second, 1, jnp.where(third, 2, 3)))
  return index.astype(jnp.int8)


def _max_pool_even_bwd(index, g):
  b, h2, w2, c = index.shape
  position = (2 * jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 2)
              + jax.lax.broadcasted_iota(jnp.int8, (1, 1, 2, 1, 2, 1), 4))
  dx = jnp.where(index[:, :, None, :, None, :] == position,
                 g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
  return (dx.reshape(b, 2 * h2, 2 * w2, c),)


_max_pool_even.defvjp(_max_pool_even_fwd, _max_pool_even_bwd)


def conv_pool_s2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A valid stride-1 convolution, then a 2x2 max-pool, by space-to-depth.

  Args:
    x: `[B, H, W, C]`.
    kernel: `[K, K, C, F]` (Flax's HWIO layout), any K.

  Returns:
    `[B, (H - K + 1) // 2, (W - K + 1) // 2, F]`, equal to
    `max_pool_2x2(lax.conv_general_dilated(x, kernel, (1, 1), 'VALID'))` up
    to float rounding.

  The 2x2 blocks of the input become channels (`[B, H/2, W/2, 4C]`) and
  the kernel becomes a `(K // 2 + 1)`-square one from 4C channels to 4F:
  one output channel per filter and position in the pooling window (for
  K = 5 a 3x3 kernel whose taps outside the 5x5 are zero). The pool is
  then a max over each filter's 4 channels. Same work as the convolution
  (1.44x the multiplications, zeros included, for K = 5), but the
  convolution has 4x the channels on a quarter of the positions, and
  XLA:CPU's kernels run that, and above all its gradients, faster: LeNet's
  5-seed train step took 0.70x the time (docs/performance.md). The
  max has `max_pool_2x2`'s gradient: each window's to its first maximum.
  The input gradient is a matmul and a col2im sum (`_conv_valid`), not
  XLA's convolution of the padded output gradient (0.87x the step's time).
  """
  b, h, w, c = x.shape
  k, f = kernel.shape[0], kernel.shape[-1]
  if kernel.ndim != 4 or kernel.shape[1] != k or kernel.shape[2] != c:
    raise ValueError(
        f'conv_pool_s2d: kernel must be [K, K, C, F] with C = {c} (the '
        f"input's channels), got {kernel.shape}.")
  if h < k or w < k:
    raise ValueError(f'conv_pool_s2d: the input ({h}x{w}) is smaller than '
                     f'the {k}x{k} kernel.')
  taps = k // 2 + 1  # Blocks a window of outputs reaches, per axis.
  ph, pw = (h - k + 1) // 2, (w - k + 1) // 2
  rows, cols = 2 * (ph + taps - 1), 2 * (pw + taps - 1)
  # Crop what no pooled output reads; pad (into zero taps) what K even
  # may need.
  x = jnp.pad(x[:, :rows, :cols], ((0, 0), (0, max(rows - h, 0)),
                                   (0, max(cols - w, 0)), (0, 0)))
  blocks = x.reshape(b, rows // 2, 2, cols // 2, 2, c).transpose(
      0, 1, 3, 2, 4, 5).reshape(b, rows // 2, cols // 2, 4 * c)
  y = _conv_valid(blocks, _s2d_kernel(kernel))
  return _max_of_4(y.reshape(b, ph, pw, f, 4))


def _xla_conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's valid stride-1 convolution, NHWC and HWIO."""
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def _conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's valid stride-1 convolution (`[B, H, W, C]`, `[KH, KW, C, F]`),
  whose input gradient is one matmul and a sum of shifted slices.

  XLA computes the input gradient as a convolution of the output gradient
  padded by K - 1 on every side: for `conv_pool_s2d`'s 3x3 kernel on
  LeNet's 6x6 blocks that is 2.25x the useful multiplications (4x4 outputs
  read through an 8x8 pad). Here `g @ kernel^T` gives each output
  position's contribution to its K x K input window (`[B, OH, OW, KH, KW,
  C]`) and the windows are summed back in place (col2im). The value and
  the kernel gradient are XLA's.
  """
  return _xla_conv_valid(x, kernel)


def _conv_valid_fwd(x, kernel):
  # Through the rule again, for higher derivatives.
  return _conv_valid(x, kernel), (x, kernel)


def _conv_valid_bwd(res, g):
  x, kernel = res
  _, kernel_vjp = jax.vjp(lambda k: _xla_conv_valid(x, k), kernel)
  # Both branches are the same function: the conditional only fences the
  # col2im sum into its own buffer. Left to XLA:CPU's fusion, the nine
  # slices are summed inside the consumer (the max-pool's backward select
  # and the transpose before the previous layer's kernel gradient), which
  # recomputes them per pooling-window position: LeNet's 5-seed step then
  # took 1.04-1.12x the time it took with XLA's input gradient; fenced,
  # 0.82-0.87x (docs/performance.md). The predicate is any value XLA
  # cannot know when compiling (a constant one would fold the cond away).
  # Batched (vmap), it makes the cond a select of two identical values.
  dx = jax.lax.cond(g.reshape(-1)[:1].sum() > 0, _col2im_grad, _col2im_grad,
                    g, kernel)
  return dx, kernel_vjp(g)[0]


def _col2im_grad(g: jax.Array, kernel: jax.Array) -> jax.Array:
  """The input gradient of `_xla_conv_valid` for output gradient `g`."""
  b, oh, ow, f = g.shape
  kh, kw, c, _ = kernel.shape
  cols = (g.reshape(-1, f) @ kernel.reshape(-1, f).T).reshape(
      b, oh, ow, kh, kw, c)
  # Input position (i, j) gathers cols[i - u, j - v, u, v] over the taps:
  # each tap's slice padded into place (one buffer of the 9x larger cols,
  # padded whole, was slower).
  return sum(jnp.pad(cols[:, :, :, u, v],
                     ((0, 0), (u, kh - 1 - u), (v, kw - 1 - v), (0, 0)))
             for u in range(kh) for v in range(kw))


_conv_valid.defvjp(_conv_valid_fwd, _conv_valid_bwd)


def _s2d_kernel(kernel: jax.Array) -> jax.Array:
  """`conv_pool_s2d`'s kernel: `[T, T, 4C, 4F]`, T = K // 2 + 1, whose
  `[a, b, (u, v, c), (f, p, q)]` is `kernel[2a + u - p, 2b + v - q, c, f]`
  (zero outside the kernel): four slices of the zero-padded kernel, one
  per window position (p, q)."""
  k, _, c, f = kernel.shape
  taps = k // 2 + 1
  padded = jnp.pad(kernel, ((1, 2 * taps - k), (1, 2 * taps - k), (0, 0),
                            (0, 0)))
  # [p, q, (a, u), (b, v), c, f]: rows 2a + u - p of the kernel (+1 for
  # the pad in front).
  parts = jnp.stack([
      jnp.stack([padded[1 - p:1 - p + 2 * taps, 1 - q:1 - q + 2 * taps]
                 for q in range(2)]) for p in range(2)])
  parts = parts.reshape(2, 2, taps, 2, taps, 2, c, f)
  return parts.transpose(2, 4, 3, 5, 6, 7, 0, 1).reshape(
      taps, taps, 4 * c, 4 * f)


@jax.custom_vjp
def _max_of_4(y: jax.Array) -> jax.Array:
  """Max over the last axis (of size 4, a pooling window in row-major
  order); its gradient goes to the first maximum, as `max_pool_2x2`'s."""
  return y.max(axis=-1)


def _max_of_4_fwd(y):
  out = _max_of_4(y)  # Through the rule again, for higher derivatives.
  return out, _first_maximum([y[..., i] for i in range(3)], out)


def _max_of_4_bwd(index, g):
  position = jax.lax.broadcasted_iota(jnp.int8, (1,) * index.ndim + (4,),
                                      index.ndim)
  return (jnp.where(index[..., None] == position, g[..., None],
                    jnp.zeros((), g.dtype)),)


_max_of_4.defvjp(_max_of_4_fwd, _max_of_4_bwd)


def conv3x3_im2col(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Same-padded 3x3 stride-1 convolution as one matmul over 3x3 patches.

  Args:
    x: `[B, H, W, C]`.
    kernel: `[3, 3, C, F]` (Flax's HWIO layout).

  Returns:
    `[B, H, W, F]`, equal to `lax.conv_general_dilated(x, kernel, (1, 1),
    'SAME')` up to float rounding.

  Why: XLA:CPU runs the forward convolution well, but the convolutions that
  autodiff emits for its gradients (kernel gradient with the batch as the
  contraction, input gradient with a flipped kernel) fall off its fast path.
  Here every derivative is a plain matmul, a pad or a slice, which made
  MAML's second-order meta-step 2.3x faster on the 84x84x3 benchmark.
  """
  b, h, w, c = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  patches = jnp.concatenate(
      [padded[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)],
      axis=-1)
  out = patches.reshape(b * h * w, 9 * c) @ kernel.reshape(9 * c, -1)
  return out.reshape(b, h, w, -1)


# F(2x2, 3x3)'s kernel transform G (Lavin & Gray 2016); its data and output
# transforms are `_winograd_data` and `_winograd_output`.
_WINOGRAD_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5),
               (0.0, 0.0, 1.0))


def _winograd_data(d0, d1, d2, d3):
  """`B^T d` along one axis.

  B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]].
  """
  return d0 - d2, d1 + d2, d2 - d1, d1 - d3


def _winograd_output(m0, m1, m2, m3):
  """`A^T m` along one axis: A^T = [[1,1,1,0],[0,1,-1,-1]]."""
  return m0 + m1 + m2, m1 - m2 - m3


def conv3x3_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Same-padded 3x3 stride-1 convolution by Winograd's F(2x2, 3x3).

  Args:
    x: `[B, H, W, C]` (any H, W: odd sizes are padded to whole tiles and
      the output cropped).
    kernel: `[3, 3, C, F]` (Flax's HWIO layout).

  Returns:
    `[B, H, W, F]`, equal to `lax.conv_general_dilated(x, kernel, (1, 1),
    'SAME')` up to float rounding.

  Each 2x2 output tile is computed from a 4x4 input tile with 16
  products instead of 36 (Lavin & Gray 2016, "Fast algorithms for
  convolutional neural networks"): the input tiles are transformed
  (`B^T d B`, adds and subtracts of strided slices), multiplied by the
  transformed kernel (`G g G^T`) in 16 matmuls `[B*H*W/4, C] @ [C, F]`,
  and transformed back (`A^T m A`). Against `conv3x3_im2col` this does
  2.25x fewer multiplications and writes a 4x, not 9x, copy of the input.
  The 16 transformed inputs are 16 separate arrays and matmuls on purpose:
  stacking them into one batched matmul puts a concatenation in the
  program, which XLA:CPU writes at about 2 GB/s (its transform then took
  74 of the convolution's 135 ms; 87 ms in all when split, against
  im2col's 184 ms, at 75x42x42x64 on the 2-core CPU). It is a composition
  of slices, adds and matmuls, so autodiff gives every derivative (MAML's
  second order included) the same structure. With few input channels the
  matmuls are too thin to pay for the transforms: `Conv3x3` uses im2col
  below `WINOGRAD_MIN_CHANNELS`.
  """
  b, h, w, c = x.shape
  th, tw = -(-h // 2), -(-w // 2)  # 2x2 output tiles per column and row.
  xp = jnp.pad(x, ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))
  rows = _winograd_data(*(xp[:, r:r + 2 * th:2] for r in range(4)))
  data = [t.reshape(b * th * tw, c) for row in rows
          for t in _winograd_data(*(row[:, :, s:s + 2 * tw:2]
                                    for s in range(4)))]
  g = jnp.asarray(_WINOGRAD_G, kernel.dtype)
  u = jnp.einsum('ai,ijcf,bj->abcf', g, kernel, g).reshape(16, c, -1)
  m = [(data[i] @ u[i]).reshape(b, th, tw, -1) for i in range(16)]
  # m[4 r + s]: transform row r, column s. Rows back first, then columns.
  cols = [_winograd_output(*(m[4 * r + s] for r in range(4)))
          for s in range(4)]
  y = jnp.stack([jnp.stack(_winograd_output(*(cols[s][p] for s in range(4))),
                           axis=3) for p in range(2)], axis=2)
  return y.reshape(b, 2 * th, 2 * tw, -1)[:, :h, :w]


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
      y = conv3x3_winograd(x, kernel)
    elif impl in ('winograd', 'im2col'):
      y = conv3x3_im2col(x, kernel)
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
  the conv bias, which batch norm cancels, is not added. Together about
  1.3x faster for MAML's second-order meta-step at 84x84x3 on the CPU.

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
    x = _to_float(x, self.dtype)
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
        x = nn.relu(max_pool_2x2(x) if pool else x)
    x = x.reshape(x.shape[0], -1)
    logits = nn.Dense(self.num_classes, dtype=self.dtype)(x)
    # Losses in at least float32 (a bfloat16 model's logits are upcast).
    return logits.astype(jnp.promote_types(self.dtype, jnp.float32))


_MODELS = {
    'lenet': LeNet,
    'digits_cnn': DigitsCNN,
    'aconvnet': AConvNet,
    'conv4': Conv4,
    'resnet32': CifarResNet32,
    'resnet32_normed': functools.partial(CifarResNet32, normed_head=True),
}
MODEL_NAMES: Sequence[str] = tuple(_MODELS)
# The models that take `conv_pool` (`CONV_POOL_IMPLS`).
CONV_POOL_MODELS: Sequence[str] = ('lenet',)


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Returns the model called `name` (lenet, digits_cnn, aconvnet, conv4,
  resnet32, resnet32_normed)."""
  if name not in _MODELS:
    raise ValueError(f'Unknown model {name!r}; known: '
                     f'{", ".join(MODEL_NAMES)}.')
  return _MODELS[name](num_classes=num_classes, **kwargs)
