"""Imbalance protocols for classification: which examples of a split to keep.

Every protocol maps the labels of a (usually balanced) training split to an
`ImbalancedSplit`: the indices kept, the resulting class counts, and their
imbalance ratio rho and degree lambda (eq. 1-2, computed by `cil.losses`).
Sampling is deterministic given the seed.

Named protocols (`get_protocol(name)`; parameters after a colon):

| name | situation |
|---|---|
| `all` (alias `balanced`) | keep every example (the data's own imbalance) |
| `odd10`, `odd25` | Table I: odd classes keep 10 % / 25 %, even classes all |
| `even10`, `even25` | Table I reversed: even classes reduced |
| `minority:k=5,n=24` | Tables II-III (MSTAR): k random classes keep n images |
| `longtail:ratio=100` | N_i = N_max ratio^(-i/(C-1)) (Cao et al. 2019) |
| `step:ratio=10,mu=0.5` | mu C classes at N_max / ratio (Buda et al. 2018) |

N_max is the smallest class's size in the source split; `n_max=500` in a
`longtail` or `step` spec caps it (the imbalance sweep of
`configs/classify.py:mnist_sweep` keeps 500 per majority class).

`mstar24` and `mstar12` are shorthands for `minority:k=5,n=24` / `n=12`.
"""

import dataclasses
from typing import Callable, Optional, Sequence

import numpy as np

from cil import _validation as v
from cil import losses


@dataclasses.dataclass(frozen=True)
class ImbalancedSplit:
  """The result of a protocol.

  Attributes:
    indices: `[n]` sorted indices into the source split's examples.
    class_counts: `[num_classes]` examples kept per class.
    imbalance_ratio: rho of `class_counts`, eq. (1).
    imbalance_degree: lambda of `class_counts`, eq. (2).
    protocol: the protocol's name with its parameters.
    seed: the seed it was drawn with.
  """
  indices: np.ndarray
  class_counts: np.ndarray
  imbalance_ratio: float
  imbalance_degree: float
  protocol: str
  seed: int

  def summary(self) -> dict:
    """JSON-friendly description (counts, rho, lambda)."""
    return {
        'protocol': self.protocol,
        'seed': self.seed,
        'num_examples': int(self.indices.size),
        'class_counts': self.class_counts.tolist(),
        'imbalance_ratio': self.imbalance_ratio,
        'imbalance_degree': self.imbalance_degree,
    }


def _check_labels(labels, num_classes: Optional[int]) -> tuple[np.ndarray, int]:
  labels = np.asarray(labels)
  if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        f'`labels` must be a 1-D integer array, got shape {labels.shape} and '
        f'dtype {labels.dtype}.')
  if num_classes is None:
    num_classes = int(labels.max()) + 1 if labels.size else 0
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
        f'`labels` must be in [0, {num_classes}), got range '
        f'[{labels.min()}, {labels.max()}].')
  return labels, num_classes


def subsample(
    labels: Sequence[int],
    *,
    seed: int,
    fractions: Optional[Sequence[float]] = None,
    counts: Optional[Sequence[int]] = None,
    num_classes: Optional[int] = None,
    protocol: str = 'subsample',
) -> ImbalancedSplit:
  """Keeps a per-class fraction or a per-class count of each class.

  Within each class, the kept examples are the first of a seeded random
  permutation, so the result is deterministic given `seed`, and a smaller
  fraction keeps a subset of what a larger one keeps (same seed).

  Args:
    labels: `[n]` integer class labels of the source split.
    seed: random seed.
    fractions: `[C]` fractions in (0, 1]; a class keeps
      `max(1, round_half_up(fraction * available))` examples.
    counts: `[C]` positive counts (instead of `fractions`); a count may not
      exceed what the class has.
    num_classes: C; defaults to `max(labels) + 1`.
    protocol: name recorded in the result.

  Returns:
    An `ImbalancedSplit`.

  Raises:
    ValueError: for bad labels, both or neither of fractions/counts, a wrong
      length, a non-positive value, a fraction above 1, a count above what a
      class has, or a class with no examples.
  """
  labels, num_classes = _check_labels(labels, num_classes)
  if (fractions is None) == (counts is None):
    raise ValueError('Give exactly one of `fractions` or `counts`.')
  available = np.bincount(labels, minlength=num_classes)
  if np.any(available == 0):
    empty = np.flatnonzero(available == 0).tolist()
    more = ', ...' if len(empty) > 10 else ''
    shown = ', '.join(map(str, empty[:10])) + more
    raise ValueError(
        f'{len(empty)} of {num_classes} classes ({shown}) have no examples '
        f'in the source split; every class needs at least one.')
  if fractions is not None:
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.shape != (num_classes,):
      raise ValueError(f'`fractions` must have length {num_classes}, got '
                       f'shape {fractions.shape}.')
    if np.any(~np.isfinite(fractions) | (fractions <= 0) | (fractions > 1)):
      raise ValueError(f'`fractions` must be in (0, 1], got {fractions}.')
    # Round half up (np.round would send 626.5 to 626).
    keep = np.maximum(1, np.floor(fractions * available + 0.5)).astype(np.int64)
  else:
    keep = np.asarray(counts)
    if keep.shape != (num_classes,):
      raise ValueError(f'`counts` must have length {num_classes}, got shape '
                       f'{keep.shape}.')
    if not np.issubdtype(keep.dtype, np.integer) or np.any(keep <= 0):
      raise ValueError(f'`counts` must be positive integers, got {keep}.')
    too_many = np.flatnonzero(keep > available)
    if too_many.size:
      c = int(too_many[0])
      raise ValueError(
          f'Class {c} has {available[c]} examples but the protocol asks for '
          f'{keep[c]}.')
  rng = np.random.default_rng(seed)
  kept = []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    kept.append(members[rng.permutation(members.size)[:keep[c]]])
  indices = np.sort(np.concatenate(kept))
  class_counts = keep.astype(np.int64)
  return ImbalancedSplit(
      indices=indices,
      class_counts=class_counts,
      # float32 values from cil.losses, rounded to what float32 resolves.
      imbalance_ratio=round(float(losses.imbalance_ratio(class_counts)), 5),
      imbalance_degree=round(float(losses.imbalance_degree(class_counts)), 6),
      protocol=protocol,
      seed=seed,
  )


# ---------------------------------------------------------------------------
# Named protocols.


def _parity(parity: int, fraction: float):
  def protocol(labels, *, seed, num_classes=None, name):
    labels, num_classes = _check_labels(labels, num_classes)
    fractions = np.where(np.arange(num_classes) % 2 == parity, fraction, 1.0)
    return subsample(labels, seed=seed, fractions=fractions,
                     num_classes=num_classes, protocol=name)
  return protocol


def _keep_all(labels, *, seed, num_classes=None, name):
  """Every example: the data's own class counts."""
  labels, num_classes = _check_labels(labels, num_classes)
  return subsample(labels, seed=seed, fractions=np.ones(num_classes),
                   num_classes=num_classes, protocol=name)


def _minority(labels, *, seed, num_classes=None, name, k=5, n=24):
  """k classes drawn at random (seeded) keep n images each."""
  labels, num_classes = _check_labels(labels, num_classes)
  k, n = int(k), int(n)
  if not 1 <= k <= num_classes:
    raise ValueError(f'minority: k must be in [1, {num_classes}], got {k}.')
  available = np.bincount(labels, minlength=num_classes)
  rng = np.random.default_rng([seed, 1])
  minority = rng.choice(num_classes, size=k, replace=False)
  counts = available.copy()
  counts[minority] = np.minimum(n, available[minority])
  return subsample(labels, seed=seed, counts=counts, num_classes=num_classes,
                   protocol=name)


def _head_size(available: np.ndarray, n_max: float, protocol: str) -> int:
  """The largest class size: the smallest class's, capped at n_max if > 0."""
  if n_max < 0 or n_max != int(n_max):
    raise ValueError(f'{protocol}: n_max must be a whole number >= 0 (0: no '
                     f'cap), got {n_max}.')
  head = int(available.min())
  return min(head, int(n_max)) if n_max else head


def _longtail(labels, *, seed, num_classes=None, name, ratio=100.0,
              n_max=0):
  """N_i = N_max * ratio^(-i / (C - 1)), class 0 the largest (Cao et al.).

  N_max is the smallest class's size in the source split, or `n_max` if
  that is smaller (a cap that keeps a sweep fast).
  """
  labels, num_classes = _check_labels(labels, num_classes)
  ratio = float(ratio)
  if ratio < 1:
    raise ValueError(f'longtail: ratio must be >= 1, got {ratio}.')
  available = np.bincount(labels, minlength=num_classes)
  n_max = _head_size(available, n_max, 'longtail')
  exponent = np.arange(num_classes) / max(num_classes - 1, 1)
  counts = np.maximum(1, np.floor(n_max * ratio ** -exponent)).astype(np.int64)
  return subsample(labels, seed=seed, counts=counts, num_classes=num_classes,
                   protocol=name)


def _step(labels, *, seed, num_classes=None, name, ratio=10.0, mu=0.5,
          n_max=0):
  """The last round(mu * C) classes keep N_max / ratio (Buda et al.).

  The others keep N_max: the smallest class's size in the source split, or
  `n_max` if that is smaller.
  """
  labels, num_classes = _check_labels(labels, num_classes)
  ratio, mu = float(ratio), float(mu)
  if ratio < 1 or not 0 <= mu <= 1:
    raise ValueError(f'step: need ratio >= 1 and 0 <= mu <= 1, got ratio='
                     f'{ratio}, mu={mu}.')
  available = np.bincount(labels, minlength=num_classes)
  n_max = _head_size(available, n_max, 'step')
  counts = np.full(num_classes, n_max, np.int64)
  num_minority = int(round(mu * num_classes))
  if num_minority:
    counts[-num_minority:] = max(1, int(n_max // ratio))
  return subsample(labels, seed=seed, counts=counts, num_classes=num_classes,
                   protocol=name)


_PROTOCOLS: dict[str, Callable[..., ImbalancedSplit]] = {
    'all': _keep_all,
    'odd10': _parity(1, 0.10),
    'odd25': _parity(1, 0.25),
    'even10': _parity(0, 0.10),
    'even25': _parity(0, 0.25),
    'minority': _minority,
    'longtail': _longtail,
    'step': _step,
}
_SHORTHANDS = {
    # The old name of `all` (it keeps whatever imbalance the data has).
    'balanced': 'all',
    'mstar24': 'minority:k=5,n=24',
    'mstar12': 'minority:k=5,n=12',
}
PROTOCOL_NAMES = tuple(_PROTOCOLS) + tuple(_SHORTHANDS)
# Table I's four situations, in the paper's order.
TABLE1_PROTOCOLS = ('odd10', 'odd25', 'even10', 'even25')


def get_protocol(spec: str) -> Callable[..., ImbalancedSplit]:
  """Parses `name[:key=value,...]` into `fn(labels, *, seed, num_classes=None)`.

  Examples:
    >>> split = get_protocol('odd10')(np.repeat(np.arange(4), 100), seed=0)
    >>> split.class_counts.tolist(), round(split.imbalance_degree, 4)
    ([100, 10, 100, 10], 0.5)
  """
  spec = _SHORTHANDS.get(spec.strip(), spec.strip())
  name, _, arg_text = spec.partition(':')
  if name not in _PROTOCOLS:
    raise ValueError(f'Unknown protocol {name!r}; known: '
                     f'{", ".join(PROTOCOL_NAMES)}.')
  kwargs = v.spec_arguments(arg_text, spec, 'Protocol')
  fn = _PROTOCOLS[name]
  try:  # Reject unknown keyword arguments now, with a clear message.
    import inspect  # pylint: disable=g-import-not-at-top
    inspect.signature(fn).bind([], seed=0, name=spec, **kwargs)
  except TypeError as e:
    raise ValueError(f'Bad arguments for protocol {name!r}: {e}') from None

  def protocol(labels, *, seed: int, num_classes: Optional[int] = None):
    return fn(labels, seed=seed, num_classes=num_classes, name=spec, **kwargs)

  return protocol


def holdout(labels: np.ndarray, fraction: float, *, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
  """`(train, held_out)` sorted indices: `fraction` of each class's
  examples (rounded down) held out, drawn with `seed`, never a class's
  last example (a class of one stays in training).

  Raises:
    ValueError: `fraction` outside (0, 1).
  """
  if not 0 < fraction < 1:
    raise ValueError(f'The held-out fraction must lie in (0, 1), got '
                     f'{fraction}.')
  rng = np.random.default_rng(seed)
  held = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    n = min(int(fraction * members.size), members.size - 1)
    held.append(rng.permutation(members)[:n])
  held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
  keep = np.setdiff1d(np.arange(labels.size), held)
  return keep, held
