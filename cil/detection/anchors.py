"""Anchors, box encodings and training-target assignment for R2CNN.

Axis-aligned boxes are `(x1, y1, x2, y2)` in pixels (y down). R2CNN's
inclined boxes are `(x1, y1, x2, y2, h)` (two consecutive corners clockwise
on screen, then the height; see `cil.detection.boxes`).

Encodings are those of Faster R-CNN (Ren et al. 2015) and R2CNN (Jiang et
al. 2017), relative to a reference box (an anchor or a proposal) of centre
(xa, ya) and size (wa, ha):

* axis-aligned: tx = (x - xa) / wa, ty = (y - ya) / ha, tw = log(w / wa),
  th = log(h / ha) on the box centre (x, y) and size (w, h);
* inclined: t_x1 = (x1 - xa) / wa, t_y1 = (y1 - ya) / ha, t_x2, t_y2 alike,
  t_h = log(h / ha);
* rotated (the Cascade stages, from a rotated reference of angle ta):
  the centre offset in the reference's own frame, tx = ((x - xa) cos ta +
  (y - ya) sin ta) / wa, ty = (-(x - xa) sin ta + (y - ya) cos ta) / ha,
  tw = log(w / wa), th = log(h / ha), and t_theta = theta - ta, with the
  box first rewritten in its equivalent form (theta + k pi, or w and h
  swapped and theta + pi/2) whose angle is nearest the reference's, so
  t_theta lies in [-pi/4, pi/4) and one rectangle has one target.

Each is divided by per-coordinate `weights` (Detectron's 10, 10, 5, 5 for
the second stage; 1 for the RPN). Everything here has fixed shapes, so it
runs inside one jitted train step; padding is carried by boolean masks.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    'aabb_iou',
    'assign',
    'decode_aabb',
    'decode_inclined',
    'decode_rbox',
    'encode_aabb',
    'encode_inclined',
    'encode_rbox',
    'make_anchors',
    'sample',
]

# exp() of an encoded log-size is clipped here (Detectron's log(1000/16)).
_MAX_LOG_SCALE = float(np.log(1000.0 / 16))


def make_anchors(feature_hw: tuple[int, int], stride: int, *,
                 sizes: Sequence[float], ratios: Sequence[float]
                 ) -> np.ndarray:
  """Axis-aligned anchors centred on a feature map's cells.

  Args:
    feature_hw: (H, W) of the feature map.
    stride: its stride in pixels; cell (i, j) is centred at
      ((j + 0.5) * stride, (i + 0.5) * stride).
    sizes: anchor sides sqrt(w h) in pixels.
    ratios: h / w ratios (ships need thin ones: 1/4, 4 and beyond).

  Returns:
    `[H * W * A, 4]` (x1, y1, x2, y2), A = len(sizes) * len(ratios), the
    anchors of a cell contiguous (cell-major, then size, then ratio).
  """
  h, w = feature_hw
  shapes = []
  for size in sizes:
    for ratio in ratios:
      aw = size / np.sqrt(ratio)
      shapes.append((aw, aw * ratio))
  shapes = np.asarray(shapes, np.float32)  # [A, 2] (w, h)
  cy, cx = np.meshgrid((np.arange(h) + 0.5) * stride,
                       (np.arange(w) + 0.5) * stride, indexing='ij')
  centres = np.stack([cx, cy], -1).reshape(-1, 1, 2)
  half = shapes[None] / 2
  return np.concatenate([centres - half, centres + half],
                        -1).reshape(-1, 4).astype(np.float32)


def aabb_iou(a: jax.Array, b: jax.Array) -> jax.Array:
  """IoU of axis-aligned boxes: `[N, 4] x [M, 4] -> [N, M]`."""
  lo = jnp.maximum(a[:, None, :2], b[None, :, :2])
  hi = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
  inter = jnp.prod(jnp.clip(hi - lo, 0), -1)
  area_a = jnp.prod(a[:, 2:] - a[:, :2], -1)
  area_b = jnp.prod(b[:, 2:] - b[:, :2], -1)
  union = area_a[:, None] + area_b[None, :] - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1), 0)


def _centre_size(boxes):
  wh = boxes[..., 2:4] - boxes[..., 0:2]
  return boxes[..., 0:2] + wh / 2, wh


def encode_aabb(boxes: jax.Array, reference: jax.Array, *,
                weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
                ) -> jax.Array:
  """Deltas `[..., 4]` (tx, ty, tw, th) of `boxes` from `reference`."""
  c, wh = _centre_size(boxes)
  rc, rwh = _centre_size(reference)
  t = jnp.concatenate([(c - rc) / rwh, jnp.log(wh / rwh)], -1)
  return t * jnp.asarray(weights, t.dtype)


def decode_aabb(deltas: jax.Array, reference: jax.Array, *,
                weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)
                ) -> jax.Array:
  """Inverse of `encode_aabb` (log-sizes clipped at log(1000/16))."""
  t = deltas / jnp.asarray(weights, deltas.dtype)
  rc, rwh = _centre_size(reference)
  c = rc + t[..., 0:2] * rwh
  wh = rwh * jnp.exp(jnp.minimum(t[..., 2:4], _MAX_LOG_SCALE))
  return jnp.concatenate([c - wh / 2, c + wh / 2], -1)


def encode_inclined(inclined: jax.Array, reference: jax.Array, *,
                    weights: Sequence[float] = (1.0,) * 5) -> jax.Array:
  """R2CNN deltas `[..., 5]` of inclined boxes from axis-aligned `reference`.
  """
  rc, rwh = _centre_size(reference)
  p1 = (inclined[..., 0:2] - rc) / rwh
  p2 = (inclined[..., 2:4] - rc) / rwh
  th = jnp.log(inclined[..., 4:5] / rwh[..., 1:2])
  t = jnp.concatenate([p1, p2, th], -1)
  return t * jnp.asarray(weights, t.dtype)


def decode_inclined(deltas: jax.Array, reference: jax.Array, *,
                    weights: Sequence[float] = (1.0,) * 5) -> jax.Array:
  """Inverse of `encode_inclined`."""
  t = deltas / jnp.asarray(weights, deltas.dtype)
  rc, rwh = _centre_size(reference)
  p1 = rc + t[..., 0:2] * rwh
  p2 = rc + t[..., 2:4] * rwh
  h = rwh[..., 1:2] * jnp.exp(jnp.minimum(t[..., 4:5], _MAX_LOG_SCALE))
  return jnp.concatenate([p1, p2, h], -1)


def _near_form(boxes, reference_theta):
  """`boxes` rewritten with the angle nearest `reference_theta`.

  Returns `(w, h, d_theta)`, d_theta in [-pi/4, pi/4): the same rectangle is
  `(cx, cy, w, h, reference_theta + d_theta)`.
  """
  w, h = boxes[..., 2], boxes[..., 3]
  d = jnp.mod(boxes[..., 4] - reference_theta + np.pi / 4, np.pi)
  swap = d >= np.pi / 2  # Period pi keeps w and h; pi/2 swaps them.
  d = jnp.where(swap, d - np.pi / 2, d) - np.pi / 4
  return jnp.where(swap, h, w), jnp.where(swap, w, h), d


def encode_rbox(boxes: jax.Array, reference: jax.Array, *,
                weights: Sequence[float] = (1.0,) * 5) -> jax.Array:
  """Deltas `[..., 5]` of rotated `boxes` from rotated `reference` boxes.

  See the module docstring: centre offsets in the reference's frame, log
  sizes, and the angle difference to the box's nearest equivalent form.
  """
  w, h, d_theta = _near_form(boxes, reference[..., 4])
  cos, sin = jnp.cos(reference[..., 4]), jnp.sin(reference[..., 4])
  dx = boxes[..., 0] - reference[..., 0]
  dy = boxes[..., 1] - reference[..., 1]
  t = jnp.stack([(dx * cos + dy * sin) / reference[..., 2],
                 (-dx * sin + dy * cos) / reference[..., 3],
                 jnp.log(w / reference[..., 2]),
                 jnp.log(h / reference[..., 3]), d_theta], -1)
  return t * jnp.asarray(weights, t.dtype)


def decode_rbox(deltas: jax.Array, reference: jax.Array, *,
                weights: Sequence[float] = (1.0,) * 5) -> jax.Array:
  """Inverse of `encode_rbox` (log-sizes clipped at log(1000/16))."""
  t = deltas / jnp.asarray(weights, deltas.dtype)
  cos, sin = jnp.cos(reference[..., 4]), jnp.sin(reference[..., 4])
  ox = t[..., 0] * reference[..., 2]
  oy = t[..., 1] * reference[..., 3]
  size = reference[..., 2:4] * jnp.exp(jnp.minimum(t[..., 2:4],
                                                   _MAX_LOG_SCALE))
  return jnp.stack([reference[..., 0] + ox * cos - oy * sin,
                    reference[..., 1] + ox * sin + oy * cos,
                    size[..., 0], size[..., 1],
                    reference[..., 4] + t[..., 4]], -1)


def assign(iou: jax.Array, gt_valid: jax.Array, *, positive: float,
           negative: float, allow_low_quality: bool = True
           ) -> tuple[jax.Array, jax.Array]:
  """Labels references (anchors or proposals) from their IoU with the GT.

  Args:
    iou: `[R, G]` IoU of references with ground-truth boxes.
    gt_valid: `[G]` bool, False for padding.
    positive: IoU >= this is foreground (RPN 0.7, head 0.5).
    negative: IoU < this is background (RPN 0.3, head 0.5); in between is
      ignored.
    allow_low_quality: also make each ground truth's best references
      foreground (Faster R-CNN's rule, so that every object gets an anchor).

  Returns:
    `(labels [R] int32, matched [R] int32)`: 1 foreground, 0 background, -1
    ignored; `matched` is the index of the best ground truth (0 when none).
  """
  iou = jnp.where(gt_valid[None, :], iou, -1.0)
  best = jnp.max(iou, 1)
  matched = jnp.argmax(iou, 1).astype(jnp.int32)
  labels = jnp.where(best >= positive, 1, jnp.where(best < negative, 0, -1))
  if allow_low_quality:
    per_gt = jnp.max(iou, 0)
    is_best = (iou == per_gt[None, :]) & gt_valid[None, :] & (
        per_gt[None, :] > 0)
    labels = jnp.where(jnp.any(is_best, 1), 1, labels)
  any_gt = jnp.any(gt_valid)
  labels = jnp.where(any_gt, labels, 0)
  return labels.astype(jnp.int32), jnp.where(any_gt, matched, 0)


def sample(key: jax.Array, labels: jax.Array, *, num: int,
           positive_fraction: float,
           valid: jax.Array = None) -> tuple[jax.Array, jax.Array]:
  """Fixed-size random subsample of foreground and background references.

  Up to `num * positive_fraction` foreground references are drawn at random,
  and background fills the rest of `num` (fewer when there are not enough).

  Args:
    key: PRNG key.
    labels: `[R]` from `assign` (1, 0 or -1).
    num: references per image.
    positive_fraction: at most this share of foreground.
    valid: optional `[R]` bool; invalid references are never drawn.

  Returns:
    `(indices [num] int32, mask [num] bool)` into the references, foreground
    first; `mask` is False for padding.
  """
  if valid is None:
    valid = jnp.ones(labels.shape, bool)
  priority = jax.random.uniform(key, labels.shape)
  fg = (labels == 1) & valid
  bg = (labels == 0) & valid
  max_fg = int(num * positive_fraction)
  n_fg = jnp.minimum(jnp.sum(fg), max_fg)
  n_bg = jnp.minimum(jnp.sum(bg), num - n_fg)
  # Sorted: foreground (random order), then background, then the rest.
  order = jnp.argsort(jnp.where(fg, priority, jnp.where(bg, 1 + priority,
                                                        3.0)))
  slot = jnp.arange(num)
  source = jnp.where(slot < n_fg, slot, jnp.sum(fg) + (slot - n_fg))
  source = jnp.clip(source, 0, labels.shape[0] - 1)
  mask = slot < n_fg + n_bg
  return jnp.where(mask, order[source], 0).astype(jnp.int32), mask
