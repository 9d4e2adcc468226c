r"""Speed of the episodic task sampler (`cil.data.EpisodeSampler`).

    python -m benchmarks.sampler [--meta_batch 4] [--seconds 3]

Draws meta-batches of 5-way tasks with 15 support images (distribution
[1, 2, 3, 4, 5]) and proportional queries (p = 5, 75 images, the
meta-train protocol), and of balanced meta-test tasks (15 queries per class),
for 28x28x1 and 84x84x3 images. The datasets are random uint8 arrays shaped
like Omniglot (1200 classes x 20) and miniImageNet (64 classes x 600; fewer
images per class here to bound memory, which does not change the per-task
cost). Prints tasks per second and milliseconds per meta-batch; the last line
is JSON.
"""

import json
import time

from absl import app
from absl import flags
import numpy as np

from cil import data

_META_BATCH = flags.DEFINE_integer('meta_batch', 4, 'Tasks per meta-batch.')
_SECONDS = flags.DEFINE_float('seconds', 3.0, 'Time per measurement.')

_CONFIGS = (
    ('28x28x1', (28, 28, 1), 1200, 20),
    ('84x84x3', (84, 84, 3), 64, 150),
)


def _dataset(shape, num_classes, per_class, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.repeat(np.arange(num_classes), per_class)
  images = rng.integers(0, 256, (labels.size,) + shape, dtype=np.uint8)
  return data.ArrayDataset(images=images, labels=labels,
                           class_names=tuple(map(str, range(num_classes))),
                           name='random', split='bench')


def _rate(fn, seconds):
  fn()  # Warm-up.
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    fn()
    count += 1
  return (time.perf_counter() - start) / count


def main(argv):
  del argv
  results = {}
  for name, shape, num_classes, per_class in _CONFIGS:
    sampler = data.EpisodeSampler(_dataset(shape, num_classes, per_class),
                                  ways=5)
    rng = np.random.default_rng(0)
    queries = 5 if per_class >= 30 else 1  # Omniglot has 20 per class.
    train_s = _rate(lambda: sampler.sample(
        rng, (1, 2, 3, 4, 5), query_multiple=queries,
        num_tasks=_META_BATCH.value), _SECONDS.value)
    test_s = _rate(lambda: sampler.sample(
        rng, (1, 2, 3, 4, 5), query_per_class=5 if per_class < 30 else 15,
        num_tasks=_META_BATCH.value), _SECONDS.value)
    results[name] = {
        'meta_train_ms_per_meta_batch': round(1e3 * train_s, 3),
        'meta_train_tasks_per_s': round(_META_BATCH.value / train_s, 1),
        'meta_test_ms_per_meta_batch': round(1e3 * test_s, 3),
        'meta_test_tasks_per_s': round(_META_BATCH.value / test_s, 1),
        'query_multiple': queries,
    }
    print(name, results[name])
  print(json.dumps({'benchmark': 'sampler', 'meta_batch': _META_BATCH.value,
                    'results': results}))


if __name__ == '__main__':
  app.run(main)
