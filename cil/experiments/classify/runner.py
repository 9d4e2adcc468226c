"""The classification runner: every (protocol, loss) cell of a config,
through the one cell loop (`cil.experiments.loop`).

Fault tolerance (`cil.workdir`): after every `checkpoint_every` epochs,
inside an epoch every `checkpoint_every_steps` optimizer steps (rounded up
to whole compiled chunks) and at a SIGTERM/SIGINT, the seeds' `TrainState`s
and the epoch's partial sums are saved with Orbax under
`workdir/checkpoints/<protocol>/<loss>/<chunks done>` (the last two kept,
checksummed); a finished (protocol, loss) cell writes
`workdir/runs/<protocol>__<loss>.json`. Rerunning with the same config
skips finished cells and resumes the others from their newest good
checkpoint, inside an epoch where it was taken there; batch orders are a
function of (seed, epoch) and dropout keys of (seed, step), so the data
position is (epoch, chunk) alone (a streamed split's reader restarts at
that chunk) and the result and the metrics log equal an uninterrupted
run's. A NaN/inf loss or parameter stops the run
(`errors.NonFiniteError`) without recording the cell.
"""

import dataclasses
import functools
import math
import sys
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cil import data
from cil import distributed
from cil import losses
from cil import metrics
from cil import plots
from cil import runtime
from cil import workdir as workdir_lib
from cil.experiments import loop
from cil.experiments import report
from cil.experiments.classify import decouple
from cil.experiments.classify.config import CELL_FIELDS
from cil.experiments.classify.config import HOST_AUGMENTATIONS
from cil.experiments.classify.config import ClassifyConfig
from cil.experiments.classify.config import DEVICE_AUGMENTATIONS
from cil.experiments.classify.config import TAU_GRID
from cil.experiments.classify.parallel import batches_from_parts
from cil.experiments.classify.parallel import DATA_AXIS
from cil.experiments.classify.parallel import data_mesh
from cil.experiments.classify.parallel import data_parallel_chunk
from cil.experiments.classify.parallel import local_columns
from cil.experiments.classify.parallel import predict_logits
from cil.experiments.classify.parallel import SEED_AXIS
from cil.experiments.classify.parallel import seed_mesh
from cil.experiments.classify.parallel import sharded_chunk
from cil.experiments.classify.step import create_states
from cil.experiments.classify.step import epoch_batches
from cil.experiments.classify.step import make_optimizer
from cil.experiments.classify.step import model_for
from cil.experiments.classify.step import split_seeds
from cil.experiments.classify.step import stack_seeds
from cil.experiments.classify.step import step_keys
from cil.experiments.classify.step import train_chunk


def cell_name(protocol: str, loss_name: str) -> str:
  """The workdir cell of one (protocol, loss): 'odd10/ci'."""
  return f'{protocol}/{loss_name}'


def train_and_evaluate(
    cfg: ClassifyConfig, train_set: data.ArrayDataset,
    test_set: data.ArrayDataset, protocol: str, loss_name: str,
    work: workdir_lib.Workdir, *, progress: Any = None,
    epoch_callback: Optional[Callable[[int], None]] = None,
    step_callback: Optional[Callable[[int], None]] = None,
    row: Optional[str] = None, val_set: Optional[data.ArrayDataset] = None
    ) -> dict:
  """Trains `cfg.seeds` models for one (protocol, loss); returns metrics.

  `row` names the cell and its table row (default `loss_name`; a cell of
  `ClassifyConfig.cells`, whose settings `cfg` is: `for_cell`). With
  `val_set` (`cfg.validation`), post-hoc adjustment's and tau-norm's tau
  are chosen on it for each seed before the test split is read. `cfg` is
  resolved (`ClassifyConfig.resolve`: every backend choice is a
  plain value in it). The cell loop (`cil.experiments.loop`) resumes
  from the cell's newest good checkpoint; each epoch appends the seeds'
  mean train loss and accuracy and its wall time to the cell's metrics log.
  Checkpoints are taken every `cfg.checkpoint_every` epochs and, inside
  an epoch, every `cfg.checkpoint_every_steps` optimizer steps (rounded
  up to whole chunks) and at a stop request; `epoch_callback(epoch)` and
  `step_callback(steps_done_in_cell)` see each epoch and chunk (tests
  interrupt runs there).

  Raises:
    cil.errors.NonFiniteError: a seed's loss or parameters became NaN/inf.
  """
  row = row or loss_name
  cell = cell_name(protocol, row)
  seeds = list(range(cfg.first_seed, cfg.first_seed + cfg.seeds))
  protocol_fn = data.get_protocol(protocol)
  splits = [protocol_fn(train_set.labels, seed=s,
                        num_classes=train_set.num_classes) for s in seeds]
  counts = jnp.asarray(np.stack([s.class_counts for s in splits]),
                       jnp.float32)
  # One model's batch over several devices (`data_mesh`), or with several
  # processes the seeds over their devices (`seed_mesh`), or neither.
  split_batches = data_mesh(len(seeds), cfg.data_parallel, cfg.batch_size)
  mesh = split_batches or seed_mesh(len(seeds))
  batch_norm_groups = cfg.batch_norm_groups or (
      1 if split_batches is None else split_batches.shape[DATA_AXIS])
  model = model_for(cfg.model, train_set.num_classes, cfg.conv_pool,
                    cfg.dtype, batch_norm_groups, cfg.input_norm)
  steps_per_epoch = math.ceil(max(s.indices.size for s in splits)
                              / cfg.batch_size)
  tx = make_optimizer(cfg, steps_per_epoch)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  states = create_states(model, tx, keys, jnp.asarray(first_image(train_set)))
  if mesh is not None:
    states = distributed.put(states, mesh,
                             jax.sharding.PartitionSpec(SEED_AXIS))

  static = step_settings(cfg, loss_name)
  options = static.pop('compiler_options')
  weights = np.asarray(
      losses.effective_number_weights(counts, beta=cfg.drw_beta))
  # Streamed (`cil.data.StreamedSplit`): each chunk's batches are read for
  # it (by Grain, ahead of use), each process reading only the part of
  # every seed's batches its devices hold (`columns`: with several
  # processes, its own seeds, or its share of each batch), and passed as
  # `[T, K, B, ...]` batches: the same images in the same order as the
  # resident arrays of the in-memory path.
  streamed = isinstance(train_set, data.StreamedSplit)
  columns = {}  # Seed -> the batch positions this process reads.
  if streamed:
    columns = local_columns(mesh, len(seeds), cfg.batch_size)
  resident = None if streamed else (train_set.images, train_set.labels)
  if mesh is None:
    if resident is not None:
      resident = (jnp.asarray(resident[0]),
                  jnp.asarray(resident[1], jnp.int32))
    weights = jnp.asarray(weights)

    def run_chunk(states, c_idx, c_mask, global_steps, drw, read=None):
      images, labels = read or resident
      rngs = step_keys(jnp.asarray(seeds), jnp.asarray(global_steps))
      return train_chunk(states, jnp.asarray(images),
                         jnp.asarray(labels, jnp.int32),
                         None if read else jnp.asarray(c_idx),
                         jnp.asarray(c_mask), counts, rngs,
                         weights if drw else None, compiler_options=options,
                         **static)
  else:
    P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
    if resident is not None:
      resident = distributed.put(
          (resident[0], resident[1].astype(np.int32)), mesh, P())
    seed_ids, counts, weights = distributed.put(
        (np.asarray(seeds), np.asarray(counts), weights), mesh, P(SEED_AXIS))

    def run_chunk(states, c_idx, c_mask, global_steps, drw, read=None):
      images, labels = read or resident
      if read is not None:  # The batches, each process's part read by it.
        c_idx = None
      if split_batches is None:
        fn = sharded_chunk(mesh, drw, options, batched=read is not None,
                           **static)
        batches = P(None, SEED_AXIS)
      else:
        fn = data_parallel_chunk(mesh, drw, read is not None, options,
                                 **static)
        batches = P(None, SEED_AXIS, DATA_AXIS)
      by_step_seed = distributed.put((c_idx, c_mask), mesh, batches)
      return fn(states, images, labels, *by_step_seed, counts, seed_ids,
                distributed.put(global_steps, mesh, P()),
                *((weights,) if drw else ()))

  # On one device with 'loop', each seed's state is its own for the epoch
  # (`train_chunk`'s per-seed form).
  split = mesh is None and cfg.seed_parallel == 'loop'

  def host_augment(seed, epoch):
    """A streamed read's host augmentation: seed k's crops in an epoch are
    drawn from (seed, epoch, position in the seed's epoch)."""
    if cfg.augment not in HOST_AUGMENTATIONS:
      return {}
    jitter = (data.transforms.JITTER
              if cfg.augment == 'resized_crop_flip_jitter' else 0.0)
    return {'transform': data.transforms.random_resized_crop_flip(
                train_set.image_shape[0], jitter=jitter),
            'seed': int(np.random.SeedSequence(
                [seed, epoch]).generate_state(1)[0])}

  chunk = min(cfg.chunk_steps, steps_per_epoch)
  num_chunks = math.ceil(steps_per_epoch / chunk)
  # An epoch's partial results, summed in float64 chunk by chunk (also
  # saved with a checkpoint inside the epoch).
  carry0 = {'loss_sum': np.zeros((), np.float64),
            'accuracy_sum': np.zeros((), np.float64),
            'count': np.zeros((), np.int64)}

  def train_epoch(states, epoch, parts):
    """One epoch of every seed, in chunks from `parts.first`; the guard on
    every chunk, a checkpoint or a stop between chunks (`parts.done`)."""
    if split:
      states = split_seeds(states)
    drw = bool(cfg.drw_epoch) and epoch >= cfg.drw_epoch
    idx, mask = epoch_batches(splits, seeds, epoch, cfg.batch_size,
                              labels=train_set.labels, sampler=cfg.sampler,
                              epochs=cfg.epochs)
    steps = idx.shape[0]
    pad = -steps % chunk  # The last chunk is padded with inactive steps.
    idx = np.concatenate([idx, np.zeros((pad,) + idx.shape[1:], idx.dtype)])
    mask = np.concatenate([mask, np.zeros((pad,) + mask.shape[1:], bool)])
    first = parts.first * chunk
    # One reader per seed of this process's part of the batches, from
    # `first`; each image's augmentation drawn from its position in the
    # seed's epoch (step x batch + column), as a read of the whole epoch.
    reads = [train_set.chunks(
        idx[:, k][:, cols].reshape(-1), chunk * cols.size,
        start=first * cols.size, threads=max(1, 4 // len(columns)),
        positions=(np.arange(idx.shape[0])[:, None] * cfg.batch_size
                   + cols).reshape(-1),
        **host_augment(seeds[k], epoch)) for k, cols in columns.items()]
    carry = dict(parts.carry)
    for c, start in enumerate(range(first, steps, chunk), parts.first + 1):
      c_idx, c_mask = idx[start:start + chunk], mask[start:start + chunk]
      read = None
      if streamed:
        read = batches_from_parts(mesh, columns, reads, c_idx,
                                  train_set.labels, train_set.image_shape)
      global_steps = epoch * steps + start + np.arange(chunk)
      states, step_metrics = run_chunk(states, c_idx, c_mask, global_steps,
                                       drw, read)
      step_metrics = distributed.to_host(step_metrics)
      active = c_mask.any(axis=(1, 2))
      chunk_loss = np.asarray(step_metrics['loss'])[active]
      workdir_lib.check_finite(cell, int(global_steps[0]) + 1,
                               loss=chunk_loss)
      carry = {'loss_sum': carry['loss_sum'] + chunk_loss.sum(
                   dtype=np.float64),
               'accuracy_sum': carry['accuracy_sum'] + np.asarray(
                   step_metrics['accuracy'])[active].sum(dtype=np.float64),
               'count': carry['count'] + chunk_loss.size}
      if progress is not None:
        progress.update(int(active.sum()))
        progress.set_postfix(cell=cell, epoch=epoch + 1, refresh=False,
                             loss=f'{np.mean(chunk_loss):.4f}')
      if step_callback is not None:
        step_callback(min(epoch * steps + start + chunk,
                          (epoch + 1) * steps))
      states_now = states
      parts.done(c, lambda: stack_seeds(states_now) if split else states_now,
                 carry)
    return stack_seeds(states) if split else states, {
        'train_loss': carry['loss_sum'] / carry['count'],
        'train_accuracy': carry['accuracy_sum'] / carry['count']}

  callback = None
  if epoch_callback is not None:
    callback = lambda epoch, *_: epoch_callback(epoch)  # noqa: E731
  with loop.CellTraining(
      work, cell, states, checkpoint_every=cfg.checkpoint_every,
      parts=num_chunks, carry=carry0, unit='epoch',
      checkpoint_parts=math.ceil(cfg.checkpoint_every_steps / chunk)
  ) as training:
    history = training.run(cfg.epochs, train_epoch,
                           seconds_key='epoch_seconds', callback=callback)
    states = training.state

  # Every choice first, on the held-out split (`cfg.validation`) alone;
  # the test split is read after. Each split is read once: every seed's
  # logits and, for decoupling, its features from the same images.
  seed_variables = []
  if cfg.decouple:
    host_variables = distributed.to_host(states.variables())
    seed_variables = [jax.tree.map(lambda x, k=k: x[k], host_variables)
                      for k in range(len(seeds))]
  taus = [cfg.posthoc_tau] * len(seeds)
  val_logits = val_features = None
  if val_set is not None:
    val_logits, val_features = _split_outputs(states, val_set, cfg, mesh,
                                              model, seed_variables)
  if val_logits is not None and cfg.posthoc_tau:
    taus = [decouple.choose_tau(
        lambda t, k=k: np.asarray(losses.posthoc_adjusted_logits(
            val_logits[k], splits[k].class_counts, tau=t)),
        val_set.labels, TAU_GRID) for k in range(len(seeds))]
  fitted = []
  if cfg.decouple:
    for k, seed in enumerate(seeds):
      chosen = splits[k].indices
      fitted.append(decouple.stage_two_fit(
          model, seed_variables[k],
          _images_of(train_set, chosen, cfg), train_set.labels[chosen],
          methods=cfg.decouple,
          tx=functools.partial(_stage_two_optimizer, cfg),
          epochs=cfg.decouple_epochs, batch_size=cfg.batch_size,
          eval_batch_size=cfg.eval_batch_size, tau=cfg.decouple_tau,
          seed=seed, taus=TAU_GRID, sample=first_image(train_set),
          validation=None if val_set is None else (
              val_features[k][0], val_set.labels)))
  chosen_on = 'validation' if val_set is not None else 'stated'

  logits, test_features = _split_outputs(states, test_set, cfg, mesh, model,
                                         seed_variables)
  per_seed = []
  for k, seed in enumerate(seeds):
    score = functools.partial(
        metrics.seed_scores, test_set.labels,
        class_counts=splits[k].class_counts,
        num_classes=test_set.num_classes,
        shot_thresholds=cfg.shot_thresholds)
    scores = score(np.argmax(logits[k], -1))
    if val_logits is not None:  # What a choice between rows may read.
      scores[report.VALIDATION] = _validation_scores(
          val_set.labels, val_logits[k])
    if cfg.posthoc_tau:
      adjusted = losses.posthoc_adjusted_logits(
          logits[k], splits[k].class_counts, tau=taus[k])
      scores[report.POSTHOC] = {'tau': taus[k], 'tau_chosen_on': chosen_on,
                                **score(np.asarray(jnp.argmax(adjusted,
                                                              -1)))}
      if val_logits is not None:
        scores[report.POSTHOC][report.VALIDATION] = _validation_scores(
            val_set.labels, np.asarray(losses.posthoc_adjusted_logits(
                val_logits[k], splits[k].class_counts, tau=taus[k])))
    if cfg.decouple:
      second = decouple.stage_two_logits(
          model, seed_variables[k], fitted[k], *test_features[k],
          sample=first_image(test_set))
      for method, method_logits in second.items():
        _, method_losses, tau = fitted[k][method]
        scores[method] = {'stage2_loss_per_epoch': method_losses,
                          **({'tau': tau, 'tau_chosen_on': chosen_on}
                             if method == 'tau_norm' else {}),
                          **score(np.argmax(method_logits, -1))}
    per_seed.append({'seed': seed, **splits[k].summary(), **scores})
  return {'protocol': protocol, 'loss': row,
          'loss_hparams': static['loss'].kwargs, 'model': cfg.model,
          'batch_norm_groups': batch_norm_groups,
          'train_loss_per_epoch': [r['train_loss'] for r in history],
          'per_seed': per_seed}


def _validation_scores(labels: np.ndarray, logits: np.ndarray) -> dict:
  """Accuracy and balanced accuracy of one model on the validation
  split: the scores `report.tuned` chooses hyperparameters by."""
  scores = metrics.classification_metrics(metrics.confusion_matrix(
      labels, np.argmax(logits, -1), logits.shape[-1]))
  return {k: scores[k] for k in ('accuracy', 'balanced_accuracy')}


def first_image(ds) -> np.ndarray:
  """`[1, H, W, C]`: a split's first image, in memory or streamed."""
  if isinstance(ds, data.StreamedSplit):
    return ds.images([0])
  return ds.images[:1]


def _split_outputs(states, split, cfg: ClassifyConfig, mesh, model=None,
                   seed_variables=()) -> tuple[np.ndarray, list]:
  """`[K, n, C]` logits of a split (the test or the validation split)
  and, for each of `seed_variables` (one seed's), its `([n, D] features,
  [n, C] logits)` (`decouple.features`), from one read of the split
  (chunk by chunk when streamed)."""
  logits, features = [], [[] for _ in seed_variables]
  for images in _images_of(split, None, cfg, whole=True):
    logits.append(predict_logits(states, images, cfg.eval_batch_size, mesh,
                                 seed_parallel=cfg.seed_parallel))
    for k, variables in enumerate(seed_variables):
      features[k].append(decouple.features(model, variables, images,
                                           cfg.eval_batch_size))
  return np.concatenate(logits, axis=1), [
      tuple(np.concatenate(parts) for parts in zip(*f)) for f in features]


def _images_of(split, indices: Optional[np.ndarray], cfg: ClassifyConfig,
               whole: bool = False):
  """A split's images at `indices` (None: all) as the evaluation sees
  them: an array for a split in memory (with `whole`, in a list: one
  chunk); for a streamed one, a generator of arrays read chunk by chunk
  (the references' test transform applied with a host augmentation), so
  no more than a chunk is held. Chunks of 8 evaluation batches, the last
  read to a whole batch (or as it is when shorter than one: the shapes an
  in-memory split's batches have), so each image is read once or, in the
  last batch's padding, twice."""
  if not isinstance(split, data.StreamedSplit):
    images = split.images if indices is None else split.images[indices]
    return [images] if whole else images
  indices = np.arange(len(split)) if indices is None else np.asarray(indices)
  n, batch = indices.size, cfg.eval_batch_size
  chunk = 8 * batch
  body, tail = n - n % chunk, n % chunk
  padded = tail if tail <= batch else -(-tail // batch) * batch
  order = indices[np.arange(body + padded) % n]
  transform = None
  if cfg.augment in HOST_AUGMENTATIONS:
    transform = data.transforms.resize_centre_crop(split.image_shape[0])

  def read():
    if body:
      yield from split.chunks(order[:body], chunk, transform=transform)
    if tail:
      yield next(split.chunks(order[body:], padded,
                              transform=transform))[:tail]
  return read()


@functools.lru_cache(maxsize=None)
@functools.lru_cache(maxsize=None)
def _stage_two_optimizer(cfg: ClassifyConfig, steps_per_epoch: int):
  """The decoupled classifiers' optimizer: the run's, with its weight
  decay, over `decouple_epochs` without warm-up or step decays: constant,
  or with `lr_schedule='cosine'` annealed per epoch to 0 over them (Kang
  et al.'s `cls_crt.yaml`: `coslr`). One instance per setting, so stage 2
  compiles once."""
  return make_optimizer(dataclasses.replace(
      cfg, epochs=cfg.decouple_epochs, lr_warmup_epochs=0,
      lr_decay_epochs=()), steps_per_epoch)


def step_settings(cfg: ClassifyConfig, loss: str) -> dict:
  """The static settings of one cell's compiled train step (`train_chunk`'s
  keyword arguments), read from a resolved config alone: the loss spec,
  `seed_parallel`, `unroll`, `augment` and `compiler_options`. A config
  read back from a run's `config.json` gives the same."""
  return {'loss': cfg.loss_spec(loss), 'seed_parallel': cfg.seed_parallel,
          'unroll': cfg.unroll,
          'augment': (cfg.augment if cfg.augment in DEVICE_AUGMENTATIONS
                      else ''),
          'compiler_options': cfg.compiler_options}


def _cell_settings(cfg: ClassifyConfig, protocol: str, entry: str) -> dict:
  """What one cell runs with: the resolved config's fields that vary by
  cell (`ClassifyConfig.cells`) or by backend."""
  cell, loss = cfg.for_cell(entry)
  return {'protocol': protocol, 'loss': entry, 'trained_loss': loss,
          'model': cell.model, 'loss_hparams': cell.loss_spec(loss).kwargs,
          **{f: getattr(cell, f) for f in CELL_FIELDS[2:]},
          'chunk_steps': cfg.chunk_steps, 'data_parallel': cfg.data_parallel,
          'seed_parallel': cfg.seed_parallel, 'step_loop': cfg.step_loop,
          'conv_pool': cfg.conv_pool}


def _check_data(cfg: ClassifyConfig, train_set: data.ArrayDataset,
                test_set: data.ArrayDataset) -> None:
  """Named errors for data the model or the test set cannot take."""
  if train_set.image_shape != test_set.image_shape:
    raise ValueError(f'{cfg.dataset}: train images are '
                     f'{train_set.image_shape} but test images '
                     f'{test_set.image_shape}.')
  if test_set.labels.max() >= train_set.num_classes:
    raise ValueError(f'{cfg.dataset}: test labels reach '
                     f'{test_set.labels.max()} but training has '
                     f'{train_set.num_classes} classes.')
  untested = np.flatnonzero(test_set.class_counts()[:train_set.num_classes]
                            == 0)
  if untested.size:
    names = [train_set.class_names[c] for c in untested[:10]]
    print(f'cil: {cfg.dataset}: {untested.size} of {train_set.num_classes} '
          f'classes have no test image ({", ".join(names)}); their recall '
          f'is undefined and the per-class means (balanced accuracy, '
          f'minority recall, shot groups) average over the others.',
          file=sys.stderr, flush=True)
  channels = train_set.image_shape[-1]
  if cfg.input_norm and len(cfg.input_norm[0]) != channels:
    raise ValueError(
        f'--config.input_norm has {len(cfg.input_norm[0])} means and stds '
        f'but {cfg.dataset} images have {channels} channel(s) (shape '
        f'{train_set.image_shape}).')
  for name in cfg.models_used():
    model = model_for(name, train_set.num_classes, cfg.conv_pool, cfg.dtype,
                      input_norm=cfg.input_norm)
    try:
      variables = jax.eval_shape(functools.partial(model.init, train=False),
                                 jax.random.key(0), first_image(train_set))
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(
          f'Model {name!r} cannot take {cfg.dataset} images of '
          f'shape {train_set.image_shape} ({type(e).__name__}: '
          f'{str(e).splitlines()[0][:200]}); set --config.model (e.g. '
          f'digits_cnn for small images) or --config.image_size.') from None
    if cfg.decouple:
      try:
        decouple.head_path(model, variables, first_image(train_set))
      except ValueError as e:
        raise ValueError(f'--config.decouple={",".join(cfg.decouple)}: {e}'
                         ) from None


def _tables_markdown(cfg: ClassifyConfig, model: str, runs: list,
                     rows: list, names: list) -> str:
  """`table.md`: every metric's Table I-shaped table, with its caption."""
  lambda_of = {r['protocol']: r['summary']['imbalance_degree']['mean']
               for r in runs}
  lambdas = ', '.join(f'{p} {lambda_of[p]:.3f}' for p in cfg.protocols)
  low, high = cfg.shot_thresholds
  captions = {
      'accuracy': (
          f'Recognition rate (%) on the {cfg.dataset} test set, mean ± 95 % '
          f'CI over {cfg.seeds} seeds; model {model}, {cfg.epochs} epochs. '
          f'Imbalance degree λ of the training sets: {lambdas}.'),
      'balanced_accuracy': 'Balanced accuracy (%, mean test recall over '
                           'classes):',
      'minority_recall': 'Minority recall (%, mean test recall of the '
                         'classes with fewer training images than the '
                         'largest):',
      'many_shot': f'Many-shot accuracy (%, mean test recall of the classes '
                   f'with more than {high} training images; empty: no such '
                   f'class):',
      'medium_shot': f'Medium-shot accuracy (%, classes with {low} to {high} '
                     f'training images):',
      'few_shot': f'Few-shot accuracy (%, classes with fewer than {low} '
                  f'training images):',
  }
  parts = []
  if cfg.posthoc_tau:
    tau = (f'τ chosen per seed on the validation split ({cfg.validation}) '
           f'from {", ".join(f"{t:g}" for t in TAU_GRID)}'
           if cfg.validation else f'τ = {cfg.posthoc_tau:g}')
    parts.append(f"Rows '<loss>+posthoc': the same models predicting with "
                 f'post-hoc logit adjustment, argmax of z - τ log π with '
                 f'{tau} and π the seed\'s training class '
                 f'frequencies (Menon et al. 2021).\n')
  for metric, caption in captions.items():
    parts.append(f'{caption}\n\n'
                 f'{report.markdown_table(rows, cfg.protocols, names, metric)}'
                 f'\n')
  return '\n'.join(parts)


@loop.stops_on_signals
def run(cfg: ClassifyConfig, workdir: str, *, show_progress: bool = True,
        epoch_callback: Optional[Callable[[str, str, int], None]] = None,
        step_callback: Optional[Callable[[str, str, int], None]] = None
        ) -> dict:
  """Runs every (protocol, loss) of `cfg`; writes results to `workdir`.

  The config, the seeds and the data are checked before the workdir is
  touched; then it is locked and claimed (`cil.workdir`). Outputs:
  `results.json` (config, per-run counts, rho, lambda, per-seed metrics and
  summaries), `table.md` (Table I's shape for accuracy, balanced accuracy,
  minority recall and many/medium/few-shot accuracy; with
  `cfg.posthoc_tau`, rows '<loss>+posthoc' too, whose summaries are each
  run's `summary['posthoc']`), `per_class_recall.{png,pdf,csv}`,
  with three or more distinct imbalance degrees `lambda_sweep.{png,pdf,csv}`
  (accuracy, balanced accuracy and minority recall against lambda) and
  `lambda_differences.{png,pdf,csv}` (each row minus the first loss,
  paired by seed),
  `metrics/<cell>.jsonl` and `tensorboard/`. Finished cells are kept in
  `runs/` and not recomputed; unfinished ones resume from their last good
  checkpoint.

  Returns:
    The results dict written to `results.json`.

  Raises:
    cil.errors.RunError: a locked workdir, a different config, a damaged file,
      a non-finite loss or parameter (nothing is then recorded as finished).
  """
  cfg.validate()
  kw = {'data_dir': cfg.data_dir, 'manual_dir': cfg.manual_dir,
        'options': cfg.data_options()}
  pipeline = cfg.input_pipeline or data.default_pipeline(cfg.dataset,
                                                         'train', **kw)
  if pipeline != 'stream' and cfg.augment in HOST_AUGMENTATIONS:
    raise ValueError(
        f'--config.augment={cfg.augment} crops the stored images as '
        f'they are read; it needs --config.input_pipeline=stream (this run '
        f'holds {cfg.dataset} in memory).')
  read = data.stream if pipeline == 'stream' else data.load
  train_set = read(cfg.dataset, 'train', **kw)
  test_set = read(cfg.dataset, cfg.test_split, **kw)
  val_set = None
  if cfg.validation_fraction():
    if pipeline == 'stream':
      raise ValueError(
          f'--config.validation={cfg.validation} holds out part of the '
          f'training images in memory; it needs '
          f'--config.input_pipeline=memory (or a split of the dataset).')
    keep, held = data.holdout(train_set.labels, cfg.validation_fraction())
    val_set = train_set.subset(held, f'train[held out {cfg.validation}]')
    train_set = train_set.subset(keep, 'train[rest]')
  elif cfg.validation:
    val_set = read(cfg.dataset, cfg.validation, **kw)
  policy = runtime.policy()
  cfg = dataclasses.replace(cfg.resolve(policy), input_pipeline=pipeline)
  _check_data(cfg, train_set, test_set)
  cells = [(p, n) for p in cfg.protocols for n in cfg.losses]
  record = runtime.describe(policy, classify={
      'seeds': list(range(cfg.first_seed, cfg.first_seed + cfg.seeds)),
      'cells': {cell_name(*c): _cell_settings(cfg, *c) for c in cells}})

  # The resolved config is the claim and the record (what ran); where the
  # data lives may change between a run and its resumption.
  config = dataclasses.asdict(cfg)
  record['data_location'] = {k: config.pop(k)
                             for k in ('data_dir', 'manual_dir')}
  with workdir_lib.Workdir(workdir, config, runtime=record) as work:
    work.claim_data({'train': train_set.record(), 'test': test_set.record(),
                     **({'validation': val_set.record()}
                        if val_set is not None else {})})
    by_name = {cell_name(*c): c for c in cells}

    def steps_of(cell):
      split = data.get_protocol(by_name[cell][0])(train_set.labels, seed=0)
      return cfg.epochs * math.ceil(split.indices.size / cfg.batch_size)

    def train_cell(cell, bar):
      protocol, loss_name = by_name[cell]
      callbacks = {
          name: functools.partial(fn, protocol, loss_name)
          for name, fn in (('epoch_callback', epoch_callback),
                           ('step_callback', step_callback)) if fn}
      cell_cfg, loss = cfg.for_cell(loss_name)
      result = train_and_evaluate(
          cell_cfg, train_set, test_set, protocol, loss, work, progress=bar,
          row=loss_name, val_set=val_set, **callbacks)
      result['settings'] = record['classify']['cells'][cell]
      return result

    runs = loop.run_cells(work, list(by_name), train_cell, steps_of=steps_of,
                          desc='training steps (all seeds)',
                          record_keys=report.CLASSIFY_RECORD_KEYS,
                          show_progress=show_progress)

    for r in runs:
      r['summary'] = report.summarize(r)
    # Other prediction rules of the same models (post-hoc adjustment,
    # decoupled classifiers) are rows of their own in every table.
    rows = report.with_variants(runs)
    by_cell = {(r['protocol'], r['loss']): r for r in runs}
    for row in rows[len(runs):]:
      row['summary'] = report.summarize(row)
      trained, variant = row['loss'].rsplit('+', 1)
      by_cell[row['protocol'], trained]['summary'][variant] = row['summary']
    names = list(cfg.losses) + [r['loss'] for r in rows[len(runs):]
                                if r['protocol'] == cfg.protocols[0]]
    results = {'config': work.config, 'dataset': {
        'name': cfg.dataset, 'train_size': len(train_set),
        'test_size': len(test_set),
        'test_class_counts': test_set.class_counts().tolist(),
        'class_names': list(train_set.class_names)}, 'runs': runs}
    table = report.markdown_table(rows, cfg.protocols, names)
    results['table_markdown'] = table
    work.write_json('results.json', results)
    cell_models = {e: cfg.for_cell(e)[0].model for e in cfg.losses}
    model = cfg.model if set(cell_models.values()) == {cfg.model} else (
        ', '.join(f'{m} ({e})' for e, m in cell_models.items()))
    work.write_text('table.md', _tables_markdown(cfg, model, runs, rows,
                                                 names))
    if not work.primary:
      return results
    plots.per_class_recall(rows, train_set.class_names,
                           work.file('per_class_recall'))
    if len({round(r['summary']['imbalance_degree']['mean'], 6)
            for r in runs}) >= 3:
      plots.metrics_vs_lambda(rows, work.file('lambda_sweep'))
      if len(rows) > len(cfg.protocols):  # Losses to compare with the first.
        plots.differences_vs_lambda(
            report.paired_differences(rows, cfg.losses[0]),
            work.file('lambda_differences'), baseline=cfg.losses[0])
  return results
