"""Imbalanced classification: CNNs trained with a registry loss, many seeds.

The protocol of the paper (Section V, Tables I and III): draw an imbalanced
training set from a balanced one (`cil.data` protocols), train a CNN with CE,
FL, CI or any `cil.losses` loss whose class counts are the training set's,
and measure the recognition rate on the full balanced test set; repeat over
many random samplings (seeds) and report mean +- 95 % confidence interval.

Speed: all seeds of one (protocol, loss) train together. Each seed has its own
subsample, initialisation, batch order and class counts; `train_step` is
`vmap`ped over seeds and `lax.scan`ned over a chunk of steps, inside one
`jit`, with the dataset resident on the device and batches gathered there.

Fault tolerance (`cil.workdir`): after every `checkpoint_every` epochs the
seeds' `TrainState`s are saved with Orbax under
`workdir/checkpoints/<protocol>/<loss>/` (the last two kept, checksummed); a
finished (protocol, loss) cell writes `workdir/runs/<protocol>__<loss>.json`.
Rerunning with the same config skips finished cells and resumes the others
from their newest good checkpoint; batch orders are a function of (seed,
epoch), so the result and the metrics log equal an uninterrupted run's. A
NaN/inf loss or parameter stops the run (`errors.NonFiniteError`) without
recording the cell.
"""

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import _validation as v
from cil import data
from cil import distributed
from cil import loops
from cil import losses
from cil import metrics
from cil import models
from cil import plots
from cil import runtime
from cil import workdir as workdir_lib
from cil.experiments import loop
from cil.experiments import report

DEFAULT_MODELS = {'digits': 'digits_cnn', 'mnist': 'lenet',
                  'mstar_soc': 'aconvnet', 'cifar10': 'resnet32',
                  'cifar100': 'resnet32'}


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
  """Everything that defines a classification experiment.

  Build it from a config file with `ClassifyConfig.from_config`
  (`configs/classify.py` states every default, once).

  Attributes:
    dataset: 'digits' (embedded), 'mnist', 'mstar_soc', 'cifar10' or
      'cifar100'.
    protocols: imbalance protocols (`cil.data.get_protocol` specs).
    losses: loss specs (`cil.losses.split_spec`: a registry name, or
      `name:key=value,...` for a variant such as `ci:high_exponent=0.5`),
      canonical (`cil.losses.canonical_spec`).
    loss_hparams: per-loss keyword arguments keyed by canonical name, as
      hashable nested tuples (`(('focal', (('gamma', 2.0), ...)), ...)`).
    model: a `cil.models` name; '' picks the dataset's default.
    seeds: random samplings per (protocol, loss) (paper: 20 MNIST, 100 MSTAR).
    first_seed: seeds are first_seed .. first_seed + seeds - 1.
    epochs: passes over each seed's imbalanced training set.
    batch_size: examples per step (per seed).
    lr: learning rate.
    optimizer: 'adam' or 'sgd' (with momentum 0.9).
    weight_decay: decoupled weight decay (AdamW / SGD + decay); 0 for none.
    lr_warmup_epochs: linear warm-up from lr / warmup steps to lr over this
      many epochs (Cao et al.: 5); 0 for none.
    lr_decay_epochs: epochs after which the learning rate is multiplied by
      `lr_decay_factor` (Cao et al.: (160, 180) with 0.1).
    lr_decay_factor: see `lr_decay_epochs`.
    augment: '' (none) or 'crop_flip': random 32x32 crops of the image
      zero-padded by 4 and random horizontal flips (the CIFAR standard).
    drw_epoch: deferred re-weighting (Cao et al. 2019): from this epoch on
      (0-based), each example's loss is weighted by its class's inverse
      effective number (1 - beta) / (1 - beta^N_c), normalised to mean 1
      over classes, and the batch loss is the weighted mean; 0 for off.
    drw_beta: beta of the effective number (Cao et al.: 0.9999).
    chunk_steps: steps per compiled call; 0 picks the backend's
      (`cil.runtime.policy`).
    seed_parallel: 'vmap' or 'loop' (see `train_chunk`); '' picks the
      backend's.
    checkpoint_every: save the seeds' states every this many epochs (and
      after the last); a killed run loses at most that much work.
    eval_batch_size: test images per evaluation call.
    data_dir, manual_dir: passed to `cil.data.load` (None: environment).
  """
  dataset: str
  protocols: tuple[str, ...]
  losses: tuple[str, ...]
  loss_hparams: tuple
  model: str
  seeds: int
  first_seed: int
  epochs: int
  batch_size: int
  lr: float
  optimizer: str
  weight_decay: float
  lr_warmup_epochs: int
  lr_decay_epochs: tuple[int, ...]
  lr_decay_factor: float
  augment: str
  drw_epoch: int
  drw_beta: float
  chunk_steps: int
  seed_parallel: str
  checkpoint_every: int
  eval_batch_size: int
  data_dir: Optional[str]
  manual_dir: Optional[str]

  @classmethod
  def from_config(cls, config: Any) -> 'ClassifyConfig':
    """From a `configs/classify.py` config (a ConfigDict or a dict)."""
    c = v.config_fields(config, cls, 'classify config')
    c['protocols'] = v.as_names('protocols', c['protocols'])
    c['losses'] = tuple(losses.canonical_spec(n)
                        for n in v.as_names('losses', c['losses']))
    c['loss_hparams'] = losses.freeze_hparams(c['loss_hparams'])
    try:
      c['lr_decay_epochs'] = tuple(int(e) for e in c['lr_decay_epochs'])
    except (TypeError, ValueError):
      raise ValueError(f'lr_decay_epochs must be a sequence of epochs, e.g. '
                       f'(160, 180); got {c["lr_decay_epochs"]!r}.') from None
    return cls(**c)

  def resolve(self, policy: runtime.Policy) -> 'ClassifyConfig':
    """This config with the backend's choices made: `model`, `chunk_steps`
    and `seed_parallel` concrete (`run` calls it once; nothing below it
    reads the policy)."""
    return dataclasses.replace(
        self, model=self.model_name(),
        chunk_steps=self.chunk_steps or policy.classify_chunk_steps,
        seed_parallel=self.seed_parallel or policy.seed_parallel)

  def model_name(self) -> str:
    return self.model or DEFAULT_MODELS.get(self.dataset, 'lenet')

  def hparams_for(self, loss: str) -> dict:
    return losses.resolve_hparams(loss, self.loss_hparams)

  def validate(self) -> None:
    """Checks every field before any work (or workdir) is touched."""
    if self.dataset not in DEFAULT_MODELS:
      raise ValueError(f'dataset must be one of {", ".join(DEFAULT_MODELS)}, '
                       f'got {self.dataset!r}.')
    if min(self.seeds, self.epochs, self.batch_size, self.checkpoint_every,
           self.eval_batch_size) < 1:
      raise ValueError(
          'seeds, epochs, batch_size, checkpoint_every and eval_batch_size '
          f'must be positive, got {self.seeds}, {self.epochs}, '
          f'{self.batch_size}, {self.checkpoint_every}, '
          f'{self.eval_batch_size}.')
    if self.first_seed < 0:
      raise ValueError(f'first_seed must be >= 0, got {self.first_seed}.')
    if self.chunk_steps < 0:
      raise ValueError(f'chunk_steps must be >= 0, got {self.chunk_steps}.')
    if not self.losses or not self.protocols:
      raise ValueError('losses and protocols must not be empty.')
    for name, value in (('lr', self.lr), ('weight_decay', self.weight_decay)):
      if not math.isfinite(value):
        raise ValueError(f'{name} is non-finite ({value}); it must be a '
                         f'finite number >= 0.')
      if value < 0:
        raise ValueError(f'{name} must be >= 0, got {value}.')
    for name in self.losses:
      self.hparams_for(name)
    for spec in self.protocols:
      data.get_protocol(spec)
    models.get_model(self.model_name(), 2)
    if self.seed_parallel not in ('', 'vmap', 'loop'):
      raise ValueError(f"seed_parallel must be 'vmap' or 'loop', got "
                       f'{self.seed_parallel!r}.')
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
    if not 0 <= self.drw_beta < 1:
      raise ValueError(f'drw_beta must be in [0, 1), got {self.drw_beta}.')


@functools.lru_cache(maxsize=None)
def _model(name: str, num_classes: int) -> nn.Module:
  """One model instance per (name, classes), shared by every cell.

  `TrainState.apply_fn` is static in the jitted train and predict programs,
  and two instances' bound `apply` methods compare unequal, so a fresh
  instance per (protocol, loss) cell recompiled both (measured: about 10 s
  per cell of an MNIST sweep on 2 CPU cores).
  """
  return models.get_model(name, num_classes)


class TrainState(train_state.TrainState):
  """Flax's TrainState (params, optimizer state, step) and, for models with
  batch norm, its running averages; one per seed."""
  batch_stats: Any = None

  def variables(self, params=None) -> dict:
    out = {'params': self.params if params is None else params}
    if self.batch_stats is not None:
      out['batch_stats'] = self.batch_stats
    return out


AUGMENTATIONS = ('', 'crop_flip')


def augment_batch(images: jax.Array, rng: jax.Array, kind: str) -> jax.Array:
  """`[B, H, W, C]` images, randomly cropped after a 4-pixel zero pad and
  flipped left-right (`kind='crop_flip'`); '' returns them unchanged."""
  if not kind:
    return images
  pad = 4
  b, h, w, _ = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k_off, k_flip = jax.random.split(rng)
  offsets = jax.random.randint(k_off, (b, 2), 0, 2 * pad + 1)
  flips = jax.random.bernoulli(k_flip, 0.5, (b,))

  def one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0),
                                 (h, w, image.shape[-1]))
    return jnp.where(flip, crop[:, ::-1], crop)
  return jax.vmap(one)(padded, offsets, flips)


def drw_weights(class_counts: np.ndarray, beta: float) -> np.ndarray:
  """Cao et al.'s deferred re-weighting: `[..., C]` class weights
  (1 - beta) / (1 - beta^N_c), normalised to mean 1 over the classes."""
  counts = np.asarray(class_counts, np.float64)
  weights = (1 - beta) / (1 - np.power(beta, counts))
  return weights / weights.mean(axis=-1, keepdims=True)


def learning_rate(cfg: ClassifyConfig, steps_per_epoch: int):
  """The step -> learning rate schedule (a constant without warm-up/decay).

  Warm-up (`lr_warmup_epochs` W epochs): step k < W steps_per_epoch runs
  at lr (k + 1) / (W steps_per_epoch); then lr times `lr_decay_factor` per
  boundary of `lr_decay_epochs` passed (epochs counted from the start).
  """
  if not cfg.lr_warmup_epochs and not cfg.lr_decay_epochs:
    return cfg.lr
  boundaries = {e * steps_per_epoch: cfg.lr_decay_factor
                for e in cfg.lr_decay_epochs}
  decay = optax.piecewise_constant_schedule(cfg.lr, boundaries)
  warmup_steps = cfg.lr_warmup_epochs * steps_per_epoch
  if not warmup_steps:
    return decay

  def schedule(step):  # Step k < W of the warm-up: lr (k + 1) / W.
    return jnp.where(step < warmup_steps,
                     cfg.lr * (step + 1) / warmup_steps, decay(step))
  return schedule


def make_optimizer(cfg: ClassifyConfig, steps_per_epoch: int = 1
                   ) -> optax.GradientTransformation:
  lr = learning_rate(cfg, steps_per_epoch)
  if cfg.optimizer == 'adam':
    if cfg.weight_decay:
      return optax.adamw(lr, weight_decay=cfg.weight_decay)
    return optax.adam(lr)
  tx = optax.sgd(lr, momentum=0.9)
  if cfg.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(cfg.weight_decay), tx)
  return tx


def create_states(model: nn.Module, tx: optax.GradientTransformation,
                  keys: jax.Array, sample: jax.Array) -> TrainState:
  """One TrainState per key, stacked on a leading seed axis."""
  def create(key):
    variables = model.init({'params': key}, sample, train=False)
    return TrainState.create(apply_fn=model.apply, params=variables['params'],
                             batch_stats=variables.get('batch_stats'), tx=tx)
  return jax.jit(jax.vmap(create))(keys)


def train_step(state: TrainState, images: jax.Array, labels: jax.Array,
               idx: jax.Array, mask: jax.Array, class_counts: jax.Array,
               loss_weights: Optional[jax.Array], rng: jax.Array, *,
               loss_fn: Callable[..., jax.Array], loss_hparams: dict,
               augment: str = '') -> tuple[TrainState, dict]:
  """One SGD step of one seed; `vmap` it for several.

  Args:
    state: this seed's TrainState.
    images: `[N, H, W, C]` the whole source split (device resident).
    labels: `[N]` its labels.
    idx: `[B]` indices of this batch into `images`.
    mask: `[B]` False on padding (the last batch of an epoch).
    class_counts: `[C]` this seed's training-set counts (for the loss).
    loss_weights: `[C]` class weights of the batch loss (deferred
      re-weighting: a weighted mean), or None for the plain mean.
    rng: dropout (and augmentation) key for this step.
    loss_fn: a registry loss.
    loss_hparams: its keyword hyperparameters.
    augment: `augment_batch`'s kind ('' for none).

  Returns:
    The new state (unchanged when the batch is all padding) and metrics.
  """
  x, y = images[idx], labels[idx]
  if augment:
    rng, aug_rng = jax.random.split(rng)
    x = augment_batch(x, aug_rng, augment)
  valid = jnp.maximum(mask.sum(), 1)
  has_stats = state.batch_stats is not None

  def objective(params):
    out = state.apply_fn(state.variables(params), x, train=True,
                         rngs={'dropout': rng},
                         mutable=['batch_stats'] if has_stats else False)
    logits, updates = out if has_stats else (out, {})
    per_example = loss_fn(logits, y, class_counts, where=mask, **loss_hparams)
    if loss_weights is None:
      loss = per_example.sum() / valid
    else:
      w = jnp.where(mask, loss_weights[y], 0.0)
      loss = (w * per_example).sum() / jnp.maximum(w.sum(), 1e-12)
    return loss, (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(
      objective, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads)
  if has_stats:
    new_state = new_state.replace(batch_stats=updates['batch_stats'])
  active = jnp.any(mask)
  new_state = jax.tree.map(lambda n, o: jnp.where(active, n, o), new_state,
                           state)
  correct = jnp.sum((jnp.argmax(logits, -1) == y) & mask)
  return new_state, {'loss': loss, 'accuracy': correct / valid}


@functools.partial(jax.jit, static_argnames=('loss_name', 'loss_hparams',
                                             'seed_parallel', 'unroll',
                                             'augment'),
                   donate_argnums=(0,))
def train_chunk(states: TrainState, images: jax.Array, labels: jax.Array,
                idx: jax.Array, mask: jax.Array, class_counts: jax.Array,
                rngs: jax.Array, loss_weights: Optional[jax.Array] = None, *,
                loss_name: str, loss_hparams: tuple,
                seed_parallel: str = 'vmap', unroll: bool = False,
                augment: str = '') -> tuple[TrainState, dict]:
  """`T` steps of `K` seeds: scan over `[T, K, B]` batches, vmap over seeds.

  Args:
    states: stacked `[K]` TrainStates.
    images, labels: the whole source split.
    idx, mask: `[T, K, B]` batch indices and validity.
    class_counts: `[K, C]`.
    rngs: `[T, K]` dropout keys.
    loss_weights: `[K, C]` class weights of the batch loss (deferred
      re-weighting), or None for the plain mean.
    loss_name, loss_hparams: static; the loss and its keyword arguments as a
      tuple of pairs.
    seed_parallel: 'vmap' batches the seeds into one program (for GPUs);
      'loop' unrolls one step per seed inside the compiled program, which
      on XLA:CPU avoids the slow lowering of convolutions whose weights
      carry a batch axis (`benchmarks/classify_step.py` measures both).
    unroll: unroll the scan over steps. XLA:CPU runs convolutions inside a
      while loop ~20x slower (measured: 290 ms vs 15 ms per step of the
      digits CNN), so on CPU use short, unrolled chunks.
    augment: `augment_batch`'s kind.

  Returns:
    New states and `[T, K]` metrics.
  """
  step = functools.partial(train_step, loss_fn=losses.get_loss(loss_name),
                           loss_hparams=dict(loss_hparams), augment=augment)
  if seed_parallel == 'vmap':
    per_seed = jax.vmap(step, in_axes=(0, None, None, 0, 0, 0, 0, 0))
  elif seed_parallel == 'loop':
    def per_seed(st, ims, labs, i, m, c, w, r):
      return loops.unrolled_map(lambda a: step(a[0], ims, labs, *a[1:]),
                                (st, i, m, c, w, r))
  else:
    raise ValueError(f"seed_parallel must be 'vmap' or 'loop', got "
                     f'{seed_parallel!r}.')

  def body(carry, xs):
    return per_seed(carry, images, labels, *xs[:2], class_counts,
                    loss_weights, xs[2])

  if not unroll:
    return jax.lax.scan(body, states, (idx, mask, rngs))
  # A Python loop, not `scan(unroll=True)`: a length-1 scan stays a while
  # loop, with the CPU slowdown above.
  outs = []
  for t in range(idx.shape[0]):
    states, out = body(states, (idx[t], mask[t], rngs[t]))
    outs.append(out)
  return states, jax.tree.map(lambda *a: jnp.stack(a), *outs)


@functools.partial(jax.jit, static_argnames=('apply_fn',))
def _predict(apply_fn, variables, images):
  logits = jax.vmap(lambda v: apply_fn(v, images, train=False))(variables)
  return jnp.argmax(logits, -1)


def predict(states: TrainState, images: np.ndarray, batch_size: int,
            mesh: Optional[jax.sharding.Mesh] = None) -> np.ndarray:
  """`[K, n]` predicted classes of every seed's model.

  With `mesh` (`seed_mesh`), the states are sharded over it and each
  device predicts for its seeds; the result is gathered on every process.
  """
  def predict_fn(variables, x):
    if mesh is None:
      return _predict(states.apply_fn, variables, x)
    return _sharded_predict(mesh, states.apply_fn)(
        variables, distributed.put(x, mesh, jax.sharding.PartitionSpec()))
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk) if len(images) > batch_size else 0
    if pad:  # Keep one compiled shape.
      chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:],
                                              chunk.dtype)])
    pred = distributed.to_host(predict_fn(states.variables(), chunk))
    out.append(pred[:, :pred.shape[1] - pad])
  return np.concatenate(out, axis=1)


def epoch_batches(splits: Sequence[data.ImbalancedSplit], seeds: Sequence[int],
                  epoch: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`[steps, K, B]` batch indices and masks for one epoch of every seed.

  Each seed's order is a permutation drawn from (seed, epoch); seeds with
  fewer examples than the largest are padded with masked entries.
  """
  steps = max(math.ceil(s.indices.size / batch_size) for s in splits)
  idx = np.zeros((len(splits), steps * batch_size), np.int32)
  mask = np.zeros((len(splits), steps * batch_size), bool)
  for k, (split, seed) in enumerate(zip(splits, seeds)):
    order = np.random.default_rng([seed, epoch, 7]).permutation(
        split.indices.size)
    idx[k, :order.size] = split.indices[order]
    mask[k, :order.size] = True
  shape = (len(splits), steps, batch_size)
  return (idx.reshape(shape).transpose(1, 0, 2),
          mask.reshape(shape).transpose(1, 0, 2))


@jax.jit
def _step_keys(seeds: jax.Array, steps: jax.Array) -> jax.Array:
  """`[T, K]` dropout keys, a function of (seed, global step) only."""
  def key(seed, step):
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1),
                              step)
  return jax.vmap(lambda t: jax.vmap(lambda s: key(s, t))(seeds))(steps)


# ---------------------------------------------------------------------------
# Seeds across processes: with several processes (`cil.distributed`) the
# seeds' states are global arrays sharded over a 1-D mesh of every
# process's devices, and each device trains and scores its own seeds.

_SEEDS = 'seeds'


@functools.lru_cache(maxsize=None)
def _sharded_chunk(mesh: jax.sharding.Mesh, weighted: bool, **static):
  """`train_chunk` under `shard_map`: `(states, images, labels, idx, mask,
  counts, seeds, steps[, weights]) -> (states, [T, K] metrics)`."""
  # pylint: disable-next=g-import-not-at-top
  from jax.sharding import PartitionSpec as P

  def body(states, images, labels, idx, mask, counts, seeds, steps,
           weights=None):
    return train_chunk(states, images, labels, idx, mask, counts,
                       _step_keys(seeds, steps), weights, **static)

  by_seed, by_step_seed = P(_SEEDS), P(None, _SEEDS)
  in_specs = (by_seed, P(), P(), by_step_seed, by_step_seed, by_seed,
              by_seed, P()) + ((by_seed,) if weighted else ())
  return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs,
                               out_specs=(by_seed, by_step_seed),
                               check_vma=False))


@functools.lru_cache(maxsize=None)
def _sharded_predict(mesh: jax.sharding.Mesh, apply_fn: Callable):
  # pylint: disable-next=g-import-not-at-top
  from jax.sharding import PartitionSpec as P
  return jax.jit(jax.shard_map(
      functools.partial(_predict, apply_fn), mesh=mesh,
      in_specs=(P(_SEEDS), P()), out_specs=P(_SEEDS), check_vma=False))


def seed_mesh(num_seeds: int) -> Optional[jax.sharding.Mesh]:
  """The mesh the seeds are sharded over: None with one process.

  Raises:
    ValueError: the seeds do not divide evenly over every process's
      devices.
  """
  if distributed.process_count() == 1:
    return None
  devices = jax.device_count()
  if num_seeds % devices:
    raise ValueError(
        f'seeds ({num_seeds}) must divide evenly over the {devices} devices '
        f'of {distributed.process_count()} processes (each device trains '
        f'seeds / devices of them); set --config.seeds to a multiple of '
        f'{devices}.')
  return distributed.global_mesh(_SEEDS)


def cell_name(protocol: str, loss_name: str) -> str:
  """The workdir cell of one (protocol, loss): 'odd10/ci'."""
  return f'{protocol}/{loss_name}'


def train_and_evaluate(
    cfg: ClassifyConfig, train_set: data.ArrayDataset,
    test_set: data.ArrayDataset, protocol: str, loss_name: str,
    work: workdir_lib.Workdir, *, unroll: bool, progress: Any = None,
    epoch_callback: Optional[Callable[[int], None]] = None) -> dict:
  """Trains `cfg.seeds` models for one (protocol, loss); returns metrics.

  `cfg` is resolved (`ClassifyConfig.resolve`); `unroll` is the backend
  policy's `unroll_loops`. The cell loop (`cil.experiments.loop`) resumes
  from the cell's newest good checkpoint; each epoch appends the seeds'
  mean train loss and accuracy and its wall time to the cell's metrics log.

  Raises:
    errors.NonFiniteError: a seed's loss or parameters became NaN/inf.
  """
  cell = cell_name(protocol, loss_name)
  seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
  protocol_fn = data.get_protocol(protocol)
  splits = [protocol_fn(train_set.labels, seed=s,
                        num_classes=train_set.num_classes) for s in seeds]
  counts = jnp.asarray(np.stack([s.class_counts for s in splits]),
                       jnp.float32)
  model = _model(cfg.model, train_set.num_classes)
  steps_per_epoch = math.ceil(max(s.indices.size for s in splits)
                              / cfg.batch_size)
  tx = make_optimizer(cfg, steps_per_epoch)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  states = create_states(model, tx, keys, jnp.asarray(train_set.images[:1]))
  mesh = seed_mesh(len(seeds))
  if mesh is not None:
    states = distributed.put(states, mesh, jax.sharding.PartitionSpec(_SEEDS))

  hparams = tuple(sorted(cfg.hparams_for(loss_name).items()))
  static = {'loss_name': loss_name, 'loss_hparams': hparams,
            'seed_parallel': cfg.seed_parallel, 'unroll': unroll,
            'augment': cfg.augment}
  weights = drw_weights(np.asarray(counts), cfg.drw_beta).astype(np.float32)
  if mesh is None:
    images = jnp.asarray(train_set.images)
    labels = jnp.asarray(train_set.labels, jnp.int32)
    weights = jnp.asarray(weights)

    def run_chunk(states, c_idx, c_mask, global_steps, drw):
      rngs = _step_keys(jnp.asarray(seeds), jnp.asarray(global_steps))
      return train_chunk(states, images, labels, jnp.asarray(c_idx),
                         jnp.asarray(c_mask), counts, rngs,
                         weights if drw else None, **static)
  else:
    P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
    images, labels = distributed.put(
        (train_set.images, train_set.labels.astype(np.int32)), mesh, P())
    seed_ids, counts, weights = distributed.put(
        (np.asarray(seeds), np.asarray(counts), weights), mesh, P(_SEEDS))

    def run_chunk(states, c_idx, c_mask, global_steps, drw):
      fn = _sharded_chunk(mesh, drw, **static)
      by_step_seed = distributed.put((c_idx, c_mask), mesh, P(None, _SEEDS))
      return fn(states, images, labels, *by_step_seed, counts, seed_ids,
                distributed.put(global_steps, mesh, P()),
                *((weights,) if drw else ()))

  def train_epoch(states, epoch):
    """One epoch of every seed, in chunks; the guard on every chunk."""
    drw = bool(cfg.drw_epoch) and epoch >= cfg.drw_epoch
    idx, mask = epoch_batches(splits, seeds, epoch, cfg.batch_size)
    steps = idx.shape[0]
    chunk = min(cfg.chunk_steps, steps)
    epoch_loss, epoch_acc = [], []
    for start in range(0, steps, chunk):
      c_idx, c_mask = idx[start:start + chunk], mask[start:start + chunk]
      if c_idx.shape[0] < chunk:  # Pad the last chunk with inactive steps.
        pad = chunk - c_idx.shape[0]
        c_idx = np.concatenate([c_idx, np.zeros((pad,) + c_idx.shape[1:],
                                                c_idx.dtype)])
        c_mask = np.concatenate([c_mask, np.zeros(
            (pad,) + c_mask.shape[1:], bool)])
      global_steps = epoch * steps + start + np.arange(chunk)
      states, step_metrics = run_chunk(states, c_idx, c_mask, global_steps,
                                       drw)
      step_metrics = distributed.to_host(step_metrics)
      active = c_mask.any(axis=(1, 2))
      chunk_loss = np.asarray(step_metrics['loss'])[active]
      workdir_lib.check_finite(cell, int(global_steps[0]) + 1,
                               loss=chunk_loss)
      epoch_loss.append(chunk_loss)
      epoch_acc.append(np.asarray(step_metrics['accuracy'])[active])
      if progress is not None:
        progress.update(int(active.sum()))
        progress.set_postfix(cell=cell, epoch=epoch + 1, refresh=False,
                             loss=f'{np.mean(chunk_loss):.4f}')
    return states, {
        'train_loss': np.mean(np.concatenate(epoch_loss)),
        'train_accuracy': np.mean(np.concatenate(epoch_acc))}

  callback = None
  if epoch_callback is not None:
    callback = lambda epoch, *_: epoch_callback(epoch)  # noqa: E731
  with loop.CellTraining(work, cell, states,
                         checkpoint_every=cfg.checkpoint_every) as training:
    history = training.run(cfg.epochs, train_epoch,
                           seconds_key='epoch_seconds', callback=callback)
    states = training.state

  predictions = predict(states, test_set.images, cfg.eval_batch_size, mesh)
  per_seed = []
  for k, seed in enumerate(seeds):
    cm = metrics.confusion_matrix(test_set.labels, predictions[k],
                                  test_set.num_classes)
    scores = metrics.classification_metrics(cm)
    scores['minority_recall'] = report.minority_recall(
        scores['per_class_recall'], splits[k].class_counts)
    per_seed.append({'seed': seed, **splits[k].summary(), **scores})
  return {'protocol': protocol, 'loss': loss_name,
          'loss_hparams': dict(hparams), 'model': cfg.model,
          'train_loss_per_epoch': [r['train_loss'] for r in history],
          'per_seed': per_seed}


def _cell_settings(cfg: ClassifyConfig, protocol: str, loss: str) -> dict:
  """What one cell runs with: the resolved config's fields that vary by
  cell or by backend."""
  return {'protocol': protocol, 'loss': loss, 'model': cfg.model,
          'loss_hparams': cfg.hparams_for(loss),
          'chunk_steps': cfg.chunk_steps,
          'seed_parallel': cfg.seed_parallel}


def run(cfg: ClassifyConfig, workdir: str, *, show_progress: bool = True,
        epoch_callback: Optional[Callable[[str, str, int], None]] = None
        ) -> dict:
  """Runs every (protocol, loss) of `cfg`; writes results to `workdir`.

  The config, the seeds and the data are checked before the workdir is
  touched; then it is locked and claimed (`cil.workdir`). Outputs:
  `results.json` (config, per-run counts, rho, lambda, per-seed metrics and
  summaries), `table.md` (Table I's shape), `per_class_recall.{png,pdf,csv}`,
  with three or more distinct imbalance degrees `lambda_sweep.{png,pdf,csv}`
  (accuracy, balanced accuracy and minority recall against lambda),
  `metrics/<cell>.jsonl` and `tensorboard/`. Finished cells are kept in
  `runs/` and not recomputed; unfinished ones resume from their last good
  checkpoint.

  Returns:
    The results dict written to `results.json`.

  Raises:
    errors.RunError: a locked workdir, a different config, a damaged file,
      a non-finite loss or parameter (nothing is then recorded as finished).
  """
  cfg.validate()
  kw = {'data_dir': cfg.data_dir, 'manual_dir': cfg.manual_dir}
  train_set = data.load(cfg.dataset, 'train', **kw)
  test_set = data.load(cfg.dataset, 'test', **kw)
  policy = runtime.policy()
  resolved_cfg = cfg.resolve(policy)
  cells = [(p, n) for p in cfg.protocols for n in cfg.losses]
  record = runtime.describe(policy, classify={
      'seeds': list(range(cfg.first_seed, cfg.first_seed + cfg.seeds)),
      'cells': {cell_name(*c): _cell_settings(resolved_cfg, *c)
                for c in cells}})

  # Where the data lives may change between a run and its resumption.
  config = dataclasses.asdict(cfg)
  record['data_location'] = {k: config.pop(k)
                             for k in ('data_dir', 'manual_dir')}
  with workdir_lib.Workdir(workdir, config, runtime=record) as work:
    by_name = {cell_name(*c): c for c in cells}

    def steps_of(cell):
      split = data.get_protocol(by_name[cell][0])(train_set.labels, seed=0)
      return cfg.epochs * math.ceil(split.indices.size / cfg.batch_size)

    def train_cell(cell, bar):
      protocol, loss_name = by_name[cell]
      callback = None
      if epoch_callback is not None:
        callback = functools.partial(epoch_callback, protocol, loss_name)
      result = train_and_evaluate(
          resolved_cfg, train_set, test_set, protocol, loss_name, work,
          unroll=policy.unroll_loops, progress=bar, epoch_callback=callback)
      result['settings'] = record['classify']['cells'][cell]
      return result

    runs = loop.run_cells(work, list(by_name), train_cell, steps_of=steps_of,
                          desc='training steps (all seeds)',
                          show_progress=show_progress)

    for r in runs:
      r['summary'] = report.summarize(r)
    results = {'config': work.config, 'dataset': {
        'name': cfg.dataset, 'train_size': len(train_set),
        'test_size': len(test_set),
        'test_class_counts': test_set.class_counts().tolist(),
        'class_names': list(train_set.class_names)}, 'runs': runs}
    table = report.markdown_table(runs, cfg.protocols, cfg.losses)
    results['table_markdown'] = table
    work.write_json('results.json', results)
    lambda_of = {r['protocol']: r['summary']['imbalance_degree']['mean']
                 for r in runs}
    lambdas = ', '.join(f'{p} {lambda_of[p]:.3f}' for p in cfg.protocols)
    tables = {m: report.markdown_table(runs, cfg.protocols, cfg.losses, m)
              for m in ('balanced_accuracy', 'minority_recall')}
    work.write_text('table.md', (
        f'Recognition rate (%) on the balanced {cfg.dataset} test set, '
        f'mean ± 95 % CI over {cfg.seeds} seeds; model '
        f'{resolved_cfg.model}, {cfg.epochs} epochs. Imbalance degree λ of '
        f'the training sets: {lambdas}.\n\n{table}\n\n'
        f'Balanced accuracy (%, mean test recall over classes):\n\n'
        f'{tables["balanced_accuracy"]}\n\n'
        f'Minority recall (%, mean test recall of the classes with fewer '
        f'training images than the largest):\n\n'
        f'{tables["minority_recall"]}\n'))
    if not work.primary:
      return results
    plots.per_class_recall(runs, train_set.class_names,
                           work.file('per_class_recall'))
    if len({round(r['summary']['imbalance_degree']['mean'], 6)
            for r in runs}) >= 3:
      plots.metrics_vs_lambda(runs, work.file('lambda_sweep'))
  return results
