"""The detection experiment's settings: `TrainConfig` (from a
`configs/detect.py` config; R2CNN's or the Cascade's model block) and the
detectors by name (`DETECTORS`)."""

import dataclasses
import math
import os
from typing import Any, Optional

from cil import _validation as v
from cil import losses as losses_lib
from cil.detection import cascade
from cil.detection import r2cnn


#: name -> (model config class, module with init_params, train_step,
#: detect and validate).
DETECTORS = {'r2cnn': (r2cnn.R2CNNConfig, r2cnn),
             'cascade': (cascade.CascadeConfig, cascade)}


def detector_module(model: r2cnn.R2CNNConfig):
  """The module (`r2cnn` or `cascade`) that trains and runs `model`, looked
  up by its config class in `DETECTORS`."""
  for config_cls, module in DETECTORS.values():
    # Exact class: CascadeConfig subclasses R2CNNConfig.
    if type(model) is config_cls:  # pylint: disable=unidiomatic-typecheck
      return module
  raise ValueError(f'No detector takes a {type(model).__name__}; known: '
                   f'{", ".join(c.__name__ for c, _ in DETECTORS.values())}.')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """What `run` trains and how; build it with `TrainConfig.from_config`.

  `configs/detect.py` states every default, once.

  Attributes:
    detector: 'r2cnn' (`cil.detection.r2cnn`) or 'cascade'
      (`cil.detection.cascade`).
    model: the detector's configuration (`R2CNNConfig`, or `CascadeConfig`
      for 'cascade'); its `num_classes` is set from the data.
    data: a folder with train/ and test/ (DOTA or HRSC2016 layout); None
      generates synthetic ships into the workdir.
    mode: 'train', 'eval' or 'both'.
    steps: optimizer steps.
    batch_size: images per step.
    lr: peak Adam learning rate (cosine decay, 2 % warm-up).
    max_gt: ground-truth boxes per image (padding; more are an error).
    seed: initialisation, batch order and sampling.
    checkpoint_every: steps between checkpoints.
    synthetic_train, synthetic_test: images generated when no data is given.
    synthetic_ship_scale: their ships' size factor (`make_scene`'s
      `ship_scale`); 1.0 keeps the 512-pixel sizes at any image size, so
      small images are like crops of a 512-pixel harbour.
    pretrained: optional .npz of parameters keyed by path (`load_pretrained`).
    background_count: how the classification loss counts background
      (`r2cnn.class_counts_with_background`: 'sampled', its share of the
      sampled RoIs, the majority class; 'foreground_mean', left out of a
      count-aware loss's balancing).
  """
  detector: str
  model: r2cnn.R2CNNConfig
  data: Optional[str]
  mode: str
  steps: int
  batch_size: int
  lr: float
  max_gt: int
  seed: int
  checkpoint_every: int
  synthetic_train: int
  synthetic_test: int
  synthetic_ship_scale: float
  pretrained: Optional[str]
  background_count: str

  @classmethod
  def from_config(cls, config: Any) -> 'TrainConfig':
    """From a `configs/detect.py` config (a ConfigDict or a dict)."""
    c = dict(config)
    hparams = losses_lib.freeze_hparams(c.pop('loss_hparams', {}))
    stages = dict(c.pop('cascade', {}))
    c = v.config_fields(c, cls, 'detect config')
    detector = c.get('detector')
    if detector not in DETECTORS:
      raise ValueError(f'Unknown detector {detector!r} (--config.detector); '
                       f'known: {", ".join(DETECTORS)}.')
    model = v.config_fields(c['model'], r2cnn.R2CNNConfig, 'model config')
    if detector == 'cascade':
      known = cascade.stage_fields()
      unknown = sorted(set(stages) - set(known))
      if unknown:
        raise ValueError(f'Unknown cascade config field(s): '
                         f'{", ".join(unknown)}; known: {", ".join(known)}.')
      model.update(stages)
    for k in ('anchor_sizes', 'anchor_ratios', 'stage_ious',
              'stage_loss_weights', 'pooled_size'):
      if k in model:
        model[k] = tuple(model[k])
    # The model block's loss spec (R2CNNConfig's default where it names
    # none) with its hyperparameters from the table: one LossSpec.
    model['loss'] = losses_lib.get_loss(
        model.get('loss', r2cnn.R2CNNConfig.loss), hparams)
    c['model'] = DETECTORS[detector][0](**model)
    return cls(**c)

  def validate(self) -> None:
    """Checks every field before any work (or workdir) is touched."""
    detector_module(self.model).validate(self.model)
    if self.mode not in ('train', 'eval', 'both'):
      raise ValueError(f"mode must be 'train', 'eval' or 'both', got "
                       f'{self.mode!r}.')
    v.check_positive_fields(self, ('steps', 'batch_size', 'max_gt',
                                   'checkpoint_every', 'synthetic_train',
                                   'synthetic_test'), 'detect config')
    if not math.isfinite(self.lr):
      raise ValueError(f'lr is non-finite ({self.lr}); it must be a finite '
                       f'positive number.')
    if self.lr <= 0:
      raise ValueError(f'lr must be positive, got {self.lr}.')
    if not self.synthetic_ship_scale > 0:
      raise ValueError(f'synthetic_ship_scale must be positive, got '
                       f'{self.synthetic_ship_scale}.')
    v.check_choice('background_count (--config.background_count)',
                   self.background_count, r2cnn.BACKGROUND_COUNTS)
    if self.seed < 0:
      raise ValueError(f'seed must be >= 0, got {self.seed}.')
    if self.pretrained and not os.path.exists(self.pretrained):
      raise ValueError(f'pretrained weights file {self.pretrained!r} does '
                       f'not exist.')
