r"""The streamed input pipeline's memory against the data's size, and its
decode + augment speed against the long-tail references' PyTorch loader.

    python -m benchmarks.input_pipeline [--images 50000] [--size 32] \
        [--classes 100] [--batch 128] [--workers 1] [--rounds 3] \
        [--throughput_images 20000] [--root /tmp/cil_input_bench] \
        [--skip_torch] [--keep]

Generates a long-tailed folder of `4 * --images` RGB JPEGs (`--size`
square, random noise, `--classes` classes falling exponentially by a
factor 3,000: `benchmarks.prepare_folder.counts`) and a second folder of
its first `--images` (the same profile; links to the same files), and
prepares each as `folder:` data (array_record shards, the JPEG bytes as
written). Then, each in a fresh process:

* **memory**: one epoch of the training split (a permutation, whole
  batches of `--batch`) streamed as the classify runner streams it
  (`cil.data.StreamedSplit.chunks` with Grain reader threads) through the
  ImageNet-LT references' augmentation (`cil.data.transforms`:
  random-resized crop to `--size` + flip), at N and 4N; JSON lines with
  `images`, `seconds`, `peak_rss_mb` (VmHWM) and the last line's
  `rss_ratio` (4N over N; flat memory is about 1);
* **speed**, interleaved for `--rounds` rounds: `--throughput_images`
  images of the larger set through our pipeline with `--workers` reader
  threads, then through the references' loader
  (`torchvision.datasets.ImageFolder` over the same JPEG files +
  `torch.utils.data.DataLoader` with `--workers` worker processes,
  `RandomResizedCrop(size)`, `RandomHorizontalFlip()`, `PILToTensor()`:
  uint8 batches as ours), timed after the first batch; images/s per
  worker, medians, per-round ratios (ours / torch: above 1 is faster).

Needs torchvision for the reference (not a dependency: `pip install
torch==2.14.1 torchvision==0.29.1` on x86_64; `--skip_torch` for none).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import prepare_folder

_PREPARE = r'''
import json, sys, time
from cil import data
spec, data_dir = sys.argv[1], sys.argv[2]
start = time.perf_counter()
split = data.stream(spec, 'train', data_dir=data_dir,
                    options=data.Options(image_size=0))
print(json.dumps({'train_images': len(split),
                  'seconds': round(time.perf_counter() - start, 1)}))
'''

_OURS = r'''
import json, sys, time
import numpy as np
from cil import data
spec, data_dir, size, batch, workers, limit = sys.argv[1:7]
size, batch, workers, limit = int(size), int(batch), int(workers), int(limit)
split = data.stream(spec, 'train', data_dir=data_dir,
                    options=data.Options(image_size=0))
order = np.random.default_rng(0).permutation(len(split))
n = (min(limit, order.size) if limit else order.size) // batch * batch
reads = split.chunks(order[:n], batch, threads=workers, seed=0,
                     transform=data.transforms.random_resized_crop_flip(size))
total = int(next(reads).sum(dtype=np.int64))  # The first batch: warm-up.
start = time.perf_counter()
for images in reads:
  total += int(images[:, 0, 0, 0].sum(dtype=np.int64))
seconds = time.perf_counter() - start
with open('/proc/self/status') as f:
  peak = next(int(l.split()[1]) for l in f if l.startswith('VmHWM'))
print(json.dumps({'images': n, 'timed_images': n - batch,
                  'seconds': round(seconds, 2),
                  'images_per_s': round((n - batch) / seconds, 1),
                  'peak_rss_mb': round(peak / 1024, 1)}))
'''

_TORCH = r'''
import json, sys, time
import torch
from torchvision import datasets, transforms
folder, size, batch, workers, limit = sys.argv[1:6]
size, batch, workers, limit = int(size), int(batch), int(workers), int(limit)
torch.manual_seed(0)
dataset = datasets.ImageFolder(folder, transform=transforms.Compose([
    transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(),
    transforms.PILToTensor()]))
loader = torch.utils.data.DataLoader(dataset, batch_size=batch,
                                     shuffle=True, num_workers=workers,
                                     drop_last=True)
n = limit // batch * batch
batches = iter(loader)
next(batches)  # The first batch: warm-up (workers start).
done, start = batch, time.perf_counter()
for images, _ in batches:
  done += images.shape[0]
  if done >= n:
    break
seconds = time.perf_counter() - start
print(json.dumps({'images': done, 'timed_images': done - batch,
                  'seconds': round(seconds, 2),
                  'images_per_s': round((done - batch) / seconds, 1)}))
'''


def write_rgb_folder(root: str, per_class: list[int], size: int
                     ) -> list[list[str]]:
  """`root/c<k>/<i>.jpg`, RGB noise; returns the paths by class."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  paths = []
  for k, n in enumerate(per_class):
    folder = os.path.join(root, f'c{k:03d}')
    os.makedirs(folder, exist_ok=True)
    paths.append([])
    for i in range(n):
      path = os.path.join(folder, f'{i:06d}.jpg')
      if not os.path.exists(path):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)
                        ).save(path, quality=90)
      paths[-1].append(path)
  return paths


def link_subset(root: str, paths: list[list[str]], per_class: list[int]
                ) -> None:
  """`root/c<k>/` with links to the first `per_class[k]` of class k."""
  for k, n in enumerate(per_class):
    folder = os.path.join(root, f'c{k:03d}')
    os.makedirs(folder, exist_ok=True)
    for path in paths[k][:n]:
      link = os.path.join(folder, os.path.basename(path))
      if not os.path.lexists(link):
        os.symlink(path, link)


def _child(code: str, *args) -> dict:
  out = subprocess.run([sys.executable, '-c', code, *map(str, args)],
                       capture_output=True, text=True, check=False)
  if out.returncode:
    sys.exit(f'The benchmark child failed:\n{out.stderr[-3000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--images', type=int, default=50_000)
  parser.add_argument('--size', type=int, default=32)
  parser.add_argument('--classes', type=int, default=100)
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--workers', type=int, default=1)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--throughput_images', type=int, default=20_000)
  parser.add_argument('--root', default='/tmp/cil_input_bench')
  parser.add_argument('--skip_torch', action='store_true')
  parser.add_argument('--keep', action='store_true',
                      help='keep the generated and prepared data')
  args = parser.parse_args()

  big = 4 * args.images
  start = time.perf_counter()
  paths = write_rgb_folder(os.path.join(args.root, f'folder_{big}'),
                           prepare_folder.counts(big, args.classes),
                           args.size)
  link_subset(os.path.join(args.root, f'folder_{args.images}'), paths,
              prepare_folder.counts(args.images, args.classes))
  print(json.dumps({'generated_images': big, 'seconds': round(
      time.perf_counter() - start, 1)}), flush=True)

  spec = {n: 'folder:' + os.path.join(args.root, f'folder_{n}')
          for n in (args.images, big)}
  data_dir = {n: os.path.join(args.root, f'prepared_{n}')
              for n in (args.images, big)}
  for n in (args.images, big):
    prepared = _child(_PREPARE, spec[n], data_dir[n])
    print(json.dumps({'prepared': n, **prepared}), flush=True)

  memory = {}
  for n in (args.images, big):
    memory[n] = _child(_OURS, spec[n], data_dir[n], args.size, args.batch,
                       args.workers, 0)
    print(json.dumps({'epoch': 'ours', 'folder_images': n, **memory[n]}),
          flush=True)

  ours, torch = [], []
  for r in range(args.rounds):
    ours.append(_child(_OURS, spec[big], data_dir[big], args.size,
                       args.batch, args.workers, args.throughput_images))
    print(json.dumps({'round': r, 'side': 'ours', **ours[-1]}), flush=True)
    if not args.skip_torch:
      torch.append(_child(_TORCH, os.path.join(args.root, f'folder_{big}'),
                          args.size, args.batch, args.workers,
                          args.throughput_images))
      print(json.dumps({'round': r, 'side': 'torch', **torch[-1]}),
            flush=True)

  def per_worker(runs):
    return round(statistics.median(x['images_per_s'] for x in runs)
                 / args.workers, 1)

  summary = {
      'images': [args.images, big], 'size': args.size,
      'peak_rss_mb': [memory[n]['peak_rss_mb'] for n in (args.images, big)],
      'rss_ratio': round(memory[big]['peak_rss_mb']
                         / memory[args.images]['peak_rss_mb'], 3),
      'workers': args.workers,
      'ours_images_per_s_per_worker': per_worker(ours)}
  if torch:
    ratios = [a['images_per_s'] / b['images_per_s']
              for a, b in zip(ours, torch)]
    summary.update(torch_images_per_s_per_worker=per_worker(torch),
                   speed_ratio=round(statistics.median(ratios), 3),
                   speed_ratio_min=round(min(ratios), 3),
                   speed_ratio_max=round(max(ratios), 3))
  print(json.dumps(summary), flush=True)
  if not args.keep:
    shutil.rmtree(args.root, ignore_errors=True)


if __name__ == '__main__':
  main()
