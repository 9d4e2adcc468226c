"""A split read as it is used: labels in memory, images read by index.

`cil.data.stream(name, split)` returns a `StreamedSplit`: the split's
labels and class names (one pass over the records, images not decoded
into memory) and its TFDS array_record data source. Images are read by
index, in the order a run's index plan (protocols, samplers, batches)
asks for them, through Grain (a `grain.MapDataset` over the plan's
chunks: each chunk's records read in one batched read of the data
source, decoded and transformed in Grain's reader threads, prefetched
ahead of the step that needs them). Memory is then a few chunks of
steps' images, whatever the split's size. Random transforms (the
long-tail references' crops, `cil.data.transforms`) draw each image's
generator from (seed, position in the plan), so a read resumed at a
position gives what a whole read gives there.

The index plan is the in-memory path's (`cil.data.protocols`,
`cil.data.samplers`: functions of (seed, epoch)), so a streamed run
trains on the same images in the same order as an in-memory run, and
resuming is restarting the plan where it stopped.
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from cil import _extras
from cil import errors

# Records read per call when the labels are collected.
_LABEL_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class StreamedSplit:
  """A split whose images stay on disk until read (`images`, `chunks`).

  Attributes:
    source: the random-access data source (TFDS array_record).
    labels: `[n]` int64 class indices.
    class_names: one name per class.
    image_shape: `(H, W, C)` of every image as read.
    name, split: the dataset and split.
    image_key: the source's image feature.
    transform: uint8 image as stored -> `[H, W, C]` uint8 as used (adds
      the channel axis, resizes a long-tail benchmark's JPEGs).
    files: the source's files (their names and sizes identify the data).
  """
  source: Any
  labels: np.ndarray
  class_names: tuple[str, ...]
  image_shape: tuple[int, int, int]
  name: str
  split: str
  image_key: str
  transform: Callable[[np.ndarray], np.ndarray]
  files: tuple[str, ...] = ()

  def __len__(self) -> int:
    return int(self.labels.size)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def class_counts(self) -> np.ndarray:
    return np.bincount(self.labels, minlength=self.num_classes)

  def record(self) -> dict:
    """What identifies this data (as `ArrayDataset.record`): size,
    classes and a SHA-256 of the labels, class names and the prepared
    files' names and sizes (prepared data is never rewritten in place)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([list(self.class_names), list(self.image_shape),
                              [(os.path.basename(f), os.path.getsize(f))
                               for f in self.files]]).encode())
    digest.update(np.ascontiguousarray(self.labels, np.int64).tobytes())
    return {'examples': len(self), 'classes': self.num_classes,
            'sha256': digest.hexdigest(), 'read': 'streamed'}

  def _read(self, indices: np.ndarray, transform=None,
            seed: Optional[int] = None,
            positions: Optional[np.ndarray] = None) -> np.ndarray:
    """The images at `indices`, stacked, from one batched read of their
    records: the split's `transform` of each, or `transform` of the
    stored image (with `seed`, a random one, `transform(image, rng)`,
    the generator of image j a Philox keyed by (seed, positions[j]))."""
    key = self.image_key
    examples = self.source.__getitems__(indices.tolist())
    if transform is None:
      own = self.transform
      return np.stack([own(example[key]) for example in examples])
    if seed is None:
      return np.stack([transform(_with_channels(example[key]))
                       for example in examples])
    return np.stack([
        transform(_with_channels(example[key]), np.random.Generator(
            np.random.Philox(key=np.array([seed, position], np.uint64))))
        for position, example in zip(positions.tolist(), examples)])

  def images(self, indices: Sequence[int]) -> np.ndarray:
    """`[len(indices), H, W, C]` uint8: the images at `indices`."""
    return self._read(np.asarray(indices, np.int64).reshape(-1))

  def chunks(self, indices: np.ndarray, chunk: int, *, start: int = 0,
             transform: Optional[Callable] = None, seed: Optional[int] = None,
             positions: Optional[np.ndarray] = None, threads: int = 4,
             prefetch: int = 2) -> Iterator[np.ndarray]:
    """`[chunk, H, W, C]` image arrays of `indices[start:]` (flat; what
    remains is a multiple of `chunk` long), in order: a `grain.MapDataset`
    over the chunks, each read with one batched read of its records and
    transformed, by `threads` Grain reader threads, up to
    `max(prefetch, threads)` chunks ahead of the one being used.

    Args:
      indices: the split's examples, e.g. an epoch's index plan.
      chunk: images per array.
      start: the first position to read (a resumed epoch).
      transform: instead of the split's own `transform`, a function of the
        stored image (`cil.data.transforms`); with `seed`, a random one,
        `transform(image, rng)`, whose generator is drawn from (seed,
        position in `indices`): reading from `start` gives the images a
        whole read gives there, whatever the chunk size.
      seed: see `transform`.
      positions: each index's position in the plan it is part of, from
        which its random transform's generator is drawn (default: its
        position in `indices`); the same length as `indices`, `start`
        counting in both. A part of a plan (one device's share of every
        batch) read with its positions gives the images a read of the
        whole plan gives there.
    """
    grain = _extras.require('grain', what='streamed data')
    indices = np.asarray(indices, np.int64).reshape(-1)
    positions = (np.arange(indices.size) if positions is None
                 else np.asarray(positions, np.int64).reshape(-1))
    if positions.size != indices.size:
      raise ValueError(f'{positions.size} positions for {indices.size} '
                       f'indices.')
    if (indices.size - start) % chunk:
      raise ValueError(f'{indices.size - start} indices are not a whole '
                       f'number of chunks of {chunk}.')

    def read(c):
      first = start + int(c) * chunk
      return self._read(indices[first:first + chunk], transform, seed,
                        positions[first:first + chunk])

    dataset = grain.MapDataset.range((indices.size - start) // chunk).map(
        read)
    options = grain.ReadOptions(num_threads=threads,
                                prefetch_buffer_size=max(prefetch, threads))
    yield from dataset.to_iter_dataset(options)


def open_split(source, *, name: str, split: str, image_key: str,
               label_key: str, class_names: Callable[[np.ndarray, dict],
                                                     tuple],
               transform: Optional[Callable] = None,
               files: Sequence[str] = ()) -> StreamedSplit:
  """A `StreamedSplit` of `source`: one pass reads the labels (and any
  `class_name` text), the first image gives the shape.

  Args:
    source: a random-access data source (`__len__`, `__getitems__`).
    name, split: for messages and the record.
    image_key, label_key: the features.
    class_names: `(labels, texts) -> names`, `texts` holding the
      `class_name` feature's values by label when the records have one.
    transform: stored image -> used `[H, W, C]` uint8 (default: add the
      channel axis of a `[H, W]` image).
    files: the prepared files.

  Raises:
    cil.errors.DataError: an empty split, labels that are not non-negative
      integers, images that are not uint8.
  """
  transform = transform or _with_channels
  n = len(source)
  if not n:
    raise errors.DataError(f'{name}: split {split!r} is empty.')
  labels = np.empty(n, np.int64)
  texts = {}
  for start in range(0, n, _LABEL_CHUNK):
    ids = list(range(start, min(n, start + _LABEL_CHUNK)))
    for i, example in zip(ids, source.__getitems__(ids)):
      label = example[label_key]
      if not np.issubdtype(np.asarray(label).dtype, np.integer) or (
          np.ndim(label) or label < 0):
        raise errors.DataError(
            f'{name}: feature {label_key!r} must hold non-negative integer '
            f'class labels, got {label!r} at record {i}.')
      labels[i] = label
      if 'class_name' in example:
        texts.setdefault(int(label), example['class_name'])
  first = transform(np.asarray(source[0][image_key]))
  if first.dtype != np.uint8 or first.ndim != 3:
    raise errors.DataError(
        f'{name}: feature {image_key!r} must be uint8 images [H, W] or '
        f'[H, W, C], got {first.dtype} {first.shape}.')
  return StreamedSplit(source=source, labels=labels,
                       class_names=tuple(class_names(labels, texts)),
                       image_shape=tuple(first.shape), name=name,
                       split=split, image_key=image_key, transform=transform,
                       files=tuple(files))


def _with_channels(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  return image[..., None] if image.ndim == 2 else image
