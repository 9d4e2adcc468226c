r"""The classifier step's CPU compiler options against XLA's default lowering.

    python -m benchmarks.classify_lowering [--models lenet,digits_cnn,aconvnet]
        [--seeds 5] [--rounds 9] [--steps 3]

For each model, `cil.experiments.classify.train_chunk`'s program (CI loss,
Adam, batch 64 per seed, the seeds unrolled as the CPU policy runs them) is
compiled twice: with the options a run of that model resolves to
(`ClassifyConfig.resolve`: the policy's `classify_step_compiler_options`,
or `batch_norm_step_compiler_options` for the ResNets; on the CPU, YNNPACK
fusions for dots only, so convolutions run through XLA:CPU's own kernels,
and for the ResNets also for elementwise ops and reductions) and with
none. `--rounds` rounds alternate `--steps` steps of each; `ratio` is the
median seconds per step with the policy's options over the median without
(below 1: the options are faster). Both start from the same
initialisation and batches, and their first-step losses are printed (they
differ only in rounding).
Random uint8 images stand in for the data. The last line is JSON.

`--baseline_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT` compiles
the other side with that `xla_cpu_experimental_ynn_fusion_type` instead of
none (an A/B of two option sets; `default_s` is then that side's time).
"""

import dataclasses
import json
import statistics
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

_MODELS = flags.DEFINE_list('models', ['lenet', 'digits_cnn', 'aconvnet'],
                            'Models (`cil.models.MODEL_NAMES`).')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Seeds in one step.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Batch size per seed.')
_ROUNDS = flags.DEFINE_integer('rounds', 9, 'Interleaved rounds.')
_STEPS = flags.DEFINE_integer('steps', 3, 'Steps of each side per round.')
_BASELINE = flags.DEFINE_string(
    'baseline_ynn_fusion_type', '',
    'The other side\'s xla_cpu_experimental_ynn_fusion_type (comma-separated '
    'LIBRARY_FUSION_TYPE_* names); empty: no options (XLA\'s default).')

# Each model's input (height, width, channels), as its dataset has it.
INPUT_SHAPES = {'lenet': (28, 28, 1), 'digits_cnn': (8, 8, 1),
                'aconvnet': (88, 88, 1), 'resnet32': (32, 32, 3),
                'resnet8': (28, 28, 1)}


def _setup(name: str, seeds: int, batch: int):
  rng = np.random.default_rng(0)
  n = 2048
  images = jnp.asarray(rng.integers(0, 256, (n,) + INPUT_SHAPES[name],
                                    np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n), jnp.int32)
  tx = classify.make_optimizer(
      classify.ClassifyConfig.from_config(configs.load('classify')))
  states = classify.create_states(
      classify.model_for(name, 10, runtime.policy().classify_conv_pool),
      tx, jax.vmap(jax.random.key)(jnp.arange(seeds)), images[:1])
  # Each seed's own state, as the runner holds them under 'loop'.
  states = classify.split_seeds(states)
  idx = jnp.asarray(rng.integers(0, n, (1, seeds, batch)), jnp.int32)
  mask = jnp.ones((1, seeds, batch), bool)
  counts = jnp.tile(jnp.arange(1., 11.) * 100, (seeds, 1))
  rngs = jax.random.split(jax.random.key(1), (1, seeds))
  return states, (images, labels, idx, mask, counts, rngs)


def compare(name: str, options, *, seeds: int, batch: int, rounds: int,
            steps: int, baseline=()) -> dict:
  """Median seconds per step with `options` and with `baseline` (none:
  XLA's default), interleaved."""
  sides = {}
  for side, opts in (('policy', options), ('default', baseline)):
    states, args = _setup(name, seeds, batch)
    start = time.perf_counter()
    jitted = jax.jit(classify.chunk_program,
                     static_argnames=('loss', 'seed_parallel', 'unroll'),
                     donate_argnums=(0,), compiler_options=dict(opts) or None)
    compiled = jitted.lower(
        states, *args, loss=losses.get_loss('ci'), seed_parallel='loop',
        unroll=True).compile()
    states, m = compiled(states, *args)
    first_loss = float(jnp.mean(m['loss']))
    sides[side] = {'fn': compiled, 'states': states, 'args': args,
                   'times': [], 'compile_s': time.perf_counter() - start,
                   'first_loss': first_loss}
  for _ in range(rounds):
    for side in sides.values():
      start = time.perf_counter()
      for _ in range(steps):
        side['states'], m = side['fn'](side['states'], *side['args'])
      jax.block_until_ready(m)
      side['times'].append((time.perf_counter() - start) / steps)
  med = {k: statistics.median(v['times']) for k, v in sides.items()}
  return {'model': name, 'policy_s': round(med['policy'], 5),
          'default_s': round(med['default'], 5),
          'ratio': round(med['policy'] / med['default'], 3),
          'round_ratios': [round(a / b, 3) for a, b in zip(
              sides['policy']['times'], sides['default']['times'])],
          'first_loss': {k: v['first_loss'] for k, v in sides.items()},
          'compile_s': {k: round(v['compile_s'], 1)
                        for k, v in sides.items()}}


def main(argv):
  del argv
  policy = runtime.policy()
  options = policy.classify_step_compiler_options
  if not options:
    raise SystemExit(f'The {jax.default_backend()} policy sets no compiler '
                     'options for the classifier step: nothing to compare.')
  baseline = ((('xla_cpu_experimental_ynn_fusion_type', _BASELINE.value),)
              if _BASELINE.value else ())
  out = []
  for name in _MODELS.value:
    if name not in INPUT_SHAPES:
      raise SystemExit(f'--models: {name!r} is not one of '
                       f'{", ".join(INPUT_SHAPES)}.')
    # The options a run of this model resolves to (the runner's rule).
    resolved = dataclasses.replace(
        classify.ClassifyConfig.from_config(configs.load('classify')),
        model=name).resolve(policy).compiler_options
    r = compare(name, resolved, seeds=_SEEDS.value, batch=_BATCH.value,
                rounds=_ROUNDS.value, steps=_STEPS.value, baseline=baseline)
    print(f"{name}: {1000 * r['policy_s']:.1f} ms per {_SEEDS.value}-seed "
          f"step with the policy's options, {1000 * r['default_s']:.1f} ms "
          f"{'with the baseline' if baseline else 'without'}: ratio "
          f"{r['ratio']} (first-step loss "
          f"{r['first_loss']['policy']:.6f} / "
          f"{r['first_loss']['default']:.6f})", flush=True)
    out.append(r)
  print(json.dumps({'benchmark': 'classify_lowering',
                    'options': dict(options),
                    'batch_norm_options': dict(
                        policy.batch_norm_step_compiler_options),
                    'baseline_options': dict(baseline), 'seeds': _SEEDS.value,
                    'batch_size': _BATCH.value, 'rounds': _ROUNDS.value,
                    'results': out}))


if __name__ == '__main__':
  app.run(main)
