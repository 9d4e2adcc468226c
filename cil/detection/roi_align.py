"""RoIAlign (He et al. 2017) in JAX: bilinear, jit-able, fixed shapes.

R2CNN pools each proposal at three sizes (7x7, 11x3 and 3x11) and
concatenates them; `multi_roi_align` does that. `rotated_roi_align` pools
rotated boxes in their own frame (the Cascade detector's stages). Both
share one bilinear sampler with Detectron2's border rule.
"""

from typing import Sequence

import jax
import jax.numpy as jnp

__all__ = [
    'multi_roi_align',
    'roi_align',
    'rotated_roi_align',
]


def _check_shapes(name: str, features, rois, width: int, columns: str
                  ) -> None:
  """Named errors for features that are not `[H, W, C]` and RoIs that are
  not `[R, width]`."""
  if features.ndim != 3:
    raise ValueError(f'{name}: features must be [H, W, C], got '
                     f'{features.shape}.')
  if rois.ndim != 2 or rois.shape[-1] != width:
    raise ValueError(f'{name}: rois must be [R, {width}] {columns}, got '
                     f'{rois.shape}.')


def _axis(coords, size):
  """Bilinear taps along one axis: `(lo, hi, w_lo, w_hi, inside)`.

  Detectron2's rule: a sample more than one cell outside the map reads 0;
  others are clamped to the border.
  """
  inside = (coords >= -1.0) & (coords <= size)
  c = jnp.clip(coords, 0, None)
  lo = jnp.minimum(jnp.floor(c).astype(jnp.int32), size - 1)
  hi = jnp.minimum(lo + 1, size - 1)
  c = jnp.where(lo >= size - 1, lo.astype(c.dtype), c)
  frac = c - lo
  return lo, hi, 1 - frac, frac, inside


def _bilinear(features: jax.Array, ys: jax.Array, xs: jax.Array
              ) -> jax.Array:
  """Samples `[H, W, C]` features at (ys, xs) in cells (broadcast shapes).

  Returns:
    `broadcast(ys, xs).shape + (C,)`.
  """
  height, width, _ = features.shape
  y_lo, y_hi, wy_lo, wy_hi, in_y = _axis(ys, height)
  x_lo, x_hi, wx_lo, wx_hi, in_x = _axis(xs, width)

  def tap(yi, xi, wy, wx):
    return features[yi, xi] * (wy * wx)[..., None]

  value = (tap(y_lo, x_lo, wy_lo, wx_lo) + tap(y_lo, x_hi, wy_lo, wx_hi)
           + tap(y_hi, x_lo, wy_hi, wx_lo) + tap(y_hi, x_hi, wy_hi, wx_hi))
  return jnp.where((in_y & in_x)[..., None], value, 0)


def roi_align(features: jax.Array, rois: jax.Array, *,
              output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> jax.Array:
  """Bilinear RoI pooling of one feature map.

  Each RoI is cut into `output_size` bins; each bin averages
  `sampling_ratio` x `sampling_ratio` bilinear samples at the centres of
  its sub-cells (Detectron2's RoIAlign with a fixed sampling ratio).
  Samples more than one cell outside the map are 0; others are clamped to
  the border, as Detectron2.

  Args:
    features: `[H, W, C]`.
    rois: `[R, 4]` (x1, y1, x2, y2) in image pixels.
    output_size: (ph, pw) bins.
    spatial_scale: feature cells per pixel (1 / stride).
    sampling_ratio: samples per bin side.
    aligned: shift by half a pixel so that pixel centres line up
      (Detectron2's `aligned=True`); False is the original RoIAlign.

  Returns:
    `[R, ph, pw, C]`.
  """
  _check_shapes('roi_align', features, rois, 4, '(x1, y1, x2, y2)')
  ph, pw = output_size
  offset = 0.5 if aligned else 0.0
  boxes = rois * spatial_scale - offset
  x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
  roi_w, roi_h = x2 - x1, y2 - y1
  if not aligned:  # The original forces RoIs to be at least 1x1.
    roi_w, roi_h = jnp.maximum(roi_w, 1.0), jnp.maximum(roi_h, 1.0)
  s = sampling_ratio
  # Sample positions along each axis: [R, bins * s].
  ty = (jnp.arange(ph * s) + 0.5) / s  # In bins.
  tx = (jnp.arange(pw * s) + 0.5) / s
  ys = y1[:, None] + ty[None, :] * (roi_h / ph)[:, None]
  xs = x1[:, None] + tx[None, :] * (roi_w / pw)[:, None]

  value = _bilinear(features, ys[:, :, None], xs[:, None, :])
  r, _, _, c = value.shape
  return value.reshape(r, ph, s, pw, s, c).mean(axis=(2, 4))


def multi_roi_align(features: jax.Array, rois: jax.Array, *,
                    output_sizes: Sequence[tuple[int, int]] = (
                        (7, 7), (11, 3), (3, 11)),
                    spatial_scale: float, sampling_ratio: int = 2
                    ) -> jax.Array:
  """R2CNN's pooling: `roi_align` at several sizes, flattened, concatenated.

  Returns:
    `[R, sum(ph * pw) * C]`.
  """
  pooled = [roi_align(features, rois, output_size=size,
                      spatial_scale=spatial_scale,
                      sampling_ratio=sampling_ratio).reshape(rois.shape[0], -1)
            for size in output_sizes]
  return jnp.concatenate(pooled, -1)


def rotated_roi_align(features: jax.Array, rois: jax.Array, *,
                      output_size: tuple[int, int], spatial_scale: float,
                      sampling_ratio: int = 2, aligned: bool = True
                      ) -> jax.Array:
  """Bilinear pooling of rotated boxes, each in its own frame.

  A rotated box `(cx, cy, w, h, theta)` (`cil.detection.boxes`) is cut into
  `ph` bins along its h side and `pw` along its w side, starting at its
  corner p0 (bin (0, 0)) and running toward p1 along w and p3 along h; each
  bin averages `sampling_ratio` x `sampling_ratio` bilinear samples at the
  centres of its sub-cells. A box in local coordinates (u, v), u along w
  and v along h from the centre, sits in the image at
  `(cx + u cos(theta) - v sin(theta), cy + u sin(theta) + v cos(theta))`.
  With `theta = 0` this is `roi_align` of the box's axis-aligned corners.
  The border rule is `roi_align`'s (Detectron2's).

  Args:
    features: `[H, W, C]`.
    rois: `[R, 5]` (cx, cy, w, h, theta) in image pixels and radians.
    output_size: (ph, pw) bins (along h, along w).
    spatial_scale: feature cells per pixel (1 / stride).
    sampling_ratio: samples per bin side.
    aligned: shift by half a pixel so that pixel centres line up; False
      also forces boxes to be at least one cell a side, as `roi_align`.

  Returns:
    `[R, ph, pw, C]`.
  """
  _check_shapes('rotated_roi_align', features, rois, 5,
                '(cx, cy, w, h, theta)')
  ph, pw = output_size
  offset = 0.5 if aligned else 0.0
  cx = rois[:, 0] * spatial_scale - offset
  cy = rois[:, 1] * spatial_scale - offset
  w, h = rois[:, 2] * spatial_scale, rois[:, 3] * spatial_scale
  if not aligned:
    w, h = jnp.maximum(w, 1.0), jnp.maximum(h, 1.0)
  cos, sin = jnp.cos(rois[:, 4]), jnp.sin(rois[:, 4])
  s = sampling_ratio
  # Local sample coordinates from the centre: [R, ph * s] and [R, pw * s].
  v = (((jnp.arange(ph * s) + 0.5) / (s * ph))[None, :] - 0.5) * h[:, None]
  u = (((jnp.arange(pw * s) + 0.5) / (s * pw))[None, :] - 0.5) * w[:, None]
  u, v = u[:, None, :], v[:, :, None]  # [R, 1, pw s], [R, ph s, 1]
  xs = cx[:, None, None] + u * cos[:, None, None] - v * sin[:, None, None]
  ys = cy[:, None, None] + u * sin[:, None, None] + v * cos[:, None, None]
  value = _bilinear(features, ys, xs)
  r, _, _, c = value.shape
  return value.reshape(r, ph, s, pw, s, c).mean(axis=(2, 4))
