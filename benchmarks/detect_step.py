r"""Images per second of the detectors' jitted train steps (R2CNN and the
rotated Cascade R-CNN, each with CE and CI loss).

    python -m benchmarks.detect_step [--image_size 256] [--width 16] \
        [--backbone resnet18] [--batch_size 4] [--steps 20] \
        [--detectors r2cnn,cascade]

The CPU configuration is `launch.detect`'s default (ResNet-18 at width 16,
256x256); on a GPU try `--image_size 800 --backbone resnet50 --width 64`.
Synthetic ship images. Every (detector, loss) step is compiled and warmed
first (its first call reported apart), then the timed steps run in rounds,
one step of each in turn, so machine noise hits all alike; medians over
`--steps` rounds. The last line is JSON with per-step seconds and images/s
keyed `detector/loss`, `ratio` = R2CNN's CI step / its CE step (the cost of
the imbalance-aware loss) and `cascade_ratio` = the Cascade's CE step /
R2CNN's CE step (the cost of two more stages), each with the 10th-90th
percentile of its per-round ratios.
"""

import json
import statistics
import time

from absl import app
from absl import flags
import jax
import numpy as np

from benchmarks import detect_setup
from cil.experiments import detect

_SIZE = flags.DEFINE_integer('image_size', 256, 'Image side.')
_WIDTH = flags.DEFINE_integer('width', 16, 'Backbone width.')
_BACKBONE = flags.DEFINE_string('backbone', 'resnet18', 'Backbone.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Images per step.')
_STEPS = flags.DEFINE_integer(
    'steps', 20, 'Timed rounds (one step of every detector and loss each).')
_DETECTORS = flags.DEFINE_list('detectors', ['r2cnn', 'cascade'],
                               'Detectors to time (r2cnn, cascade).')


def compiled_step(detector, loss, batch):
  """`(step_fn, state, first_call_s)` for one detector and loss, warmed."""
  step, state = detect_setup.train_step(
      detector, loss=loss, image_size=_SIZE.value, width=_WIDTH.value,
      backbone=_BACKBONE.value)
  start = time.perf_counter()
  state, m = step(state, batch)
  jax.block_until_ready(m)
  return step, state, time.perf_counter() - start


def _ratio(times, num, den):
  per_round = np.asarray(times[num]) / np.asarray(times[den])
  return {'ratio': round(statistics.median(times[num])
                         / statistics.median(times[den]), 3),
          'p10_p90': [round(float(x), 3)
                      for x in np.percentile(per_round, [10, 90])]}


def main(argv):
  del argv
  for detector in _DETECTORS.value:  # All of them, before any compiles.
    try:
      detect_setup.check_detector(detector)
    except ValueError as e:
      raise app.UsageError(f'--detectors: {e}') from None
  batch = detect.synthetic_batch(_BATCH.value, size=_SIZE.value, max_gt=32)
  runs = [f'{d}/{loss}' for d in _DETECTORS.value for loss in ('ce', 'ci')]
  steps, times, results = {}, {run: [] for run in runs}, {}
  for run in runs:
    step, state, first = compiled_step(*run.split('/'), batch)
    steps[run] = [step, state]
    results[run] = {'first_call_s': round(first, 2)}
  for _ in range(_STEPS.value):  # Interleaved: all see the same noise.
    for run in runs:
      step, state = steps[run]
      start = time.perf_counter()
      state, m = step(state, batch)
      jax.block_until_ready(m)
      times[run].append(time.perf_counter() - start)
      steps[run][1] = state
  for run in runs:
    sec = statistics.median(times[run])
    results[run].update(sec_per_step=round(sec, 4),
                        images_per_s=round(_BATCH.value / sec, 2))
  line = {'benchmark': 'detect_step', 'backend': jax.default_backend(),
          'device': str(jax.devices()[0]), 'image_size': _SIZE.value,
          'backbone': _BACKBONE.value, 'width': _WIDTH.value,
          'batch_size': _BATCH.value, 'rounds': _STEPS.value,
          'results': results}
  if 'r2cnn/ce' in times:
    line['ratio'] = _ratio(times, 'r2cnn/ci', 'r2cnn/ce')
  if 'r2cnn/ce' in times and 'cascade/ce' in times:
    line['cascade_ratio'] = _ratio(times, 'cascade/ce', 'r2cnn/ce')
  print(json.dumps(line))


if __name__ == '__main__':
  app.run(main)
