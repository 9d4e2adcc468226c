r"""Images per second of R2CNN's jitted train step (CE and CI loss).

    python -m benchmarks.detect_step [--image_size 256] [--width 16] \
        [--backbone resnet18] [--batch_size 4] [--steps 20]

The CPU configuration is `launch.detect`'s default (ResNet-18 at width 16,
256x256); on a GPU try `--image_size 800 --backbone resnet50 --width 64`.
Synthetic ship images; compile time is reported apart from the median
step. The last line is JSON with images/s per loss and `ratio` = CI step
time / CE step time (the cost of the imbalance-aware loss).
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from cil.detection import r2cnn
from cil.detection import train

_SIZE = flags.DEFINE_integer('image_size', 256, 'Image side.')
_WIDTH = flags.DEFINE_integer('width', 16, 'Backbone width.')
_BACKBONE = flags.DEFINE_string('backbone', 'resnet18', 'Backbone.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Images per step.')
_STEPS = flags.DEFINE_integer(
    'steps', 20, 'Timed steps per loss (median), CE and CI alternating.')


def compiled_step(loss, batch):
  """`(step_fn, state, first_call_s)` for one loss, compiled and warmed."""
  cfg = r2cnn.scaled_config(image_size=_SIZE.value, width=_WIDTH.value,
                            backbone=_BACKBONE.value, loss=loss)
  counts = jnp.asarray(r2cnn.class_counts_with_background(
      np.geomspace(450, 10, 15), cfg.roi_positive_fraction))
  state = train_state.TrainState.create(
      apply_fn=None, params=r2cnn.init_params(cfg, jax.random.key(0)),
      tx=optax.adam(1e-4))
  step = jax.jit(lambda s, b: r2cnn.train_step(
      s, b, jax.random.key(1), cfg=cfg, counts=counts))
  start = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  return step, state, time.perf_counter() - start


def main(argv):
  del argv
  batch = train.synthetic_batch(_BATCH.value, size=_SIZE.value, max_gt=32)
  losses = ('ce', 'ci')
  steps, times, results = {}, {loss: [] for loss in losses}, {}
  for loss in losses:
    step, state, first = compiled_step(loss, batch)
    steps[loss] = [step, state]
    results[loss] = {'first_call_s': round(first, 2)}
  for _ in range(_STEPS.value):  # Alternating, so both see the same noise.
    for loss in losses:
      step, state = steps[loss]
      start = time.perf_counter()
      state, m = step(state, batch)
      jax.block_until_ready(m)
      times[loss].append(time.perf_counter() - start)
      steps[loss][1] = state
  for loss in losses:
    sec = statistics.median(times[loss])
    results[loss].update(sec_per_step=sec, images_per_s=_BATCH.value / sec)
  print(json.dumps({
      'benchmark': 'detect_step', 'backend': jax.default_backend(),
      'device': str(jax.devices()[0]), 'image_size': _SIZE.value,
      'backbone': _BACKBONE.value, 'width': _WIDTH.value,
      'batch_size': _BATCH.value, 'results': results,
      'ratio': round(results['ci']['sec_per_step']
                     / results['ce']['sec_per_step'], 3)}))


if __name__ == '__main__':
  app.run(main)
