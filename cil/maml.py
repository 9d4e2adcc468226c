"""MAML with imbalance-aware inner and outer losses (the paper's Section IV-B).

Pure functions (after the JAX MAML notebook and learn2learn's vocabulary):

* `inner_adapt`: SGD steps on a task's support set with a registry loss fed
  the task's own support class counts (a traced array), e.g. the CI loss.
* `task_loss`: the query loss after adaptation (second order by default;
  `first_order=True` is FOMAML).
* `meta_train_step`: maps `task_loss` over a meta-batch, averages, reduces
  gradients with `lax.pmean` over `axis_name` when given, applies optax.
* `parallel_meta_train_step`: the one place that maps the meta-step over
  devices, of one process or of many (`cil.distributed`): `jax.pmap`
  (default) or `jax.shard_map` over the global mesh.

Tasks are dicts of arrays (as `cil.data.Tasks`, leading `[tasks]` axis):
`support_images [T, S, H, W, C]`, `support_labels [T, S]`,
`support_counts [T, N]`, `query_images [T, Q, H, W, C]`, `query_labels
[T, Q]`. The outer loss uses the support counts too: meta-train queries have
the same class proportions (p * N_i), and the CI factor depends only on
proportions. Tasks may also hold random over-sampling (ROS, Ochal et al.
2023) of the support and the meta-train queries (`OVERSAMPLE_KEYS`): the
losses then see every class N_max times (p N_max for queries), with the
counts of that balanced set.

On XLA:CPU, loops are unrolled in Python (a `lax.scan` inner loop and
`vmap` over tasks were slower there), and on one CPU device each task's
meta-gradient is its own call of one compiled program (`task_map='calls'`),
averaged and applied in a second: a quarter of the program to compile and
of the memory, and no slower (`per_task_calls_step`). The measurements:
docs/performance.md, "Numbers behind the code's choices".
"""

import dataclasses
import functools
import inspect
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
from flax.training import train_state
import jax
import jax.numpy as jnp
import optax

from cil import distributed
from cil import loops
from cil import losses

__all__ = [
    'adapt_to_task',
    'apply_mean_gradients',
    'create_state',
    'inner_adapt',
    'MamlConfig',
    'map_tasks',
    'meta_train_step',
    'OVERSAMPLE_KEYS',
    'oversampled',
    'parallel_meta_train_step',
    'per_task_calls_step',
    'support_loss',
    'task_arrays',
    'task_gradients',
    'TASK_KEYS',
    'task_loss',
    'TASK_MAPS',
]

TASK_KEYS = ('support_images', 'support_labels', 'support_counts',
             'query_images', 'query_labels')
# Random over-sampling (`cil.data.random_oversample`): positions into the
# support (query) set and their mask; tasks that hold them are over-sampled.
OVERSAMPLE_KEYS = ('support_ros_index', 'support_ros_mask',
                   'query_ros_index', 'query_ros_mask')


def task_arrays(tasks) -> dict:
  """The arrays of a task dict that the meta-step reads (`TASK_KEYS`, and
  `OVERSAMPLE_KEYS` where present)."""
  return {k: tasks[k] for k in TASK_KEYS + OVERSAMPLE_KEYS if k in tasks}


@dataclasses.dataclass(frozen=True)
class MamlConfig:
  """Hyperparameters (learn2learn's names).

  Experiments build it from their config file (`configs/fewshot.py`'s
  `maml` section); the defaults here are only the method's own (CI loss in
  both loops, second order).

  Attributes:
    ways: classes per task.
    inner_lr: SGD step size of the inner loop.
    meta_lr: Adam step size of the outer loop.
    adaptation_steps: inner steps in meta-training.
    test_adaptation_steps: inner steps at meta-test (paper: 10).
    first_order: FOMAML (drop second-order terms).
    inner_loss, outer_loss: the losses (`cil.losses.LossSpec`, from
      `cil.losses.get_loss`; a spec string such as 'ci' or
      'ci:high_exponent=0.5' is turned into one).
    task_map: 'calls' (one device: one compiled call per task, gradients
      averaged in a second call; the CPU's choice), 'loop' (tasks unrolled
      in one program) or 'vmap' (the default). The few-shot runner sets the
      backend's (`cil.runtime.Policy.task_map`). Inside one program (a
      mapped step, meta-test adaptation) 'calls' unrolls as 'loop'.
  """
  ways: int
  inner_lr: float
  meta_lr: float
  adaptation_steps: int
  test_adaptation_steps: int
  first_order: bool = False
  inner_loss: losses.LossSpec = losses.LossSpec('ci')
  outer_loss: losses.LossSpec = losses.LossSpec('ci')
  task_map: str = 'vmap'

  def __post_init__(self):
    for name in ('inner_loss', 'outer_loss'):
      value = getattr(self, name)
      if not isinstance(value, losses.LossSpec):
        object.__setattr__(self, name, losses.get_loss(value))


def support_loss(params: Any, apply_fn: Callable, images: jax.Array,
                 labels: jax.Array, counts: jax.Array, *,
                 loss: Callable[..., jax.Array],
                 where: Optional[jax.Array] = None) -> jax.Array:
  """Per-example loss `[S]` of `params` on a support (or query) set.

  With `where` (an over-sampled set's `[S]` mask), a model that takes a
  `mask` keyword is called as `apply_fn(variables, images, mask=where)`,
  so a model with batch statistics (`cil.models.Conv4`) takes them over the
  real examples, not the padding; give your own batch-statistics model
  that keyword too.
  """
  return loss(_logits(params, apply_fn, images, where), labels, counts)


def _logits(params: Any, apply_fn: Callable, images: jax.Array,
            where: Optional[jax.Array]) -> jax.Array:
  if where is None or not _takes_mask(apply_fn):
    return apply_fn({'params': params}, images)
  return apply_fn({'params': params}, images, mask=where)


def _takes_mask(apply_fn: Callable) -> bool:
  """Whether `apply_fn` (a Flax module's bound `apply`, or a function)
  takes a `mask` keyword: `cil.models.Conv4` does; a model without batch
  statistics has no use for it and is called without."""
  module = getattr(apply_fn, '__self__', None)
  fn = type(module).__call__ if isinstance(module, nn.Module) else apply_fn
  try:
    params = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return False
  return any(p.name == 'mask' or p.kind == p.VAR_KEYWORD for p in params)


def inner_adapt(params: Any, apply_fn: Callable, support: tuple, *,
                loss: Callable[..., jax.Array], inner_lr: float,
                num_steps: int, first_order: bool = False,
                where: Optional[jax.Array] = None) -> Any:
  """`num_steps` SGD steps on the support set; returns adapted params.

  Args:
    params: the meta-parameters (a pytree).
    apply_fn: `apply_fn({'params': p}, images) -> logits`.
    support: `(images [S, ...], labels [S], counts [N])`.
    loss: a registry loss `(logits, labels, counts) -> [S]` (hyperparameters
      bound); it receives the task's support counts, traced.
    inner_lr: step size.
    num_steps: steps (unrolled).
    first_order: stop gradients through the inner gradients (FOMAML).
    where: optional `[S]` mask; the objective is the mean over the masked
      examples (padding of an over-sampled support), and the model gets it
      as `mask=` for its batch statistics (`support_loss`).

  Returns:
    The adapted parameters (differentiable w.r.t. `params` unless
    first_order).
  """
  images, labels, counts = support
  counts = counts.astype(jnp.float32)

  def objective(p):
    per_example = support_loss(p, apply_fn, images, labels, counts,
                               loss=loss, where=where)
    return _masked_mean(per_example, where)

  for _ in range(num_steps):
    grads = jax.grad(objective)(params)
    if first_order:
      grads = jax.lax.stop_gradient(grads)
    params = jax.tree.map(lambda p, g: p - inner_lr * g, params, grads)
  return params


def _masked_mean(values: jax.Array, where: Optional[jax.Array]) -> jax.Array:
  if where is None:
    return jnp.mean(values)
  return jnp.sum(jnp.where(where, values, 0.0)) / jnp.maximum(
      jnp.sum(where), 1)


def oversampled(task: dict, part: str) -> tuple:
  """`(images, labels, counts, where)` of a task's support (`part=
  'support'`) or query set, over-sampled where the task holds its ROS
  positions: every class then counts N_max (the set is balanced)."""
  counts = task['support_counts'].astype(jnp.float32)
  images, labels = task[f'{part}_images'], task[f'{part}_labels']
  if f'{part}_ros_index' not in task:
    return images, labels, counts, None
  index = task[f'{part}_ros_index']
  return (jnp.take(images, index, axis=0), jnp.take(labels, index),
          jnp.full_like(counts, jnp.max(counts)), task[f'{part}_ros_mask'])


def adapt_to_task(params: Any, apply_fn: Callable, task: dict, *,
                  cfg: MamlConfig, num_steps: int,
                  first_order: bool) -> Any:
  """`inner_adapt` on a task's (possibly over-sampled) support set."""
  images, labels, counts, where = oversampled(task, 'support')
  return inner_adapt(params, apply_fn, (images, labels, counts),
                     loss=cfg.inner_loss, inner_lr=cfg.inner_lr,
                     num_steps=num_steps, first_order=first_order,
                     where=where)


def task_loss(params: Any, apply_fn: Callable, task: dict, *,
              cfg: MamlConfig, num_steps: Optional[int] = None
              ) -> tuple[jax.Array, dict]:
  """Query loss after adapting on the support set: `(loss, aux)`.

  With over-sampling positions in `task` (`OVERSAMPLE_KEYS`), adaptation
  and the query loss see the over-sampled sets; the accuracy is always
  that of the queries as drawn.
  """
  outer = cfg.outer_loss
  adapted = adapt_to_task(
      params, apply_fn, task, cfg=cfg,
      num_steps=cfg.adaptation_steps if num_steps is None else num_steps,
      first_order=cfg.first_order)
  images, labels, counts, where = oversampled(task, 'query')
  logits = apply_fn({'params': adapted}, task['query_images'])
  if where is None:
    loss = jnp.mean(outer(logits, labels, counts))
  else:
    loss = _masked_mean(outer(_logits(adapted, apply_fn, images, where),
                              labels, counts), where)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == task['query_labels'])
  return loss, {'accuracy': accuracy}


TASK_MAPS = ('calls', 'loop', 'vmap')


def map_tasks(fn: Callable[[dict], Any], tasks: dict, mode: str) -> Any:
  """Maps `fn` over the tasks of a meta-batch in one program: 'vmap', or
  'loop' / 'calls' (unrolled; separate calls are `parallel_meta_train_step`'s
  to make)."""
  if mode == 'vmap':
    return jax.vmap(fn)(tasks)
  if mode not in TASK_MAPS:
    raise ValueError(f"task_map must be one of {', '.join(TASK_MAPS)}, got "
                     f'{mode!r}.')
  return loops.unrolled_map(fn, tasks)


def meta_train_step(state: train_state.TrainState, tasks: dict, *,
                    cfg: MamlConfig, axis_name: Optional[str] = None
                    ) -> tuple[train_state.TrainState, dict]:
  """One meta-update from a meta-batch of tasks.

  Args:
    state: TrainState of the meta-parameters (optimizer: `optax.adam`).
    tasks: dict of `[T, ...]` arrays (see the module docstring).
    cfg: hyperparameters.
    axis_name: if given, gradients and metrics are averaged over this
      mapped axis (the devices), so every device applies the same update.

  Returns:
    The new state and metrics (meta-loss, query accuracy).
  """
  tasks = task_arrays(tasks)

  # One traced program for every task: the unrolled loop calls it once per
  # task, and JAX reuses its trace (and derivatives) instead of retracing.
  one_task = jax.jit(functools.partial(task_loss, apply_fn=state.apply_fn,
                                       cfg=cfg))

  def meta_loss(params):
    per_task, aux = map_tasks(lambda t: one_task(params, task=t), tasks,
                              cfg.task_map)
    return jnp.mean(per_task), jax.tree.map(jnp.mean, aux)

  (loss, aux), grads = jax.value_and_grad(meta_loss, has_aux=True)(
      state.params)
  metrics = {'meta_loss': loss, **aux}
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)
  return state.apply_gradients(grads=grads), metrics


def task_gradients(state: train_state.TrainState, tasks: dict,
                   index: jax.Array, *, cfg: MamlConfig) -> tuple[Any, dict]:
  """Meta-gradient and metrics of task `index` (traced) of a meta-batch.

  One task's share of `meta_train_step`: `(grads, {'meta_loss', 'accuracy'})`
  of `task_loss` at `state.params`, for `apply_mean_gradients` to average.
  """
  task = {k: jax.lax.dynamic_index_in_dim(v, index, keepdims=False)
          for k, v in task_arrays(tasks).items()}
  (loss, aux), grads = jax.value_and_grad(task_loss, has_aux=True)(
      state.params, state.apply_fn, task, cfg=cfg)
  return grads, {'meta_loss': loss, **aux}


def apply_mean_gradients(state: train_state.TrainState, grads: Sequence[Any],
                         metrics: Sequence[dict]
                         ) -> tuple[train_state.TrainState, dict]:
  """The meta-update from per-task gradients: their mean, then optax."""
  def mean(*xs):
    return sum(xs) / len(xs)
  return (state.apply_gradients(grads=jax.tree.map(mean, *grads)),
          jax.tree.map(mean, *metrics))


def per_task_calls_step(cfg: MamlConfig, *, compiler_options=None
                        ) -> Callable:
  """`meta_train_step` on one device as one compiled call per task.

  `task_gradients` is compiled once and called for each task of the
  meta-batch (its index traced), then `apply_mean_gradients` averages the
  gradients and metrics and applies the update. Equal to the one-program
  step up to float summation order. On XLA:CPU (the policy's
  `task_map='calls'`) the program to compile and the activations held are
  about 1/T of the T-task program's. The step is no slower
  (docs/performance.md): under the memory-optimised schedule XLA:CPU ran
  the T-task program's operations one after another anyway.
  """
  gradients = jax.jit(functools.partial(task_gradients, cfg=cfg),
                      compiler_options=compiler_options)
  update = jax.jit(apply_mean_gradients)

  def step(state, tasks):
    tasks = jax.device_put(task_arrays(tasks))
    outs = [gradients(state, tasks, i)
            for i in range(tasks['support_labels'].shape[0])]
    return update(state, [g for g, _ in outs], [m for _, m in outs])
  return step


def create_state(model, cfg: MamlConfig, rng: jax.Array,
                 sample_images: jax.Array) -> train_state.TrainState:
  params = model.init(rng, sample_images)['params']
  return train_state.TrainState.create(apply_fn=model.apply, params=params,
                                       tx=optax.adam(cfg.meta_lr))


# ---------------------------------------------------------------------------
# Devices and processes (`cil.distributed` starts the runtime and builds the
# mesh; this is the one place the meta-step is mapped over them).


def parallel_meta_train_step(
    cfg: MamlConfig, *, parallel: str = 'pmap', devices=None,
    compiler_options: Sequence[tuple[str, str]] = ()) -> Callable:
  """A jitted `(state, tasks) -> (state, metrics)` over several devices.

  `tasks` is this process's share of the meta-batch (with one process, the
  whole meta-batch; with several, `cil.distributed.process_share`'s slice
  of it). The share is split evenly over the process's devices; each
  computes its tasks' meta-gradient, and `lax.pmean` over the axis 'tasks'
  averages them over every device of every process, so the result equals
  the single-device step on the whole meta-batch (up to float summation
  order).

  Args:
    cfg: hyperparameters.
    parallel: 'pmap' (default; across processes each maps over its local
      devices and the `pmean` spans all of them), 'shard_map' (under `jit`
      over the global 1-D mesh; the shares become one global array with
      `jax.make_array_from_process_local_data`), or 'none' (plain `jit` on
      one device; one process only).
    devices: the devices to use (default: all local devices); one process
      only (a multi-process run always uses every process's devices).

  On one device with `task_map='calls'` (the CPU's), the step is
  `per_task_calls_step`. It is compiled with `compiler_options` (the
  backend policy's are `cil.runtime.Policy.meta_step_compiler_options`;
  'none' and 'shard_map', as `jax.pmap` takes none).

  Returns:
    The step function. State in may be a host pytree, the previous step's
    output or a restored checkpoint; out it is replicated ('pmap': local
    arrays, 'shard_map': global arrays; `cil.distributed.to_host` reads
    either).
  """
  if parallel not in ('pmap', 'shard_map', 'none'):
    raise ValueError(f"parallel must be 'pmap', 'shard_map' or 'none', got "
                     f'{parallel!r}.')
  multi = jax.process_count() > 1
  if multi and devices is not None:
    raise ValueError('devices must be None in a multi-process run: the '
                     'meta-step spans the devices of every process.')
  local = list(devices if devices is not None else jax.local_devices())
  n = len(local)
  axis = 'tasks'
  step = functools.partial(meta_train_step, cfg=cfg)
  options = dict(compiler_options)
  if parallel == 'none' or (n == 1 and not multi):
    if multi:
      raise ValueError("parallel='none' runs on one device; a multi-process "
                       "run needs 'pmap' or 'shard_map'.")
    if cfg.task_map == 'calls':
      return per_task_calls_step(cfg, compiler_options=options)
    return jax.jit(step, compiler_options=options)

  def local_tasks(tasks):
    out = {}
    for k, v in task_arrays(tasks).items():
      if v.shape[0] % n:
        raise ValueError(
            f'The meta-batch share of this process ({v.shape[0]} tasks) '
            f'must divide evenly over its {n} devices.')
      out[k] = v
    return out

  if parallel == 'pmap':
    mapped = jax.pmap(functools.partial(step, axis_name=axis),
                      axis_name=axis, in_axes=(None, 0), out_axes=(None, None),
                      devices=None if multi else local)

    def pmapped(state, tasks):
      tasks = local_tasks(tasks)
      return mapped(state, {k: v.reshape((n, v.shape[0] // n) + v.shape[1:])
                            for k, v in tasks.items()})
    return pmapped

  # pylint: disable-next=g-import-not-at-top
  from jax.sharding import PartitionSpec as P
  mesh = distributed.global_mesh(axis, None if multi else local)
  replicated = jax.sharding.NamedSharding(mesh, P())

  def body(state, tasks):
    # Inside, each device sees its [T / devices, ...] slice of the tasks.
    return step(state, tasks, axis_name=axis)

  sharded = jax.jit(jax.shard_map(
      body, mesh=mesh, in_specs=(P(), P(axis)), out_specs=(P(), P()),
      check_vma=False), compiler_options=options)

  def on_mesh(leaf):
    if isinstance(leaf, jax.Array) and leaf.sharding == replicated:
      return leaf
    return distributed.put(leaf, mesh, P())

  def shard_mapped(state, tasks):
    tasks = distributed.global_array(local_tasks(tasks), mesh, axis)
    return sharded(jax.tree.map(on_mesh, state), tasks)
  return shard_mapped
