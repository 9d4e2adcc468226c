r"""MAML meta-step variants against each other, interleaved, on one device.

    python -m benchmarks.maml_variants                      # 84x84x3
    python -m benchmarks.maml_variants --variants vmap/xla,loop/xla \
        --orders second --rounds 5 --steps_per_round 5
    python -m benchmarks.maml_variants --cpu_smoke          # tiny, CPU

The miniImageNet meta-step of `benchmarks/maml_setup.py` (Conv4-64, 5-way,
15 support + 75 query images per task, meta-batch 4, 5 inner steps) with
each implementation choice named explicitly instead of taken from
`cil.runtime.policy()`. A variant is `TASK_MAP/CONV_IMPL[/DTYPE]`:

* TASK_MAP: `cil.maml.MamlConfig.task_map` ('vmap', 'loop', 'calls');
* CONV_IMPL: `cil.models.Conv3x3.impl` ('xla', 'im2col', 'winograd');
* DTYPE: the model's computation dtype ('float32', default, or 'bfloat16':
  parameters stay float32).

Every variant is compiled first (its first call is reported as
`compile_s`); then `--rounds` rounds run `--steps_per_round` steps of each
variant in turn, so machine noise hits all of them. One JSON line per
variant and order with the median step time over all rounds, the spread of
the per-round medians, and `vs_first`: its per-round median over the first
variant's in the same round (median, min, max over rounds). The meta-batch
is put on the device once, as a prefetching input pipeline would.
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import maml_setup
from cil import maml
from cil import models

_VARIANTS = flags.DEFINE_list(
    'variants', ['vmap/xla', 'loop/xla', 'vmap/im2col', 'loop/im2col',
                 'vmap/xla/bfloat16'],
    'TASK_MAP/CONV_IMPL[/DTYPE] list; the first is the baseline.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved rounds.')
_ORDERS = flags.DEFINE_list('orders', ['second', 'first'],
                            "'second' and/or 'first' order.")
_STEPS = flags.DEFINE_integer('steps_per_round', 5,
                              'Steps of each variant per round.')
_SHAPE = flags.DEFINE_string('shape', '84x84x3', 'H x W x C of the images.')
_CPU_SMOKE = flags.DEFINE_bool(
    'cpu_smoke', False, '8x8x1 images, 1 inner step, 1 round, on the CPU.')

_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def parse_variant(text: str) -> tuple[str, str, str]:
  """'vmap/xla[/bfloat16]' -> (task_map, conv_impl, dtype name)."""
  parts = text.split('/')
  if len(parts) == 2:
    parts.append('float32')
  if (len(parts) != 3 or parts[0] not in maml.TASK_MAPS or
      parts[1] not in models.CONV_IMPLS or parts[2] not in _DTYPES):
    raise app.UsageError(
        f'--variants: {text!r} is not TASK_MAP/CONV_IMPL[/DTYPE] with '
        f'TASK_MAP in {maml.TASK_MAPS}, CONV_IMPL in {models.CONV_IMPLS}, '
        f'DTYPE in {tuple(_DTYPES)}')
  return parts[0], parts[1], parts[2]


def build(variant: str, first_order: bool, shape, smoke: bool):
  """A zero-argument function running one meta-step of `variant`."""
  task_map, conv_impl, dtype = parse_variant(variant)
  return maml_setup.meta_step(shape, first_order=first_order, smoke=smoke,
                              task_map=task_map, conv_impl=conv_impl,
                              dtype=_DTYPES[dtype])


def _timed(fn) -> float:
  start = time.perf_counter()
  metrics = jax.block_until_ready(fn())
  elapsed = time.perf_counter() - start
  loss = float(metrics['meta_loss'])
  if not np.isfinite(loss):
    raise FloatingPointError(f'meta_loss is {loss}')
  return elapsed


def main(argv):
  del argv
  smoke = _CPU_SMOKE.value
  if smoke:
    jax.config.update('jax_platforms', 'cpu')
  shape = ((8, 8, 1) if smoke else
           maml_setup.parse_shape(_SHAPE.value, '--shape'))
  rounds, steps = (1, 1) if smoke else (_ROUNDS.value, _STEPS.value)
  for v in _VARIANTS.value:
    parse_variant(v)
  for order in _ORDERS.value:
    if order not in ('second', 'first'):
      raise app.UsageError(f"--orders: {order!r} is not 'second' or 'first'")
    runs, compile_s = {}, {}
    for v in _VARIANTS.value:
      runs[v] = build(v, order == 'first', shape, smoke)
      compile_s[v] = _timed(runs[v])
    per_round = {v: [] for v in runs}
    for _ in range(rounds):
      for v, fn in runs.items():
        per_round[v].append(statistics.median(_timed(fn)
                                              for _ in range(steps)))
    base = _VARIANTS.value[0]
    for v in runs:
      rel = [a / b for a, b in zip(per_round[v], per_round[base])]
      print(json.dumps({
          'benchmark': 'maml_variants', 'variant': v, 'order': order,
          'shape': 'x'.join(map(str, shape)), 'device': str(jax.devices()[0]),
          'compile_s': round(compile_s[v], 2),
          'median_s': statistics.median(per_round[v]),
          'round_min_s': min(per_round[v]), 'round_max_s': max(per_round[v]),
          'vs_first': [round(statistics.median(rel), 3), round(min(rel), 3),
                       round(max(rel), 3)],
          'rounds': rounds, 'steps_per_round': steps}), flush=True)


if __name__ == '__main__':
  app.run(main)
