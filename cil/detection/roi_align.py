"""RoIAlign (He et al. 2017) in JAX: bilinear, jit-able, fixed shapes.

R2CNN pools each proposal at three sizes (7x7, 11x3 and 3x11) and
concatenates them; `multi_roi_align` does that.
"""

from typing import Sequence

import jax
import jax.numpy as jnp


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
  if features.ndim != 3:
    raise ValueError(f'roi_align: features must be [H, W, C], got '
                     f'{features.shape}.')
  if rois.ndim != 2 or rois.shape[-1] != 4:
    raise ValueError(f'roi_align: rois must be [R, 4], got {rois.shape}.')
  height, width, _ = features.shape
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

  def axis(coords, size):
    inside = (coords >= -1.0) & (coords <= size)
    c = jnp.clip(coords, 0, None)
    lo = jnp.minimum(jnp.floor(c).astype(jnp.int32), size - 1)
    hi = jnp.minimum(lo + 1, size - 1)
    c = jnp.where(lo >= size - 1, lo.astype(c.dtype), c)
    frac = c - lo
    return lo, hi, 1 - frac, frac, inside

  y_lo, y_hi, wy_lo, wy_hi, in_y = axis(ys, height)
  x_lo, x_hi, wx_lo, wx_hi, in_x = axis(xs, width)

  def gather(yi, xi):  # [R, Py] x [R, Px] -> [R, Py, Px, C]
    return features[yi[:, :, None], xi[:, None, :]]

  def weight(wy, wx):
    return (wy[:, :, None] * wx[:, None, :])[..., None]

  value = (gather(y_lo, x_lo) * weight(wy_lo, wx_lo)
           + gather(y_lo, x_hi) * weight(wy_lo, wx_hi)
           + gather(y_hi, x_lo) * weight(wy_hi, wx_lo)
           + gather(y_hi, x_hi) * weight(wy_hi, wx_hi))
  inside = (in_y[:, :, None] & in_x[:, None, :])[..., None]
  value = jnp.where(inside, value, 0)
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
