r"""One Conv4 training step (forward and parameter gradients) against PyTorch.

    python -m benchmarks.conv4_step [--batch 75] [--shape 84x84x3] [--rounds 9]

The building block of a first-order MAML meta-step, without MAML: the
reference's meta-step at 84x84x3 is 4 tasks x (5 steps on 15 support images
+ 1 on 75 query images), so `--batch 15` and `--batch 75` time its two
kinds of step. Ours is `jax.jit(jax.grad(cross-entropy of cil.models.Conv4))`
(64 filters, batch statistics, the backend policy's convolution lowering);
the reference's is `torch.autograd.grad` of the same loss of
`../shared/bench/torch_maml_ref.py`'s `Conv4` (loaded from `--reference`),
in this process with PyTorch's default threads. Both get the same random
images and labels (seed 0). After one warm-up call each, `--rounds` rounds
time one step of each in turn, the order alternating per round. The last
line is JSON with each side's median and `ratio` (ours / reference: the
median of the per-round ratios, with their min and max).
"""

import importlib.util
import json
import os
import statistics
import time

from absl import app
from absl import flags
import numpy as np

from benchmarks import maml_setup

_BATCH = flags.DEFINE_integer('batch', 75, 'Images per step.')
_SHAPE = flags.DEFINE_string('shape', '84x84x3', 'H x W x C.')
_ROUNDS = flags.DEFINE_integer('rounds', 9, 'Timed rounds (steps per side).')
_REFERENCE = flags.DEFINE_string(
    'reference', maml_setup.REFERENCE,
    'Path of the PyTorch reference script (its Conv4 is used).')


def _ours(images, labels):
  # pylint: disable=g-import-not-at-top
  import jax
  import optax
  from cil import models
  from cil import runtime
  # The backend policy's lowering (im2col on CPUs and GPUs), as a runner
  # would pass it.
  model = models.Conv4(num_classes=maml_setup.WAYS,
                       features=maml_setup.FILTERS,
                       conv_impl=runtime.policy().conv_impl)
  params = model.init(jax.random.key(0), images[:1])['params']

  def loss(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(
        model.apply({'params': p}, x), y).mean()

  grad = jax.jit(jax.grad(loss))
  x, y = jax.device_put(images), jax.device_put(labels)
  return lambda: jax.block_until_ready(grad(params, x, y))


def _reference(images, labels):
  # pylint: disable=g-import-not-at-top
  import torch
  import torch.nn.functional as F
  if not os.path.exists(_REFERENCE.value):
    raise app.UsageError(f'--reference: no file {_REFERENCE.value!r}.')
  spec = importlib.util.spec_from_file_location('torch_maml_ref',
                                                _REFERENCE.value)
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  torch.manual_seed(0)
  h, _, c = images.shape[1:]
  net = ref.Conv4(c, maml_setup.FILTERS, maml_setup.WAYS, h)
  x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  y = torch.from_numpy(labels.astype(np.int64))
  params = list(net.parameters())
  return lambda: torch.autograd.grad(F.cross_entropy(net(x), y), params)


def main(argv):
  del argv
  h, w, c = maml_setup.parse_shape(_SHAPE.value, '--shape')
  if h != w:
    raise app.UsageError(f'--shape: the reference takes square images, got '
                         f'{_SHAPE.value!r}.')
  if _BATCH.value < 2 or _ROUNDS.value < 1:
    raise app.UsageError('--batch must be >= 2 (batch statistics) and '
                         '--rounds >= 1.')
  rng = np.random.default_rng(0)
  images = rng.standard_normal((_BATCH.value, h, w, c)).astype(np.float32)
  labels = rng.integers(0, maml_setup.WAYS, _BATCH.value).astype(np.int32)
  sides = {'jax': _ours(images, labels), 'torch': _reference(images, labels)}
  for step in sides.values():
    step()  # Warm-up (compiles ours).
  times = {k: [] for k in sides}
  for r in range(_ROUNDS.value):
    for k in (sorted(sides) if r % 2 == 0 else sorted(sides, reverse=True)):
      start = time.perf_counter()
      sides[k]()
      times[k].append(time.perf_counter() - start)
  per_round = np.asarray(times['jax']) / np.asarray(times['torch'])
  print(json.dumps({
      'benchmark': 'conv4_step', 'shape': _SHAPE.value,
      'batch': _BATCH.value, 'rounds': _ROUNDS.value,
      **{f'{k}_median_ms': round(1e3 * statistics.median(v), 1)
         for k, v in times.items()},
      'ratio': round(float(np.median(per_round)), 3),
      'ratio_min': round(float(per_round.min()), 3),
      'ratio_max': round(float(per_round.max()), 3)}))


if __name__ == '__main__':
  app.run(main)
