r"""Rotated-box ship detection, CE vs focal vs CI (Tables V-VII): launch.detect.

Variants (`--config=configs/detect.py:VARIANT`):

* `default`: the embedded default. 200 + 50 generated 256x256 harbour
  scenes (ships at their 512-pixel sizes) written into the workdir, R2CNN
  with a ResNet-18 of width 16, CI loss, 1500 steps of 4 images, evaluated
  at rotated IoU > 0.6 (about 10 minutes on 2 CPU cores;
  docs/performance.md):

      python -m launch.detect

* `smoke`: the whole path in a minute or two (16 + 4 scenes of 128 px, 6
  steps):

      python -m launch.detect --config=configs/detect.py:smoke

* `hrsc`, `dota`: a folder with train/ and test/ in HRSC2016's layout
  (AllImages/, Annotations/) or DOTA's (images/, labelTxt/), ResNet-50 at
  width 64 on 800-pixel images (for a GPU):

      python -m launch.detect --config=configs/detect.py:hrsc \
          --config.data=/data/hrsc --workdir=results/hrsc_ci

Every variant trains R2CNN; `--config.detector=cascade` trains the rotated
Cascade R-CNN (`cil.detection.cascade`) instead, with the same trunk,
sampling, loss and budget, and its stages set in the `cascade` block
(`--config.cascade.stage_ious=0.5,0.6,0.7`):

    python -m launch.detect --config.detector=cascade \
        --workdir=results/detect_cascade

Any field can be overridden: `--config.model.loss=focal`,
`--config.loss_hparams.focal.gamma=0.5`, `--config.steps=2500`. The model's
proposal and sampling budgets are set per variant from the image size
(`r2cnn.scaled_config`'s rule, `_model` below); override them one by one
if you change `model.image_size`.
"""

import dataclasses

import ml_collections

from cil.detection import cascade
from cil.detection import r2cnn
from configs import common

VARIANTS = ('default', 'smoke', 'hrsc', 'dota')


def _model(*, image_size: int, width: int, backbone: str
           ) -> ml_collections.ConfigDict:
  """R2CNN's settings (`cil.detection.r2cnn.R2CNNConfig`, less
  `num_classes`, which comes from the data) for this image size and width,
  as `r2cnn.scaled_config` chooses them (its rule, stated once there: small
  images, <= 256 px, keep 600 / 128 proposals and sample 128 anchors and
  64 RoIs, larger ones 2000 / 512, 256 and 256; narrow backbones, width <
  64, get a 256-wide head, others 1024), with the CI loss (a `cil.losses`
  registry name or spec; its hyperparameters are `loss_hparams`)."""
  model = dataclasses.asdict(r2cnn.scaled_config(
      image_size=image_size, width=width, backbone=backbone))
  del model['num_classes']
  model['loss'] = 'ci'
  return ml_collections.ConfigDict(model)


def get_config(arg=None) -> ml_collections.ConfigDict:
  """The config of `arg` (one of `VARIANTS`; None is 'default')."""
  variant = common.split_variant(arg, VARIANTS)
  c = ml_collections.ConfigDict()
  # Data: a folder with train/ and test/; None generates synthetic ships
  # (synthetic_* below) into <workdir>/data.
  c.data = ml_collections.config_dict.placeholder(str)
  c.synthetic_train = 200
  c.synthetic_test = 50
  c.synthetic_ship_scale = 1.0  # 1.0: small scenes are crops of 512-px ones
  # 'train', 'eval' or 'both'.
  c.mode = 'both'
  # 'r2cnn' or 'cascade'. The model block is R2CNN's settings
  # (`cil.detection.r2cnn.R2CNNConfig`), shared by both detectors; model.loss
  # is the classification loss, loss_hparams its hyperparameters. The
  # cascade block is what the Cascade adds (`cascade.CascadeConfig`; unused
  # by R2CNN).
  c.detector = 'r2cnn'
  # Its stages at `cascade.CascadeConfig`'s defaults (stated there):
  # stage_ious (0.5, 0.6, 0.7), stage_loss_weights (1.0, 0.5, 0.25),
  # pooled_size (7, 7), first_stage_aabb_match True.
  c.cascade = ml_collections.ConfigDict(
      {k: getattr(cascade.CascadeConfig, k) for k in cascade.stage_fields()})
  c.model = _model(image_size=256, width=16, backbone='resnet18')
  # The paper's base-10 logarithms (the losses' default is natural).
  c.loss_hparams = common.loss_hparams(log_base=common.PAPER_LOG_BASE)
  # How the loss counts background (r2cnn.class_counts_with_background):
  # 'sampled', its expected share of the sampled RoIs (the majority class,
  # balanced away by LA, VS and cb); 'foreground_mean', the mean ship
  # count (left out of their balancing).
  c.background_count = 'sampled'
  # Optimisation: Adam, cosine decay with 2 % warm-up, clipping at 10.
  c.steps = 1500
  c.batch_size = 4
  c.lr = 1e-3
  c.max_gt = 32  # ground-truth boxes per image (padding)
  c.seed = 0
  c.checkpoint_every = 250
  # Optional .npz of parameters keyed by path (e.g. ImageNet backbone).
  c.pretrained = ml_collections.config_dict.placeholder(str)

  if variant == 'smoke':
    c.model = _model(image_size=128, width=8, backbone='resnet18')
    c.model.head_dim = 64
    c.model.pre_nms = 200
    c.model.post_nms = 64
    c.synthetic_train = 16
    c.synthetic_test = 4
    c.steps = 6
    c.batch_size = 2
    c.checkpoint_every = 3
  elif variant in ('hrsc', 'dota'):
    c.model = _model(image_size=800, width=64, backbone='resnet50')
    c.steps = 40000
    c.batch_size = 2
    c.checkpoint_every = 1000
  return c
