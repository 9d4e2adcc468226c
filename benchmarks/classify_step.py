r"""Speed of the jitted classification train step (LeNet on 28x28 MNIST shapes).

    python -m benchmarks.classify_step [--batch_size 64] [--seeds 4]

1. Examples per second of `cil.experiments.classify.train_chunk` with CE
   and with CI (one seed), measured in the same run, interleaved;
   `ratio_ci_over_ce` is CI time / CE time (target <= 1.10).
2. Training k seeds in one compiled step (`seed_parallel` = 'loop' and
   'vmap') against k sequential one-seed steps: `seed_speedup_*` is the
   sequential time over the joint time (> 1 means joint is faster).

Random uint8 images stand in for MNIST (the step's cost does not depend on
pixel values). The last line is JSON.
"""

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cil.experiments import classify
from cil import models
from cil import runtime
import configs

_BATCH = flags.DEFINE_integer('batch_size', 64, 'Batch size per seed.')
_SEEDS = flags.DEFINE_integer('seeds', 4, 'k, seeds trained together.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Steps per timed repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats (best kept).')


def _setup(num_seeds, batch, steps, unroll):
  rng = np.random.default_rng(0)
  n = 4096
  images = jnp.asarray(rng.integers(0, 256, (n, 28, 28, 1), np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n), jnp.int32)
  model = models.get_model('lenet', 10)
  tx = classify.make_optimizer(
      classify.ClassifyConfig.from_config(configs.load('classify')))
  keys = jax.vmap(jax.random.key)(jnp.arange(num_seeds))
  states = classify.create_states(model, tx, keys, images[:1])
  chunk = 1 if unroll else steps
  idx = jnp.asarray(rng.integers(0, n, (chunk, num_seeds, batch)), jnp.int32)
  mask = jnp.ones((chunk, num_seeds, batch), bool)
  counts = jnp.tile(jnp.asarray([5923., 674, 5958, 613, 5842, 542, 5918,
                                 627, 5851, 595]), (num_seeds, 1))
  rngs = jax.random.split(jax.random.key(1), (chunk, num_seeds))
  return states, (images, labels, idx, mask, counts, rngs)


def _timer(loss, mode, num_seeds, batch, steps, unroll):
  """Returns a function that runs `steps` steps and blocks."""
  holder = {}
  holder['states'], args = _setup(num_seeds, batch, steps, unroll)
  calls = steps if unroll else 1

  def run():
    for _ in range(calls):
      holder['states'], m = classify.train_chunk(
          holder['states'], *args, loss_name=loss, loss_hparams=(),
          seed_parallel=mode, unroll=unroll)
    jax.block_until_ready(m)

  start = time.perf_counter()
  run()
  return run, time.perf_counter() - start


def _best(fns, repeats):
  """Best-of-repeats seconds for each fn, measured interleaved."""
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - start)
  return {k: min(v) for k, v in times.items()}


def main(argv):
  del argv
  unroll = runtime.policy().unroll_loops
  b, k, steps = _BATCH.value, _SEEDS.value, _STEPS.value
  mode = runtime.policy().seed_parallel
  fns, first_call = {}, {}
  for loss in ('ce', 'ci'):
    fns[loss], first_call[loss] = _timer(loss, mode, 1, b, steps, unroll)
  for m in ('loop', 'vmap'):
    fns[f'joint_{m}'], first_call[f'joint_{m}'] = _timer(
        'ci', m, k, b, steps, unroll)
  best = _best(fns, _REPEATS.value)
  examples = {loss: b * steps / best[loss] for loss in ('ce', 'ci')}
  sequential = k * best['ci']  # k one-seed runs, one after another.
  result = {
      'benchmark': 'classify_step',
      'backend': jax.default_backend(),
      'device': str(jax.devices()[0]),
      'model': 'lenet', 'batch_size': b, 'steps': steps,
      'examples_per_s': {k_: round(v, 1) for k_, v in examples.items()},
      'ratio_ci_over_ce': round(best['ci'] / best['ce'], 4),
      'seeds': k,
      'seed_speedup_loop': round(sequential / best['joint_loop'], 3),
      'seed_speedup_vmap': round(sequential / best['joint_vmap'], 3),
      'first_call_s': {k_: round(v, 2) for k_, v in first_call.items()},
  }
  print(f"CE {examples['ce']:.0f} ex/s, CI {examples['ci']:.0f} ex/s, "
        f"CI/CE time {result['ratio_ci_over_ce']}; {k} seeds together: "
        f"loop x{result['seed_speedup_loop']}, vmap "
        f"x{result['seed_speedup_vmap']} vs sequential")
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
