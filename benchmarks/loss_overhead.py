r"""Cost of the CI loss against optax's softmax cross-entropy.

    python -m benchmarks.loss_overhead [--repeats 7] [--iters 50]

Times the jitted forward + backward (`jax.value_and_grad` of the batch mean)
of `cil.losses.ci_loss` and of `optax.softmax_cross_entropy_with_integer_labels`
at `[B=256, C=10]` and `[B=1024, C=1000]`, measured in the same run,
interleaved; the best of the repeats is reported (as `timeit` advises:
slower repeats measure interference from the machine, not the code), the
median alongside. The last output line is JSON whose `ratio`
key is CI time / CE time at the larger shape (target: <= 1.10).

Also times eager calls (no `jit` around the loss: what a notebook or a
quick script pays, checks included) of `ci_loss` against optax's eager
cross-entropy, interleaved the same way; `eager_ratio` in the JSON is that
ratio at the larger shape (target: <= 2.0).
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import optax

from cil import losses

_REPEATS = flags.DEFINE_integer('repeats', 20, 'Timed repeats.')
_ITERS = flags.DEFINE_integer('iters', 50, 'Calls per timed repeat.')
_SHAPES = ((256, 10), (1024, 1000))


def _time_per_call(fn, args, iters):
  jax.block_until_ready(fn(*args))
  start = time.perf_counter()
  for _ in range(iters):
    out = fn(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / iters


def bench_shape(batch, num_classes, repeats, iters):
  key_z, key_y, key_c = jax.random.split(jax.random.key(0), 3)
  logits = 3 * jax.random.normal(key_z, (batch, num_classes))
  labels = jax.random.randint(key_y, (batch,), 0, num_classes)
  # Long-tailed counts (lambda > 1 at C = 1000), a traced argument.
  counts = jnp.floor(1000 * jax.random.pareto(key_c, 1.0, (num_classes,))) + 1

  fns = {
      'optax_ce': jax.jit(jax.value_and_grad(
          lambda z, y, c: optax.softmax_cross_entropy_with_integer_labels(
              z, y).mean())),
      'cil_ce': jax.jit(jax.value_and_grad(
          lambda z, y, c: losses.cross_entropy(z, y).mean())),
      'ci': jax.jit(jax.value_and_grad(
          lambda z, y, c: losses.ci_loss(z, y, c).mean())),
  }
  args = (logits, labels, counts)
  eager = {
      'optax_ce_eager': (
          lambda z, y, c: optax.softmax_cross_entropy_with_integer_labels(
              z, y)),
      'ci_eager': lambda z, y, c: losses.ci_loss(z, y, c),
  }
  fns.update(eager)
  compile_s = {}
  for name, fn in fns.items():
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s[name] = time.perf_counter() - start
  samples = {name: [] for name in fns}
  for _ in range(repeats):  # Interleaved, so drift hits all alike.
    for name, fn in fns.items():
      samples[name].append(_time_per_call(fn, args, iters))
  best = {k: min(v) for k, v in samples.items()}
  median = {k: statistics.median(v) for k, v in samples.items()}
  return {
      'shape': [batch, num_classes],
      'us_per_call': {k: round(1e6 * t, 2) for k, t in best.items()},
      'us_per_call_median': {k: round(1e6 * t, 2) for k, t in median.items()},
      'first_call_s': {k: round(t, 3) for k, t in compile_s.items()},
      'ratio_ci_over_optax_ce': best['ci'] / best['optax_ce'],
      'ratio_median': median['ci'] / median['optax_ce'],
      'eager_ratio': median['ci_eager'] / median['optax_ce_eager'],
  }


def main(argv):
  del argv
  results = []
  for batch, num_classes in _SHAPES:
    r = bench_shape(batch, num_classes, _REPEATS.value, _ITERS.value)
    results.append(r)
    print(f'[B={batch}, C={num_classes}] us/call {r["us_per_call"]} '
          f'CI/CE = {r["ratio_ci_over_optax_ce"]:.3f} (jit), '
          f'{r["eager_ratio"]:.3f} (eager, median)')
  print(json.dumps({
      'benchmark': 'loss_overhead',
      'backend': jax.default_backend(),
      'device': str(jax.devices()[0]),
      'ratio': round(results[-1]['ratio_ci_over_optax_ce'], 4),
      'eager_ratio': round(results[-1]['eager_ratio'], 4),
      'shapes': results,
  }))


if __name__ == '__main__':
  app.run(main)
