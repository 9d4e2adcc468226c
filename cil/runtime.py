"""The backend policy and the record of what a run resolved it to.

XLA:CPU lowers some program shapes much more slowly than accelerators do
(convolutions inside `while` loops, convolutions with batched weights,
autodiff's convolution VJPs; measured in `benchmarks/`, the numbers in
docs/performance.md), so a few implementation choices depend on the
backend. They are decided here, by `policy()`, read once by each runner's
`run`, which resolves its config against it (`ClassifyConfig.resolve`,
`FewShotConfig.resolve`): the resolved config holds every choice as a plain
value, and is what the workdir records, so a result says how it was
computed.

Processes and devices are `cil.distributed`'s (the meta-step is mapped
over them in `cil.maml.parallel_meta_train_step`); this module only
reports what is there.
"""

import dataclasses
import functools
import importlib.metadata
import os
import platform
import subprocess
from typing import Optional

import jax
import numpy as np

from cil import hugepages

__all__ = [
    'code_version',
    'cpu_cores',
    'describe',
    'option_pairs',
    'Policy',
    'policy',
    'versions',
]


@dataclasses.dataclass(frozen=True)
class Policy:
  """Backend-dependent implementation choices.

  Attributes:
    backend: `jax.default_backend()` ('cpu', 'gpu', 'tpu').
    unroll_loops: unroll step loops in Python instead of `lax.scan` (CPU).
    classify_chunk_steps: optimizer steps per compiled classifier call.
    seed_parallel: how seeds share a compiled classifier step: 'loop'
      (unrolled, CPU) or 'vmap'.
    task_map: how MAML maps over the tasks of a meta-batch: 'calls' (CPU:
      one compiled call per task) or 'vmap' (`cil.maml.MamlConfig`).
    conv_impl: `cil.models.Conv3x3` lowering: 'im2col' (CPU and GPU, where
      MAML's step was faster with im2col matmuls than with XLA's
      convolution) or 'xla' (TPU, not measured).
    first_order_conv_impl: the lowering for first-order MAML
      (`maml_conv_impl`): 'winograd' on the CPU, where FOMAML's meta-step
      was faster with it than with im2col. Second order stays on im2col:
      there Winograd was level and doubled the first call. Elsewhere
      `conv_impl` (Winograd is not measured on GPUs).
    meta_step_compiler_options: XLA options for compiling MAML's meta-step
      (`jax.jit(..., compiler_options=...)`), as `(name, value)` pairs. On
      the CPU, XLA's memory-optimised scheduler, which made the
      second-order step faster and smaller (`benchmarks/maml_step.py`).
    classify_step_compiler_options: XLA options for compiling the
      classifier's train step (`cil.experiments.classify.train_chunk`). On
      the CPU, XLA's YNNPACK fusions for dots only: convolutions then run
      through XLA:CPU's own kernels, faster than the YNNPACK ones in the
      A-ConvNets, LeNet and digits CNN steps.
    batch_norm_step_compiler_options: the same for models with batch norm
      (`cil.models.BATCH_NORM_MODELS`). On the CPU, YNNPACK fusions for
      dots, elementwise ops and reductions: batch norm's moments, its
      normalisation and their gradients then run in YNNPACK, which took
      0.74x the time of the dots-only step for ResNet-32, 0.84x for
      ResNet-50 and 0.92x for ResNet-8, while it slowed LeNet's (1.21x)
      and A-ConvNets' (1.07x) steps, which keep the dots-only options.
    classify_conv_pool: `cil.models.LeNet.conv_pool` for the classifier
      runs: 's2d_train' on the CPU (convolution and max-pool by
      space-to-depth in the train step, where it was faster, and XLA's
      convolution for scoring, which was faster forward only), 'xla'
      elsewhere (not measured).

  Every choice's measurements: docs/performance.md, "Numbers behind the
  code's choices", and the sections it points to.
  """
  backend: str
  unroll_loops: bool
  classify_chunk_steps: int
  seed_parallel: str
  task_map: str
  conv_impl: str
  first_order_conv_impl: str
  meta_step_compiler_options: tuple[tuple[str, str], ...] = ()
  classify_step_compiler_options: tuple[tuple[str, str], ...] = ()
  batch_norm_step_compiler_options: tuple[tuple[str, str], ...] = ()
  classify_conv_pool: str = 'xla'

  def maml_conv_impl(self, *, first_order: bool, requested: str = '') -> str:
    """Conv4's lowering for a MAML meta-step of the given order.

    `requested` ('winograd', 'im2col', 'xla': a config's or a flag's
    choice) wins; '' (a config's "the backend's choice") leaves it to this
    policy.
    """
    if requested:
      return requested
    return self.first_order_conv_impl if first_order else self.conv_impl


def policy(backend: Optional[str] = None) -> Policy:
  """The implementation choices for `backend` (default: JAX's default)."""
  backend = backend or jax.default_backend()
  cpu = backend == 'cpu'
  conv_impl = 'xla' if backend == 'tpu' else 'im2col'
  return Policy(backend=backend, unroll_loops=cpu,
                classify_chunk_steps=1 if cpu else 25,
                seed_parallel='loop' if cpu else 'vmap',
                task_map='calls' if cpu else 'vmap',
                conv_impl=conv_impl,
                first_order_conv_impl='winograd' if cpu else conv_impl,
                meta_step_compiler_options=_CPU_META_STEP_OPTIONS if cpu
                else (),
                classify_step_compiler_options=_known_options(
                    _CPU_CLASSIFY_STEP_OPTIONS) if cpu else (),
                batch_norm_step_compiler_options=_known_options(
                    _CPU_BATCH_NORM_STEP_OPTIONS) if cpu else (),
                classify_conv_pool='s2d_train' if cpu else 'xla')


_CPU_META_STEP_OPTIONS = (
    ('xla_cpu_scheduler_type', 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'),)
_CPU_CLASSIFY_STEP_OPTIONS = (
    ('xla_cpu_experimental_ynn_fusion_type',
     'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'),)
_CPU_BATCH_NORM_STEP_OPTIONS = (
    ('xla_cpu_experimental_ynn_fusion_type',
     'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE,'
     'LIBRARY_FUSION_TYPE_REDUCE'),)


@functools.cache
def _known_options(options: tuple[tuple[str, str], ...]
                   ) -> tuple[tuple[str, str], ...]:
  """`options` if this jaxlib's XLA accepts them (compiling an identity),
  else () (an XLA without them: the default lowering, not an error)."""
  try:
    jax.jit(lambda x: x, compiler_options=dict(options)).lower(
        np.float32(0)).compile()
  except jax.errors.JaxRuntimeError:
    return ()
  return options


def option_pairs(options) -> Optional[tuple[tuple[str, str], ...]]:
  """XLA compiler options as hashable `(name, value)` string pairs.

  Takes a config's value (pairs, lists from a recorded `config.json`, or
  a mapping); None stays None (the backend's choice).

  Raises:
    ValueError: an entry that is not a (name, value) pair.

  Examples:
    >>> option_pairs([['xla_cpu_scheduler_type', 'DEFAULT']])
    (('xla_cpu_scheduler_type', 'DEFAULT'),)
  """
  if options is None:
    return None
  if isinstance(options, dict):
    options = options.items()
  if isinstance(options, str):
    raise ValueError(f'compiler_options must be (name, value) pairs, e.g. '
                     f"(('xla_cpu_scheduler_type', 'DEFAULT'),), or () for "
                     f'none; got the string {options!r}.')
  out = []
  for pair in options:
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
        or not all(isinstance(x, str) and x for x in pair)):
      raise ValueError(f'compiler_options must be (name, value) pairs of '
                       f'strings; got the entry {pair!r}.')
    out.append(tuple(pair))
  return tuple(out)


_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'chex', 'orbax-checkpoint',
             'ml_collections', 'numpy', 'tensorflow-datasets')


def versions() -> dict:
  """Installed versions of the libraries a result depends on."""
  out = {'python': platform.python_version()}
  for name in _PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def code_version(path: Optional[str] = None) -> dict:
  """The git commit of the code that runs, and whether its tree was dirty.

  Read with `git` from the checkout holding `cil` (or `path`); an installed
  copy outside a checkout records `{'commit': None, 'dirty': None}` with
  the installed version.
  """
  root = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def git(*args) -> Optional[str]:
    try:
      out = subprocess.run(['git', '-C', root, *args], capture_output=True,
                           text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
      return None
    return out.stdout.strip()

  commit = git('rev-parse', 'HEAD')
  status = None
  if commit:
    status = git('status', '--porcelain', '--untracked-files=no')
  return {'commit': commit, 'dirty': None if status is None else bool(status),
          'version': _cil_version()}


def _cil_version() -> Optional[str]:
  try:
    return importlib.metadata.version('cil')
  except importlib.metadata.PackageNotFoundError:
    return None


def cpu_cores() -> int:
  """The CPU cores this process may run on (its affinity), which sizes
  XLA:CPU's thread pool.

  On the CPU backend a run's numbers are a function of the seed, the
  software and this count: the load on the machine, a cold or warm
  compilation cache and `--xla_cpu_multi_thread_eigen` change no bit, but
  one core instead of two changes the rounding of the training losses
  (docs/performance.md, "Same seed, same numbers"). Runs record it.
  """
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # Not on Linux.
    return os.cpu_count() or 1


def describe(policy_: Policy, **resolved) -> dict:
  """A run's runtime record: the backend policy it was run under, the
  code's commit, devices, the host's CPU cores (`cpu_cores`), versions,
  host-memory settings and the runner's `resolved` choices."""
  devices = jax.devices()
  return {
      'policy': dataclasses.asdict(policy_),
      'code': code_version(),
      'devices': {'count': len(devices),
                  'local_count': jax.local_device_count(),
                  'kind': devices[0].device_kind,
                  'process_count': jax.process_count(),
                  'cpu_cores': cpu_cores()},
      'versions': versions(),
      'host_memory': hugepages.describe(),
      **resolved,
  }
