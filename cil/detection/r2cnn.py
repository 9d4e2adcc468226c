"""R2CNN (Jiang et al. 2017) in Flax Linen, with the paper's CI loss option.

A Faster R-CNN whose second stage also regresses an inclined box:

* backbone: a ResNet (18/34 basic blocks, 50/101 bottlenecks) cut after its
  third stage, R2CNN's single stride-16 map; GroupNorm instead of BatchNorm
  (no pretrained weights can be downloaded here, and GroupNorm trains from
  scratch at small batches; parameters stay a plain pytree);
* RPN: axis-aligned anchors of several sizes and h/w ratios (thin ones for
  ships), objectness logits and deltas, proposals by NMS;
* head: RoIAlign at R2CNN's 7x7, 11x3 and 3x11 pooled sizes, concatenated,
  two dense layers, then class logits (background is class 0), a
  class-agnostic axis-aligned box and an inclined box (x1, y1, x2, y2, h).

The loss is eq. (17): L_cls + lambda1 smooth-L1(axis-aligned) + lambda2
smooth-L1(inclined), plus the RPN's objectness and box terms. L_cls is any
`cil.losses` registry loss; for 'ci' (and other count-aware losses) the
class counts are the training set's instance counts, with background given
the count it has in the sampled RoIs in expectation: (1 - f) / f times the
foreground total, f the sampled foreground fraction (0.25), so background is
the majority as it is in every batch.

Every shape is fixed (ground truth padded with a validity mask, RoIs sampled
to a fixed number), so a whole train step is one jitted function.

One module (about 530 lines) for the detector: its config, trunk, RPN and
head, losses and train step follow the paper's Section IV-C in order, and
`cil.detection.cascade` reuses them by name.
"""

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import _validation as v
from cil import losses as losses_lib
from cil.detection import anchors as anchors_lib
from cil.detection import boxes as boxes_lib
from cil.detection import roi_align

__all__ = [
    'BACKGROUND_COUNTS',
    'Backbone',
    'batch_loss',
    'class_counts_with_background',
    'classification_loss',
    'detect',
    'init_module',
    'init_params',
    'loss_fn',
    'make_anchors',
    'optimizer_step',
    'proposals',
    'R2CNN',
    'R2CNNConfig',
    'rpn_loss',
    'scaled_config',
    'select_detections',
    'smooth_l1',
    'train_step',
    'Trunk',
    'validate',
]


@dataclasses.dataclass(frozen=True)
class R2CNNConfig:
  """Model and training hyperparameters.

  Attributes:
    num_classes: object classes (background excluded).
    backbone: 'resnet18', 'resnet34', 'resnet50' or 'resnet101'.
    width: channels of the first stage (64 in the ResNet papers).
    image_size: square input side (images are padded to it).
    anchor_sizes, anchor_ratios: RPN anchors (sqrt area in pixels, h/w).
    pre_nms, post_nms: proposals kept before / after the RPN's NMS.
    rpn_nms: IoU threshold of the RPN's NMS.
    rpn_batch, rpn_positive_fraction: anchors sampled per image.
    roi_batch, roi_positive_fraction: RoIs sampled per image.
    head_dim: width of the head's two dense layers.
    loss: the classification loss, hyperparameters bound
      (`cil.losses.LossSpec`; a spec string such as 'ci' or
      'focal:gamma=0.5' is turned into one by `cil.losses.get_loss`).
    lambda_aabb, lambda_inclined: eq. (17)'s weights.
    test_proposals, score_threshold, test_nms, max_detections: inference.
  """
  num_classes: int = 15
  backbone: str = 'resnet18'
  width: int = 64
  image_size: int = 512
  anchor_sizes: tuple = (16, 32, 64, 128)
  anchor_ratios: tuple = (0.2, 0.5, 1.0, 2.0, 5.0)
  pre_nms: int = 1000
  post_nms: int = 256
  rpn_nms: float = 0.7
  rpn_batch: int = 256
  rpn_positive_fraction: float = 0.5
  roi_batch: int = 128
  roi_positive_fraction: float = 0.25
  head_dim: int = 512
  loss: losses_lib.LossSpec = losses_lib.LossSpec('ce')
  lambda_aabb: float = 1.0
  lambda_inclined: float = 1.0
  test_proposals: int = 300
  score_threshold: float = 0.05
  test_nms: float = 0.3
  max_detections: int = 100

  def __post_init__(self):
    if not isinstance(self.loss, losses_lib.LossSpec):
      object.__setattr__(self, 'loss', losses_lib.get_loss(self.loss))

  @property
  def stride(self) -> int:
    return 16

  @property
  def feature_size(self) -> int:
    return -(-self.image_size // self.stride)

  @property
  def num_anchors(self) -> int:
    return len(self.anchor_sizes) * len(self.anchor_ratios)


def scaled_config(*, image_size: int, width: int, **overrides
                  ) -> R2CNNConfig:
  """A config whose proposal and sampling budgets follow the image size.

  Small images (<= 256 px, the CPU setting) keep 600 / 128 proposals and
  sample 128 anchors and 64 RoIs; larger ones 2000 / 512, 256 and 256.
  Narrow backbones (width < 64) get a 256-wide head, others 1024.
  """
  small = image_size <= 256
  return dataclasses.replace(
      R2CNNConfig(), image_size=image_size, width=width,
      head_dim=256 if width < 64 else 1024,
      pre_nms=600 if small else 2000, post_nms=128 if small else 512,
      rpn_batch=128 if small else 256, roi_batch=64 if small else 256,
      **overrides)


_HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_INCLINED_WEIGHTS = (10.0, 10.0, 10.0, 10.0, 5.0)
_STAGES = {'resnet18': ((2, 2, 2), False), 'resnet34': ((3, 4, 6), False),
           'resnet50': ((3, 4, 6), True), 'resnet101': ((3, 4, 23), True)}


def _stages(backbone: str) -> tuple:
  """`(blocks per stage, bottleneck)` of a backbone name; checks it."""
  if backbone not in _STAGES:
    raise ValueError(f'Unknown backbone {backbone!r}; known: '
                     f'{", ".join(_STAGES)}.')
  return _STAGES[backbone]


def _norm(x, name=None):
  groups = min(32, x.shape[-1] // 4 or 1)
  return nn.GroupNorm(num_groups=groups, name=name)(x)


class _Block(nn.Module):
  features: int
  stride: int
  bottleneck: bool

  @nn.compact
  def __call__(self, x):
    out_features = self.features * (4 if self.bottleneck else 1)
    shortcut = x
    if x.shape[-1] != out_features or self.stride != 1:
      shortcut = nn.Conv(out_features, (1, 1), (self.stride, self.stride),
                         use_bias=False)(x)
      shortcut = _norm(shortcut)
    if self.bottleneck:
      y = nn.relu(_norm(nn.Conv(self.features, (1, 1), use_bias=False)(x)))
      y = nn.Conv(self.features, (3, 3), (self.stride, self.stride),
                  use_bias=False)(y)
      y = nn.relu(_norm(y))
      y = _norm(nn.Conv(out_features, (1, 1), use_bias=False)(y))
    else:
      y = nn.Conv(self.features, (3, 3), (self.stride, self.stride),
                  use_bias=False)(x)
      y = nn.relu(_norm(y))
      y = _norm(nn.Conv(self.features, (3, 3), use_bias=False)(y))
    return nn.relu(y + shortcut)


class Backbone(nn.Module):
  """ResNet stem and three stages: `[B, S, S, 3] -> [B, S/16, S/16, C]`."""
  depth: str = 'resnet18'
  width: int = 64

  @nn.compact
  def __call__(self, x):
    stages, bottleneck = _stages(self.depth)
    x = nn.Conv(self.width, (7, 7), (2, 2), use_bias=False)(x)
    x = nn.relu(_norm(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding='SAME')
    for i, blocks in enumerate(stages):
      for j in range(blocks):
        stride = 2 if (i > 0 and j == 0) else 1
        x = _Block(self.width * 2 ** i, stride, bottleneck)(x)
    return x


class Trunk(nn.Module):
  """Backbone and RPN head, shared by R2CNN and the Cascade detector.

  Subclasses call `super().setup()` and add their RoI heads, so the
  parameter paths of the shared part (`backbone/...`, `rpn_conv`, ...) are
  the same in both detectors.
  """
  cfg: R2CNNConfig

  def setup(self):
    cfg = self.cfg
    self.backbone = Backbone(cfg.backbone, cfg.width)
    self.rpn_conv = nn.Conv(256, (3, 3))
    self.rpn_cls = nn.Conv(cfg.num_anchors, (1, 1),
                           kernel_init=nn.initializers.normal(0.01))
    self.rpn_box = nn.Conv(4 * cfg.num_anchors, (1, 1),
                           kernel_init=nn.initializers.normal(0.001))

  def features(self, images):
    """`[B, S, S, 3]` uint8 or float -> stride-16 features and RPN outputs.
    """
    x = images.astype(jnp.float32)
    if jnp.issubdtype(images.dtype, jnp.integer):
      x = x / 255.0
    x = (x - 0.45) / 0.25
    feats = self.backbone(x)
    h = nn.relu(self.rpn_conv(feats))
    b = feats.shape[0]
    logits = self.rpn_cls(h).reshape(b, -1)
    deltas = self.rpn_box(h).reshape(b, -1, 4)
    return feats, logits, deltas


class R2CNN(Trunk):
  """Backbone + RPN head + RoI head (see the module docstring)."""

  def setup(self):
    super().setup()
    cfg = self.cfg
    self.fc1 = nn.Dense(cfg.head_dim)
    self.fc2 = nn.Dense(cfg.head_dim)
    self.cls = nn.Dense(cfg.num_classes + 1,
                        kernel_init=nn.initializers.normal(0.01))
    self.aabb = nn.Dense(4, kernel_init=nn.initializers.normal(0.001))
    self.inclined = nn.Dense(5, kernel_init=nn.initializers.normal(0.001))

  def head(self, pooled):
    """`[..., D]` pooled RoI features -> (logits, aabb deltas, inclined)."""
    h = nn.relu(self.fc1(pooled))
    h = nn.relu(self.fc2(h))
    return self.cls(h), self.aabb(h), self.inclined(h)

  def __call__(self, images):  # For init: touches every parameter.
    feats, _, _ = self.features(images)
    rois = jnp.zeros((feats.shape[0], 1, 4)) + jnp.array([0., 0, 32, 32])
    pooled = jax.vmap(functools.partial(
        roi_align.multi_roi_align, spatial_scale=1 / self.cfg.stride))(
            feats, rois)
    return self.head(pooled)


def smooth_l1(x: jax.Array, beta: float) -> jax.Array:
  ax = jnp.abs(x)
  return jnp.where(ax < beta, 0.5 * ax * ax / beta, ax - 0.5 * beta)


#: How `class_counts_with_background` counts background.
BACKGROUND_COUNTS = ('sampled', 'foreground_mean')


def class_counts_with_background(instance_counts: Sequence[float],
                                 positive_fraction: float, *,
                                 background: str = 'sampled') -> np.ndarray:
  """`[K + 1]` counts for the classification loss, background first.

  Classes absent from the training set count as 1 (CI loss needs positive
  counts). Background counts as `background` says:

  * 'sampled': (1 - f) / f times the foreground total, its expected share
    of the sampled RoIs (f the foreground fraction): background is the
    majority class, as in the batches the loss sees, and a count-aware
    loss balances it away like any majority class.
  * 'foreground_mean': the mean foreground count: background is left out
    of the balancing. A loss that depends on the counts only through
    their ratios (logit adjustment, VS, class-balanced weights) then
    balances the object classes against each other, and with equal object
    counts equals cross-entropy.
  """
  v.check_choice('background', background, BACKGROUND_COUNTS)
  counts = np.maximum(np.asarray(instance_counts, np.float64), 1.0)
  if background == 'sampled':
    bg = counts.sum() * (1 - positive_fraction) / positive_fraction
  else:
    bg = counts.mean()
  return np.concatenate([[bg], counts]).astype(np.float32)


def _nms_aabb(boxes, scores, *, iou_threshold, max_output, valid):
  return boxes_lib.nms(boxes, scores, iou_fn=anchors_lib.aabb_iou,
                       iou_threshold=iou_threshold, max_output=max_output,
                       valid=valid)


def proposals(cfg: R2CNNConfig, anchors, logits, deltas, *, num: int):
  """One image's RPN proposals: `(boxes [num, 4], mask [num])`."""
  size = float(cfg.image_size)
  boxes = anchors_lib.decode_aabb(deltas, anchors)
  boxes = jnp.clip(boxes, 0, size)
  wh = boxes[:, 2:] - boxes[:, :2]
  ok = jnp.all(wh >= 2.0, -1)
  scores = jnp.where(ok, logits, -jnp.inf)
  k = min(cfg.pre_nms, scores.shape[0])
  top, idx = jax.lax.top_k(scores, k)
  keep, mask = _nms_aabb(boxes[idx], top, iou_threshold=cfg.rpn_nms,
                         max_output=num, valid=jnp.isfinite(top))
  return boxes[idx][keep], mask


def rpn_loss(cfg: R2CNNConfig, anchors, rpn_logits, rpn_deltas, gt_aabb,
             valid, key) -> tuple[jax.Array, jax.Array]:
  """One image's RPN terms `(objectness, box)` on sampled anchors.

  Anchors with IoU >= 0.7 with a ground-truth box's enclosing axis-aligned
  box (and each box's best anchors) are positive, < 0.3 negative;
  `cfg.rpn_batch` are sampled; binary cross-entropy on objectness and
  smooth-L1 on the positives' deltas, both over the sampled count.
  """
  iou = anchors_lib.aabb_iou(anchors, gt_aabb)
  labels, matched = anchors_lib.assign(iou, valid, positive=0.7,
                                       negative=0.3)
  idx, mask = anchors_lib.sample(key, labels, num=cfg.rpn_batch,
                                 positive_fraction=cfg.rpn_positive_fraction)
  obj = labels[idx] == 1
  bce = optax.sigmoid_binary_cross_entropy(rpn_logits[idx],
                                           obj.astype(jnp.float32))
  n = jnp.maximum(jnp.sum(mask), 1)
  rpn_cls = jnp.sum(jnp.where(mask, bce, 0)) / n
  target = anchors_lib.encode_aabb(gt_aabb[matched[idx]], anchors[idx])
  target = jnp.where(obj[:, None], target, 0)  # No log(0) from padding.
  reg = jnp.sum(smooth_l1(rpn_deltas[idx] - target, 1 / 9), -1)
  return rpn_cls, jnp.sum(jnp.where(mask & obj, reg, 0)) / n


def classification_loss(cfg: R2CNNConfig, logits, classes, counts, mask):
  """`cfg.loss` over the sampled RoIs: mean over `mask` (a scalar).

  Args:
    cfg: its `loss` is the registry loss, hyperparameters bound.
    logits: `[R, K + 1]`, background first.
    classes: `[R]` int, 0 for background.
    counts: `[K + 1]` class counts (`class_counts_with_background`).
    mask: `[R]` bool, False for padding.
  """
  per_roi = cfg.loss(logits, classes, counts)
  return jnp.sum(jnp.where(mask, per_roi, 0)) / jnp.maximum(jnp.sum(mask), 1)


def _image_loss(cfg: R2CNNConfig, model: R2CNN, params, anchors, counts,
                feats, rpn_logits, rpn_deltas, gt, key):
  """Losses of one image. `gt`: dict of padded per-image arrays."""
  k_rpn, k_roi = jax.random.split(key)
  gt_aabb = boxes_lib.rbox_to_aabb(gt['boxes'])
  valid = gt['valid']
  rpn_cls, rpn_box = rpn_loss(cfg, anchors, rpn_logits, rpn_deltas, gt_aabb,
                              valid, k_rpn)
  # --- Proposals (no gradient) plus the ground truth, then sampled RoIs.
  props, pmask = proposals(cfg, anchors, jax.lax.stop_gradient(rpn_logits),
                           jax.lax.stop_gradient(rpn_deltas),
                           num=cfg.post_nms)
  rois = jnp.concatenate([props, gt_aabb])
  rvalid = jnp.concatenate([pmask, valid])
  iou = anchors_lib.aabb_iou(rois, gt_aabb)
  labels, matched = anchors_lib.assign(iou, valid, positive=0.5,
                                       negative=0.5, allow_low_quality=False)
  idx, mask = anchors_lib.sample(k_roi, labels, num=cfg.roi_batch,
                                 positive_fraction=cfg.roi_positive_fraction,
                                 valid=rvalid)
  rois = rois[idx]
  fg = (labels[idx] == 1) & mask
  gt_idx = matched[idx]
  classes = jnp.where(fg, gt['labels'][gt_idx] + 1, 0)
  pooled = roi_align.multi_roi_align(feats, rois,
                                     spatial_scale=1 / cfg.stride)
  logits, aabb, inclined = model.apply({'params': params}, pooled,
                                       method=R2CNN.head)
  head_cls = classification_loss(cfg, logits, classes, counts, mask)
  m = jnp.maximum(jnp.sum(mask), 1)
  t_aabb = anchors_lib.encode_aabb(gt_aabb[gt_idx], rois,
                                   weights=_HEAD_WEIGHTS)
  t_incl = anchors_lib.encode_inclined(
      boxes_lib.rbox_to_inclined(gt['boxes'][gt_idx]), rois,
      weights=_INCLINED_WEIGHTS)
  t_aabb = jnp.where(fg[:, None], t_aabb, 0)
  t_incl = jnp.where(fg[:, None], t_incl, 0)
  reg_aabb = jnp.sum(smooth_l1(aabb - t_aabb, 1.0), -1)
  reg_incl = jnp.sum(smooth_l1(inclined - t_incl, 1.0), -1)
  head_aabb = jnp.sum(jnp.where(fg, reg_aabb, 0)) / m
  head_incl = jnp.sum(jnp.where(fg, reg_incl, 0)) / m
  total = (rpn_cls + rpn_box + head_cls + cfg.lambda_aabb * head_aabb
           + cfg.lambda_inclined * head_incl)
  return total, {'rpn_cls': rpn_cls, 'rpn_box': rpn_box, 'cls': head_cls,
                 'aabb': head_aabb, 'inclined': head_incl,
                 'fg_rois': jnp.sum(fg)}


def make_anchors(cfg: R2CNNConfig) -> np.ndarray:
  s = cfg.feature_size
  return anchors_lib.make_anchors((s, s), cfg.stride, sizes=cfg.anchor_sizes,
                                  ratios=cfg.anchor_ratios)


def batch_loss(params, batch: dict, key: jax.Array, *, cfg: R2CNNConfig,
               model: Trunk, counts: jax.Array, image_loss: Callable
               ) -> tuple[jax.Array, dict]:
  """Batch mean of a per-image loss (R2CNN's or the Cascade detector's).

  The trunk runs once on the batch; `image_loss(cfg, model, params,
  anchors, counts, feats, rpn_logits, rpn_deltas, gt, key)` -> `(total,
  parts)` is mapped over the images, each with its own sampling key.
  """
  feats, logits, deltas = model.apply({'params': params}, batch['images'],
                                      method=Trunk.features)
  anchors = jnp.asarray(make_anchors(cfg))
  keys = jax.random.split(key, feats.shape[0])
  gt = {k: batch[k] for k in ('boxes', 'labels', 'valid')}
  per_image = jax.vmap(functools.partial(
      image_loss, cfg, model, params, anchors, counts))(
          feats, logits, deltas, gt, keys)
  total, parts = jax.tree.map(jnp.mean, per_image)
  return total, parts


def loss_fn(params, batch: dict, key: jax.Array, *, cfg: R2CNNConfig,
            model: R2CNN, counts: jax.Array) -> tuple[jax.Array, dict]:
  """Mean eq. (17) + RPN loss over a batch.

  Args:
    params: model parameters.
    batch: `images [B, S, S, 3]`, `boxes [B, G, 5]` (rotated, padded),
      `labels [B, G]` int (0-based object classes), `valid [B, G]` bool.
    key: PRNG key for anchor and RoI sampling.
    cfg: hyperparameters.
    model: the `R2CNN` module.
    counts: `[K + 1]` class counts, background first.
  """
  return batch_loss(params, batch, key, cfg=cfg, model=model, counts=counts,
                    image_loss=_image_loss)


def optimizer_step(state, key: jax.Array, loss: Callable):
  """`(state, metrics)` after one step on `loss(params, key=key) -> (total,
  parts)`; the key is folded with the step, so sampling follows the step."""
  key = jax.random.fold_in(key, state.step)
  (total, parts), grads = jax.value_and_grad(loss, has_aux=True)(
      state.params, key=key)
  return state.apply_gradients(grads=grads), {'loss': total, **parts}


def train_step(state, batch: dict, key: jax.Array, *, cfg: R2CNNConfig,
               counts: jax.Array):
  """One optimizer step: `(state, metrics)`; jit with cfg bound."""
  return optimizer_step(state, key, functools.partial(
      loss_fn, batch=batch, cfg=cfg, model=R2CNN(cfg), counts=counts))


def select_detections(cfg: R2CNNConfig, rboxes, probs, valid) -> dict:
  """One image's final detections from scored rotated boxes.

  Each box takes its best object class; boxes scoring at or below
  `cfg.score_threshold`, under a pixel a side, or not `valid` are dropped;
  per-class rotated NMS at `cfg.test_nms` keeps `cfg.max_detections`.

  Args:
    cfg: inference settings.
    rboxes: `[R, 5]` rotated boxes.
    probs: `[R, K]` object-class probabilities (background left out).
    valid: `[R]` bool.

  Returns:
    dict of `boxes [D, 5]`, `scores [D]`, `labels [D]` (0-based),
    `mask [D]`, D = `cfg.max_detections`.
  """
  label = jnp.argmax(probs, -1)
  score = jnp.max(probs, -1)
  ok = valid & (score > cfg.score_threshold) & (rboxes[:, 2] > 1) & (
      rboxes[:, 3] > 1)
  # Per-class NMS in one call: classes are moved apart.
  shifted = rboxes.at[:, 0].add(label * 4.0 * cfg.image_size)
  keep, kmask = boxes_lib.rotated_nms(
      shifted, score, iou_threshold=cfg.test_nms,
      max_output=cfg.max_detections, valid=ok)
  return {'boxes': rboxes[keep], 'scores': jnp.where(kmask, score[keep], 0),
          'labels': label[keep], 'mask': kmask}


def detect(params, images: jax.Array, *, cfg: R2CNNConfig) -> dict:
  """Inference: rotated detections per image, fixed size with a mask.

  Returns:
    dict of `boxes [B, D, 5]` (rotated), `scores [B, D]`, `labels [B, D]`
    (0-based object classes), `mask [B, D]`, D = cfg.max_detections.
  """
  model = R2CNN(cfg)
  feats, logits, deltas = model.apply({'params': params}, images,
                                      method=R2CNN.features)
  anchors = jnp.asarray(make_anchors(cfg))

  def one(feat, logit, delta):
    rois, rmask = proposals(cfg, anchors, logit, delta,
                            num=cfg.test_proposals)
    pooled = roi_align.multi_roi_align(feat, rois,
                                       spatial_scale=1 / cfg.stride)
    cls, _, incl = model.apply({'params': params}, pooled,
                               method=R2CNN.head)
    inclined = anchors_lib.decode_inclined(incl, rois,
                                           weights=_INCLINED_WEIGHTS)
    return select_detections(cfg, boxes_lib.inclined_to_rbox(inclined),
                             jax.nn.softmax(cls, -1)[:, 1:], rmask)

  return jax.vmap(one)(feats, logits, deltas)


def init_module(model: Trunk, key: jax.Array) -> Any:
  """Parameters of a detector module (its `__call__` touches them all)."""
  size = model.cfg.image_size
  images = jnp.zeros((1, size, size, 3), jnp.uint8)
  # Jitted: run op by op, the ResNet's initialisation is slow on a CPU.
  return jax.jit(model.init)(key, images)['params']


def init_params(cfg: R2CNNConfig, key: jax.Array) -> Any:
  return init_module(R2CNN(cfg), key)


def validate(cfg: R2CNNConfig, counts: Optional[Sequence] = None) -> None:
  _stages(cfg.backbone)
  if cfg.image_size % cfg.stride:
    raise ValueError(f'image_size must be a multiple of {cfg.stride}, got '
                     f'{cfg.image_size}.')
  if counts is not None and len(counts) != cfg.num_classes:
    raise ValueError(f'{len(counts)} class counts for {cfg.num_classes} '
                     f'classes.')
