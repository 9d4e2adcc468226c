"""PyTorch reference for `benchmarks/gpu.py`'s ResNet-50 train step.

The step the long-tail references train ImageNet-LT and iNaturalist with
(`facebookresearch/classifier-balancing`, `run_networks.py`): torchvision's
ResNet-50 (25.6 M parameters at 1000 classes), 224x224x3 uint8 images on
the device scaled to [0, 1], batch 256, SGD with momentum 0.9, lr 0.1,
weight decay 5e-4, cross-entropy. `--dtype bfloat16` computes under
`torch.autocast` (parameters and optimizer state float32, as `cil`'s
bfloat16 policy), `--dtype float32` as the reference runs;
`--channels_last` is PyTorch's fast layout for convolutions on GPUs.
Times `--steps` steps one by one after `--warmup` steps (CUDA synchronised
around each) and prints one JSON line with the median, the 10th and 90th
percentiles and images/s. A stand-alone script (its own process, as
`benchmarks/torch_resnet32_ref.py`):

    python benchmarks/torch_resnet50_ref.py --dtype bfloat16 --channels_last
    python benchmarks/torch_resnet50_ref.py --device cpu --batch 2 --size 32 \\
        --steps 2 --warmup 1     # checks the script
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--device', default='cuda')
  ap.add_argument('--dtype', choices=('float32', 'bfloat16'),
                  default='bfloat16')
  ap.add_argument('--channels_last', action='store_true')
  ap.add_argument('--batch', type=int, default=256)
  ap.add_argument('--size', type=int, default=224)
  ap.add_argument('--steps', type=int, default=20)
  ap.add_argument('--warmup', type=int, default=5)
  a = ap.parse_args()
  device = torch.device(a.device)
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.integers(
      0, 256, (a.batch, 3, a.size, a.size), np.uint8)).to(device)
  labels = torch.from_numpy(rng.integers(0, 1000, a.batch)).long().to(device)
  torch.manual_seed(0)
  fmt = torch.channels_last if a.channels_last else torch.contiguous_format
  model = torchvision.models.resnet50(num_classes=1000).to(
      device, memory_format=fmt)
  model.train()
  opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9,
                        weight_decay=5e-4)

  def sync():
    if device.type == 'cuda':
      torch.cuda.synchronize()

  def step():
    x = (images.float() / 255.).contiguous(memory_format=fmt)
    with torch.autocast(device.type, dtype=torch.bfloat16,
                        enabled=a.dtype == 'bfloat16'):
      loss = F.cross_entropy(model(x), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

  start = time.perf_counter()
  step()
  sync()
  first = time.perf_counter() - start
  for _ in range(a.warmup - 1):
    step()
  times = []
  for _ in range(a.steps):
    sync()
    start = time.perf_counter()
    step()
    sync()
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  print(json.dumps({
      'impl': 'torch', 'torch': torch.__version__, 'device': str(device),
      'dtype': a.dtype, 'channels_last': a.channels_last,
      'batch': a.batch, 'image_size': a.size,
      'parameters': sum(p.numel() for p in model.parameters()),
      'first_s': round(first, 2), 'steps': a.steps,
      'median_s': median, 'p10_s': float(np.percentile(times, 10)),
      'p90_s': float(np.percentile(times, 90)),
      'images_per_s': round(a.batch / median, 1)}), flush=True)


if __name__ == '__main__':
  main()
