r"""Peak memory and time of preparing a `folder:` dataset, against its size.

    python -m benchmarks.prepare_folder [--images 150000] [--size 64] \
        [--classes 10] [--root /tmp/cil_prepare_bench]

Generates a long-tailed folder of JPEGs (`--classes` classes, counts
falling exponentially by a factor 3,000, as 60,000 to 20 at 150,000
images; random noise at
`--size` x `--size`, about 4 kB each), then, each in a fresh process,
prepares it at a quarter and at all of its images (the smaller one is the
first `--images / 4`, same profile) with `cil.data.custom.load_builder`:
the TF-free builder that streams every image to array_record shards
(`ArrayRecordBuilder.STREAM`). Prints one JSON line per size (`images`,
`source_mb`, `prepared_mb`, `seconds`, `peak_rss_mb`: the child's VmHWM)
and a last JSON line with `rss_ratio` (peak RSS at N over N / 4; flat
memory is about 1) and whether TensorFlow was imported (`tensorflow`:
never). Before streaming, TFDS's writer held each split to shuffle it and
needed TensorFlow once a split passed 1 GB.
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

_CHILD = r'''
import json, os, sys, time
from cil.data import custom
spec, data_dir = sys.argv[1], sys.argv[2]
start = time.perf_counter()
builder = custom.load_builder(spec, data_dir=data_dir,
                              options=custom.Options(image_size=0))
seconds = time.perf_counter() - start
with open('/proc/self/status') as f:
  peak = next(int(l.split()[1]) for l in f if l.startswith('VmHWM'))
size = sum(os.path.getsize(os.path.join(r, n))
           for r, _, ns in os.walk(data_dir) for n in ns)
print(json.dumps({'seconds': round(seconds, 1),
                  'peak_rss_mb': round(peak / 1024, 1),
                  'prepared_mb': round(size / 2**20, 1),
                  'tensorflow': 'tensorflow' in sys.modules,
                  'examples': {s: v.num_examples
                               for s, v in builder.info.splits.items()}}))
'''


def counts(images: int, classes: int, imbalance: float = 3000.0
           ) -> list[int]:
  """Per-class counts summing to `images`, falling exponentially by
  `imbalance` from the first class to the last (at least 2 each: one to
  train on, one to test)."""
  weights = np.geomspace(1.0, 1.0 / imbalance, classes)
  out = np.maximum(2, np.round(images * weights / weights.sum())).astype(int)
  out[0] += images - out.sum()
  return out.tolist()


def write_folder(root: str, per_class: list[int], size: int) -> list[str]:
  """Writes `root/c<k>/<i>.jpg`; returns every path, class by class."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  paths = []
  for k, n in enumerate(per_class):
    folder = os.path.join(root, f'c{k}')
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
      path = os.path.join(folder, f'{i:06d}.jpg')
      if not os.path.exists(path):
        Image.fromarray(rng.integers(0, 256, (size, size), np.uint8)).save(
            path, quality=75)
      paths.append(path)
  return paths


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--images', type=int, default=150_000)
  parser.add_argument('--size', type=int, default=64)
  parser.add_argument('--classes', type=int, default=10)
  parser.add_argument('--root', default='/tmp/cil_prepare_bench')
  args = parser.parse_args()
  results = []
  for n in (args.images // 4, args.images):
    folder = os.path.join(args.root, f'folder_{n}')
    start = time.perf_counter()
    paths = write_folder(folder, counts(n, args.classes), args.size)
    written = time.perf_counter() - start
    data_dir = os.path.join(args.root, f'prepared_{n}')
    shutil.rmtree(data_dir, ignore_errors=True)
    child = subprocess.run(
        [sys.executable, '-c', _CHILD, f'folder:{folder}', data_dir],
        capture_output=True, text=True, check=False)
    if child.returncode:
      sys.exit(f'Preparing {folder} failed:\n{child.stderr[-3000:]}')
    result = json.loads(child.stdout.strip().splitlines()[-1])
    result.update(images=n, source_mb=round(
        sum(os.path.getsize(p) for p in paths) / 2**20, 1),
                  generate_seconds=round(written, 1))
    print(json.dumps(result), flush=True)
    results.append(result)
  print(json.dumps({
      'rss_ratio': round(results[1]['peak_rss_mb']
                         / results[0]['peak_rss_mb'], 3),
      'peak_rss_mb': results[1]['peak_rss_mb'],
      'images': args.images,
      'tensorflow': any(r['tensorflow'] for r in results),
      'self_peak_rss_mb': round(resource.getrusage(
          resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == '__main__':
  main()
