r"""Speed of the jitted classification train step (LeNet on 28x28 MNIST shapes).

    pip install torch==2.13.0        # CPU build; only the reference needs it
    python -m benchmarks.classify_step [--batch_size 64] [--seeds 5] \
        [--rounds 5]

1. Examples per second of `cil.experiments.classify.train_chunk` with CE
   and with CI (one seed), measured in the same run, interleaved;
   `ratio_ci_over_ce` is CI time / CE time (target <= 1.10).
2. Training k seeds in one compiled step (`seed_parallel` = 'loop' and
   'vmap') against k sequential one-seed steps: `seed_speedup_*` is the
   sequential time over the joint time (> 1 means joint is faster).
3. Against PyTorch (`../shared/bench/torch_classify_ref.py`: the same
   LeNet, batch, Adam and CI loss, the k seeds trained one after another,
   as a PyTorch user does): `--rounds` rounds alternate one reference run
   (a fresh process: its warm-up, then `--steps` timed steps of all seeds)
   with `--steps` steps of our k-seed step (the backend policy's
   `seed_parallel`; also after `--steps` untimed ones), so machine noise
   hits both. `ratio` is our median seconds per k-seed step over the
   reference's (target <= 0.67).
   Started with `python -m`, both sides run with glibc's huge pages (the
   reference inherits the environment; `CIL_HUGE_PAGES=0` turns both off).

4. Scoring: seconds to score the 10,000 images of MNIST's test set with k
   seeds' models (`cil.experiments.classify.predict_logits`, the config's
   `eval_batch_size`, what each cell of a run does after training), the
   median of `--repeats` calls after a first one (`score_s`; target < 2 s).

The model is `classify.model_for('lenet', 10, conv_pool)`: LeNet with the
backend policy's lowering, as the runner builds it. Random uint8 images stand in
for MNIST (the cost does not depend on pixel values). The last line is
JSON, `ratio` and `score_s` in it.
"""

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cil.experiments import classify
from cil import losses
from cil import runtime
import configs

_BATCH = flags.DEFINE_integer('batch_size', 64, 'Batch size per seed.')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'k, seeds trained together.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Steps per timed repeat.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats (best kept).')
_ROUNDS = flags.DEFINE_integer(
    'rounds', 5, 'Interleaved rounds against the PyTorch reference.')
_REFERENCE = flags.DEFINE_string(
    'reference', os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
            __file__)))), 'shared', 'bench', 'torch_classify_ref.py'),
    'Path of the PyTorch reference script.')
_SKIP_TORCH = flags.DEFINE_bool('skip_torch', False, 'Only time JAX.')


def _setup(num_seeds, batch, steps, unroll):
  rng = np.random.default_rng(0)
  n = 4096
  images = jnp.asarray(rng.integers(0, 256, (n, 28, 28, 1), np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n), jnp.int32)
  model = classify.model_for('lenet', 10,
                             runtime.policy().classify_conv_pool)
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
  if mode == 'loop':  # Each seed's own state, as the runner holds them.
    holder['states'] = classify.split_seeds(holder['states'])
  calls = steps if unroll else 1

  def run():
    for _ in range(calls):
      holder['states'], m = classify.train_chunk(
          holder['states'], *args, loss=losses.get_loss(loss),
          seed_parallel=mode, unroll=unroll,
          compiler_options=runtime.policy().classify_step_compiler_options)
    jax.block_until_ready(m)

  start = time.perf_counter()
  run()
  return run, time.perf_counter() - start


def score_seconds(num_seeds: int, repeats: int) -> dict:
  """Seconds to score 10,000 28x28 images with `num_seeds` LeNets."""
  rng = np.random.default_rng(0)
  test = rng.integers(0, 256, (10_000, 28, 28, 1), np.uint8)
  cfg = classify.ClassifyConfig.from_config(configs.load('classify'))
  states = classify.create_states(
      classify.model_for('lenet', 10, runtime.policy().classify_conv_pool),
      classify.make_optimizer(cfg),
      jax.vmap(jax.random.key)(jnp.arange(num_seeds)), jnp.asarray(test[:1]))
  start = time.perf_counter()
  classify.predict_logits(states, test, cfg.eval_batch_size)
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    classify.predict_logits(states, test, cfg.eval_batch_size)
    times.append(time.perf_counter() - start)
  return {'score_s': round(statistics.median(times), 3),
          'score_min_s': round(min(times), 3),
          'score_max_s': round(max(times), 3),
          'score_first_call_s': round(first, 2),
          'eval_batch_size': cfg.eval_batch_size}


def _best(fns, repeats):
  """Best-of-repeats seconds for each fn, measured interleaved."""
  times = {k: [] for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[k].append(time.perf_counter() - start)
  return {k: min(v) for k, v in times.items()}


def torch_seconds_per_step(seeds: int, batch: int, steps: int) -> float:
  """Seconds per step of all `seeds` in a fresh reference process."""
  cmd = [sys.executable, _REFERENCE.value, '--seeds', str(seeds), '--batch',
         str(batch), '--steps', str(steps), '--repeats', '1']
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(f'{_REFERENCE.value} failed: '
                       f'{out.stderr.strip().splitlines()[-1:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])[
      'sec_per_step_all_seeds']


def against_torch(ours, seeds: int, batch: int, steps: int,
                  rounds: int) -> dict:
  """Interleaved rounds: one reference run, then `steps` of ours.

  Both sides warm up in each round before their timed steps: the
  reference runs all its seeds' steps untimed in its fresh process first,
  and ours runs `steps` untimed after that process has taken the cores.
  """
  times = {'jax': [], 'torch': []}
  for _ in range(rounds):
    times['torch'].append(torch_seconds_per_step(seeds, batch, steps))
    ours()  # Warm-up, as the reference's.
    start = time.perf_counter()
    ours()
    times['jax'].append((time.perf_counter() - start) / steps)
  summary = {k: {'median_s': round(statistics.median(v), 5),
                 'min_s': round(min(v), 5), 'max_s': round(max(v), 5),
                 'n': len(v)} for k, v in times.items()}
  return {'sec_per_step': summary,
          'ratio': round(summary['jax']['median_s']
                         / summary['torch']['median_s'], 3)}


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
      'model': 'lenet', 'conv_pool': runtime.policy().classify_conv_pool,
      'batch_size': b, 'steps': steps,
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
  result.update(score_seconds(k, _REPEATS.value))
  print(f"scoring 10,000 images with {k} seeds: {result['score_s']} s "
        f"[{result['score_min_s']}, {result['score_max_s']}]")
  from cil import hugepages  # pylint: disable=g-import-not-at-top
  result['host_memory'] = hugepages.describe()
  result['glibc_tunables'] = os.environ.get('GLIBC_TUNABLES', '')
  if not _SKIP_TORCH.value:
    vs = against_torch(fns[f'joint_{mode}'], k, b, steps, _ROUNDS.value)
    result.update(vs)
    s = vs['sec_per_step']
    print(f"{k} seeds, s per step: ours {s['jax']['median_s']} "
          f"[{s['jax']['min_s']}, {s['jax']['max_s']}], PyTorch "
          f"{s['torch']['median_s']} [{s['torch']['min_s']}, "
          f"{s['torch']['max_s']}]: ratio {vs['ratio']}")
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
