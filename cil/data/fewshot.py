"""Class-disjoint meta-train / meta-val / meta-test splits for few-shot work.

* `digits`: meta-train digits 0-4, meta-test 5-9 (train and test images
  pooled), no meta-val; 8x8x1.
* `omniglot`: the 1623 characters of background + evaluation; the first 1200
  meta-train, the other 423 meta-test (Vinyals et al. 2016); 28x28x1.
* `omniglot_small`: meta-train `small1` (Balinese, Early Aramaic, Greek,
  Korean, Latin); meta-test `small2` without Greek and Latin (Japanese
  katakana, Sanskrit, Tagalog); 28x28x1.
* `mini_imagenet`: 64 train / 16 val / 20 test classes; with
  `class_split='paper'`, 12 val / 24 test drawn from the same 36; 84x84x3.
* your own data (`folder:/path`, `npz:/path.npz`, `tfds:NAME`;
  `cil.data.custom`): train and test images pooled per class, the classes
  split by a seed-0 permutation, `meta_test_fraction` of them to meta-test
  (`split_classes`).

Omniglot images are resized to 28x28 (Lanczos) and inverted so that strokes
are bright (255) on a dark background, as in MAML (Finn et al. 2017).
`rotations=True` adds the 90/180/270 degree rotations of every character as
new classes (4x the classes), on every side of the split, as MAML does; it is
the default for `omniglot` and off elsewhere. `omniglot_small` is alphabet-
disjoint: Greek and Latin occur in both small sets, so they are left out of
meta-test.
"""

import dataclasses
from typing import Optional

import numpy as np

from cil import _extras
from cil.data import custom
from cil.data import datasets

FEWSHOT_NAMES = ('digits', 'omniglot', 'omniglot_small', 'mini_imagenet')


@dataclasses.dataclass(frozen=True)
class FewShotSplits:
  train: datasets.ArrayDataset
  val: Optional[datasets.ArrayDataset]
  test: datasets.ArrayDataset
  description: str


def _concat(a: datasets.ArrayDataset, b: datasets.ArrayDataset,
            split: str) -> datasets.ArrayDataset:
  """Concatenates two splits with disjoint classes (b's labels offset)."""
  if a.image_shape != b.image_shape:
    raise ValueError(f'Cannot merge {a.image_shape} and {b.image_shape}.')
  return datasets.ArrayDataset(
      images=np.concatenate([a.images, b.images]),
      labels=np.concatenate([a.labels, b.labels + a.num_classes]),
      class_names=a.class_names + b.class_names, name=a.name, split=split)


def resize(ds: datasets.ArrayDataset, size: int, *, invert: bool = False
           ) -> datasets.ArrayDataset:
  """Grayscale, Lanczos-resized to size x size, optionally inverted."""
  Image = _extras.require('PIL.Image', what='cil.data')
  images = ds.images
  if images.shape[-1] == 3:  # Stock TFDS omniglot stores 3 equal channels.
    images = images[..., :1]
  out = np.empty((len(ds), size, size, 1), np.uint8)
  for i, image in enumerate(images[..., 0]):
    out[i, ..., 0] = np.asarray(
        Image.fromarray(image).resize((size, size), Image.LANCZOS))
  if invert:
    out = 255 - out
  return dataclasses.replace(ds, images=out)


def with_rotations(ds: datasets.ArrayDataset) -> datasets.ArrayDataset:
  """Adds 90/180/270 degree rotations as new classes (label + k * C)."""
  images = [np.rot90(ds.images, k, axes=(1, 2)) for k in range(4)]
  labels = [ds.labels + k * ds.num_classes for k in range(4)]
  names = tuple(f'{n}@{90 * k}' for k in range(4) for n in ds.class_names)
  return datasets.ArrayDataset(
      images=np.ascontiguousarray(np.concatenate(images)),
      labels=np.concatenate(labels), class_names=names, name=ds.name,
      split=f'{ds.split}+rot')


def split_classes(pool: datasets.ArrayDataset, meta_test_fraction: float,
                  *, seed: int = 0) -> tuple[datasets.ArrayDataset,
                                             datasets.ArrayDataset]:
  """Class-disjoint meta-train / meta-test sets of your own data.

  The rule: a permutation of the classes drawn with `seed` (default 0)
  puts its first `round(meta_test_fraction * C)` classes (at least one,
  at most C - 1) in meta-test and the rest in meta-train, each in the
  classes' order.
  """
  if not 0 < meta_test_fraction < 1:
    raise ValueError(f'meta_test_fraction must be in (0, 1), got '
                     f'{meta_test_fraction!r}.')
  c = pool.num_classes
  n_test = min(max(int(round(meta_test_fraction * c)), 1), c - 1)
  order = np.random.default_rng(seed).permutation(c)
  test = np.sort(order[:n_test])
  train = np.sort(order[n_test:])
  return (pool.select_classes(train, 'meta-train'),
          pool.select_classes(test, 'meta-test'))


def load_fewshot(name: str, *, rotations: Optional[bool] = None,
                 class_split: str = 'standard', image_size: int = 0,
                 data_dir: Optional[str] = None,
                 manual_dir: Optional[str] = None,
                 meta_test_fraction: float = 0.25) -> FewShotSplits:
  """Loads a few-shot dataset as class-disjoint splits (table above).

  Args:
    name: one of `FEWSHOT_NAMES`, or a spec of your own data
      (`folder:/path`, `npz:/path.npz`, `tfds:NAME`; `cil.data.custom`):
      its train and test images are pooled per class and the classes split
      by `split_classes`.
    rotations: add rotated classes (default: True for `omniglot` only).
    class_split: for `mini_imagenet`, 'standard' (64/16/20) or 'paper'
      (64/12/24, the paper's stated split).
    image_size: S > 0 resizes Omniglot to S x S, or resizes and
      centre-crops a spec's images to it; 0 is Omniglot's 28 and a spec's
      own (common) size.
    data_dir, manual_dir: as `cil.data.load`.
    meta_test_fraction: for a spec, the share of classes in meta-test.

  Returns:
    `FewShotSplits`.
  """
  kw = {'data_dir': data_dir, 'manual_dir': manual_dir}
  if custom.parse_spec(name) is not None:
    options = custom.Options(image_size=image_size)
    a, b = (datasets.load(name, s, options=options, **kw)
            for s in ('train', 'test'))
    pool = datasets.ArrayDataset(  # The same classes: pooled, not offset.
        images=np.concatenate([a.images, b.images]),
        labels=np.concatenate([a.labels, b.labels]),
        class_names=a.class_names, name=name, split='all')
    train, test = split_classes(pool, meta_test_fraction)
    if rotations:
      train, test = with_rotations(train), with_rotations(test)
    return FewShotSplits(
        train=train, val=None, test=test,
        description=(f'{name}: {train.num_classes} meta-train / '
                     f'{test.num_classes} meta-test classes (a seed-0 '
                     f'permutation of the classes, {meta_test_fraction:g} '
                     f'to meta-test)' + (', with 90/180/270 rotations as '
                                         'classes' if rotations else '')))
  if name not in FEWSHOT_NAMES:
    raise ValueError(f'Unknown few-shot dataset {name!r}; known: '
                     f'{", ".join(FEWSHOT_NAMES)}, or your own data as '
                     f'folder:/path, npz:/path.npz or tfds:NAME.')
  if class_split not in ('standard', 'paper'):
    raise ValueError(f"class_split must be 'standard' or 'paper', got "
                     f'{class_split!r}.')
  val = None
  if name == 'digits':
    train_part = datasets.load('digits', 'train', **kw)
    test_part = datasets.load('digits', 'test', **kw)
    merged = datasets.ArrayDataset(
        images=np.concatenate([train_part.images, test_part.images]),
        labels=np.concatenate([train_part.labels, test_part.labels]),
        class_names=train_part.class_names, name='digits', split='all')
    train = merged.select_classes(range(5), 'meta-train (digits 0-4)')
    test = merged.select_classes(range(5, 10), 'meta-test (digits 5-9)')
    description = 'digits: meta-train classes 0-4, meta-test 5-9'
  elif name == 'omniglot':
    merged = _concat(datasets.load('omniglot', 'train', **kw),
                     datasets.load('omniglot', 'test', **kw), 'all')
    merged = resize(merged, image_size or 28, invert=True)
    num = merged.num_classes
    train = merged.select_classes(range(min(1200, num - 1)), 'meta-train')
    test = merged.select_classes(range(min(1200, num - 1), num), 'meta-test')
    description = (f'omniglot: {train.num_classes} meta-train / '
                   f'{test.num_classes} meta-test characters')
  elif name == 'omniglot_small':
    size = image_size or 28
    train = resize(datasets.load('omniglot', 'small1', **kw), size,
                   invert=True)
    small2 = resize(datasets.load('omniglot', 'small2', **kw), size,
                    invert=True)
    keep = [i for i, n in enumerate(small2.class_names)
            if n.split('/')[0] not in ('Greek', 'Latin')]
    test = small2.select_classes(keep, 'small2 minus Greek, Latin')
    description = ('omniglot_small: meta-train small1, meta-test small2 '
                   'without Greek and Latin (alphabet-disjoint)')
  else:
    train = datasets.load('mini_imagenet', 'train', **kw)
    val = datasets.load('mini_imagenet', 'val', **kw)
    test = datasets.load('mini_imagenet', 'test', **kw)
    description = 'mini_imagenet: standard 64/16/20 split'
    if class_split == 'paper':
      pool = _concat(val, test, 'val+test')
      order = np.argsort(pool.class_names)
      val = pool.select_classes(order[:12], 'meta-val (paper)')
      test = pool.select_classes(order[12:], 'meta-test (paper)')
      description = ('mini_imagenet: paper 64/12/24 split (val+test classes '
                     'sorted by name: first 12 val, last 24 test)')
  if rotations is None:
    rotations = name == 'omniglot'
  if rotations:
    train, test = with_rotations(train), with_rotations(test)
    val = with_rotations(val) if val is not None else None
    description += ', with 90/180/270 rotations as classes'
  return FewShotSplits(train=train, val=val, test=test,
                       description=description)
