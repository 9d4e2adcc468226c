"""Classification metrics on a balanced test set, and confidence intervals.

Host-side NumPy: they run once per evaluation, on predictions.
"""

import math
from typing import Sequence

import numpy as np

from cil import _extras

__all__ = [
    'classification_metrics',
    'confusion_matrix',
    'format_mean_ci',
    'mean_confidence_interval',
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
