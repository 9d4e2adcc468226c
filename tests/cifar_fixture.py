"""CIFAR python-version pickles written the way the archives hold them."""

import os
import pickle

import numpy as np

CIFAR10 = ('cifar10', 'cifar-10-batches-py',
           tuple(f'data_batch_{i}' for i in range(1, 6)) + ('test_batch',),
           'labels', ('batches.meta', 'label_names'), 10)
CIFAR100 = ('cifar100', 'cifar-100-python', ('train', 'test'), 'fine_labels',
            ('meta', 'fine_label_names'), 100)


def write_cifar(manual_dir: str, layout=CIFAR10, n: int = 10,
                seed: int = 4) -> tuple[str, dict]:
  """Writes `n` random images per file; returns the folder and, per file,
  the `[n, 32, 32, 3]` images and labels written."""
  name, folder, files, label_key, (meta_file, meta_key), num_classes = layout
  root = os.path.join(manual_dir, name, folder)
  os.makedirs(root)
  rng = np.random.default_rng(seed)
  written = {}
  for k, filename in enumerate(files):
    images = rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
    labels = (np.arange(n) + k) % num_classes
    # The archive stores each image channel-major, flattened: [n, 3072].
    flat = images.transpose(0, 3, 1, 2).reshape(n, 3072)
    with open(os.path.join(root, filename), 'wb') as f:
      pickle.dump({b'data': flat, label_key.encode(): labels.tolist(),
                   b'batch_label': b'x'}, f)
    written[filename] = (images, labels)
  names = [f'{name}_class{c}' for c in range(num_classes)]
  with open(os.path.join(root, meta_file), 'wb') as f:
    pickle.dump({meta_key.encode(): [c.encode() for c in names]}, f)
  return root, written
