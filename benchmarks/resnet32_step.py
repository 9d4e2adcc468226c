r"""Speed of the ResNet-32 train step on CIFAR shapes against PyTorch's.

    python -m benchmarks.resnet32_step [--rounds 3] [--steps 10]

Our step is `cil.experiments.classify.train_chunk` as the runner calls it
for `configs/classify.py:cifar10_lt` (ResNet-32 with batch norm, SGD with
momentum 0.9, lr 0.1, weight decay 2e-4, batch 128, cross-entropy; one
seed; the backend policy's chunk, loop and compiler options), on random
32x32x3 uint8 images; augmentation off on both sides (the reference crops
in its data loader, outside the step). The reference is
`benchmarks/torch_resnet32_ref.py` (Cao et al.'s ResNet-32 and training
step), each round a fresh process (its warm-up, then `--steps` timed
steps), then `--steps` warm-up and `--steps` timed steps of ours, so
machine noise hits both. Last line JSON: the medians, min and max per
side and `ratio` (ours / PyTorch seconds per step; target <= 1.0).
Needs torch (not a dependency).
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

from cil import runtime
from cil.experiments import classify
from cil.experiments.classify.step import step_keys
import configs

_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Interleaved rounds.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per round.')
_BATCH = 128
_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          'torch_resnet32_ref.py')


def our_steps(steps: int):
  """A function running `steps` train steps of one ResNet-32 seed."""
  config = configs.load('classify', 'cifar10_lt')
  config.update(augment='', losses=('ce',))
  cfg = classify.ClassifyConfig.from_config(config).resolve(runtime.policy())
  model = classify.model_for('resnet32', 10, dtype=cfg.dtype)
  tx = classify.make_optimizer(cfg, 100)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (4096, 32, 32, 3), np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 4096), jnp.int32)
  seeds = jnp.arange(1)
  state = {'s': classify.create_states(
      model, tx, jax.vmap(jax.random.key)(seeds), images[:1])}
  counts = jnp.full((1, 10), 100.0)
  static = classify.step_settings(cfg, 'ce')
  options = static.pop('compiler_options')
  chunk = cfg.chunk_steps
  mask = jnp.ones((chunk, 1, _BATCH), bool)

  def run():
    for t in range(0, steps, chunk):
      idx = jnp.asarray(rng.integers(0, 4096, (chunk, 1, _BATCH)), jnp.int32)
      state['s'], metrics = classify.train_chunk(
          state['s'], images, labels, idx, mask, counts,
          step_keys(seeds, jnp.arange(t, t + chunk)),
          compiler_options=options, **static)
    jax.block_until_ready(metrics)

  return run


def torch_seconds_per_step(steps: int) -> float:
  out = subprocess.run([sys.executable, _REFERENCE, '--steps', str(steps)],
                       capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(f'{_REFERENCE} failed: {out.stderr[-2000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])['sec_per_step']


def main(argv):
  del argv
  steps = _STEPS.value
  ours = our_steps(steps)
  start = time.perf_counter()
  ours()
  print(json.dumps({'first_call_s': round(time.perf_counter() - start, 1)}),
        flush=True)
  times = {'jax': [], 'torch': []}
  for r in range(_ROUNDS.value):
    times['torch'].append(torch_seconds_per_step(steps))
    ours()  # Warm-up, as the reference's.
    start = time.perf_counter()
    ours()
    times['jax'].append((time.perf_counter() - start) / steps)
    print(json.dumps({'round': r, 'jax_s': round(times['jax'][-1], 4),
                      'torch_s': times['torch'][-1]}), flush=True)
  summary = {k: {'median_s': round(statistics.median(v), 4),
                 'min_s': round(min(v), 4), 'max_s': round(max(v), 4)}
             for k, v in times.items()}
  print(json.dumps({'sec_per_step': summary, 'batch': _BATCH,
                    'policy_chunk_steps': runtime.policy().classify_chunk_steps,
                    'ratio': round(summary['jax']['median_s']
                                   / summary['torch']['median_s'], 3)}))


if __name__ == '__main__':
  app.run(main)
