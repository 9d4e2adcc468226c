"""Seeds and batches across devices and processes: the device code of the
runner.

* Seeds: with several processes the seeds' states are global arrays
  sharded over the mesh of every process's devices (`seed_mesh`); each
  device trains and scores its seeds under `shard_map` (`sharded_chunk`,
  `predict_logits`). With one process the step runs as it is and
  `predict_logits` scores locally.
* One model over many devices (`data_parallel`): a ('seeds', 'data') mesh
  (`data_mesh`), each seed's batch split over the 'data' axis and the
  seeds over 'seeds'; the train step is the same program, jit-compiled
  with the inputs' shardings (`data_parallel_chunk`), so the compiler
  partitions it and reduces the loss, the gradients and batch norm's
  statistics over the whole batch (batch norm as PyTorch's SyncBatchNorm,
  not per device as `nn.DataParallel`): the run equals a one-device run up
  to the order of float32 sums (`tests/experiments/data_parallel_test.py`).
  Streamed, each process reads only its devices' part of every batch
  (`local_columns`) and the chunk's batches are built from the parts
  (`batches_from_parts`).
"""

import functools
from typing import Any, Callable, Optional

import jax
import numpy as np

from cil import distributed
from cil import loops
from cil.experiments.classify.step import chunk_program
from cil.experiments.classify.step import logits_batch
from cil.experiments.classify.step import step_keys
from cil.experiments.classify.step import TrainState


SEED_AXIS = 'seeds'
DATA_AXIS = 'data'


def _keyed_program(**static) -> Callable:
  """`chunk_program` taking the seeds and global steps instead of the
  dropout keys (drawn inside: `step_keys`), un-jitted: the caller's jit
  carries the compiler options (a nested jit may not)."""

  def program(states, images, labels, idx, mask, counts, seeds, steps,
              weights=None):
    return chunk_program(states, images, labels, idx, mask, counts,
                         step_keys(seeds, steps), weights, **static)
  return program


@functools.lru_cache(maxsize=None)
def sharded_chunk(mesh: jax.sharding.Mesh, weighted: bool,
                  compiler_options: tuple[tuple[str, str], ...] = (), *,
                  batched: bool = False, **static):
  """`train_chunk`'s program under `shard_map`: `(states, images, labels,
  idx, mask, counts, seeds, steps[, weights]) -> (states, [T, K] metrics)`,
  compiled with `compiler_options`; `static` are `chunk_program`'s keyword
  arguments. The images and labels are the whole split, on every device,
  or with `batched` every step's batches (`[T, K, B, ...]`, sharded like
  the seeds, the indices None: each process holds only its seeds'
  images)."""
  # pylint: disable-next=g-import-not-at-top
  from jax.sharding import PartitionSpec as P
  by_seed, by_step_seed = P(SEED_AXIS), P(None, SEED_AXIS)
  data = by_step_seed if batched else P()
  in_specs = (by_seed, data, data, by_step_seed, by_step_seed, by_seed,
              by_seed, P()) + ((by_seed,) if weighted else ())
  return jax.jit(jax.shard_map(_keyed_program(**static), mesh=mesh,
                               in_specs=in_specs,
                               out_specs=(by_seed, by_step_seed),
                               check_vma=False),
                 compiler_options=dict(compiler_options) or None)


def data_mesh(num_seeds: int, data_parallel: int, batch_size: int
              ) -> Optional[jax.sharding.Mesh]:
  """The ('seeds', 'data') mesh of a run whose batches are split over
  `data_parallel` devices (-1: every device of every process); None for 1.

  Raises:
    ValueError: the devices, seeds or batch do not divide evenly.
  """
  if data_parallel == 1:
    return None
  devices = jax.devices()
  split = len(devices) if data_parallel == -1 else data_parallel
  if len(devices) % split:
    raise ValueError(
        f'data_parallel={data_parallel} does not divide the {len(devices)} '
        f'devices of {distributed.process_count()} process(es).')
  groups = len(devices) // split
  if num_seeds % groups:
    raise ValueError(
        f'seeds ({num_seeds}) must divide evenly over the {groups} groups '
        f'of {split} devices (data_parallel={data_parallel}); set '
        f'--config.seeds to a multiple of {groups}.')
  if batch_size % split:
    raise ValueError(
        f'batch_size ({batch_size}) must divide evenly over the {split} '
        f'devices each batch is split over (data_parallel={data_parallel}).')
  return jax.sharding.Mesh(np.array(devices).reshape(groups, split),
                           (SEED_AXIS, DATA_AXIS))


@functools.lru_cache(maxsize=None)
def data_parallel_chunk(mesh: jax.sharding.Mesh, weighted: bool,
                        batched: bool,
                        compiler_options: tuple[tuple[str, str], ...] = (),
                        **static):
  """`train_chunk`'s program over a `data_mesh`: `(states, images, labels,
  idx, mask, counts, seeds, steps[, weights]) -> (states, [T, K]
  metrics)`, jit-compiled with the shardings of its inputs and outputs
  (seeds over 'seeds', each `[T, K, B]` batch's B over 'data'; the images
  replicated, or with `batched` every step's batches, `[T, K, B, ...]`,
  laid out as the indices, which are then None: each device holds, and
  each process reads, only its part of each batch) and
  `compiler_options`; `static` are `chunk_program`'s keyword arguments.
  The states are donated."""
  # pylint: disable-next=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P

  def sharding(*spec):
    return NamedSharding(mesh, P(*spec))

  by_seed, batch = sharding(SEED_AXIS), sharding(None, SEED_AXIS, DATA_AXIS)
  data = batch if batched else sharding()
  in_shardings = (by_seed, data, data, batch, batch, by_seed, by_seed,
                  sharding()) + ((by_seed,) if weighted else ())
  return jax.jit(_keyed_program(**static), in_shardings=in_shardings,
                 out_shardings=(by_seed, sharding(None, SEED_AXIS)),
                 donate_argnums=(0,),
                 compiler_options=dict(compiler_options) or None)


def _batch_spec(mesh: jax.sharding.Mesh) -> jax.sharding.PartitionSpec:
  """How `[T, K, B, ...]` batches lie on a `data_mesh` or `seed_mesh`."""
  if DATA_AXIS in mesh.axis_names:
    return jax.sharding.PartitionSpec(None, SEED_AXIS, DATA_AXIS)
  return jax.sharding.PartitionSpec(None, SEED_AXIS)


def local_columns(mesh: Optional[jax.sharding.Mesh], num_seeds: int,
                  batch_size: int) -> dict[int, np.ndarray]:
  """Seed -> the positions in each of its batches that this process's
  devices hold (what this process reads): on a `data_mesh` its share of
  each batch, on a `seed_mesh` its seeds' whole batches, without a mesh
  every seed's."""
  if mesh is None:
    return {k: np.arange(batch_size) for k in range(num_seeds)}
  columns = {}
  for _, ks, bs in distributed.local_parts(
      (1, num_seeds, batch_size), mesh, _batch_spec(mesh)):
    for k in range(ks.start, ks.stop):
      columns.setdefault(k, set()).update(range(bs.start, bs.stop))
  return {k: np.array(sorted(c)) for k, c in sorted(columns.items())}


def batches_from_parts(mesh: Optional[jax.sharding.Mesh], columns: dict,
                       reads: list, c_idx: np.ndarray, labels: np.ndarray,
                       image_shape: tuple[int, ...]) -> tuple[Any, Any]:
  """A chunk's `[T, K, B, H, W, C]` images and `[T, K, B]` labels, from
  this process's reads of its `columns` (`local_columns`) alone: global
  arrays laid out on `mesh`, or without one host arrays. `reads`: one
  iterator per seed of `columns` giving its `[T x columns, H, W, C]`
  images; `c_idx`: the chunk's `[T, K, B]` indices into the split whose
  `labels` are given."""
  images = {k: next(r).reshape((c_idx.shape[0], cols.size) + image_shape)
            for (k, cols), r in zip(columns.items(), reads)}
  by_seed = {k: labels[c_idx[:, k][:, cols]].astype(np.int32)
             for k, cols in columns.items()}
  if mesh is None:  # Every seed's whole batches.
    return (np.stack([images[k] for k in sorted(images)], axis=1),
            np.stack([by_seed[k] for k in sorted(by_seed)], axis=1))

  def part(of):
    def build(index):
      _, ks, bs = index[:3]
      out = []
      for k in range(ks.start, ks.stop):
        j = int(np.searchsorted(columns[k], bs.start))
        out.append(of[k][:, j:j + bs.stop - bs.start])
      return np.stack(out, axis=1)
    return build

  spec, shape = _batch_spec(mesh), c_idx.shape
  return (distributed.from_parts(shape + image_shape, mesh, spec,
                                 part(images)),
          distributed.from_parts(shape, mesh, spec, part(by_seed)))


@functools.lru_cache(maxsize=None)
def _sharded_logits(mesh: jax.sharding.Mesh, apply_fn: Callable,
                    seed_parallel: str):
  # pylint: disable-next=g-import-not-at-top
  from jax.sharding import PartitionSpec as P
  return jax.jit(jax.shard_map(
      functools.partial(logits_batch, apply_fn, seed_parallel=seed_parallel),
      mesh=mesh,
      in_specs=(P(SEED_AXIS), P()), out_specs=P(SEED_AXIS), check_vma=False))


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
  return distributed.global_mesh(SEED_AXIS)


def predict_logits(states: TrainState, images: np.ndarray, batch_size: int,
                   mesh: Optional[jax.sharding.Mesh] = None, *,
                   seed_parallel: str = 'loop') -> np.ndarray:
  """`[K, n, C]` test logits of every seed's model (the prediction is
  their argmax, or that of `cil.losses.posthoc_adjusted_logits`).

  With `mesh` (`seed_mesh`), the states are sharded over it and each
  device scores its seeds; the result is gathered on every process.
  `seed_parallel` ('loop' or 'vmap', the run's) is how one program holds
  the seeds (`logits_batch`).
  """
  def predict_fn(variables, x):
    if mesh is None:
      return logits_batch(states.apply_fn, variables, x,
                          seed_parallel=seed_parallel)
    return _sharded_logits(mesh, states.apply_fn, seed_parallel)(
        variables, distributed.put(x, mesh, jax.sharding.PartitionSpec()))
  out = []
  for batch, n in loops.padded_batches(images, batch_size):
    logits = distributed.to_host(predict_fn(states.variables(), batch))
    out.append(logits[:, :n])
  return np.concatenate(out, axis=1)
