r"""One second-order MAML meta-step: cil.maml against the PyTorch reference.

    pip install torch==2.13.0        # CPU build; only this benchmark needs it
    python -m benchmarks.maml_step [--steps 3] [--shapes 28x28x1,84x84x3]

Configuration of `../shared/bench/torch_maml_ref.py`: Conv4 with 64 filters
and batch-statistics batch norm, 5-way, 15 support and 75 query images per
task, meta-batch 4, 5 inner SGD steps (lr 0.01), cross-entropy, Adam. Both
run in this process's machine, one after the other, per shape. Compile time
(first call) is reported apart from the steady-state median step time; the
first-order (FOMAML) step is timed too, and the process's peak RSS is
reported as the memory figure on CPU. The last line is JSON whose `ratio` is
our time / reference time for the worse of the shapes (target <= 1.0).
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cil import maml
from cil import models

_STEPS = flags.DEFINE_integer('steps', 3, 'Timed meta-steps (median).')
_SHAPES = flags.DEFINE_string('shapes', '28x28x1,84x84x3', 'H x W x C list.')
_REFERENCE = flags.DEFINE_string(
    'reference', os.path.join(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), 'shared', 'bench',
                              'torch_maml_ref.py'),
    'Path of the PyTorch reference script.')
_SKIP_TORCH = flags.DEFINE_bool('skip_torch', False, 'Only time JAX.')
_CONV_IMPL = flags.DEFINE_enum(
    'conv_impl', 'auto', ['auto', 'im2col', 'xla'],
    "Conv4's convolution lowering ('auto': im2col on the CPU).")

WAYS, SUPPORT, QUERY, META_BATCH, INNER_STEPS, FILTERS = 5, 15, 75, 4, 5, 64


def _tasks(h, w, c, seed=0):
  rng = np.random.default_rng(seed)
  return {
      'support_images': jnp.asarray(
          rng.standard_normal((META_BATCH, SUPPORT, h, w, c)), jnp.float32),
      'support_labels': jnp.asarray(
          rng.integers(0, WAYS, (META_BATCH, SUPPORT)), jnp.int32),
      'support_counts': jnp.full((META_BATCH, WAYS), SUPPORT // WAYS,
                                 jnp.int32),
      'query_images': jnp.asarray(
          rng.standard_normal((META_BATCH, QUERY, h, w, c)), jnp.float32),
      'query_labels': jnp.asarray(
          rng.integers(0, WAYS, (META_BATCH, QUERY)), jnp.int32),
  }


def time_jax(h, w, c, first_order, steps):
  cfg = maml.MamlConfig(ways=WAYS, inner_lr=0.01, meta_lr=1e-3,
                        adaptation_steps=INNER_STEPS,
                        test_adaptation_steps=INNER_STEPS,
                        first_order=first_order, inner_loss='ce',
                        outer_loss='ce')
  tasks = _tasks(h, w, c)
  model = models.Conv4(num_classes=WAYS, features=FILTERS,
                       conv_impl=_CONV_IMPL.value)
  state = maml.create_state(model, cfg, jax.random.key(0),
                            tasks['support_images'][0])
  step = maml.parallel_meta_train_step(cfg, parallel='none')
  start = time.perf_counter()
  state, m = step(state, tasks)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, m = step(state, tasks)
    jax.block_until_ready(m)
    times.append(time.perf_counter() - start)
  return {'first_call_s': round(compile_s, 2),
          'sec_per_meta_step': statistics.median(times)}


def time_torch(h, w, c, steps):
  cmd = [sys.executable, _REFERENCE.value, '--hw', str(h), '--ch', str(c),
         '--steps', str(steps), '--filters', str(FILTERS),
         '--meta_batch', str(META_BATCH), '--inner_steps', str(INNER_STEPS),
         '--support', str(SUPPORT), '--query', str(QUERY), '--ways',
         str(WAYS)]
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if out.returncode:
    return {'error': out.stderr.strip().splitlines()[-1:]}
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  results = {}
  for shape in _SHAPES.value.split(','):
    h, w, c = (int(v) for v in shape.split('x'))
    entry = {'jax_second_order': time_jax(h, w, c, False, _STEPS.value),
             'jax_first_order': time_jax(h, w, c, True, _STEPS.value)}
    if not _SKIP_TORCH.value:
      entry['torch'] = time_torch(h, w, c, _STEPS.value)
      ref = entry['torch'].get('sec_per_meta_step')
      if ref:
        entry['ratio'] = entry['jax_second_order']['sec_per_meta_step'] / ref
    results[shape] = entry
    print(shape, json.dumps(entry))
  ratios = [e['ratio'] for e in results.values() if 'ratio' in e]
  print(json.dumps({
      'benchmark': 'maml_step', 'backend': jax.default_backend(),
      'device': str(jax.devices()[0]), 'conv_impl': _CONV_IMPL.value,
      'peak_rss_mb': round(resource.getrusage(
          resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'results': results,
      'ratio': round(max(ratios), 3) if ratios else None}))


if __name__ == '__main__':
  app.run(main)
