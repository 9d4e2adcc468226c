"""Detection metrics of the paper (eq. 24-26) for rotated boxes, on the host.

Matching (per image and class, as the PASCAL VOC and DOTA development kits):
detections are visited by decreasing score (ties: the order given, by a
stable sort); each is compared with every ground-truth box of its image and
class, and the one of highest rotated IoU is taken. The detection is a true
positive if that IoU is **strictly greater** than the threshold (0.6 in the
paper: "IoU > 0.6"; `inclusive=True` gives `>=`) and that ground truth is
not yet matched; otherwise it is a false positive (a duplicate, or a poor
localisation). Ground truth marked difficult is not counted, and a detection
whose best match is a difficult box is neither a true nor a false positive.

Per class, over all images:

* P = TP / (TP + FP), R = TP / (number of ground truths), F1 = 2PR / (P + R),
  G-mean = sqrt(P R) (eq. 24), at the score threshold the detections were
  given with (pass `score_threshold` to raise it). P is 0 when a class has
  no detections.
* AP, eq. (25-26): 11-point interpolation, 1/11 * sum over r in {0, 0.1,
  ..., 1} of max_{r' >= r} p(r') (0 where no recall reaches r); or the area
  under the interpolated precision-recall curve (`ap_method='area'`, VOC 2010
  and later). A class with no ground truth has no AP (None) and is left out
  of the mAP.
* 'overall' pools the counts of all classes (micro P, R, F1, G-mean); mAP is
  the mean of the per-class APs.

`evaluate_protocols` reports the paper's AP beside VOC07, VOC12 and
COCO-style mAP@[0.5:0.95] (`AP_PROTOCOLS`), in one table
(`protocols_table_markdown`).

One module (about 550 lines): matching, AP under each protocol, the
paired bootstrap and the tables share the per-class match records, and
each protocol is checked against the others' definitions here.
"""

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np

from cil.detection import boxes as boxes_lib

__all__ = [
    'average_precision',
    'bootstrap_map',
    'evaluate',
    'evaluate_protocols',
    'ImageBoxes',
    'match_image',
    'protocols_table_markdown',
    'table_markdown',
]


@dataclasses.dataclass
class ImageBoxes:
  """The boxes of one image.

  Attributes:
    boxes: `[K, 5]` rotated boxes (cx, cy, w, h, theta).
    labels: `[K]` class names (str) or ids.
    scores: `[K]` for detections; None for ground truth.
    difficult: `[K]` bool for ground truth; None means all False.
  """
  boxes: np.ndarray
  labels: np.ndarray
  scores: Optional[np.ndarray] = None
  difficult: Optional[np.ndarray] = None

  def __post_init__(self):
    self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 5)
    self.labels = np.asarray(self.labels)
    k = len(self.boxes)
    if self.labels.shape != (k,):
      raise ValueError(f'ImageBoxes: {k} boxes but labels of shape '
                       f'{self.labels.shape}.')
    if self.scores is not None:
      self.scores = np.asarray(self.scores, np.float64)
      if self.scores.shape != (k,):
        raise ValueError(f'ImageBoxes: {k} boxes but scores of shape '
                         f'{self.scores.shape}.')
    if self.difficult is None:
      self.difficult = np.zeros((k,), bool)
    self.difficult = np.asarray(self.difficult, bool)


MATCHING_RULES = ('voc', 'coco')


def match_image(det_boxes: np.ndarray, det_scores: np.ndarray,
                gt_boxes: np.ndarray, gt_difficult: Optional[np.ndarray] = None,
                *, iou_threshold: float = 0.6, inclusive: bool = False,
                matching: str = 'voc', iou: Optional[np.ndarray] = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Greedy matching of one image's detections of one class.

  Detections are visited by decreasing score. `matching='voc'` (the VOC
  and DOTA kits, and the paper): a detection takes the ground truth of
  highest IoU; if that one is already taken it is a false positive.
  `matching='coco'` (pycocotools): it takes the still-free non-difficult
  ground truth of highest IoU that passes the threshold, so a duplicate of
  a taken box can still match a neighbour; failing that, a passing
  difficult ("crowd") box makes it ignored.

  Args:
    det_boxes: `[D, 5]`.
    det_scores: `[D]`.
    gt_boxes: `[G, 5]`.
    gt_difficult: `[G]` bool, or None.
    iou_threshold: a match needs IoU > it (>= with `inclusive`).
    inclusive: use `>=`.
    matching: 'voc' or 'coco' (above).
    iou: optional precomputed `[D, G]` rotated IoU of the detections in
      their given order (not the visiting order) with `gt_boxes`.

  Returns:
    `(order [D], tp [D] bool, ignored [D] bool)`: the visiting order (by
    decreasing score, stable) and, in that order, which detections are true
    positives and which are ignored (matched to difficult ground truth).
    False positives are `~tp & ~ignored`.
  """
  if matching not in MATCHING_RULES:
    raise ValueError(f"matching must be one of {MATCHING_RULES}, got "
                     f'{matching!r}.')
  det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 5)
  gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 5)
  if gt_difficult is None:
    gt_difficult = np.zeros(len(gt_boxes), bool)
  gt_difficult = np.asarray(gt_difficult, bool)
  order = np.argsort(-np.asarray(det_scores, np.float64), kind='stable')
  tp = np.zeros(len(order), bool)
  ignored = np.zeros(len(order), bool)
  if not len(gt_boxes) or not len(order):
    return order, tp, ignored
  if iou is None:
    iou = boxes_lib.rotated_iou(det_boxes, gt_boxes, xp=np)
  iou = np.asarray(iou, np.float64)[order]
  passes = iou >= iou_threshold if inclusive else iou > iou_threshold
  taken = np.zeros(len(gt_boxes), bool)
  for i in range(len(order)):
    if matching == 'voc':
      j = int(np.argmax(iou[i]))
      if not passes[i, j]:
        continue
      if gt_difficult[j]:
        ignored[i] = True
      elif not taken[j]:
        tp[i] = taken[j] = True
      continue
    free = passes[i] & ~taken & ~gt_difficult
    if free.any():
      j = int(np.argmax(np.where(free, iou[i], -1.0)))
      tp[i] = taken[j] = True
    elif (passes[i] & gt_difficult).any():
      ignored[i] = True
  return order, tp, ignored


def average_precision(recall: np.ndarray, precision: np.ndarray, *,
                      method: str = '11point') -> float:
  """AP from a precision-recall curve (points by decreasing score).

  Args:
    recall: `[D]` cumulative recall.
    precision: `[D]` cumulative precision.
    method: '11point' (eq. 25-26, VOC 2007), 'area' (all-point
      interpolation, VOC 2010 and later) or '101point' (COCO: the mean
      over r in {0, 0.01, ..., 1} of the interpolated precision
      max_{r' >= r} p(r'), 0 where no recall reaches r).
  """
  recall = np.asarray(recall, np.float64)
  precision = np.asarray(precision, np.float64)
  if method == '101point':
    if not recall.size:
      return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, np.linspace(0, 1, 101) - 1e-12, side='left')
    reached = at < recall.size
    return float(np.sum(envelope[at[reached]]) / 101)
  if method == '11point':
    total = 0.0
    for r in np.linspace(0, 1, 11):
      reached = precision[recall >= r - 1e-12]
      total += reached.max() if reached.size else 0.0
    return total / 11
  if method == 'area':
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # Interpolated precision.
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))
  raise ValueError(f"ap method must be '11point', 'area' or '101point', got "
                   f'{method!r}.')


def _ratio(a, b):
  return a / b if b else 0.0


def _summary(tp: int, fp: int, n_gt: int) -> dict:
  p = _ratio(tp, tp + fp)
  r = _ratio(tp, n_gt)
  return {'tp': tp, 'fp': fp, 'fn': n_gt - tp, 'num_gt': n_gt,
          'num_det': tp + fp, 'precision': p, 'recall': r,
          'f1': _ratio(2 * p * r, p + r), 'gmean': math.sqrt(p * r)}


def _class_matches(detections: dict, ground_truth: dict, classes,
                   iou_threshold: float, inclusive: bool,
                   score_threshold: Optional[float] = None, *,
                   matching: str = 'voc',
                   iou_cache: Optional[dict] = None) -> dict:
  """Per class, per image (in `ground_truth`'s order): `(scores, tp,
  n_gt)` of its detections in decreasing score, those matched to difficult
  ground truth left out; `n_gt` counts the non-difficult ground truth.
  `iou_cache` (a dict) keeps each (class, image)'s IoU matrix for another
  call with other thresholds."""
  out = {}
  for cls in classes:
    rows = []
    for image, gt in ground_truth.items():
      g = gt.labels.astype(str) == str(cls)
      n_gt = int(np.sum(g & ~gt.difficult))
      det = detections.get(image)
      d = (det.labels.astype(str) == str(cls)) if det is not None else None
      if d is not None and score_threshold is not None:
        d &= det.scores >= score_threshold
      if d is None or not d.any():
        rows.append((np.zeros(0), np.zeros(0, bool), n_gt))
        continue
      iou = None
      if iou_cache is not None and g.any():
        key = (str(cls), image)
        if key not in iou_cache:
          iou_cache[key] = boxes_lib.rotated_iou(det.boxes[d], gt.boxes[g],
                                                 xp=np)
        iou = iou_cache[key]
      order, tp, ignored = match_image(
          det.boxes[d], det.scores[d], gt.boxes[g], gt.difficult[g],
          iou_threshold=iou_threshold, inclusive=inclusive,
          matching=matching, iou=iou)
      rows.append((det.scores[d][order][~ignored], tp[~ignored], n_gt))
    out[str(cls)] = rows
  return out


def _class_ap(rows: list, images, ap_method: str) -> Optional[float]:
  """AP of one class over `images` (indices into `rows`, repeats allowed):
  one ranking over all of them, by decreasing score, stable across images;
  None without ground truth."""
  images = list(images)
  n_gt = sum(rows[i][2] for i in images)
  if not n_gt:
    return None
  scores = np.concatenate([np.zeros(0)] + [rows[i][0] for i in images])
  tp = np.concatenate([np.zeros(0, bool)] + [rows[i][1] for i in images])
  order = np.argsort(-scores, kind='stable')
  ctp, cfp = np.cumsum(tp[order]), np.cumsum(~tp[order])
  return average_precision(ctp / n_gt, ctp / np.maximum(ctp + cfp, 1),
                           method=ap_method)


def _classes(detections: dict, ground_truth: dict,
             classes: Optional[Sequence]) -> Sequence:
  """`classes`, or by default every label seen in the ground truth, sorted,
  then those only in detections; first, a named error for detections of
  images without ground truth."""
  unknown = sorted(set(detections) - set(ground_truth), key=str)
  if unknown:
    raise ValueError(f'Detections for images without ground truth: '
                     f'{unknown[:5]}.')
  if classes is not None:
    return classes
  seen_gt = {str(x) for g in ground_truth.values() for x in g.labels}
  seen_det = {str(x) for d in detections.values() for x in d.labels}
  return sorted(seen_gt) + sorted(seen_det - seen_gt)


def evaluate(detections: dict, ground_truth: dict, *,
             classes: Optional[Sequence] = None, iou_threshold: float = 0.6,
             inclusive: bool = False, ap_method: str = '11point',
             score_threshold: Optional[float] = None) -> dict:
  """Per-class and overall metrics of rotated detections.

  Args:
    detections: image id -> `ImageBoxes` with scores. Images missing here
      have no detections.
    ground_truth: image id -> `ImageBoxes`. Every image with detections must
      be here (an image with no objects has an empty `ImageBoxes`).
    classes: the classes to report, in order (default: every label seen in
      the ground truth, sorted, then those only in detections).
    iou_threshold: matching threshold (strict `>` unless `inclusive`).
    inclusive: `>=` instead of `>`.
    ap_method: '11point' (the paper) or 'area'.
    score_threshold: if given, detections scoring below it are dropped.

  Returns:
    `{'per_class': {class: {...}}, 'overall': {...}, 'mAP': float,
    'settings': {...}}`; per class: ap, precision, recall, f1, gmean, tp,
    fp, fn, num_gt, num_det.
  """
  valid = (0 < iou_threshold <= 1) if inclusive else (
      0 <= iou_threshold < 1)
  if not valid:
    raise ValueError(
        f'iou_threshold must be in [0, 1) (a match needs IoU > it; with '
        f'inclusive, in (0, 1]), got {iou_threshold}.')
  classes = _classes(detections, ground_truth, classes)
  per_class = {}
  totals = np.zeros(3, int)
  matches = _class_matches(detections, ground_truth, classes, iou_threshold,
                           inclusive, score_threshold)
  for cls, rows in matches.items():
    tp = np.concatenate([np.zeros(0, bool)] + [r[1] for r in rows])
    n_gt = sum(r[2] for r in rows)
    entry = _summary(int(tp.sum()), int((~tp).sum()), n_gt)
    entry['ap'] = _class_ap(rows, range(len(rows)), ap_method)
    per_class[cls] = entry
    totals += (entry['tp'], entry['fp'], n_gt)
  aps = [e['ap'] for e in per_class.values() if e['ap'] is not None]
  return {
      'per_class': per_class,
      'overall': _summary(int(totals[0]), int(totals[1]), int(totals[2])),
      'mAP': float(np.mean(aps)) if aps else None,
      'settings': {'iou_threshold': iou_threshold,
                   'comparison': '>=' if inclusive else '>',
                   'ap_method': ap_method,
                   'score_threshold': score_threshold},
  }


# The AP protocols `evaluate_protocols` reports side by side: IoU
# thresholds, the comparison, the AP interpolation and the matching rule.
AP_PROTOCOLS = {
    # The paper (eq. 25-26): IoU > 0.6, 11 points.
    'paper': {'iou_thresholds': (0.6,), 'inclusive': False,
              'ap_method': '11point', 'matching': 'voc'},
    # PASCAL VOC 2007 (VOCevaldet.m: ovmax >= 0.5), 11 points.
    'voc07': {'iou_thresholds': (0.5,), 'inclusive': True,
              'ap_method': '11point', 'matching': 'voc'},
    # PASCAL VOC 2010-2012: all-point interpolation (the area).
    'voc12': {'iou_thresholds': (0.5,), 'inclusive': True,
              'ap_method': 'area', 'matching': 'voc'},
    # COCO-style mAP@[0.5:0.95]: the mean over IoU >= 0.50, 0.55, ..., 0.95
    # of 101-point AP, pycocotools' matching (no area ranges or
    # detection caps: every detection given counts).
    'coco': {'iou_thresholds': tuple(round(0.5 + 0.05 * k, 2)
                                     for k in range(10)),
             'inclusive': True, 'ap_method': '101point', 'matching': 'coco'},
}


def evaluate_protocols(detections: dict, ground_truth: dict, *,
                       classes: Optional[Sequence] = None,
                       protocols: Sequence[str] = tuple(AP_PROTOCOLS),
                       score_threshold: Optional[float] = None) -> dict:
  """Per-class AP and mAP under several AP protocols (`AP_PROTOCOLS`).

  The paper's AP (IoU > 0.6, 11-point), VOC07 (IoU >= 0.5, 11-point),
  VOC12 (IoU >= 0.5, all-point) and COCO-style mAP@[0.5:0.95] from one set
  of detections, each rotated IoU computed once. A class's COCO AP is the
  mean of its APs over the ten thresholds; mAP is the mean over classes
  with ground truth (None without any).

  Args:
    detections, ground_truth, classes, score_threshold: as `evaluate`.
    protocols: names in `AP_PROTOCOLS`.

  Returns:
    `{protocol: {'mAP': float, 'per_class': {class: ap}, 'settings':
    {...}}}`.
  """
  unknown = [p for p in protocols if p not in AP_PROTOCOLS]
  if unknown:
    raise ValueError(f'Unknown AP protocols {unknown}; known: '
                     f'{", ".join(AP_PROTOCOLS)}.')
  classes = _classes(detections, ground_truth, classes)
  cache = {}
  out = {}
  for name in protocols:
    spec = AP_PROTOCOLS[name]
    by_class = {str(c): [] for c in classes}
    for threshold in spec['iou_thresholds']:
      matches = _class_matches(detections, ground_truth, classes, threshold,
                               spec['inclusive'], score_threshold,
                               matching=spec['matching'], iou_cache=cache)
      for cls, rows in matches.items():
        by_class[cls].append(_class_ap(rows, range(len(rows)),
                                       spec['ap_method']))
    per_class = {cls: (None if None in aps else float(np.mean(aps)))
                 for cls, aps in by_class.items()}
    aps = [a for a in per_class.values() if a is not None]
    out[name] = {'mAP': float(np.mean(aps)) if aps else None,
                 'per_class': per_class,
                 'settings': {**spec, 'comparison': '>=' if spec['inclusive']
                              else '>', 'score_threshold': score_threshold}}
  return out


def protocols_table_markdown(result: dict) -> str:
  """`evaluate_protocols`' result as one table: AP (%) per class (rows) and
  protocol (columns), mAP last."""
  names = list(result)
  first = result[names[0]]['per_class']
  header = {'paper': 'paper (IoU > 0.6, 11-pt)',
            'voc07': 'VOC07 (0.5, 11-pt)', 'voc12': 'VOC12 (0.5, all-pt)',
            'coco': 'COCO (0.5:0.95, 101-pt)'}

  def pct(v):
    return '–' if v is None else f'{100 * v:.1f}'

  lines = ['| class | ' + ' | '.join(header.get(n, n) for n in names)
           + ' |', '|' + '---|' * (len(names) + 1)]
  for cls in first:
    lines.append(f'| {cls} | ' + ' | '.join(
        pct(result[n]['per_class'][cls]) for n in names) + ' |')
  lines.append('| mAP | ' + ' | '.join(pct(result[n]['mAP']) for n in names)
               + ' |')
  return '\n'.join(lines) + '\n'


def _weighted_aps(rows: list, weights: np.ndarray, ap_method: str
                  ) -> np.ndarray:
  """AP of one class for many resamples at once: `[S]`, NaN without GT.

  `weights [S, n]` is how many times each image is drawn. A detection drawn
  k times enters the ranking as one step of k; its intermediate points lie
  on the segment between the step's ends, so both AP methods equal those of
  the k copies ranked one by one (`_class_ap`).
  """
  n_gt = weights @ np.asarray([r[2] for r in rows], np.float64)
  scores = np.concatenate([np.zeros(0)] + [r[0] for r in rows])
  tp = np.concatenate([np.zeros(0, bool)] + [r[1] for r in rows])
  image = np.concatenate([np.zeros(0, int)] + [
      np.full(len(r[0]), i) for i, r in enumerate(rows)])
  if not len(scores):
    return np.where(n_gt > 0, 0.0, np.nan)
  order = np.argsort(-scores, kind='stable')
  w = weights[:, image[order]]
  ctp = np.cumsum(w * tp[order], 1)
  cfp = np.cumsum(w * ~tp[order], 1)
  recall = ctp / np.maximum(n_gt, 1)[:, None]
  precision = ctp / np.maximum(ctp + cfp, 1)
  if ap_method == '11point':
    ap = np.mean([np.max(np.where(recall >= r - 1e-12, precision, 0), 1)
                  for r in np.linspace(0, 1, 11)], 0)
  elif ap_method == 'area':
    envelope = np.maximum.accumulate(precision[:, ::-1], 1)[:, ::-1]
    steps = np.diff(recall, axis=1, prepend=0.0)
    ap = np.sum(steps * envelope, 1)
  else:
    raise ValueError(f"ap method must be '11point' or 'area', got "
                     f'{ap_method!r}.')
  return np.where(n_gt > 0, ap, np.nan)


def _resampled_maps(matches: dict, weights: np.ndarray, ap_method: str
                    ) -> np.ndarray:
  """mAP `[S]` over the classes with ground truth in each resample."""
  aps = np.stack([_weighted_aps(rows, weights, ap_method)
                  for rows in matches.values()])
  present = ~np.isnan(aps)
  total = np.where(present, aps, 0).sum(0)
  count = present.sum(0)
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def bootstrap_map(runs: dict, ground_truth: dict, *, classes: Sequence,
                  baseline: Optional[str] = None,
                  differences: Sequence[tuple[str, str]] = (),
                  samples: int = 1000,
                  seed: int = 0, iou_threshold: float = 0.6,
                  inclusive: bool = False, ap_method: str = '11point'
                  ) -> dict:
  """mAP of several runs on one test set, with paired bootstrap 95 % CIs.

  Test images are resampled with replacement (the same draws for every
  run, so differences are paired); each draw's mAP is `evaluate`'s over
  the drawn images (a class without ground truth in a draw is left out, as
  `evaluate` leaves it out of the mean). The CIs are the 2.5th and 97.5th
  percentiles. They say what this test set can resolve: the sampling of
  test images, not of training seeds.

  Args:
    runs: run name -> detections (image id -> `ImageBoxes` with scores).
    ground_truth: image id -> `ImageBoxes`.
    classes: the classes that enter the mean.
    baseline: a run name; every other run's difference from it is
      reported.
    differences: more `(a, b)` pairs of run names: a minus b is reported.
    samples: bootstrap draws.
    seed: their seed.
    iou_threshold, inclusive, ap_method: as `evaluate`.

  Returns:
    `{'mAP': {run: {'value', 'low', 'high'}}, 'difference': {'a - b':
    {...}}}`, the differences being each run minus the baseline, then the
    `differences` pairs. Values are fractions.
  """
  if samples < 1:
    raise ValueError(f'samples must be >= 1, got {samples}.')
  pairs = [(run, baseline) for run in runs
           if baseline is not None and run != baseline]
  pairs += [tuple(p) for p in differences]
  for name in [baseline] + [n for p in pairs for n in p]:
    if name is not None and name not in runs:
      raise ValueError(f'{name!r} (baseline or difference) is not a run; '
                       f'runs: {", ".join(runs)}.')
  matches = {name: _class_matches(dets, ground_truth, classes, iou_threshold,
                                  inclusive) for name, dets in runs.items()}
  n = len(ground_truth)
  rng = np.random.default_rng(seed)
  # Draw d takes image i weights[d, i] times.
  weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n)
                      for _ in range(samples)]).astype(np.float64)
  draws = {name: _resampled_maps(matches[name], weights, ap_method)
           for name in runs}

  def interval(value, values):
    lo, hi = np.nanpercentile(values, [2.5, 97.5])
    return {'value': value, 'low': float(lo), 'high': float(hi)}

  ones = np.ones((1, n))
  point = {name: float(_resampled_maps(matches[name], ones, ap_method)[0])
           for name in runs}
  out = {'mAP': {name: interval(point[name], draws[name]) for name in runs},
         'difference': {}}
  for a, b in pairs:
    out['difference'][f'{a} - {b}'] = interval(point[a] - point[b],
                                               draws[a] - draws[b])
  return out


def table_markdown(result: dict) -> str:
  """A Table VI-shaped markdown table (per class AP, P, R, F1, G-mean), %."""
  s = result['settings']
  lines = [f"IoU {s['comparison']} {s['iou_threshold']}, AP: "
           f"{s['ap_method']}", '',
           '| class | GT | det | AP | P | R | F1 | G-mean |',
           '|---|---|---|---|---|---|---|---|']

  def pct(v):
    return '–' if v is None else f'{100 * v:.1f}'

  rows = list(result['per_class'].items()) + [('overall', result['overall'])]
  for name, e in rows:
    ap = result['mAP'] if name == 'overall' else e['ap']
    label = 'overall (mAP)' if name == 'overall' else name
    lines.append(f"| {label} | {e['num_gt']} | {e['num_det']} | {pct(ap)} | "
                 f"{pct(e['precision'])} | {pct(e['recall'])} | "
                 f"{pct(e['f1'])} | {pct(e['gmean'])} |")
  return '\n'.join(lines) + '\n'
