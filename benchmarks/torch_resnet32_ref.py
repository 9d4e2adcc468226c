"""PyTorch reference for the ResNet-32 train step on CIFAR shapes (the peer
of `benchmarks/resnet32_step.py`), as the long-tail references train it.

Cao et al.'s ResNet-32 (`kaidic/LDAM-DRW`, `models/resnet_cifar.py`: 3x3
conv 16, three stages of five basic blocks at 16/32/64 filters, option-A
shortcuts, batch norm, a dense head; 0.46 M parameters for 10 classes),
32x32x3 uint8 inputs scaled to [0, 1], batch 128, SGD with momentum 0.9,
lr 0.1, weight decay 2e-4, cross-entropy (`cifar_train.py`). Times
`--steps` steps in one repeat after a warm-up of as many; prints one JSON
line with seconds per step. A stand-alone script (its own process, as
`../shared/bench/torch_classify_ref.py`):

    python benchmarks/torch_resnet32_ref.py [--steps 10] [--threads 0]
"""
import argparse
import json
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
  """The reference's block: conv-BN-ReLU-conv-BN, option-A shortcut."""

  def __init__(self, planes_in, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(planes_in, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.pad = planes - planes_in if stride != 1 or planes_in != planes else 0

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    shortcut = x
    if self.pad:
      half = self.pad // 2
      shortcut = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.pad - half))
    return F.relu(out + shortcut)


class ResNet32(nn.Module):

  def __init__(self, num_classes=10):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(16)
    layers, planes_in = [], 16
    for stage, planes in enumerate((16, 32, 64)):
      for block in range(5):
        layers.append(BasicBlock(planes_in, planes,
                                 2 if stage and not block else 1))
        planes_in = planes
    self.layers = nn.Sequential(*layers)
    self.linear = nn.Linear(64, num_classes)
    for m in self.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight)

  def forward(self, x):
    x = self.layers(F.relu(self.bn1(self.conv1(x))))
    return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--steps', type=int, default=10)
  ap.add_argument('--batch', type=int, default=128)
  ap.add_argument('--threads', type=int, default=0)
  a = ap.parse_args()
  if a.threads:
    torch.set_num_threads(a.threads)
  rng = np.random.default_rng(0)
  images = torch.from_numpy(rng.integers(0, 256, (4096, 3, 32, 32), np.uint8))
  labels = torch.from_numpy(rng.integers(0, 10, 4096)).long()
  torch.manual_seed(0)
  model = ResNet32()
  model.train()
  opt = torch.optim.SGD(model.parameters(), 0.1, momentum=0.9,
                        weight_decay=2e-4)

  def run():
    for _ in range(a.steps):
      idx = torch.from_numpy(rng.integers(0, 4096, a.batch))
      loss = F.cross_entropy(model(images[idx].float() / 255.), labels[idx])
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()

  run()  # Warm-up.
  start = time.perf_counter()
  run()
  print(json.dumps({'impl': 'torch', 'threads': torch.get_num_threads(),
                    'parameters': sum(p.numel() for p in model.parameters()),
                    'sec_per_step': round((time.perf_counter() - start)
                                          / a.steps, 5)}))


if __name__ == '__main__':
  main()
