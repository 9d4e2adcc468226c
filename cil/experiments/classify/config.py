"""The classification experiment's settings: `ClassifyConfig`, built from a
`configs/classify.py` config, checked before any work, resolved against the
backend policy once (`resolve`, in `run`): the resolved config holds every
backend choice as a plain value, is what the code below `run` reads, and is
what a run records."""

import dataclasses
import math
from typing import Any, Optional

from cil import _validation as v
from cil import data
from cil import losses
from cil import metrics
from cil import models
from cil import runtime
from cil.experiments.classify import decouple


#: The model each built-in dataset gets when `model` is '' (others: LeNet).
DEFAULT_MODELS = {'digits': 'digits_cnn', 'mnist': 'lenet',
                  'mstar_soc': 'aconvnet', 'cifar10': 'resnet32',
                  'cifar100': 'resnet32'}


#: '' (none); 'crop_flip' (pad 4, random crop, flip: the CIFAR references',
#: on the device, in the compiled step); 'resized_crop_flip' (random-resized
#: crop + flip of the stored image, and resize + centre crop of the test
#: images: the ImageNet-LT / iNaturalist / Places-LT references', on the
#: host as a streamed split is read; `cil.data.transforms`);
#: 'resized_crop_flip_jitter' (the same and torchvision's
#: `ColorJitter(0.4, 0.4, 0.4)`: ImageNet-LT's and Places-LT's).
AUGMENTATIONS = ('', 'crop_flip', 'resized_crop_flip',
                 'resized_crop_flip_jitter')
#: The host augmentations (of a streamed split, as it is read).
HOST_AUGMENTATIONS = ('resized_crop_flip', 'resized_crop_flip_jitter')
#: The fields a cell of `ClassifyConfig.cells` may set (besides its loss):
#: what the references vary between the rows of one table.
CELL_FIELDS = ('loss', 'model', 'dtype', 'lr', 'optimizer', 'weight_decay',
               'lr_warmup_epochs', 'lr_schedule', 'lr_decay_epochs',
               'lr_decay_factor',
               'augment', 'drw_epoch', 'drw_beta', 'sampler')


def _input_norm(value) -> tuple[tuple[float, ...], ...]:
  """`input_norm` as `((mean_c, ...), (std_c, ...))` of floats, or ()."""
  if value is None or (isinstance(value, (list, tuple)) and not value):
    return ()
  try:
    mean, std = (tuple(float(x) for x in part) for part in value)
  except (TypeError, ValueError):
    raise ValueError(
        f'input_norm must be (mean per channel, std per channel), e.g. '
        f'((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)); got '
        f'{value!r}.') from None
  if not mean or len(mean) != len(std):
    raise ValueError(f'input_norm: {len(mean)} means and {len(std)} stds; '
                     f'give one of each per image channel.')
  if not all(math.isfinite(x) for x in mean + std) or min(std) <= 0:
    raise ValueError(f'input_norm: the means must be finite and the stds '
                     f'finite and > 0, got {value!r}.')
  return (mean, std)


def _frozen_cells(cells) -> tuple:
  """`{name: {field: value}}` (a ConfigDict or mapping; or the frozen
  form) as `((name, ((field, value), ...)), ...)`, lists as tuples, the
  loss canonical."""
  def as_dict(x) -> dict:
    return x.to_dict() if hasattr(x, 'to_dict') else dict(x)

  if not cells:
    return ()
  out = []
  for name, fields in as_dict(cells).items():
    fields = as_dict(fields)
    if 'loss' in fields:
      fields['loss'] = losses.canonical_spec(str(fields['loss']))
    out.append((str(name), tuple(sorted(
        (k, tuple(x) if isinstance(x, list) else x)
        for k, x in fields.items()))))
  return tuple(out)


#: The taus post-hoc logit adjustment and tau-normalisation choose from
#: on a validation split (Menon et al. and Kang et al. search such grids).
TAU_GRID = tuple(x / 4 for x in range(9))  # 0, 0.25, ..., 2


#: The ones the compiled step applies.
DEVICE_AUGMENTATIONS = ('crop_flip',)

#: The protocols a run gets when `protocols` is empty: the built-in sets are
#: made imbalanced as the paper's Table I (odd classes at 10 %); your own
#: data (`folder:`, `npz:`, `tfds:`) is kept as it is.
DEFAULT_PROTOCOLS = ('odd10',)
OWN_DATA_PROTOCOLS = ('all',)


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
  """Everything that defines a classification experiment.

  Build it from a config file with `ClassifyConfig.from_config`
  (`configs/classify.py` states every default, once).

  Attributes:
    dataset: 'digits' (embedded), 'mnist', 'mstar_soc', 'cifar10',
      'cifar100', the long-tail benchmarks 'imagenet_lt', 'places_lt',
      'inaturalist2018' (`cil.data.longtail`); or your own data:
      'folder:/path', 'npz:/path.npz' or 'tfds:NAME[/CONFIG][:VERSION]'
      (`cil.data.custom`).
    image_size: for `folder:` data, 0 keeps the images' common size; S
      resizes and centre-crops every image to S x S; for the long-tail
      benchmarks, the size they are held at in memory (0: 64).
    input_pipeline: 'memory' (every split decoded in memory, on the
      device), 'stream' (labels in memory, images read by index through
      Grain as each chunk of steps needs them: `cil.data.stream`; the
      same images in the same order, so the same result), or '' for the
      data's size (`cil.data.default_pipeline`: streamed past 256 MiB of
      decoded training images); resolved and recorded by `run`.
    test_fraction: for a `folder:` without train/ and test/, each class's
      share of test images (split with seed 0, the same for every run).
    image_feature, label_feature: the features of a `tfds:` dataset.
    protocols: imbalance protocols (`cil.data.get_protocol` specs); ()
      picks the dataset's (`DEFAULT_PROTOCOLS` for a built-in set, every
      example of your own data and of the long-tail benchmarks:
      `OWN_DATA_PROTOCOLS`).
    losses: the run's rows: loss specs (`cil.losses.split_spec`: a
      registry name, or `name:key=value,...` for a variant such as
      `ci:high_exponent=0.5`), canonical (`cil.losses.canonical_spec`), or
      names of `cells`.
    cells: rows trained with settings of their own, as the references
      train each row of their tables: name -> the row's `loss` and the
      fields it sets (`CELL_FIELDS`), e.g. `{'ldam_drw': {'loss': 'ldam',
      'model': 'resnet32_normed', 'drw_epoch': 160}}`; frozen as
      `((name, ((field, value), ...)), ...)`. A `losses` entry that names
      a cell runs it (`for_cell`); the others run with the run's settings.
    loss_hparams: per-loss keyword arguments keyed by canonical name, as
      hashable nested tuples (`(('focal', (('gamma', 2.0), ...)), ...)`).
    model: a `cil.models` name; '' picks the dataset's default.
    dtype: the models' computation, 'float32' or 'bfloat16' (mixed
      precision, as Flax's ImageNet example: float32 parameters, optimizer
      state and loss).
    seeds: random samplings per (protocol, loss) (paper: 20 MNIST, 100 MSTAR).
    first_seed: seeds are first_seed .. first_seed + seeds - 1.
    epochs: passes over each seed's imbalanced training set.
    batch_size: examples per step (per seed).
    lr: learning rate.
    optimizer: 'adam' or 'sgd' (with momentum 0.9).
    weight_decay: decoupled weight decay (AdamW / SGD + decay); 0 for none.
    lr_warmup_epochs: W: epoch e < W runs at lr (e + 1) / W (Cao et al.:
      5, their code's per-epoch steps); 0 for none.
    lr_schedule: 'step' (`lr_decay_epochs`, `lr_decay_factor`) or 'cosine'
      (lr (1 + cos(pi e / E)) / 2 in epoch e of E, stepped per epoch as
      Kang et al.'s `CosineAnnealingLR`).
    lr_decay_epochs: epochs after which the learning rate is multiplied by
      `lr_decay_factor` (Cao et al.: (160, 180) with 0.1).
    lr_decay_factor: see `lr_decay_epochs`.
    augment: '' (none), 'crop_flip': random crops of the image
      zero-padded by 4 and random horizontal flips (the CIFAR standard, on
      the device), or 'resized_crop_flip': random-resized crops of the
      stored image at the run's image size and flips, test images resized
      and centre-cropped (the ImageNet-LT standard, decoded on the fly:
      needs the streamed input pipeline), or 'resized_crop_flip_jitter'
      (the same with ImageNet-LT's colour jitter); `AUGMENTATIONS`.
    input_norm: `((mean_c, ...), (std_c, ...))`, one value per image
      channel: the model sees `(x - mean) / std` of the [0, 1]-scaled
      image (torchvision's `Normalize`, after any augmentation, as the
      references apply it; `cil.models.INPUT_NORM_MODELS`); () for [0, 1]
      only.
    drw_epoch: deferred re-weighting (Cao et al. 2019): from this epoch on
      (0-based), each example's loss is weighted by its class's inverse
      effective number (1 - beta) / (1 - beta^N_c), normalised to mean 1
      over classes, and the batch loss is the weighted mean; 0 for off.
    drw_beta: beta of the effective number (Cao et al.: 0.9999).
    sampler: how each epoch draws the training set (`cil.data.samplers`,
      Kang et al. 2020): 'instance' (every example once), 'class_balanced',
      'sqrt' or 'progressive'.
    data_parallel: devices each model's batch is split over (-1: all
      of every process); the seeds go over the groups of that many devices
      (`cil.experiments.classify.parallel.data_mesh`; gradients, loss and
      batch norm's statistics over the whole batch, unless
      `batch_norm_groups`). 1 (default): one device per model.
    batch_norm_groups: batch norm's training statistics per this many
      equal parts of each batch (`cil.models.resnet.BatchNorm`: PyTorch's
      `DataParallel` / DDP without SyncBN on that many GPUs, the running
      averages from the first part); 1: over the whole batch (one GPU, or
      SyncBN); 0: one part per device the batch is split over
      (`data_parallel`), resolved when the run starts.
    chunk_steps: steps per compiled call; 0 picks the backend's
      (`cil.runtime.Policy.classify_chunk_steps`).
    seed_parallel: 'vmap' or 'loop' (see `train_chunk`); '' picks the
      backend's.
    step_loop: the steps of a chunk as a Python loop ('unroll') or a
      `lax.scan` ('scan'); '' picks the backend's (`Policy.unroll_loops`).
    conv_pool: LeNet's convolution-and-pool lowering
      (`cil.models.CONV_POOL_IMPLS`); '' picks the backend's
      (`Policy.classify_conv_pool`). Models without the choice resolve to
      'xla'.
    compiler_options: XLA options of the train step as `(name, value)`
      pairs, () for none; None picks the backend's
      (`Policy.batch_norm_step_compiler_options` for models with batch
      norm, else `Policy.classify_step_compiler_options`).
    checkpoint_every: save the seeds' states every this many epochs (and
      after the last); a killed run loses at most that much work.
    checkpoint_every_steps: inside an epoch, also save every this many
      optimizer steps (rounded up to whole chunks of `chunk_steps`); a run
      resumes inside the epoch. 0: epoch ends only (a SIGTERM or SIGINT
      still saves at the next chunk).
    eval_batch_size: test images per evaluation call.
    test_split: the split the tables score ('test'; 'val' for iNaturalist
      2018, which its papers test on).
    validation: a held-out split on which post-hoc logit adjustment's and
      tau-normalisation's tau are chosen (from `TAU_GRID`, the largest
      balanced accuracy; recorded per seed; the test split is read only
      after): '' (none: the stated taus), 'train:F' (F of each training
      class held out, seed 0, the same for every seed and loss, before
      the protocols draw from the rest; in memory) or the dataset's own
      split ('val' for ImageNet-LT, Places-LT, iNaturalist 2018).
    posthoc_tau: also score each model with post-hoc logit adjustment
      (Menon et al. 2021; `cil.losses.posthoc_adjusted_logits` with the
      seed's training counts): rows '<loss>+posthoc' beside the trained
      losses; 0 for off (tau = 0 is plain argmax).
    decouple: decoupled classifiers (Kang et al. 2020) to score beside each
      trained model, rows '<loss>+<method>': any of 'crt', 'tau_norm',
      'lws' (`cil.experiments.classify.decouple`); () for none.
    decouple_epochs: class-balanced epochs of cRT and LWS (Kang et al.: 10).
    decouple_tau: tau-normalisation's exponent, or with `validation` the
      one chosen there.
    shot_thresholds: `(low, high)` training counts that split classes into
      many-shot (> high), medium-shot and few-shot (< low) groups for their
      accuracy (Liu et al. 2019: (20, 100); `cil.metrics.shot_groups`).
    data_dir, manual_dir: passed to `cil.data.load` (None: environment).
  """
  dataset: str
  image_size: int
  input_pipeline: str
  test_fraction: float
  image_feature: str
  label_feature: str
  protocols: tuple[str, ...]
  losses: tuple[str, ...]
  cells: tuple
  loss_hparams: tuple
  model: str
  dtype: str
  seeds: int
  first_seed: int
  epochs: int
  batch_size: int
  lr: float
  optimizer: str
  weight_decay: float
  lr_warmup_epochs: int
  lr_schedule: str
  lr_decay_epochs: tuple[int, ...]
  lr_decay_factor: float
  augment: str
  input_norm: tuple[tuple[float, ...], ...]
  drw_epoch: int
  drw_beta: float
  sampler: str
  data_parallel: int
  batch_norm_groups: int
  chunk_steps: int
  seed_parallel: str
  step_loop: str
  conv_pool: str
  compiler_options: Optional[tuple[tuple[str, str], ...]]
  checkpoint_every: int
  checkpoint_every_steps: int
  eval_batch_size: int
  test_split: str
  validation: str
  posthoc_tau: float
  decouple: tuple[str, ...]
  decouple_epochs: int
  decouple_tau: float
  shot_thresholds: tuple[int, int]
  data_dir: Optional[str]
  manual_dir: Optional[str]

  @classmethod
  def from_config(cls, config: Any) -> 'ClassifyConfig':
    """From a `configs/classify.py` config (a ConfigDict or a dict)."""
    c = v.config_fields(config, cls, 'classify config')
    c['protocols'] = v.as_names('protocols', c['protocols'])
    c['cells'] = _frozen_cells(c['cells'])
    named = {name for name, _ in c['cells']}
    c['losses'] = tuple(n if n in named else losses.canonical_spec(n)
                        for n in v.as_names('losses', c['losses']))
    c['loss_hparams'] = losses.freeze_hparams(c['loss_hparams'])
    try:
      c['lr_decay_epochs'] = tuple(int(e) for e in c['lr_decay_epochs'])
    except (TypeError, ValueError):
      raise ValueError(f'lr_decay_epochs must be a sequence of epochs, e.g. '
                       f'(160, 180); got {c["lr_decay_epochs"]!r}.') from None
    c['decouple'] = v.as_names('decouple', c['decouple'])
    c['shot_thresholds'] = tuple(c['shot_thresholds']) if isinstance(
        c['shot_thresholds'], (list, tuple)) else c['shot_thresholds']
    c['compiler_options'] = runtime.option_pairs(c['compiler_options'])
    c['input_norm'] = _input_norm(c['input_norm'])
    return cls(**c)

  def resolve(self, policy: runtime.Policy) -> 'ClassifyConfig':
    """This config with every backend choice made (`run` calls it once,
    before anything reads them; nothing below it reads the policy):
    `model`, `chunk_steps`, `seed_parallel`, `step_loop`, `conv_pool` and
    `compiler_options` concrete. A resolved config resolves to itself
    under any policy."""
    model = self.model_name()
    conv_pool = self.conv_pool or (policy.classify_conv_pool
                                   if model in models.CONV_POOL_MODELS
                                   else 'xla')
    options = self.compiler_options
    if options is None:
      options = (policy.batch_norm_step_compiler_options
                 if model in models.BATCH_NORM_MODELS
                 else policy.classify_step_compiler_options)
    return dataclasses.replace(
        self, model=model, protocols=self.protocol_specs(),
        chunk_steps=self.chunk_steps or policy.classify_chunk_steps,
        seed_parallel=self.seed_parallel or policy.seed_parallel,
        step_loop=self.step_loop or (
            'unroll' if policy.unroll_loops else 'scan'),
        conv_pool=conv_pool, compiler_options=options)

  @property
  def unroll(self) -> bool:
    """Whether a chunk's steps are unrolled (`step_loop`, resolved)."""
    return self.step_loop == 'unroll'

  def validation_fraction(self) -> float:
    """F of `validation='train:F'`; 0 for none or a split of its own."""
    if not self.validation.startswith('train:'):
      return 0.0
    try:
      fraction = float(self.validation[len('train:'):])
    except ValueError:
      fraction = -1.0
    if not 0 < fraction < 1:
      raise ValueError(f"validation must be '', 'train:F' with F in (0, 1), "
                       f"or a split of the dataset, got {self.validation!r}.")
    return fraction

  def for_cell(self, entry: str) -> tuple['ClassifyConfig', str]:
    """`(config, loss)` of the row `entry` of `losses`: a cell's settings
    over the run's and its loss, or the run's and `entry` itself."""
    fields = dict(dict(self.cells).get(entry, ()))
    if not fields:
      return self, entry
    loss = fields.pop('loss')
    return dataclasses.replace(self, cells=(), **fields), loss

  def loss_spec(self, loss: str) -> losses.LossSpec:
    """The `LossSpec` of the entry `loss` of `losses`, with its
    hyperparameters from `loss_hparams` (and the spec's own on top)."""
    return losses.get_loss(loss, self.loss_hparams)

  def model_name(self) -> str:
    return self.model or DEFAULT_MODELS.get(self.dataset, 'lenet')

  def models_used(self) -> list[str]:
    """The models the rows of `losses` train (the run's, or a cell's own),
    sorted."""
    return sorted({self.for_cell(e)[0].model_name() for e in self.losses})

  def protocol_specs(self) -> tuple[str, ...]:
    """`protocols`, or the dataset's default when it is empty."""
    if self.protocols:
      return self.protocols
    own = data.custom.parse_spec(self.dataset) is not None
    if own or self.dataset in data.datasets.LONG_TAIL_NAMES:
      return OWN_DATA_PROTOCOLS  # Already imbalanced: kept as it is.
    return DEFAULT_PROTOCOLS

  def data_options(self) -> data.Options:
    """How `dataset` is read when it is a spec of your own data."""
    return data.Options(image_size=self.image_size,
                        test_fraction=self.test_fraction,
                        image_feature=self.image_feature,
                        label_feature=self.label_feature)

  def _check_cells(self) -> None:
    """Named errors for a cell that cannot run: an unknown field, no
    loss, a name that is a loss or not a path component, a bad value
    (each cell's settings are checked as a config of their own)."""
    for name, fields in self.cells:
      v.check_path_component(name, what='cell name')
      if name in losses.LOSS_NAMES:
        raise ValueError(f'cell {name!r} has the name of a loss; name it '
                         f'for its settings (e.g. {name}_drw).')
      given = dict(fields)
      unknown = sorted(set(given) - set(CELL_FIELDS))
      if unknown:
        raise ValueError(f'cell {name!r} sets {", ".join(unknown)}; a cell '
                         f'may set {", ".join(CELL_FIELDS)}.')
      if 'loss' not in given:
        raise ValueError(f"cell {name!r} has no 'loss'.")
      cell, loss = self.for_cell(name)
      try:
        dataclasses.replace(cell, losses=(loss,)).validate()
      except ValueError as e:
        raise ValueError(f'cell {name!r}: {e}') from None

  def validate(self) -> None:
    """Checks every field before any work (or workdir) is touched."""
    data.check_name(self.dataset)
    self.data_options().check()
    v.check_positive_fields(self, ('seeds', 'epochs', 'batch_size',
                                   'checkpoint_every', 'eval_batch_size'),
                            'classify config')
    if self.first_seed < 0:
      raise ValueError(f'first_seed must be >= 0, got {self.first_seed}.')
    if self.data_parallel == 0 or self.data_parallel < -1:
      raise ValueError(f'data_parallel must be -1 (every device) or >= 1, '
                       f'got {self.data_parallel}.')
    if self.batch_norm_groups < 0 or (
        self.batch_norm_groups and self.batch_size % self.batch_norm_groups):
      raise ValueError(f'batch_norm_groups must be 0 (one per device) or '
                       f'divide batch_size ({self.batch_size}), got '
                       f'{self.batch_norm_groups}.')
    if (self.batch_norm_groups != 1
        and self.model_name() not in models.BATCH_NORM_MODELS):
      raise ValueError(f'batch_norm_groups={self.batch_norm_groups}: model '
                       f'{self.model_name()!r} has no batch norm to group '
                       f'(models with it: '
                       f'{", ".join(models.BATCH_NORM_MODELS)}).')
    for name in ('chunk_steps', 'checkpoint_every_steps'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name} must be >= 0, got {getattr(self, name)}.')
    if not self.losses:
      raise ValueError('losses must not be empty.')
    self._check_cells()
    for name in self.models_used():
      if self.input_norm and name not in models.INPUT_NORM_MODELS:
        raise ValueError(
            f'input_norm is set but model {name!r} does not take it '
            f'(models that do: {", ".join(models.INPUT_NORM_MODELS)}).')
    for name, value in (('lr', self.lr), ('weight_decay', self.weight_decay)):
      if not math.isfinite(value):
        raise ValueError(f'{name} is non-finite ({value}); it must be a '
                         f'finite number >= 0.')
      if value < 0:
        raise ValueError(f'{name} must be >= 0, got {value}.')
    for name in self.losses:
      cell, loss = self.for_cell(name)
      cell.loss_spec(loss)
    for spec in self.protocol_specs():
      data.get_protocol(spec)
    models.get_model(self.model_name(), 2)
    if self.seed_parallel not in ('', 'vmap', 'loop'):
      raise ValueError(f"seed_parallel must be 'vmap' or 'loop', got "
                       f'{self.seed_parallel!r}.')
    v.check_choice('dtype', self.dtype, ('float32', 'bfloat16'))
    v.check_choice('lr_schedule', self.lr_schedule, ('step', 'cosine'))
    v.check_choice('step_loop', self.step_loop, ('unroll', 'scan'),
                   empty="the backend's")
    v.check_choice('input_pipeline', self.input_pipeline,
                   ('memory', 'stream'), empty="the data's size")
    v.check_choice('conv_pool', self.conv_pool, models.CONV_POOL_IMPLS,
                   empty="the backend's")
    if (self.conv_pool not in ('', 'xla')
        and self.model_name() not in models.CONV_POOL_MODELS):
      raise ValueError(f'conv_pool {self.conv_pool!r} is a lowering of '
                       f'{", ".join(models.CONV_POOL_MODELS)} only; model '
                       f'{self.model_name()!r} has none (set conv_pool '
                       f"to '').")
    if self.optimizer not in ('adam', 'sgd'):
      raise ValueError(f"optimizer must be 'adam' or 'sgd', got "
                       f'{self.optimizer!r}.')
    if self.augment not in AUGMENTATIONS:
      raise ValueError(f"augment must be one of {AUGMENTATIONS}, got "
                       f'{self.augment!r}.')
    if self.lr_warmup_epochs < 0 or self.drw_epoch < 0:
      raise ValueError(f'lr_warmup_epochs and drw_epoch must be >= 0, got '
                       f'{self.lr_warmup_epochs}, {self.drw_epoch}.')
    if any(e < 1 for e in self.lr_decay_epochs):
      raise ValueError(f'lr_decay_epochs must be positive epochs, got '
                       f'{self.lr_decay_epochs}.')
    if not (math.isfinite(self.lr_decay_factor)
            and 0 < self.lr_decay_factor <= 1):
      raise ValueError(f'lr_decay_factor must be in (0, 1], got '
                       f'{self.lr_decay_factor}.')
    data.samplers.check_sampler(self.sampler)
    if not 0 <= self.drw_beta < 1:
      raise ValueError(f'drw_beta must be in [0, 1), got {self.drw_beta}.')
    self.validation_fraction()
    if self.validation and self.validation == self.test_split:
      raise ValueError(f'validation and test_split are both '
                       f'{self.test_split!r}: taus chosen on the test split '
                       f'would be scored on it.')
    if not math.isfinite(self.posthoc_tau) or self.posthoc_tau < 0:
      raise ValueError(f'posthoc_tau must be a finite number >= 0 (0 is '
                       f'off), got {self.posthoc_tau}.')
    metrics.check_shot_thresholds(self.shot_thresholds)
    decouple.check_methods(self.decouple)
    if self.decouple_epochs < 1 and set(self.decouple) - {'tau_norm'}:
      raise ValueError(f'decouple_epochs must be >= 1 for cRT and LWS, got '
                       f'{self.decouple_epochs}.')
    if not math.isfinite(self.decouple_tau) or self.decouple_tau < 0:
      raise ValueError(f'decouple_tau must be a finite number >= 0, got '
                       f'{self.decouple_tau}.')
