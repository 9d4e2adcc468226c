"""A Cascade R-CNN (Cai and Vasconcelos 2018) for rotated boxes.

The paper's second detector, "a Cascade network modified for skew boxes"
(its best result, Tables V-VII). It shares R2CNN's trunk (`r2cnn.Trunk`:
ResNet backbone and RPN, the same parameter paths), anchors, proposals, RPN
loss, classification losses and post-processing; what differs is the RoI
part:

* stages (three by default), each a head of two dense layers with its own
  class logits (background is class 0; any `cil.losses` registry loss, with
  R2CNN's class counts) and class-agnostic rotated-box deltas
  (`anchors.encode_rbox`: centre offsets in the RoI's frame, log sizes and
  an angle difference to the nearest equivalent form of the box);
* each stage pools its RoIs with `roi_align.rotated_roi_align`, in the
  RoI's own frame, at `pooled_size`;
* stage 1 refines the RPN's axis-aligned proposals (as rotated boxes with
  theta = 0); stage t + 1 refines stage t's boxes (no gradient through
  them), so each stage sees better boxes than the one before;
* training: each stage adds the ground truth to its candidates, labels them
  with its own IoU threshold (`stage_ious`, 0.5 / 0.6 / 0.7: positive at or
  above it, background below), samples `roi_batch` RoIs with
  `roi_positive_fraction` foreground, and adds `stage_loss_weights[t]` x
  (classification + `lambda_inclined` x smooth-L1 on the deltas). The
  regression targets of stage t are scaled by (t + 1) x (10, 10, 5, 5, 10)
  (Cascade R-CNN's shrinking target deviations, 0.1 / 0.05 / 0.033). Stage
  t + 1's candidates are stage t's refined sampled RoIs (those that were
  ground-truth copies left out) plus the ground truth;
* IoU with the ground truth is the exact rotated IoU
  (`boxes.rotated_iou`), except that with `first_stage_aabb_match` stage 1
  measures its axis-aligned proposals against the ground truth's enclosing
  axis-aligned boxes, as R2CNN and RoI Transformer do. An axis-aligned box
  around a thin ship at 45 degrees has a rotated IoU of about 2 h / w with
  it (0.25 at 8:1), so with the rotated IoU at 0.5 stage 1 would see almost
  no diagonal ship but the ground-truth copies;
* inference: every stage refines the boxes in turn; the class scores are
  the mean of the stages' softmax outputs on the last stage's input RoIs
  (Cascade R-CNN's ensemble), the boxes the last stage's output.

Every shape is fixed, so a train step is one jitted function; the training
loop, resume, evaluation and `launch.detect` are R2CNN's
(`--config.detector=cascade`).
"""

import dataclasses
import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cil.detection import anchors as anchors_lib
from cil.detection import boxes as boxes_lib
from cil.detection import r2cnn
from cil.detection import roi_align

__all__ = [
    'CascadeConfig',
    'CascadeRCNN',
    'detect',
    'init_params',
    'loss_fn',
    'pool',
    'refine',
    'stage_fields',
    'stage_targets',
    'stage_weights',
    'StageHead',
    'train_step',
    'validate',
]

_RBOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0, 10.0)


@dataclasses.dataclass(frozen=True)
class CascadeConfig(r2cnn.R2CNNConfig):
  """R2CNN's settings (trunk, RPN, sampling, loss, inference) plus:

  Attributes:
    stage_ious: each stage's IoU threshold for foreground, increasing.
    stage_loss_weights: each stage's weight in the total loss.
    pooled_size: (ph, pw) bins of the rotated RoIAlign.
    first_stage_aabb_match: stage 1 matches its axis-aligned proposals by
      axis-aligned IoU with the ground truth's enclosing boxes (see the
      module docstring); False uses the rotated IoU in every stage.

  `lambda_inclined` weights the rotated-box term; `lambda_aabb` is R2CNN's
  only.
  """
  stage_ious: tuple = (0.5, 0.6, 0.7)
  stage_loss_weights: tuple = (1.0, 0.5, 0.25)
  pooled_size: tuple = (7, 7)
  first_stage_aabb_match: bool = True

  @property
  def num_stages(self) -> int:
    return len(self.stage_ious)


def stage_fields() -> tuple:
  """The fields `CascadeConfig` adds to `R2CNNConfig` (the config file's
  `cascade` block)."""
  base = {f.name for f in dataclasses.fields(r2cnn.R2CNNConfig)}
  return tuple(f.name for f in dataclasses.fields(CascadeConfig)
               if f.name not in base)


def stage_weights(stage: int) -> tuple:
  """Regression-target scale of a stage (0-based): (t + 1) x (10, 10, 5,
  5, 10)."""
  return tuple(w * (stage + 1) for w in _RBOX_WEIGHTS)


class StageHead(nn.Module):
  """Pooled features `[R, D]` -> (logits `[R, K + 1]`, deltas `[R, 5]`)."""
  num_classes: int
  head_dim: int

  @nn.compact
  def __call__(self, pooled):
    h = nn.relu(nn.Dense(self.head_dim, name='fc1')(pooled))
    h = nn.relu(nn.Dense(self.head_dim, name='fc2')(h))
    logits = nn.Dense(self.num_classes + 1, name='cls',
                      kernel_init=nn.initializers.normal(0.01))(h)
    deltas = nn.Dense(5, name='rbox',
                      kernel_init=nn.initializers.normal(0.001))(h)
    return logits, deltas


class CascadeRCNN(r2cnn.Trunk):
  """R2CNN's trunk and `cfg.num_stages` stage heads (`stages_0`, ...)."""
  cfg: CascadeConfig

  def setup(self):
    super().setup()
    self.stages = [StageHead(self.cfg.num_classes, self.cfg.head_dim)
                   for _ in range(self.cfg.num_stages)]

  def stage(self, pooled, index: int):
    return self.stages[index](pooled)

  def __call__(self, images):  # For init: touches every parameter.
    feats, _, _ = self.features(images)
    pooled = pool(self.cfg, feats[0], jnp.array([[16., 16, 32, 32, 0]]))
    return [head(pooled) for head in self.stages]


def pool(cfg: CascadeConfig, feats, rois):
  """One image's rotated RoIAlign, flattened: `[R, ph * pw * C]`."""
  pooled = roi_align.rotated_roi_align(feats, rois,
                                       output_size=tuple(cfg.pooled_size),
                                       spatial_scale=1 / cfg.stride)
  return pooled.reshape(rois.shape[0], -1)


def refine(deltas, rois, stage: int):
  """Stage `stage`'s boxes from its RoIs, in canonical form, no gradient."""
  boxes = anchors_lib.decode_rbox(deltas, rois, weights=stage_weights(stage))
  return jax.lax.stop_gradient(boxes_lib.canonical_rbox(boxes))


def stage_targets(cfg: CascadeConfig, stage: int, candidates, cvalid,
                  gt_boxes, gt_labels, gt_valid, key):
  """Sampled RoIs of one stage and their training targets.

  Args:
    cfg: thresholds and sampling sizes.
    stage: 0-based stage index (its IoU threshold and target scale).
    candidates: `[N, 5]` rotated boxes (the ground truth already appended).
    cvalid: `[N]` bool.
    gt_boxes, gt_labels, gt_valid: `[G, 5]`, `[G]` (0-based), `[G]` bool.
    key: PRNG key for the sampling.

  Returns:
    dict of `idx [R]` (into candidates), `mask [R]` (sampled), `fg [R]`,
    `classes [R]` (0 background, else label + 1) and `deltas [R, 5]`
    (zero where not foreground), R = `cfg.roi_batch`.
  """
  if stage == 0 and cfg.first_stage_aabb_match:
    iou = anchors_lib.aabb_iou(boxes_lib.rbox_to_aabb(candidates),
                               boxes_lib.rbox_to_aabb(gt_boxes))
  else:
    iou = boxes_lib.rotated_iou(candidates, gt_boxes)
  threshold = cfg.stage_ious[stage]
  labels, matched = anchors_lib.assign(iou, gt_valid, positive=threshold,
                                       negative=threshold,
                                       allow_low_quality=False)
  idx, mask = anchors_lib.sample(key, labels, num=cfg.roi_batch,
                                 positive_fraction=cfg.roi_positive_fraction,
                                 valid=cvalid)
  fg = (labels[idx] == 1) & mask
  gt_idx = matched[idx]
  deltas = anchors_lib.encode_rbox(gt_boxes[gt_idx], candidates[idx],
                                   weights=stage_weights(stage))
  return {'idx': idx, 'mask': mask, 'fg': fg,
          'classes': jnp.where(fg, gt_labels[gt_idx] + 1, 0),
          'deltas': jnp.where(fg[:, None], deltas, 0)}


def _image_loss(cfg: CascadeConfig, model: CascadeRCNN, params, anchors,
                counts, feats, rpn_logits, rpn_deltas, gt, key):
  """Losses of one image (`r2cnn.batch_loss`'s per-image function)."""
  keys = jax.random.split(key, 1 + cfg.num_stages)
  gt_boxes, valid = gt['boxes'], gt['valid']
  rpn_cls, rpn_box = r2cnn.rpn_loss(cfg, anchors, rpn_logits, rpn_deltas,
                                    boxes_lib.rbox_to_aabb(gt_boxes), valid,
                                    keys[0])
  props, boxes_valid = r2cnn.proposals(
      cfg, anchors, jax.lax.stop_gradient(rpn_logits),
      jax.lax.stop_gradient(rpn_deltas), num=cfg.post_nms)
  boxes = boxes_lib.aabb_to_rbox(props)
  total = rpn_cls + rpn_box
  parts = {'rpn_cls': rpn_cls, 'rpn_box': rpn_box}
  for t in range(cfg.num_stages):
    candidates = jnp.concatenate([boxes, gt_boxes])
    cvalid = jnp.concatenate([boxes_valid, valid])
    tg = stage_targets(cfg, t, candidates, cvalid, gt_boxes, gt['labels'],
                       valid, keys[t + 1])
    rois = candidates[tg['idx']]
    logits, deltas = model.apply({'params': params}, pool(cfg, feats, rois),
                                 t, method=CascadeRCNN.stage)
    cls = r2cnn.classification_loss(cfg, logits, tg['classes'], counts,
                                    tg['mask'])
    reg = jnp.sum(r2cnn.smooth_l1(deltas - tg['deltas'], 1.0), -1)
    reg = jnp.sum(jnp.where(tg['fg'], reg, 0)) / jnp.maximum(
        jnp.sum(tg['mask']), 1)
    total = total + cfg.stage_loss_weights[t] * (
        cls + cfg.lambda_inclined * reg)
    parts.update({f'cls{t + 1}': cls, f'rbox{t + 1}': reg,
                  f'fg{t + 1}': jnp.sum(tg['fg'])})
    # The next stage's candidates: these RoIs refined, ground-truth copies
    # left out (the next stage appends the ground truth again).
    boxes = refine(deltas, rois, t)
    boxes_valid = tg['mask'] & (tg['idx'] < boxes_valid.shape[0])
  return total, parts


def loss_fn(params, batch: dict, key: jax.Array, *, cfg: CascadeConfig,
            model: CascadeRCNN, counts: jax.Array) -> tuple[jax.Array, dict]:
  """Mean Cascade loss (RPN + every stage's weighted terms) over a batch.

  Arguments as `r2cnn.loss_fn`. The parts are `rpn_cls`, `rpn_box` and, for
  stage t = 1, 2, ..., `cls<t>`, `rbox<t>` and `fg<t>` (foreground RoIs).
  """
  return r2cnn.batch_loss(params, batch, key, cfg=cfg, model=model,
                          counts=counts, image_loss=_image_loss)


def train_step(state, batch: dict, key: jax.Array, *, cfg: CascadeConfig,
               counts: jax.Array):
  """One optimizer step: `(state, metrics)`; jit with cfg bound."""
  return r2cnn.optimizer_step(state, key, functools.partial(
      loss_fn, batch=batch, cfg=cfg, model=CascadeRCNN(cfg), counts=counts))


def detect(params, images: jax.Array, *, cfg: CascadeConfig) -> dict:
  """Inference: rotated detections per image (as `r2cnn.detect`).

  Every stage refines the proposals in turn; scores average the stages'
  class probabilities on the last stage's input RoIs.
  """
  model = CascadeRCNN(cfg)
  feats, logits, deltas = model.apply({'params': params}, images,
                                      method=CascadeRCNN.features)
  anchors = jnp.asarray(r2cnn.make_anchors(cfg))

  def head(pooled, t):
    return model.apply({'params': params}, pooled, t,
                       method=CascadeRCNN.stage)

  def one(feat, logit, delta):
    props, valid = r2cnn.proposals(cfg, anchors, logit, delta,
                                   num=cfg.test_proposals)
    rois = boxes_lib.aabb_to_rbox(props)
    last = cfg.num_stages - 1
    for t in range(last):
      _, stage_deltas = head(pool(cfg, feat, rois), t)
      rois = refine(stage_deltas, rois, t)
    pooled = pool(cfg, feat, rois)
    outputs = [head(pooled, t) for t in range(cfg.num_stages)]
    probs = jnp.mean(jnp.stack([jax.nn.softmax(cls, -1)
                                for cls, _ in outputs]), 0)
    boxes = anchors_lib.decode_rbox(outputs[last][1], rois,
                                    weights=stage_weights(last))
    return r2cnn.select_detections(cfg, boxes, probs[:, 1:], valid)

  return jax.vmap(one)(feats, logits, deltas)


def init_params(cfg: CascadeConfig, key: jax.Array) -> Any:
  return r2cnn.init_module(CascadeRCNN(cfg), key)


def validate(cfg: CascadeConfig, counts: Optional[Sequence] = None) -> None:
  """R2CNN's checks plus the stages' (named errors)."""
  r2cnn.validate(cfg, counts)
  ious = tuple(cfg.stage_ious)
  if not ious or any(not 0 < x < 1 for x in ious) or any(
      b <= a for a, b in zip(ious, ious[1:])):
    raise ValueError(f'cascade.stage_ious must be increasing IoU thresholds '
                     f'in (0, 1), one per stage; got {ious}.')
  weights = tuple(cfg.stage_loss_weights)
  if len(weights) != len(ious) or any(not w >= 0 for w in weights):
    raise ValueError(f'cascade.stage_loss_weights must hold one weight >= 0 '
                     f'per stage ({len(ious)} stages); got {weights}.')
  size = tuple(cfg.pooled_size)
  if len(size) != 2 or any(int(s) != s or s < 1 for s in size):
    raise ValueError(f'cascade.pooled_size must be two positive integers '
                     f'(ph, pw); got {size}.')
