r"""MAML meta-steps: cil.maml against the PyTorch reference, interleaved.

    pip install torch==2.13.0        # CPU build; only this benchmark needs it
    python -m benchmarks.maml_step [--rounds 5] [--shapes 28x28x1,84x84x3]

Configuration of `../shared/bench/torch_maml_ref.py`: Conv4 with 64 filters
and batch-statistics batch norm, 5-way, 15 support and 75 query images per
task, meta-batch 4, 5 inner SGD steps (lr 0.01), cross-entropy, Adam.

Ours is `cil.maml.parallel_meta_train_step(parallel='none')` with the
backend's policy (on the CPU: one compiled call per task, XLA's
memory-optimised scheduler; the last line records both).

Time: for each shape and order (second, then first), our step is compiled
once; then `--rounds` rounds alternate one reference step (a fresh
`torch_maml_ref.py --steps 1` process: its warm-up step, then one timed
step) with one of ours, so machine noise hits both. Per side the median of
the rounds is reported with its min and max; `ratio` is ours / reference
(medians) at the worse shape, second order, `ratio_fo` the same for first
order (the reference's `--first_order`).

Memory and compile time, each in its own process (`--child`): our second-
order step at the largest shape, compiled cold (an empty persistent
compilation cache) then once more from that cache, and the reference at
that shape; `rss_ratio` is our peak RSS / the reference's, `compile_s` our
cold first call (trace + compile + one step's run time excluded: it is the
first call minus the median step), `compile_cached_s` the same from the
cache.

Both sides run under the same environment: started with `python -m`, the
benchmark first re-runs itself with glibc's malloc asking for transparent
huge pages (`cil.hugepages`, as the launchers do), and every reference
process inherits that; `CIL_HUGE_PAGES=0` runs both without. The summary
records which (`host_memory`, `glibc_tunables`).

The last line is JSON with `ratio`, `ratio_fo`, `rss_ratio`, `compile_s`
(targets: <= 0.8, <= 0.8, <= 1.0, <= 30 s on the CPU).
"""

import json
import os
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

from benchmarks import maml_setup

_ROUNDS = flags.DEFINE_integer(
    'rounds', 5, 'Interleaved rounds (timed steps per side, median).')
_SHAPES = flags.DEFINE_string('shapes', '28x28x1,84x84x3', 'H x W x C list.')
_REFERENCE = flags.DEFINE_string(
    'reference', maml_setup.REFERENCE,
    'Path of the PyTorch reference script.')
_SKIP_TORCH = flags.DEFINE_bool('skip_torch', False, 'Only time JAX.')
_MEMORY = flags.DEFINE_bool(
    'memory', True, 'Measure peak RSS and cold/cached compile time in child '
    'processes (second order, largest shape).')
_CONV_IMPL = flags.DEFINE_enum(
    'conv_impl', 'auto', ['auto', 'winograd', 'im2col', 'xla'],
    "Conv4's convolution lowering ('auto': the backend policy's for each "
    'order, as the few-shot runner picks).')
_CHILD = flags.DEFINE_string(
    'child', '', 'Internal: "jax:SHAPE" or "torch:SHAPE": one second-order '
    'run in this process; prints its peak RSS (and compile time).')


def _parse_shape(text: str) -> tuple[int, int, int]:
  return maml_setup.parse_shape(text, '--shapes')


class JaxStep:
  """Our meta-step at one shape and order, compiled on construction."""

  def __init__(self, h, w, c, first_order):
    # pylint: disable=g-import-not-at-top
    import jax
    self._jax = jax
    self._step = maml_setup.meta_step((h, w, c), first_order=first_order,
                                      conv_impl=_CONV_IMPL.value)
    self.first_call_s = self.run()

  def run(self) -> float:
    start = time.perf_counter()
    self._jax.block_until_ready(self._step())
    return time.perf_counter() - start


def torch_step(h, w, c, first_order) -> float:
  """One timed reference step (after its warm-up) in a fresh process."""
  m = maml_setup
  cmd = [sys.executable, _REFERENCE.value, '--hw', str(h), '--ch', str(c),
         '--steps', '1', '--filters', str(m.FILTERS),
         '--meta_batch', str(m.META_BATCH), '--inner_steps',
         str(m.INNER_STEPS), '--support', str(m.SUPPORT), '--query',
         str(m.QUERY), '--ways', str(m.WAYS)
         ] + (['--first_order'] if first_order else [])
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(f'{_REFERENCE.value} failed: '
                       f'{out.stderr.strip().splitlines()[-1:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])['sec_per_meta_step']


def _summary(times: list[float]) -> dict:
  return {'median_s': round(statistics.median(times), 4),
          'min_s': round(min(times), 4), 'max_s': round(max(times), 4),
          'n': len(times)}


def interleaved(h, w, c, first_order, rounds) -> dict:
  ours = JaxStep(h, w, c, first_order)
  times = {'jax': [], 'torch': []}
  for _ in range(rounds):
    if not _SKIP_TORCH.value:
      times['torch'].append(torch_step(h, w, c, first_order))
    times['jax'].append(ours.run())
  out = {'jax': {**_summary(times['jax']),
                 'first_call_s': round(ours.first_call_s, 2)}}
  if times['torch']:
    out['torch'] = _summary(times['torch'])
    out['ratio'] = round(out['jax']['median_s'] / out['torch']['median_s'],
                         4)
    per_round = [j / t for j, t in zip(times['jax'], times['torch'])]
    out['round_ratios'] = [round(r, 3) for r in per_round]
  return out


def _peak_rss_mb() -> float:
  """This process's peak resident memory, in MB.

  Linux's VmHWM: the high-water mark of this program's own memory. Not
  `getrusage`'s ru_maxrss, which a child started by `subprocess` inherits
  from its parent (a child using 11 MB read 1,456 MB under a parent holding
  1.5 GB), so every child here would read at least this benchmark's peak.
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return round(int(line.split()[1]) / 1024, 1)
  except OSError:
    pass
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(spec: str) -> None:
  """One second-order run in this process: prints JSON with its peak RSS."""
  impl, shape = spec.split(':')
  h, w, c = _parse_shape(shape)
  if impl == 'torch':
    sys.argv = [_REFERENCE.value, '--hw', str(h), '--ch', str(c), '--steps',
                '1']
    runpy.run_path(_REFERENCE.value, run_name='__main__')
    print(json.dumps({'peak_rss_mb': _peak_rss_mb()}))
    return
  step = JaxStep(h, w, c, first_order=False)
  run_s = step.run()
  print(json.dumps({'peak_rss_mb': _peak_rss_mb(),
                    'first_call_s': round(step.first_call_s, 2),
                    'step_s': round(run_s, 3),
                    'compile_s': round(step.first_call_s - run_s, 2)}))


def _run_child(spec: str, env: dict) -> dict:
  cmd = [sys.executable, '-m', 'benchmarks.maml_step', f'--child={spec}',
         f'--reference={_REFERENCE.value}', f'--conv_impl={_CONV_IMPL.value}']
  out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                       env=env, cwd=os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__))))
  if out.returncode:
    raise RuntimeError(f'{spec} failed: {out.stderr.strip()[-500:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def memory_and_compile(shape: str) -> dict:
  out = {}
  with tempfile.TemporaryDirectory() as cache:
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
    out['jax_cold'] = _run_child(f'jax:{shape}', env)
    out['jax_cached'] = _run_child(f'jax:{shape}', env)
  if not _SKIP_TORCH.value:
    out['torch'] = _run_child(f'torch:{shape}', dict(os.environ))
  return out


def main(argv):
  del argv
  if _CHILD.value:
    child(_CHILD.value)
    return
  # pylint: disable-next=g-import-not-at-top
  import jax
  shapes = _SHAPES.value.split(',')
  for s in shapes:
    _parse_shape(s)
  results = {}
  for shape in shapes:
    h, w, c = _parse_shape(shape)
    for order in ('second', 'first'):
      results[f'{shape}/{order}'] = r = interleaved(h, w, c, order == 'first',
                                                    _ROUNDS.value)
      print(f'{shape} {order} order', json.dumps(r), flush=True)
  # pylint: disable=g-import-not-at-top
  from cil import hugepages
  from cil import runtime
  policy = runtime.policy()
  summary = {
      'benchmark': 'maml_step', 'backend': jax.default_backend(),
      'device': str(jax.devices()[0]),
      'conv_impl': {order: policy.maml_conv_impl(
          first_order=order == 'first', requested=_CONV_IMPL.value)
                    for order in ('second', 'first')},
      'task_map': policy.task_map,
      'compiler_options': dict(policy.meta_step_compiler_options),
      # Both sides' environment (the reference's processes inherit it).
      'host_memory': hugepages.describe(),
      'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
      'rounds': _ROUNDS.value, 'results': results}
  for key, order in (('ratio', 'second'), ('ratio_fo', 'first')):
    ratios = [results[f'{s}/{order}'].get('ratio') for s in shapes]
    summary[key] = max(ratios) if None not in ratios else None
  if _MEMORY.value:
    largest = max(shapes, key=lambda s: np.prod(_parse_shape(s)))
    memory = memory_and_compile(largest)
    print(f'{largest} memory and compile', json.dumps(memory), flush=True)
    summary['memory'] = memory
    summary['compile_s'] = memory['jax_cold']['compile_s']
    summary['compile_cached_s'] = memory['jax_cached']['compile_s']
    if 'torch' in memory:
      summary['rss_ratio'] = round(memory['jax_cold']['peak_rss_mb']
                                   / memory['torch']['peak_rss_mb'], 3)
  print(json.dumps(summary))


if __name__ == '__main__':
  app.run(main)
