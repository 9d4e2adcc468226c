"""The convolution, pooling and normalisation kernels under `cil.models`'
architectures: how a layer is computed, apart from what the architectures
are. Most exist for XLA:CPU, where they are faster than XLA's own lowering
of the same function (each choice and its measurements: docs/performance.md,
and the backend policy that picks them: `cil.runtime.Policy`); each gives
the same values and gradients as the plain form it replaces, which
tests/models/ check.

Private: the architectures import them; `conv_pool_s2d` is also public as
`cil.models.conv_pool_s2d`.
"""

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def to_float(x: jax.Array, dtype, input_norm=()) -> jax.Array:
  """`x` as `dtype`, integer pixels scaled to [0, 1]; with `input_norm`
  `((mean_c, ...), (std_c, ...))` then `(x - mean) / std` per channel (the
  last axis), as torchvision's `ToTensor` + `Normalize`."""
  if jnp.issubdtype(x.dtype, jnp.integer):
    x = x.astype(dtype) / 255.0
  else:
    x = x.astype(dtype)
  if input_norm:
    mean, std = (jnp.asarray(v, jnp.float32) for v in input_norm)
    x = ((x - mean) / std).astype(dtype)
  return x


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
  regions) both are valid subgradients. MAML's meta-steps are faster with
  it (`benchmarks/maml_step.py`; docs/performance.md).
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
  then a max over each filter's 4 channels. About the same work as the
  convolution (the zero taps included), but the convolution has 4x the
  channels on a quarter of the positions, and XLA:CPU's kernels run that,
  and above all its gradients, faster (LeNet's train step:
  docs/performance.md). The max has `max_pool_2x2`'s gradient: each
  window's to its first maximum. The input gradient is a matmul and a
  col2im sum (`_conv_valid`), not XLA's convolution of the padded output
  gradient.
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


def xla_conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
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
  return xla_conv_valid(x, kernel)


def _conv_valid_fwd(x, kernel):
  # Through the rule again, for higher derivatives.
  return _conv_valid(x, kernel), (x, kernel)


def _conv_valid_bwd(res, g):
  x, kernel = res
  _, kernel_vjp = jax.vjp(lambda k: xla_conv_valid(x, k), kernel)
  # Both branches are the same function: the conditional only fences the
  # col2im sum into its own buffer. Left to XLA:CPU's fusion, the nine
  # slices are summed inside the consumer (the max-pool's backward select
  # and the transpose before the previous layer's kernel gradient), which
  # recomputes them per pooling-window position, slower than XLA's input
  # gradient; fenced, faster (docs/performance.md). The predicate is any
  # value XLA
  # cannot know when compiling (a constant one would fold the cond away).
  # Batched (vmap), it makes the cond a select of two identical values.
  dx = jax.lax.cond(g.reshape(-1)[:1].sum() > 0, _col2im_grad, _col2im_grad,
                    g, kernel)
  return dx, kernel_vjp(g)[0]


def _col2im_grad(g: jax.Array, kernel: jax.Array) -> jax.Array:
  """The input gradient of `xla_conv_valid` for output gradient `g`."""
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
  MAML's second-order meta-step faster (docs/performance.md).
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
  program, which XLA:CPU writes slowly (docs/performance.md). It is a
  composition
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
