"""Classification metrics on a balanced test set, and confidence intervals.

Host-side NumPy: they run once per evaluation, on predictions.
`seed_scores` is every per-seed metric a classification run records: the
confusion matrix's (`classification_metrics`), the minority classes'
recall (`minority_recall`) and the many/medium/few-shot groups' accuracy
(`shot_group_accuracy`, Liu et al. 2019's groups).
"""

import math
from typing import Optional, Sequence

import numpy as np

from cil import _extras

__all__ = [
    'check_shot_thresholds',
    'classification_metrics',
    'confusion_matrix',
    'DEFAULT_SHOT_THRESHOLDS',
    'format_mean_ci',
    'mean_confidence_interval',
    'minority_recall',
    'seed_scores',
    'shot_group_accuracy',
    'shot_groups',
    'SHOT_GROUPS',
]

stats = _extras.require('scipy.stats', what='cil.metrics')


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
  """`[C, C]` counts; row = true class, column = predicted class."""
  labels = np.asarray(labels)
  predictions = np.asarray(predictions)
  if labels.shape != predictions.shape or labels.ndim != 1:
    raise ValueError(f'labels {labels.shape} and predictions '
                     f'{predictions.shape} must be equal-length 1-D arrays.')
  for name, a in (('labels', labels), ('predictions', predictions)):
    if a.size and (a.min() < 0 or a.max() >= num_classes):
      raise ValueError(f'{name} must be in [0, {num_classes}), got range '
                       f'[{a.min()}, {a.max()}].')
  return np.bincount(labels * num_classes + predictions,
                     minlength=num_classes ** 2).reshape(num_classes,
                                                         num_classes)


def classification_metrics(confusion: np.ndarray) -> dict:
  """Metrics from a confusion matrix.

  Returns a dict with: `accuracy` (overall recognition rate, the paper's
  metric), `per_class_recall` [C], `per_class_precision` [C],
  `balanced_accuracy` (mean recall), `macro_f1`, `g_mean` (geometric mean
  of the per-class recalls), and `confusion` (as nested lists). A class with
  no test examples has recall NaN and is left out of the means; precision
  of a class never predicted is 0.
  """
  cm = np.asarray(confusion, dtype=np.float64)
  tp = np.diag(cm)
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)
  with np.errstate(invalid='ignore', divide='ignore'):
    recall = np.where(support > 0, tp / support, np.nan)
    precision = np.where(predicted > 0, tp / predicted, 0.0)
    f1 = np.where(precision + recall > 0,
                  2 * precision * recall / (precision + recall), 0.0)
  present = support > 0
  recalls = recall[present]
  g_mean = 0.0
  if recalls.size:
    g_mean = float(np.prod(recalls) ** (1 / recalls.size))
  return {
      'accuracy': float(tp.sum() / max(cm.sum(), 1)),
      'per_class_recall': recall.tolist(),
      'per_class_precision': precision.tolist(),
      'balanced_accuracy': float(recalls.mean()) if recalls.size else 0.0,
      'macro_f1': float(f1[present].mean()) if recalls.size else 0.0,
      'g_mean': g_mean,
      'confusion': cm.astype(np.int64).tolist(),
  }


def mean_confidence_interval(values: Sequence[float],
                             confidence: float = 0.95) -> tuple[float, float]:
  """Mean and the half-width of its Student-t confidence interval.

  With one value the half-width is NaN (no spread can be estimated).
  """
  values = np.asarray(values, dtype=np.float64)
  if values.size == 0:
    raise ValueError('mean_confidence_interval needs at least one value.')
  mean = float(values.mean())
  if values.size == 1:
    return mean, math.nan
  sem = values.std(ddof=1) / math.sqrt(values.size)
  return mean, float(stats.t.ppf((1 + confidence) / 2, values.size - 1) * sem)


def format_mean_ci(values: Sequence[float], scale: float = 100.0,
                   digits: int = 2) -> str:
  """'mean ± half-width' (in percent by default)."""
  mean, half = mean_confidence_interval(values)
  if math.isnan(half):
    return f'{scale * mean:.{digits}f}'
  return f'{scale * mean:.{digits}f} ± {scale * half:.{digits}f}'


def minority_recall(per_class_recall: Sequence[float],
                    class_counts: Sequence[int]) -> Optional[float]:
  """Mean test recall of the classes with fewer training images than the
  largest; classes without test images are left out (as in
  `shot_group_accuracy`); None when the training set is balanced or no
  minority class has test images."""
  counts = np.asarray(class_counts)
  minority = np.flatnonzero(counts < counts.max())
  values = np.asarray(per_class_recall, float)[minority]  # None -> NaN.
  values = values[~np.isnan(values)]
  return float(values.mean()) if values.size else None


# Liu et al. (2019)'s groups: many-shot classes have more than 100 training
# images, few-shot fewer than 20, medium-shot the rest.
DEFAULT_SHOT_THRESHOLDS = (20, 100)
SHOT_GROUPS = ('many_shot', 'medium_shot', 'few_shot')


def shot_groups(class_counts: Sequence[int],
                thresholds: Sequence[int] = DEFAULT_SHOT_THRESHOLDS
                ) -> dict[str, np.ndarray]:
  """The classes of each shot group, by their training counts.

  With `thresholds = (low, high)`: many-shot `N > high`, few-shot
  `N < low`, medium-shot `low <= N <= high` (Liu et al. 2019: (20, 100)).

  Returns:
    `{'many_shot': classes, 'medium_shot': ..., 'few_shot': ...}`, each an
    integer array of class indices (possibly empty).
  """
  low, high = check_shot_thresholds(thresholds)
  counts = np.asarray(class_counts)
  return {'many_shot': np.flatnonzero(counts > high),
          'medium_shot': np.flatnonzero((counts >= low) & (counts <= high)),
          'few_shot': np.flatnonzero(counts < low)}


def check_shot_thresholds(thresholds: Sequence[int]) -> tuple[int, int]:
  """`(low, high)` if they are two integers with 0 < low <= high."""
  try:
    low, high = (int(t) for t in thresholds)
    if (low, high) != tuple(thresholds):
      raise TypeError
  except (TypeError, ValueError):
    raise ValueError(f'shot_thresholds must be two integers (low, high), '
                     f'e.g. (20, 100); got {thresholds!r}.') from None
  if not 0 < low <= high:
    raise ValueError(f'shot_thresholds (low, high) need 0 < low <= high; '
                     f'got {thresholds!r}.')
  return low, high


def shot_group_accuracy(per_class_recall: Sequence[float],
                        class_counts: Sequence[int],
                        thresholds: Sequence[int] = DEFAULT_SHOT_THRESHOLDS
                        ) -> dict[str, Optional[float]]:
  """Many-, medium- and few-shot accuracy (Liu et al., CVPR 2019).

  Each group's accuracy is the mean test recall (per-class accuracy) of its
  classes (`shot_groups`), as Liu et al.'s `shot_acc`; classes without test
  images are left out. A group with no classes is None.

  References:
    Liu, Miao, Zhan, Wang, Gong and Yu, `Large-Scale Long-Tailed
    Recognition in an Open World <https://arxiv.org/abs/1904.05160>`_,
    CVPR 2019.
  """
  recall = np.asarray(per_class_recall, dtype=float)  # None -> NaN.
  out = {}
  for group, classes in shot_groups(class_counts, thresholds).items():
    values = recall[classes]
    values = values[~np.isnan(values)]
    out[group] = float(values.mean()) if values.size else None
  return out


def seed_scores(labels: np.ndarray, predictions: np.ndarray,
                class_counts: Sequence[int], num_classes: int, *,
                shot_thresholds: Sequence[int] = DEFAULT_SHOT_THRESHOLDS
                ) -> dict:
  """Every per-seed metric of one model's test predictions.

  `classification_metrics`, `minority_recall` and the shot
  groups' accuracy (`shot_group_accuracy`), the groups defined by the
  seed's training `class_counts`.
  """
  cm = confusion_matrix(labels, predictions, num_classes)
  scores = classification_metrics(cm)
  scores['minority_recall'] = minority_recall(scores['per_class_recall'],
                                              class_counts)
  scores.update(shot_group_accuracy(scores['per_class_recall'], class_counts,
                                    shot_thresholds))
  return scores
