"""The pure training step of the classifiers and what it is made of.

Speed: all seeds of one (protocol, loss) train together. Each seed has its
own subsample, initialisation, batch order and class counts; `train_step`
is mapped over seeds (`seed_parallel`: on the CPU its gradients unrolled
seed by seed and its update mapped, `vmap` elsewhere) and over a chunk of
steps, inside one `jit`, with the dataset resident on the device and
batches gathered there. Nothing here knows about processes or workdirs.
"""

import functools
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import data
from cil import loops
from cil import losses
from cil import models
from cil.data import samplers
from cil.experiments.classify.config import ClassifyConfig


@functools.lru_cache(maxsize=None)
def model_for(name: str, num_classes: int, conv_pool: str = 'xla',
              dtype: str = 'float32', batch_norm_groups: int = 1,
              input_norm: tuple = ()) -> nn.Module:
  """One model instance per (name, classes, lowering, dtype), shared by
  every cell.

  `TrainState.apply_fn` is static in the jitted train and predict programs,
  and two instances' bound `apply` methods compare unequal, so a fresh
  instance per (protocol, loss) cell recompiled both. `conv_pool` is the
  lowering of a model that has the choice (`cil.models.CONV_POOL_MODELS`:
  LeNet; the resolved `ClassifyConfig.conv_pool`); other models ignore it.
  `dtype` is the computation's ('bfloat16' for mixed precision; the
  parameters and optimizer state stay float32). `batch_norm_groups`: the
  models with batch norm's (`cil.models.BATCH_NORM_MODELS`). `input_norm`:
  the per-channel mean and std of the [0, 1]-scaled inputs
  (`cil.models.INPUT_NORM_MODELS`; `ClassifyConfig.input_norm`).
  """
  kwargs = {'dtype': jnp.dtype(dtype)}
  if name in models.CONV_POOL_MODELS:
    kwargs['conv_pool'] = conv_pool
  if name in models.BATCH_NORM_MODELS:
    kwargs['batch_norm_groups'] = batch_norm_groups
  if input_norm:
    kwargs['input_norm'] = input_norm
  return models.get_model(name, num_classes, **kwargs)


class TrainState(train_state.TrainState):
  """Flax's TrainState (params, optimizer state, step) and, for models with
  batch norm, its running averages; one per seed."""
  batch_stats: Any = None

  def variables(self, params=None) -> dict:
    out = {'params': self.params if params is None else params}
    if self.batch_stats is not None:
      out['batch_stats'] = self.batch_stats
    return out


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


def learning_rate(cfg: ClassifyConfig, steps_per_epoch: int):
  """The step -> learning rate schedule (a constant without warm-up/decay).

  `lr_schedule='cosine'`: lr (1 + cos(pi e / E)) / 2 in epoch e of E, as
  Kang et al.'s code; otherwise steps. Warm-up (`lr_warmup_epochs` W
  epochs), as Cao et al.'s
  `adjust_learning_rate` (`kaidic/LDAM-DRW`, `cifar_train.py`): every step
  of 0-based epoch e < W runs at lr (e + 1) / W; then lr times
  `lr_decay_factor` per boundary of `lr_decay_epochs` passed (epochs
  counted from the start).
  """
  if cfg.lr_schedule == 'cosine':
    # Kang et al.'s `CosineAnnealingLR(optimizer, num_epochs, eta_min=0)`,
    # stepped once per epoch (`run_networks.py`): lr (1 + cos(pi e / E)) / 2
    # through 0-based epoch e of E.
    def decay(step):
      epoch = step // steps_per_epoch
      return cfg.lr * 0.5 * (1 + jnp.cos(jnp.pi * epoch / cfg.epochs))
  elif not cfg.lr_warmup_epochs and not cfg.lr_decay_epochs:
    return cfg.lr
  else:
    decay = optax.piecewise_constant_schedule(cfg.lr, {
        e * steps_per_epoch: cfg.lr_decay_factor
        for e in cfg.lr_decay_epochs})
  warmup = cfg.lr_warmup_epochs
  if not warmup:
    return decay

  def schedule(step):  # Epoch e < W of the warm-up: lr (e + 1) / W.
    epoch = step // steps_per_epoch
    return jnp.where(epoch < warmup, cfg.lr * (epoch + 1) / warmup,
                     decay(step))
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


def seed_gradients(state: TrainState, images: jax.Array, labels: jax.Array,
                   idx: jax.Array, mask: jax.Array, class_counts: jax.Array,
                   loss_weights: Optional[jax.Array], rng: jax.Array, *,
                   loss: losses.LossSpec,
                   augment: str = '') -> tuple[Any, Any, dict]:
  """One seed's gradients on one batch: the first half of `train_step`.

  Args:
    state: this seed's TrainState.
    images: `[N, H, W, C]` the whole source split (device resident), or
      with `idx` None this batch's `[B, H, W, C]` images.
    labels: `[N]` its labels (`[B]` with `idx` None).
    idx: `[B]` indices of this batch into `images`, or None.
    mask: `[B]` False on padding (the last batch of an epoch).
    class_counts: `[C]` this seed's training-set counts (for the loss).
    loss_weights: `[C]` class weights of the batch loss (deferred
      re-weighting: `cil.losses.weighted_mean`), or None for the plain
      mean.
    rng: dropout (and augmentation) key for this step.
    loss: the loss, hyperparameters bound (`cil.losses.get_loss`).
    augment: `augment_batch`'s kind ('' for none).

  Returns:
    `(grads, batch_stats, metrics)`: the gradients of the batch loss with
    respect to `state.params`, the new batch-norm statistics (None for a
    model without them) and `{'loss', 'accuracy'}`.
  """
  x, y = (images, labels) if idx is None else (images[idx], labels[idx])
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
    logits = logits.astype(jnp.float32)  # The loss in float32 (bfloat16 runs).
    per_example = loss(logits, y, class_counts, where=mask)
    if loss_weights is None:
      mean = per_example.sum() / valid
    else:
      mean = losses.weighted_mean(per_example, y, loss_weights, where=mask)
    return mean, (logits, updates)

  (mean, (logits, updates)), grads = jax.value_and_grad(
      objective, has_aux=True)(state.params)
  correct = jnp.sum((jnp.argmax(logits, -1) == y) & mask)
  return (grads, updates.get('batch_stats'),
          {'loss': mean, 'accuracy': correct / valid})


def apply_gradients(state: TrainState, grads: Any, batch_stats: Any,
                    active: jax.Array) -> TrainState:
  """The second half of `train_step`: the optimizer's update of `state` by
  `grads` and the new `batch_stats` (None: kept), or `state` unchanged
  where `active` (a bool scalar: the batch held an example) is False.
  Elementwise, so it maps over stacked seeds as they are."""
  new_state = state.apply_gradients(grads=grads)
  if batch_stats is not None:
    new_state = new_state.replace(batch_stats=batch_stats)
  return jax.tree.map(lambda n, o: jnp.where(active, n, o), new_state, state)


def train_step(state: TrainState, images: jax.Array, labels: jax.Array,
               idx: jax.Array, mask: jax.Array, class_counts: jax.Array,
               loss_weights: Optional[jax.Array], rng: jax.Array, *,
               loss: losses.LossSpec,
               augment: str = '') -> tuple[TrainState, dict]:
  """One SGD step of one seed (`seed_gradients`, then `apply_gradients`);
  `vmap` it for several. Arguments as `seed_gradients`'.

  Returns:
    The new state (unchanged when the batch is all padding) and metrics.
  """
  grads, batch_stats, metrics = seed_gradients(
      state, images, labels, idx, mask, class_counts, loss_weights, rng,
      loss=loss, augment=augment)
  return apply_gradients(state, grads, batch_stats, jnp.any(mask)), metrics


def train_chunk(states: TrainState, images: jax.Array, labels: jax.Array,
                idx: jax.Array, mask: jax.Array, class_counts: jax.Array,
                rngs: jax.Array, loss_weights: Optional[jax.Array] = None, *,
                loss: losses.LossSpec, seed_parallel: str, unroll: bool,
                augment: str = '',
                compiler_options: tuple[tuple[str, str], ...] = ()
                ) -> tuple[TrainState, dict]:
  """`T` steps of `K` seeds: scan over `[T, K, B]` batches, vmap over seeds.

  Jit-compiled (the keyword arguments are static, `states` is donated)
  with `compiler_options` (the resolved `ClassifyConfig.compiler_options`);
  called inside another jit or `shard_map`, use `chunk_program`, which is
  traced into the caller's program.

  Args:
    states: stacked `[K]` TrainStates, or (with 'loop') a tuple of the K
      seeds' own TrainStates (`split_seeds`), updated as they are: no
      slicing a seed's parameters and optimizer state out of the stack and
      stacking them back each step (docs/performance.md). The runner splits
      the states for an epoch when `seed_parallel` is 'loop'.
    images, labels: the whole source split (`[N, H, W, C]`, `[N]`), or
      every step's batches (`[T, K, B, H, W, C]`, `[T, K, B]`: a streamed
      chunk, each batch, or each device's part of it, read for it).
    idx, mask: `[T, K, B]` batch indices into `images` (None for
      batches) and validity.
    class_counts: `[K, C]`.
    rngs: `[T, K]` dropout keys.
    loss_weights: `[K, C]` class weights of the batch loss (deferred
      re-weighting), or None for the plain mean.
    loss: static; the loss with its hyperparameters (`cil.losses.LossSpec`).
    seed_parallel: 'vmap' batches the seeds into one program (for GPUs);
      'loop' unrolls each seed's `seed_gradients` inside the compiled
      program, which on XLA:CPU avoids the slow lowering of convolutions
      whose weights carry a batch axis, and maps `apply_gradients` over
      the stacked states (`benchmarks/classify_step.py` measures both).
    unroll: unroll the steps in Python instead of a `lax.scan`: XLA:CPU
      runs convolutions inside a while loop much slower
      (docs/performance.md), so on CPU use short, unrolled chunks.
    augment: `augment_batch`'s kind.
    compiler_options: XLA options as `(name, value)` pairs.

  Returns:
    New states (in `states`' form) and `[T, K]` metrics.
  """
  return _jitted_chunk(compiler_options)(
      states, images, labels, idx, mask, class_counts, rngs, loss_weights,
      loss=loss, seed_parallel=seed_parallel, unroll=unroll, augment=augment)


@functools.cache
def _jitted_chunk(compiler_options: tuple[tuple[str, str], ...]) -> Callable:
  """`chunk_program` compiled with `compiler_options` (one jit per set)."""
  return jax.jit(chunk_program, static_argnames=('loss', 'seed_parallel',
                                                 'unroll', 'augment'),
                 donate_argnums=(0,),
                 compiler_options=dict(compiler_options) or None)


def chunk_program(states, images, labels, idx, mask, class_counts, rngs,
                  loss_weights=None, *, loss, seed_parallel, unroll,
                  augment=''):
  """`train_chunk`'s program, un-jitted (for a caller's jit or
  `shard_map`); arguments as `train_chunk`'s."""
  hparams = {'loss': loss, 'augment': augment}
  batched = idx is None  # Every step's batches: no gather by index.

  def data_of(ims, labs, k):
    return (ims[k], labs[k]) if batched else (ims, labs)

  if isinstance(states, tuple):
    if seed_parallel != 'loop':
      raise ValueError("train_chunk: states as a tuple of seeds' states "
                       "(split_seeds) need seed_parallel='loop', got "
                       f'{seed_parallel!r}.')

    def per_seed(st, ims, labs, i, m, c, w, r):
      outs = [train_step(st[k], *data_of(ims, labs, k),
                         None if i is None else i[k], m[k], c[k],
                         None if w is None else w[k], r[k], **hparams)
              for k in range(len(st))]
      return tuple(o[0] for o in outs), loops.stack([o[1] for o in outs])
  elif seed_parallel == 'vmap':
    shared = 0 if batched else None
    per_seed = jax.vmap(functools.partial(train_step, **hparams),
                        in_axes=(0, shared, shared, 0, 0, 0, 0, 0))
  elif seed_parallel == 'loop':
    def per_seed(st, ims, labs, i, m, c, w, r):
      # Gradients seed by seed, then one update of the stacked states: a
      # whole `train_step` per seed also sliced each seed's optimizer state
      # out and stacked it back (docs/performance.md).
      if batched:
        grads, stats, metrics = loops.unrolled_map(
            lambda a: seed_gradients(*a, **hparams),
            (st, ims, labs, i, m, c, w, r))
      else:
        grads, stats, metrics = loops.unrolled_map(
            lambda a: seed_gradients(a[0], ims, labs, *a[1:], **hparams),
            (st, i, m, c, w, r))
      return (jax.vmap(apply_gradients)(st, grads, stats, jnp.any(m, -1)),
              metrics)
  else:
    raise ValueError(f"seed_parallel must be 'vmap' or 'loop', got "
                     f'{seed_parallel!r}.')

  def body(carry, xs):
    if batched:
      ims, labs, i, m, r = xs
    else:
      (i, m, r), ims, labs = xs, images, labels
    return per_seed(carry, ims, labs, i, m, class_counts, loss_weights, r)

  xs = (images, labels, None, mask, rngs) if batched else (idx, mask, rngs)
  if not unroll:
    return jax.lax.scan(body, states, xs)
  # A Python loop, not `scan(unroll=True)`: a length-1 scan stays a while
  # loop, with the CPU slowdown above.
  outs = []
  for t in range(mask.shape[0]):
    states, out = body(states, jax.tree.map(lambda x, t=t: x[t], xs))
    outs.append(out)
  return states, loops.stack(outs)


def split_seeds(states: TrainState) -> tuple[TrainState, ...]:
  """Stacked `[K]` TrainStates as a tuple of the K seeds' own states
  (`train_chunk`'s per-seed form; `stack_seeds` undoes it)."""
  return tuple(loops.unstack(states))


def stack_seeds(states: Sequence[TrainState]) -> TrainState:
  """The K seeds' own TrainStates stacked on a leading `[K]` axis."""
  return loops.stack(states)


@functools.partial(jax.jit, static_argnames=('apply_fn', 'seed_parallel'))
def logits_batch(apply_fn, variables, images, seed_parallel: str = 'loop'):
  """`[K, B, C]` logits of every seed's model (`variables` stacked on K).

  `seed_parallel` as `train_chunk`'s: 'loop' unrolls the seeds in the
  program (XLA:CPU runs convolutions with per-seed, batched weights far
  slower than K plain ones), 'vmap' maps over them.
  """
  def logits(v):  # float32 whatever the models compute in.
    return apply_fn(v, images, train=False).astype(jnp.float32)
  if seed_parallel == 'vmap':
    return jax.vmap(logits)(variables)
  return loops.unrolled_map(logits, variables)


def epoch_batches(splits: Sequence[data.ImbalancedSplit], seeds: Sequence[int],
                  epoch: int, batch_size: int, *,
                  labels: Optional[np.ndarray] = None,
                  sampler: str = 'instance', epochs: Optional[int] = None
                  ) -> tuple[np.ndarray, np.ndarray]:
  """`[steps, K, B]` batch indices and masks for one epoch of every seed.

  Each seed's order is drawn from (seed, epoch) by `sampler`
  (`cil.data.samplers`: 'instance' is a permutation of the seed's training
  set; the others re-sample it and need the split's `labels`, and
  'progressive' the run's `epochs`); seeds with fewer examples than the
  largest are padded with masked entries.
  """
  steps = max(math.ceil(s.indices.size / batch_size) for s in splits)
  idx = np.zeros((len(splits), steps * batch_size), np.int32)
  mask = np.zeros((len(splits), steps * batch_size), bool)
  if sampler != 'instance' and labels is None:
    raise ValueError(f'sampler {sampler!r} needs the labels.')
  for k, (split, seed) in enumerate(zip(splits, seeds)):
    order = samplers.epoch_order(split.indices, labels, sampler, seed=seed,
                                 epoch=epoch, epochs=epochs)
    idx[k, :order.size] = order
    mask[k, :order.size] = True
  shape = (len(splits), steps, batch_size)
  return (idx.reshape(shape).transpose(1, 0, 2),
          mask.reshape(shape).transpose(1, 0, 2))


@jax.jit
def step_keys(seeds: jax.Array, steps: jax.Array) -> jax.Array:
  """`[T, K]` dropout keys, a function of (seed, global step) only."""
  def key(seed, step):
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), 1),
                              step)
  return jax.vmap(lambda t: jax.vmap(lambda s: key(s, t))(seeds))(steps)
