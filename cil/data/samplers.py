r"""Re-sampling of an imbalanced training set (Kang et al., ICLR 2020).

Each epoch draws as many examples as the training set holds. Class j is
drawn with probability

.. math::
  p_j = n_j^q / \textstyle\sum_i n_i^q

and then one of its examples uniformly:

* `instance` (q = 1): every example once per epoch, in a random order (no
  re-sampling);
* `class_balanced` (q = 0): every class equally often;
* `sqrt` (q = 1/2): square-root sampling (Mahajan et al. 2018);
* `progressive`: `(1 - t) p^instance + t p^class_balanced` with t = e/(E-1)
  at 0-based epoch e of E, from instance-balanced at the first epoch to
  class-balanced at the last (Kang et al.'s schedule).

`instance` is a permutation (without replacement); the others draw with
replacement. Every draw is a function of (seed, epoch) only, so a run
resumed at any epoch draws what an uninterrupted one would.

The decoupled classifiers' second stage draws with the reference's own
sampler instead, `class_aware_order` (`ClassAwareSampler`): C x n_max
draws per epoch, classes and each class's examples in random cycles.

Reference: Kang, Xie, Rohrbach, Yan, Gordo, Feng and Kalantidis,
`Decoupling Representation and Classifier for Long-Tailed Recognition
<https://arxiv.org/abs/1910.09217>`_, ICLR 2020, Section 3.
"""

from typing import Optional

import numpy as np

SAMPLERS = ('instance', 'class_balanced', 'sqrt', 'progressive')


def check_sampler(name: str) -> None:
  if name not in SAMPLERS:
    raise ValueError(f'sampler must be one of {", ".join(SAMPLERS)}, got '
                     f'{name!r}.')


def class_probabilities(class_counts, sampler: str, *, epoch: int = 0,
                        epochs: int = 1) -> np.ndarray:
  """`[C]` probabilities of drawing each class (module docstring).

  Args:
    class_counts: `[C]` training counts (a class with none is never drawn).
    sampler: one of `SAMPLERS`.
    epoch: the 0-based epoch (`progressive` only).
    epochs: the run's epochs, T (`progressive` only).
  """
  check_sampler(sampler)
  counts = np.asarray(class_counts, np.float64)
  if counts.ndim != 1 or not counts.size or np.any(counts < 0) or (
      counts.sum() <= 0):
    raise ValueError(f'class_counts must be non-negative with a positive '
                     f'sum, got {class_counts!r}.')
  present = counts > 0

  def power(q):
    p = np.where(present, counts ** q, 0.0)
    return p / p.sum()

  if sampler == 'progressive':
    if not 0 <= epoch < epochs:
      raise ValueError(f'progressive sampling needs 0 <= epoch < epochs, '
                       f'got epoch {epoch} of {epochs}.')
    t = epoch / (epochs - 1) if epochs > 1 else 0.0
    return (1 - t) * power(1.0) + t * power(0.0)
  return power({'instance': 1.0, 'class_balanced': 0.0, 'sqrt': 0.5}[sampler])


def epoch_order(indices: np.ndarray, labels: np.ndarray, sampler: str, *,
                seed: int, epoch: int, epochs: Optional[int] = None
                ) -> np.ndarray:
  """The examples one epoch visits, in order: `[len(indices)]` entries of
  `indices`.

  Args:
    indices: the training set's example indices (into `labels`).
    labels: `[N]` labels of the full split that `indices` index.
    sampler: one of `SAMPLERS`.
    seed, epoch: the draw is a function of these only.
    epochs: the run's epochs (`progressive` only).
  """
  check_sampler(sampler)
  indices = np.asarray(indices)
  if sampler == 'instance':  # The order of the runners before samplers.
    rng = np.random.default_rng([seed, epoch, 7])
    return indices[rng.permutation(indices.size)]
  if sampler == 'progressive' and epochs is None:
    raise ValueError('progressive sampling needs the run\'s epochs.')
  rng = np.random.default_rng([seed, epoch, 11])
  own = np.asarray(labels)[indices]
  num_classes = int(own.max()) + 1
  counts = np.bincount(own, minlength=num_classes)
  p = class_probabilities(counts, sampler, epoch=epoch, epochs=epochs or 1)
  drawn = rng.choice(num_classes, size=indices.size, p=p)
  by_class = np.argsort(own, kind='stable')
  starts = np.concatenate([[0], np.cumsum(counts)])
  within = np.floor(rng.random(indices.size) * counts[drawn]).astype(int)
  return indices[by_class[starts[drawn] + within]]


def class_aware_order(indices: np.ndarray, labels: np.ndarray, *, seed: int,
                      epoch: int, per_class: int = 4) -> np.ndarray:
  """One epoch of Kang et al.'s class-aware sampler
  (`facebookresearch/classifier-balancing`, `data/ClassAwareSampler.py`,
  with their configs' `num_samples_cls: 4`): C x n_max draws (C classes
  present, n_max the largest class's count); the classes are visited in a
  random cycle, reshuffled after each pass, and each visit takes
  `per_class` consecutive examples of its class from that class's own
  random cycle. A function of (seed, epoch): the reference's cycles run
  on across epochs, these start anew each epoch (so a resumed run draws
  the same).

  Args:
    indices: the training set's example indices (into `labels`).
    labels: `[N]` labels of the split that `indices` index.
    seed, epoch: the draw is a function of these only.
    per_class: consecutive draws per class visit.
  """
  rng = np.random.default_rng([seed, epoch, 13])
  indices = np.asarray(indices)
  own = np.asarray(labels)[indices]
  members = [indices[own == c] for c in np.unique(own)]
  total = max(m.size for m in members) * len(members)
  cycles = [rng.permutation(m) for m in members]
  at = [0] * len(members)
  order, visits = [], []
  while len(order) < total:
    if not visits:  # A new pass over the classes.
      visits = list(rng.permutation(len(members)))
    c = visits.pop(0)
    for _ in range(per_class):
      if at[c] == cycles[c].size:
        cycles[c], at[c] = rng.permutation(members[c]), 0
      order.append(cycles[c][at[c]])
      at[c] += 1
  return np.asarray(order[:total])
