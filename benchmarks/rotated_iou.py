r"""Rotated IoU of 2,000 x 2,000 boxes: cil.detection (jit) against shapely.

    pip install shapely        # only the benchmark and the tests need it
    python -m benchmarks.rotated_iou [--n 2000] [--repeats 3]

Boxes are scattered over a 1000x1000 image (sides 5-100 px, any angle), so
some pairs overlap and most do not. shapely computes the same matrix with
its vectorised ops (`intersection` and `area` over broadcast polygon
arrays) in float64; ours runs under `jit` in float32, the detector's dtype.
Both are timed best-of-`repeats` in this process, compile time apart. The
last line is JSON whose `ratio` is our time / shapely's (target <= 0.05),
with the max abs IoU difference.
"""

import json
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from cil.detection import boxes as boxes_lib

_N = flags.DEFINE_integer('n', 2000, 'Boxes per set.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats (best).')


def random_boxes(rng, n):
  return np.stack([rng.uniform(0, 1000, n), rng.uniform(0, 1000, n),
                   rng.uniform(5, 100, n), rng.uniform(5, 100, n),
                   rng.uniform(-np.pi, np.pi, n)], -1)


def shapely_iou(a, b):
  import shapely  # pylint: disable=g-import-not-at-top
  pa = shapely.polygons(boxes_lib.rbox_to_corners(a, xp=np))
  pb = shapely.polygons(boxes_lib.rbox_to_corners(b, xp=np))
  inter = shapely.area(shapely.intersection(pa[:, None], pb[None, :]))
  union = shapely.area(pa)[:, None] + shapely.area(pb)[None, :] - inter
  return inter / union


def best_of(fn, repeats):
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return min(times), out


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  a, b = random_boxes(rng, _N.value), random_boxes(rng, _N.value)
  ours = jax.jit(boxes_lib.rotated_iou)
  ja, jb = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  start = time.perf_counter()
  jax.block_until_ready(ours(ja, jb))
  compile_s = time.perf_counter() - start
  t_ours, got = best_of(lambda: jax.block_until_ready(ours(ja, jb)),
                        _REPEATS.value)
  t_shapely, ref = best_of(lambda: shapely_iou(a, b), _REPEATS.value)
  print(json.dumps({
      'benchmark': 'rotated_iou', 'pairs': _N.value ** 2,
      'backend': jax.default_backend(), 'first_call_s': round(compile_s, 3),
      'ours_s': round(t_ours, 4), 'shapely_s': round(t_shapely, 4),
      'overlapping_pairs': int((ref > 0).sum()),
      'max_abs_iou_error': float(np.abs(np.asarray(got) - ref).max()),
      'ratio': round(t_ours / t_shapely, 4)}))


if __name__ == '__main__':
  app.run(main)
