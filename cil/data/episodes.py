"""Imbalanced N-way few-shot tasks (the paper's Section IV-B, Fig. 4).

* `partitions(total, ways)`: every support distribution
  (N_1 <= ... <= N_ways), N_i >= 1, summing to `total`, eq. (21); 30 for
  total 15 over 5 ways. Order: lexicographic in the sorted tuple, so
  (1, 1, 1, 1, 11) first and (3, 3, 3, 3, 3) last.
* `imbalanced_distribution(scheme, ...)`: the linear / step / random support
  schemes of Ochal et al. (2021, "Few-Shot Learning with Class Imbalance").
* `EpisodeSampler`: draws tasks from a class-disjoint split. Support counts
  follow the given distribution, randomly assigned to the task's classes.
  Meta-train queries are proportional (p * N_i per class, the paper's
  [p N_1, ..., p N_5]); meta-test queries are balanced (q per class). Arrays
  have fixed shapes for `jit` and a leading meta-batch axis.
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np

from cil.data.datasets import ArrayDataset


def partitions(total: int = 15, ways: int = 5) -> list[tuple[int, ...]]:
  """All non-decreasing `ways`-tuples of positive ints summing to `total`.

  Examples:
    >>> len(partitions(15, 5))
    30
    >>> partitions(15, 5)[0], partitions(15, 5)[-1]
    ((1, 1, 1, 1, 11), (3, 3, 3, 3, 3))
  """
  if ways < 1 or total < ways:
    raise ValueError(f'Need ways >= 1 and total >= ways, got total={total}, '
                     f'ways={ways}.')

  def rec(remaining, parts, smallest):
    if parts == 1:
      return [(remaining,)] if remaining >= smallest else []
    out = []
    for first in range(smallest, remaining // parts + 1):
      rests = rec(remaining - first, parts - 1, first)
      out += [(first,) + rest for rest in rests]
    return out

  return rec(total, ways, 1)


def imbalanced_distribution(scheme: str, *, ways: int, min_shots: int,
                            max_shots: int, minority: Optional[int] = None,
                            rng: Optional[np.random.Generator] = None
                            ) -> tuple[int, ...]:
  """Support counts by an Ochal et al. (2021) scheme, sorted ascending.

  Args:
    scheme: 'linear' (counts evenly spaced from min to max), 'step'
      (`minority` classes at `min_shots`, the rest at `max_shots`), 'random'
      (each class uniform in [min_shots, max_shots]), or 'balanced'
      (all `max_shots`).
    ways: number of classes.
    min_shots, max_shots: the range of counts (min >= 1).
    minority: for 'step', how many classes are minorities (default ways // 2).
    rng: for 'random'.

  Returns:
    A tuple of `ways` counts.
  """
  if not 1 <= min_shots <= max_shots:
    raise ValueError(f'Need 1 <= min_shots <= max_shots, got {min_shots}, '
                     f'{max_shots}.')
  if scheme == 'linear':
    counts = np.round(np.linspace(min_shots, max_shots, ways))
  elif scheme == 'step':
    minority = ways // 2 if minority is None else minority
    counts = [min_shots] * minority + [max_shots] * (ways - minority)
  elif scheme == 'random':
    if rng is None:
      raise ValueError("scheme 'random' needs an `rng`.")
    counts = rng.integers(min_shots, max_shots + 1, size=ways)
  elif scheme == 'balanced':
    counts = [max_shots] * ways
  else:
    raise ValueError(f'Unknown scheme {scheme!r}; known: linear, step, '
                     f'random, balanced.')
  return tuple(sorted(int(c) for c in counts))


def _whole(value, what: str) -> int:
  """`value` as an int if it is a whole number (1.5 or 'a' is named, not
  truncated or cast)."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)) or value != int(value):
    raise ValueError(f'{what} must be whole numbers, got {value!r}.')
  return int(value)


def check_distribution(distribution: Sequence[int], ways: int) -> tuple:
  """`distribution` as a tuple of ints: `ways` whole numbers >= 1."""
  distribution = tuple(_whole(n, f'The support distribution {distribution}'
                              f"'s entries") for n in distribution)
  if len(distribution) != ways:
    raise ValueError(f'The support distribution {distribution} has '
                     f'{len(distribution)} entries but ways = {ways}.')
  if min(distribution) < 1:
    raise ValueError(f'The support distribution {distribution} has a zero or '
                     f'negative entry; every class needs at least one '
                     f'support image.')
  return distribution


def random_oversample(labels: np.ndarray, ways: int, size: int,
                      rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Random over-sampling (ROS) of one task's set, as positions and a mask.

  Every class keeps all its examples and gets `N_max - N_c` more, drawn
  with replacement from its own, so each class appears `N_max` times
  (Ochal et al., IEEE TAI 2023: the strongest simple fix for imbalanced
  supports). The positions are padded to the fixed `size` (for `jit`) with
  masked entries.

  Args:
    labels: `[S]` task labels in `[0, ways)`.
    ways: classes of the task.
    size: the padded length, at least `ways * N_max`.
    rng: the draws' generator.

  Returns:
    `(index [size] int32, mask [size] bool)`: `labels[index[mask]]` holds
    each class `N_max` times; every original position is among them.
  """
  labels = np.asarray(labels)
  counts = np.bincount(labels, minlength=ways)
  n_max = int(counts.max())
  if ways * n_max > size:
    raise ValueError(f'Over-sampled set of {ways} x {n_max} does not fit '
                     f'size {size}.')
  parts = []
  for w in range(ways):
    members = np.flatnonzero(labels == w)
    parts += [members, rng.choice(members, size=n_max - members.size)]
  index = np.zeros(size, np.int32)
  chosen = np.concatenate(parts)
  index[:chosen.size] = chosen
  return index, np.arange(size) < chosen.size


def oversampled_size(total: int, ways: int) -> int:
  """The fixed length of an over-sampled support of `total` images over
  `ways` classes: `ways` times the largest class any distribution of that
  total can have (`total - ways + 1`)."""
  return ways * (total - ways + 1)


@dataclasses.dataclass(frozen=True)
class Tasks:
  """A meta-batch of tasks; arrays have a leading `[tasks]` axis.

  Attributes:
    support_images: `[T, S, H, W, C]` uint8, S = sum of the distribution.
    support_labels: `[T, S]` int32 in [0, ways).
    support_counts: `[T, ways]` int32, support images per task label (the
      counts the CI loss uses).
    query_images: `[T, Q, H, W, C]` uint8.
    query_labels: `[T, Q]` int32.
    classes: `[T, ways]` the dataset class behind each task label.
    support_ros_index: with random over-sampling (`sample(...,
      oversample=True)`), `[T, R]` positions into the support set
      (`random_oversample`); else None.
    support_ros_mask: `[T, R]`, which of those positions are used.
    query_ros_index: the same for meta-train queries (proportional, so
      imbalanced); None for balanced meta-test queries.
    query_ros_mask: the same for meta-train queries.
  """
  support_images: np.ndarray
  support_labels: np.ndarray
  support_counts: np.ndarray
  query_images: np.ndarray
  query_labels: np.ndarray
  classes: np.ndarray
  support_ros_index: Optional[np.ndarray] = None
  support_ros_mask: Optional[np.ndarray] = None
  query_ros_index: Optional[np.ndarray] = None
  query_ros_mask: Optional[np.ndarray] = None


class EpisodeSampler:
  """Samples imbalanced N-way tasks from one (class-disjoint) split.

  Images of each class are indexed once, so drawing a task costs a few
  NumPy calls plus one gather of its images.

  Args:
    dataset: the split's images and labels (e.g. the meta-train classes).
    ways: classes per task.

  A class with fewer images than a draw asks for (support + query) raises
  `ValueError` naming the class.
  """

  def __init__(self, dataset: ArrayDataset, *, ways: int):
    if ways < 2:
      raise ValueError(f'ways must be >= 2, got {ways}.')
    counts = dataset.class_counts()
    self._classes = np.flatnonzero(counts > 0)
    if self._classes.size < ways:
      raise ValueError(f'{dataset.name}/{dataset.split} has '
                       f'{self._classes.size} classes, fewer than ways = '
                       f'{ways}.')
    order = np.argsort(dataset.labels, kind='stable')
    self._starts = np.concatenate([[0], np.cumsum(counts)])
    self._order = order
    self._counts = counts
    self._images = dataset.images
    self.dataset = dataset
    self.ways = ways

  def check_fits(self, distributions: Sequence[Sequence[int]], *,
                 query_per_class: Optional[int] = None,
                 query_multiple: Optional[int] = None) -> None:
    """Raises `ValueError` unless every draw fits the smallest class.

    Checks, before any work, what `sample` would find out mid-run: the
    largest support count plus its queries against the class with the
    fewest images (any class can be drawn for any count).
    """
    smallest = int(self._counts[self._classes].min())
    for dist in distributions:
      largest = max(int(n) for n in dist)
      queries = (largest * int(query_multiple) if query_multiple is not None
                 else int(query_per_class))
      if largest + queries > smallest:
        kind = (f'query_multiple {query_multiple}' if query_multiple
                is not None else f'{query_per_class} queries per class')
        raise ValueError(
            f'{self.dataset.name}/{self.dataset.split}: its smallest class '
            f'has {smallest} images, but support {list(dist)} with {kind} '
            f'needs {largest + queries} for its largest class (support '
            f'{largest} + query {queries}); use fewer shots or queries.')

  def sample(self, rng: np.random.Generator, distribution: Sequence[int], *,
             query_per_class: Optional[int] = None,
             query_multiple: Optional[int] = None,
             num_tasks: int = 1, oversample: bool = False) -> Tasks:
    """Draws `num_tasks` tasks with the given support distribution.

    Give exactly one of `query_multiple` (meta-train: p * N_i queries for the
    class with N_i support images) or `query_per_class` (meta-test: q each).

    Args:
      rng: NumPy generator (the only source of randomness).
      distribution: support counts, one per way (any order; which class gets
        which count is drawn per task).
      query_per_class: balanced query size q.
      query_multiple: proportional query multiple p.
      num_tasks: tasks in the meta-batch.
      oversample: also draw random over-sampling of each support set (and
        of the proportional meta-train queries): `Tasks.*_ros_*`, padded
        to `oversampled_size` (times `query_multiple` for queries). The
        draws come after the task's, from the same `rng`, so the tasks are
        those drawn without it.

    Returns:
      `Tasks` with a leading `[num_tasks]` axis.
    """
    dist = np.asarray(check_distribution(distribution, self.ways))
    if (query_per_class is None) == (query_multiple is None):
      raise ValueError('Give exactly one of query_per_class (balanced '
                       'queries) or query_multiple (proportional queries).')
    for name, value in (('query_per_class', query_per_class),
                        ('query_multiple', query_multiple),
                        ('num_tasks', num_tasks)):
      if value is not None and _whole(value, name) < 1:
        raise ValueError(f'{name} must be at least 1, got {value}.')
    support_n = np.empty((num_tasks, self.ways), np.int64)
    classes = np.empty((num_tasks, self.ways), np.int64)
    for t in range(num_tasks):
      classes[t] = rng.choice(self._classes, size=self.ways, replace=False)
      support_n[t] = dist[rng.permutation(self.ways)]
    if query_multiple is not None:
      query_n = support_n * int(query_multiple)
    else:
      query_n = np.full_like(support_n, int(query_per_class))
    need = support_n + query_n
    short = need > self._counts[classes]
    if short.any():
      t, w = np.argwhere(short)[0]
      c = classes[t, w]
      raise ValueError(
          f'Class {self.dataset.class_names[c]!r} has {self._counts[c]} '
          f'images but the task asks for {need[t, w]} (support '
          f'{support_n[t, w]} + query {query_n[t, w]}).')

    s_total, q_total = int(dist.sum()), int(query_n[0].sum())
    s_idx = np.empty((num_tasks, s_total), np.int64)
    q_idx = np.empty((num_tasks, q_total), np.int64)
    s_lab = np.empty((num_tasks, s_total), np.int32)
    q_lab = np.empty((num_tasks, q_total), np.int32)
    for t in range(num_tasks):
      s_pos = q_pos = 0
      for w in range(self.ways):
        c, ns, nq = classes[t, w], support_n[t, w], query_n[t, w]
        picks = self._starts[c] + rng.choice(self._counts[c], size=ns + nq,
                                             replace=False)
        s_idx[t, s_pos:s_pos + ns] = self._order[picks[:ns]]
        q_idx[t, q_pos:q_pos + nq] = self._order[picks[ns:]]
        s_lab[t, s_pos:s_pos + ns] = w
        q_lab[t, q_pos:q_pos + nq] = w
        s_pos, q_pos = s_pos + ns, q_pos + nq
    ros = {}
    if oversample:
      size = oversampled_size(s_total, self.ways)
      parts = [('support', s_lab, size)]
      if query_multiple is not None:  # Proportional, so imbalanced, queries.
        parts.append(('query', q_lab, size * int(query_multiple)))
      for part, labels, length in parts:
        drawn = [random_oversample(labels[t], self.ways, length, rng)
                 for t in range(num_tasks)]
        ros[f'{part}_ros_index'] = np.stack([i for i, _ in drawn])
        ros[f'{part}_ros_mask'] = np.stack([m for _, m in drawn])
    return Tasks(
        support_images=self._images[s_idx],
        support_labels=s_lab,
        support_counts=support_n.astype(np.int32),
        query_images=self._images[q_idx],
        query_labels=q_lab,
        classes=classes,
        **ros,
    )
