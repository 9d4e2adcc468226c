"""The MAML meta-step the benchmarks time, in one place (no flags).

The configuration of `../shared/bench/torch_maml_ref.py`: Conv4 with 64
filters and batch-statistics batch norm, 5-way, 15 support and 75 query
images per task, meta-batch 4, 5 inner SGD steps (lr 0.01), cross-entropy,
Adam (lr 1e-3). `benchmarks.maml_step`, `benchmarks.maml_variants` and
`benchmarks.gpu` build their steps here. JAX is imported only when a step
is built, so a process that measures the PyTorch reference's memory does
not load it.
"""

import functools
import os
from typing import Callable

from absl import app
import numpy as np

WAYS, SUPPORT, QUERY, META_BATCH, INNER_STEPS, FILTERS = 5, 15, 75, 4, 5, 64
# The PyTorch reference's default place: `../shared/bench/` beside the repo.
REFERENCE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), 'shared', 'bench', 'torch_maml_ref.py')


def tasks(h: int, w: int, c: int, seed: int = 0) -> dict:
  """The benchmark's meta-batch (random images and labels)."""
  rng = np.random.default_rng(seed)
  return {
      'support_images': rng.standard_normal(
          (META_BATCH, SUPPORT, h, w, c)).astype(np.float32),
      'support_labels': rng.integers(
          0, WAYS, (META_BATCH, SUPPORT)).astype(np.int32),
      'support_counts': np.full((META_BATCH, WAYS), SUPPORT // WAYS,
                                np.int32),
      'query_images': rng.standard_normal(
          (META_BATCH, QUERY, h, w, c)).astype(np.float32),
      'query_labels': rng.integers(
          0, WAYS, (META_BATCH, QUERY)).astype(np.int32),
  }


def parse_shape(text: str, flag: str) -> tuple[int, int, int]:
  """'84x84x3' -> (84, 84, 3); a usage error naming `flag` otherwise."""
  try:
    h, w, c = (int(v) for v in text.split('x'))
  except ValueError:
    raise app.UsageError(f'{flag}: {text!r} is not HxWxC, e.g. '
                         f'84x84x3') from None
  return h, w, c


def meta_step(shape: tuple[int, int, int], *, first_order: bool,
              smoke: bool = False, task_map: str = '',
              conv_impl: str = 'auto', dtype=None) -> Callable[[], dict]:
  """A zero-argument function running one meta-step; returns its metrics.

  Args:
    shape: `(H, W, C)` of the images.
    first_order: FOMAML instead of second-order MAML.
    smoke: tiny model (8 filters, 3 pools, 1 inner step) for CPU checks.
    task_map: `cil.maml.MamlConfig.task_map` ('' = the backend's policy).
    conv_impl: `cil.models.Conv3x3.impl`; 'auto' is the backend policy's
      choice for the order (`cil.runtime.Policy.maml_conv_impl`), as
      `cil.experiments.fewshot` makes.
    dtype: the model's computation dtype (default float32).

  The meta-batch is put on the device once, as a prefetching input
  pipeline would; each call advances the state (parameter seed 0).
  """
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from cil import maml
  from cil import models
  from cil import runtime
  cfg = maml.MamlConfig(
      ways=WAYS, inner_lr=0.01, meta_lr=1e-3,
      adaptation_steps=1 if smoke else INNER_STEPS,
      test_adaptation_steps=1 if smoke else INNER_STEPS,
      first_order=first_order, inner_loss='ce', outer_loss='ce',
      task_map=task_map or runtime.policy().task_map)
  batch = jax.device_put(tasks(*shape))
  model = models.Conv4(num_classes=WAYS, features=8 if smoke else FILTERS,
                       pools=3 if smoke else 4,
                       conv_impl=runtime.policy().maml_conv_impl(
                           first_order=first_order,
                           requested='' if conv_impl == 'auto' else conv_impl),
                       dtype=dtype or jnp.float32)
  holder = {'state': maml.create_state(model, cfg, jax.random.key(0),
                                       batch['support_images'][0])}
  step = maml.parallel_meta_train_step(
      cfg, parallel='none',
      compiler_options=runtime.policy().meta_step_compiler_options)

  def run() -> dict:
    holder['state'], metrics = step(holder['state'], batch)
    return metrics

  def flops() -> float:
    """XLA's count of the floating-point operations of one meta-step: the
    cost analysis of `meta_train_step` compiled as one program (the same
    arithmetic however the step is dispatched)."""
    one = jax.jit(functools.partial(maml.meta_train_step, cfg=cfg))
    cost = one.lower(holder['state'], batch).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):  # Older JAX: one dict per program.
      cost = cost[0]
    return float(cost['flops'])

  run.flops = flops
  return run
