"""The few-shot experiment's settings: `FewShotConfig`, built from a
`configs/fewshot.py` config, checked before any work, resolved against the
backend policy once (`resolve`, in `run`; the resolved config is what runs
and what is recorded)."""

import dataclasses
import math
from typing import Any, Optional

from cil import _validation as v
from cil import data
from cil import losses
from cil import maml as maml_lib
from cil import models
from cil import runtime


DTYPES = ('float32', 'bfloat16')  # `FewShotConfig.dtype`.


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
  """A few-shot experiment; build it with `FewShotConfig.from_config`.

  `configs/fewshot.py` states every default, once.

  Attributes:
    dataset: `cil.data.load_fewshot` name (digits, omniglot, omniglot_small,
      mini_imagenet), or your own data: 'folder:/path', 'npz:/path.npz',
      'tfds:NAME' (`cil.data.custom`; classes split by
      `cil.data.fewshot.split_classes`).
    image_size: 0 keeps the dataset's size (Omniglot: 28); S > 0 resizes
      Omniglot, or resizes and centre-crops your images, to S x S.
    meta_test_fraction: for your own data, the share of classes (drawn
      with seed 0) in meta-test.
    class_split: mini_imagenet's 'standard' (64/16/20) or 'paper' split.
    support: support distributions (meta-test evaluates each; meta-train
      draws one per task unless `train_support` is given).
    train_support: the distributions meta-train draws from; empty means
      `support`. Omniglot has 20 drawings per character, so meta-train
      queries of p * N_i cannot follow a support class of 11 (11 + 11 >
      20): train on the distributions that fit and test on all.
    query_multiple: p, meta-train queries per class = p * N_i.
    test_queries: balanced meta-test queries per class.
    losses: loss specs (`cil.losses.canonical_spec`: a registry name or a
      variant such as `ci:transition_width=1.0`), each used for the inner
      and the outer loss; a spec ending in '+ros' (`ce+ros`, `ci+ros`)
      also over-samples every support set and the meta-train queries at
      random (ROS, Ochal et al. 2023; `cil.data.random_oversample`), on the
      same tasks as the others.
    loss_hparams: per-loss keyword arguments keyed by canonical name, as
      hashable nested tuples (`cil.losses.freeze_hparams`).
    maml: the MAML hyperparameters (its `inner_loss`/`outer_loss` are set
      per loss by `maml_config`, with their `loss_hparams`; its `task_map`
      '' picks the backend's, `cil.runtime.Policy.task_map`).
    meta_batch: tasks per meta-step.
    meta_steps: meta-training steps.
    features: Conv4 filters.
    dtype: Conv4's computation dtype, 'float32' or 'bfloat16' (`DTYPES`).
      With bfloat16 the convolutions, normalisation and dense layer
      compute in it; the parameters, the logits (so the losses), the
      meta-gradients and Adam stay float32.
    conv_impl: Conv4's convolution lowering (`cil.models.Conv3x3.impl`:
      'winograd', 'im2col' or 'xla'), or '' for the backend policy's
      choice for the MAML order (`cil.runtime.Policy.maml_conv_impl`:
      Winograd for first order on the CPU, else im2col).
    compiler_options: XLA options of the meta-step as `(name, value)`
      pairs, () for none; None picks the backend's
      (`cil.runtime.Policy.meta_step_compiler_options`).
    test_tasks: meta-test tasks per distribution (paper: 600).
    parallel: 'pmap' (plain jit on one device), 'shard_map' or 'none'.
    seed: sampling and initialisation seed.
    checkpoint_every: meta-steps between checkpoints.
    data_dir, manual_dir: as `cil.data.load` (None: environment).
  """
  dataset: str
  image_size: int
  meta_test_fraction: float
  class_split: str
  support: tuple
  train_support: tuple
  query_multiple: int
  test_queries: int
  losses: tuple[str, ...]
  loss_hparams: tuple
  maml: maml_lib.MamlConfig
  meta_batch: int
  meta_steps: int
  features: int
  dtype: str
  conv_impl: str
  compiler_options: Optional[tuple[tuple[str, str], ...]]
  test_tasks: int
  parallel: str
  seed: int
  checkpoint_every: int
  data_dir: Optional[str]
  manual_dir: Optional[str]

  @classmethod
  def from_config(cls, config: Any) -> 'FewShotConfig':
    """From a `configs/fewshot.py` config (a ConfigDict or a dict)."""
    c = v.config_fields(config, cls, 'fewshot config')
    c['losses'] = tuple(canonical_loss(n)
                        for n in v.as_names('losses', c['losses']))
    c['loss_hparams'] = losses.freeze_hparams(c['loss_hparams'])
    c['compiler_options'] = runtime.option_pairs(c['compiler_options'])
    maml = v.config_fields(c['maml'], maml_lib.MamlConfig, 'maml config')
    c['maml'] = maml_lib.MamlConfig(**maml)
    for key in ('support', 'train_support'):
      try:
        c[key] = tuple(tuple(int(n) for n in d) for d in c[key])
      except (TypeError, ValueError):
        raise ValueError(f'{key} must be a sequence of distributions of '
                         f'integers, e.g. ((1, 1, 1, 1, 11), (3, 3, 3, 3, '
                         f'3)); got {c[key]!r}.') from None
    return cls(**c)

  @property
  def meta_train_support(self) -> tuple:
    return self.train_support or self.support

  @property
  def ways(self) -> int:
    return self.maml.ways

  def resolve(self, policy: runtime.Policy) -> 'FewShotConfig':
    """This config with every backend choice made (`run` calls it once;
    nothing below it reads the policy): `conv_impl` ('' = the policy's
    lowering for the MAML order, `Policy.maml_conv_impl`), `maml.task_map`
    ('' = the policy's) and `compiler_options` (None = the policy's)
    concrete. A resolved config resolves to itself under any policy."""
    options = self.compiler_options
    if options is None:
      options = policy.meta_step_compiler_options
    return dataclasses.replace(
        self, conv_impl=policy.maml_conv_impl(
            first_order=self.maml.first_order, requested=self.conv_impl),
        compiler_options=options,
        maml=dataclasses.replace(
            self.maml, task_map=self.maml.task_map or policy.task_map))

  def validate(self) -> None:
    """Checks every field before any work (or workdir) is touched."""
    v.check_positive_fields(
        self, ('maml.ways', 'meta_batch', 'meta_steps', 'test_tasks',
               'checkpoint_every', 'query_multiple', 'test_queries',
               'features', 'maml.adaptation_steps',
               'maml.test_adaptation_steps'), 'fewshot config')
    if self.image_size < 0:
      raise ValueError(f'image_size must be >= 0 (0 keeps the dataset\'s '
                       f'size), got {self.image_size}.')
    if not 0 < self.meta_test_fraction < 1:
      raise ValueError(f'meta_test_fraction must be in (0, 1), got '
                       f'{self.meta_test_fraction}.')
    if self.dtype not in DTYPES:
      raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got "
                       f'{self.dtype!r}.')
    v.check_choice('conv_impl', self.conv_impl, models.CONV_IMPLS,
                   empty="the backend's choice")
    if not self.losses:
      raise ValueError('losses must not be empty.')
    for name in self.losses:
      self.maml_config(name)
    if not self.support:
      raise ValueError('support must hold at least one distribution.')
    for dist in self.support + self.train_support:
      data.episodes.check_distribution(dist, self.ways)
    if len({sum(d) for d in self.support + self.train_support}) != 1:
      raise ValueError('All support and train_support distributions must '
                       'have the same total (fixed shapes for jit), got '
                       f'{self.support + self.train_support}.')
    for name in ('inner_lr', 'meta_lr'):
      value = getattr(self.maml, name)
      if not math.isfinite(value):
        raise ValueError(f'maml.{name} is non-finite ({value}); it must be '
                         f'a finite positive number.')
      if value <= 0:
        raise ValueError(f'maml.{name} must be positive, got {value}.')
    if self.parallel not in ('pmap', 'shard_map', 'none'):
      raise ValueError(f"parallel must be 'pmap', 'shard_map' or 'none', "
                       f'got {self.parallel!r}.')
    if self.maml.task_map not in ('',) + maml_lib.TASK_MAPS:
      raise ValueError(f"maml.task_map must be '' or one of "
                       f"{', '.join(maml_lib.TASK_MAPS)}, got "
                       f'{self.maml.task_map!r}.')
    if self.seed < 0:
      raise ValueError(f'seed must be >= 0, got {self.seed}.')

  def maml_config(self, loss: str) -> maml_lib.MamlConfig:
    """The MAML config of the entry `loss` of `losses`: its `LossSpec`
    (hyperparameters from `loss_hparams`) as the inner and outer loss."""
    spec = losses.get_loss(split_loss(loss)[0], self.loss_hparams)
    return dataclasses.replace(self.maml, inner_loss=spec, outer_loss=spec)


ROS = '+ros'


def split_loss(name: str) -> tuple[str, bool]:
  """`(loss spec, oversample)` of a few-shot loss entry: 'ci+ros' is
  `('ci', True)`."""
  base, plus, suffix = name.partition('+')
  if plus and suffix.strip().lower() != ROS[1:]:
    raise ValueError(f"Unknown few-shot loss suffix '+{suffix}' in "
                     f"{name!r}; the one known is '+ros' (random "
                     f'over-sampling of the support set).')
  return base, bool(plus)


def canonical_loss(name: str) -> str:
  """A few-shot loss entry with its spec canonical and '+ros' kept."""
  base, oversample = split_loss(name)
  return losses.canonical_spec(base) + (ROS if oversample else '')
