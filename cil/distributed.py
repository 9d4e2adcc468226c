"""Processes and devices: the one module that knows about them.

`cil` runs on one process or on many (one per host, or several on one
machine for testing), on JAX's own multi-controller runtime
(`jax.distributed`): every process runs the same program on its own share
of the data, and collectives (`lax.pmean`, `shard_map` over the global
mesh, `multihost_utils`) span the devices of all processes. Nothing here
is home-made: this module only starts that runtime, names the processes'
roles and moves data between host and global arrays.

* `Settings` / `initialize(settings)`: start the runtime from explicit
  settings (launcher flags), from `JAX_COORDINATOR_ADDRESS` /
  `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`, or from a cluster JAX detects
  itself (SLURM, Open MPI, Kubernetes, Cloud TPU) with `cluster_detect`.
  On CPUs the collectives go over gloo.
* `is_primary()`: process 0 writes tables, figures, JSON and logs; every
  process takes part in checkpoints (Orbax multi-host).
* `global_mesh(axis)`: a 1-D mesh over the devices of every process.
* `process_share(n)`: the `[start, stop)` of `n` global items (tasks of a
  meta-batch) that this process holds.
* `global_array(local, mesh, axis)`: process-local shares -> one global
  array sharded over `axis` (`jax.make_array_from_process_local_data`);
  `put(tree, mesh, spec)`: a value every process holds -> global arrays;
  `local_parts(shape, mesh, spec)` / `from_parts(...)`: the parts of an
  array this process's devices hold, and the global array built from
  them alone (each process reads only its part of every batch).
* `to_host(tree)`: the full value of every leaf on every process (a
  replicated leaf is read locally; a sharded one is gathered).
* `allgather(x)`, `agree(error)`, `barrier(name)`: small cross-process
  exchanges (`jax.experimental.multihost_utils`).

With one process every function is a cheap no-op, so library code calls
them unconditionally.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import jax
import numpy as np

from cil import errors

__all__ = [
    'agree',
    'allgather',
    'barrier',
    'describe',
    'from_parts',
    'global_array',
    'global_mesh',
    'initialize',
    'is_primary',
    'local_parts',
    'process_count',
    'process_index',
    'process_share',
    'put',
    'Settings',
    'to_host',
]


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to join a multi-process run (launcher flags; docs/multihost.md).

  Attributes:
    coordinator_address: 'host:port' of process 0's coordinator; '' reads
      `JAX_COORDINATOR_ADDRESS`.
    num_processes: processes in the run; 0 reads `JAX_NUM_PROCESSES` (and
      means one process when that is unset too).
    process_id: this process, in [0, num_processes); -1 reads
      `JAX_PROCESS_ID`.
    cluster_detect: let JAX find all three in the cluster's environment
      (SLURM, Open MPI, Kubernetes, Cloud TPU pod slices).
    cpu_devices: fake CPU devices per process (testing multi-device code
      on one CPU); 0 leaves JAX's default.
    timeout_s: how long to wait for every process to join.
  """
  coordinator_address: str = ''
  num_processes: int = 0
  process_id: int = -1
  cluster_detect: bool = False
  cpu_devices: int = 0
  timeout_s: int = 300

  def resolved(self) -> 'Settings':
    """The settings with the environment filled in, checked."""
    env = os.environ
    address = (self.coordinator_address
               or env.get('JAX_COORDINATOR_ADDRESS', ''))
    num, pid = self.num_processes, self.process_id
    try:
      if not num and env.get('JAX_NUM_PROCESSES'):
        num = int(env['JAX_NUM_PROCESSES'])
      if pid < 0 and env.get('JAX_PROCESS_ID'):
        pid = int(env['JAX_PROCESS_ID'])
    except ValueError:
      raise ValueError(
          f"JAX_NUM_PROCESSES ({env.get('JAX_NUM_PROCESSES')!r}) and "
          f"JAX_PROCESS_ID ({env.get('JAX_PROCESS_ID')!r}) must be "
          f'integers.') from None
    out = dataclasses.replace(self, coordinator_address=address,
                              num_processes=num, process_id=pid)
    if self.cpu_devices < 0:
      raise ValueError(f'cpu_devices must be >= 0, got {self.cpu_devices}.')
    if self.timeout_s < 1:
      raise ValueError(f'timeout_s must be positive, got {self.timeout_s}.')
    if self.cluster_detect:
      return out
    if num < 0:
      raise ValueError(f'num_processes must be >= 1, got {num}.')
    if address:
      host, _, port = address.rpartition(':')
      if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'coordinator_address must be host:port (flag '
                         f'--coordinator_address or JAX_COORDINATOR_ADDRESS)'
                         f', got {address!r}.')
    if num > 1:
      if not address:
        raise ValueError(
            f'num_processes={num} needs coordinator_address (host:port of '
            f'process 0; flag --coordinator_address or '
            f'JAX_COORDINATOR_ADDRESS).')
      if not 0 <= pid < num:
        raise ValueError(f'process_id must be in [0, {num}) for '
                         f'num_processes={num}, got {pid} (flag '
                         f'--process_id or JAX_PROCESS_ID).')
    elif pid > 0:
      raise ValueError(f'process_id={pid} needs num_processes > {pid}.')
    return out

  @property
  def multi_process(self) -> bool:
    return self.cluster_detect or self.num_processes > 1


def _backend_started() -> bool:
  # pylint: disable-next=protected-access
  from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
  return bool(xla_bridge._backends)  # pylint: disable=protected-access


def initialize(settings: Optional[Settings] = None) -> Settings:
  """Starts JAX's distributed runtime (before any JAX computation).

  With one process (no settings, nothing in the environment) it only
  applies `cpu_devices`. Returns the resolved settings.

  Raises:
    ValueError: inconsistent settings (named), or JAX already started its
      backend (the runtime must come first).
  """
  settings = (settings or Settings()).resolved()
  if not settings.multi_process and not settings.cpu_devices:
    return settings
  if _backend_started():
    raise ValueError(
        'cil.distributed.initialize must run before any JAX computation '
        '(the backend has already started); call it first thing in main.')
  if settings.cpu_devices:
    jax.config.update('jax_num_cpu_devices', settings.cpu_devices)
  if settings.multi_process:
    # CPU collectives across processes (a no-op for GPU/TPU backends).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    kwargs = {'initialization_timeout': settings.timeout_s}
    if not settings.cluster_detect:
      kwargs.update(coordinator_address=settings.coordinator_address,
                    num_processes=settings.num_processes,
                    process_id=settings.process_id)
    jax.distributed.initialize(**kwargs)
  return settings


def process_index() -> int:
  return jax.process_index()


def process_count() -> int:
  return jax.process_count()


def is_primary() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def describe() -> dict:
  """Processes and devices, for the run's runtime record."""
  return {'process_count': jax.process_count(),
          'process_index': jax.process_index(),
          'device_count': jax.device_count(),
          'local_device_count': jax.local_device_count()}


def global_mesh(axis: str, devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named `axis` over `devices` (default: every process's)."""
  devices = list(jax.devices() if devices is None else devices)
  return jax.sharding.Mesh(np.array(devices), (axis,))


def process_share(n: int, *, what: str = 'items') -> tuple[int, int]:
  """`[start, stop)` of this process's equal share of `n` global items.

  Raises:
    ValueError: `n` does not divide evenly over the processes.
  """
  count, index = jax.process_count(), jax.process_index()
  if n % count:
    raise ValueError(f'{n} {what} cannot be split evenly over {count} '
                     f'processes; use a multiple of {count}.')
  size = n // count
  return index * size, (index + 1) * size


def global_array(local: Any, mesh: jax.sharding.Mesh, axis: str) -> Any:
  """Stacks every process's `local` leaves along axis 0 into global arrays
  sharded over the mesh axis `axis` (shares in process order)."""
  sharding = jax.sharding.NamedSharding(mesh,
                                        jax.sharding.PartitionSpec(axis))
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding,
                                                       np.asarray(x)), local)


def put(tree: Any, mesh: jax.sharding.Mesh,
        spec: jax.sharding.PartitionSpec) -> Any:
  """Host values (the same on every process) as global arrays laid out on
  `mesh` by `spec`; each process places only its devices' parts."""
  sharding = jax.sharding.NamedSharding(mesh, spec)

  def leaf(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda i: x[i])
  return jax.tree.map(leaf, tree)


def local_parts(shape: tuple[int, ...], mesh: jax.sharding.Mesh,
                spec: jax.sharding.PartitionSpec) -> list[tuple[slice, ...]]:
  """The distinct parts of a `shape` array laid out on `mesh` by `spec`
  that this process's devices hold, each as one `slice(start, stop)` per
  axis, in device order: what this process reads for `from_parts`."""
  sharding = jax.sharding.NamedSharding(mesh, spec)
  parts = []
  for index in sharding.addressable_devices_indices_map(shape).values():
    part = _normalised(index, shape)
    if part not in parts:
      parts.append(part)
  return parts


def from_parts(shape: tuple[int, ...], mesh: jax.sharding.Mesh,
               spec: jax.sharding.PartitionSpec,
               part: Callable[[tuple[slice, ...]], np.ndarray]) -> jax.Array:
  """A global `shape` array laid out on `mesh` by `spec`, built from this
  process's parts alone: `part(index)` gives the host values of one of
  `local_parts`' indices (a process never holds, or reads, the rest)."""
  sharding = jax.sharding.NamedSharding(mesh, spec)
  return jax.make_array_from_callback(
      shape, sharding, lambda index: part(_normalised(index, shape)))


def _normalised(index: tuple, shape: tuple[int, ...]) -> tuple[slice, ...]:
  index = tuple(index) + (slice(None),) * (len(shape) - len(index))
  return tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape))


def _leaf_to_host(x: Any) -> Any:
  if not isinstance(x, jax.Array):
    return x
  if x.is_fully_addressable:
    return np.asarray(x)
  if x.sharding.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  # pylint: disable-next=g-import-not-at-top
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def to_host(tree: Any) -> Any:
  """NumPy copies of every leaf's full (global) value, on every process.

  Every process must call it when a leaf is sharded across processes (it
  is then gathered).
  """
  return jax.tree.map(_leaf_to_host, tree)


def allgather(x: np.ndarray) -> np.ndarray:
  """`[processes, ...]`: every process's `x` (same shape), on every process."""
  x = np.asarray(x)
  if jax.process_count() == 1:
    return x[None]
  # pylint: disable-next=g-import-not-at-top
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x))


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name`."""
  if jax.process_count() > 1:
    # pylint: disable-next=g-import-not-at-top
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def agree(error: Optional[BaseException]) -> None:
  """Raises on every process if any process had an error.

  Each process passes the error it caught (or None); without this a
  process that failed alone (a locked workdir on the primary, say) would
  leave the others waiting in their next collective.
  """
  if jax.process_count() == 1:
    if error is not None:
      raise error
    return
  failed = allgather(np.array(error is not None))
  if error is not None:
    raise error
  if failed.any():
    who = ', '.join(str(i) for i in np.flatnonzero(failed))
    raise errors.RunError(f'process(es) {who} stopped with an error (see '
                          f'their output); process {jax.process_index()} '
                          f'stops too.')
