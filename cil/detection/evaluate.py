"""Scoring a folder of detections against a folder of ground truth."""

import os
from typing import Optional, Sequence

from cil.detection import io as det_io
from cil.detection import metrics

__all__ = [
    'compare_folders',
    'comparison_markdown',
    'evaluate_folders',
    'evaluation_markdown',
    'read_ground_truth',
]


def read_ground_truth(directory: str) -> dict:
  """DOTA-style `*.txt` labels, or HRSC2016 `*.xml`, from one folder.

  A DOTA layout root (with `labelTxt/`) is accepted too.
  """
  if os.path.isdir(os.path.join(directory, 'labelTxt')):
    directory = os.path.join(directory, 'labelTxt')
  if not os.path.isdir(directory):
    raise ValueError(f'Ground-truth folder {directory!r} does not exist.')
  names = os.listdir(directory)
  if any(n.endswith('.txt') for n in names):
    return det_io.read_folder(directory)
  xml = sorted(n for n in names if n.endswith('.xml'))
  if not xml:
    raise ValueError(f'No *.txt (DOTA) or *.xml (HRSC2016) labels in '
                     f'{directory!r}.')
  return {n[:-4]: det_io.read_hrsc(os.path.join(directory, n)) for n in xml}


def _predictions(name: str, folder: str, gt: dict, *,
                 missing_as_empty: bool) -> tuple[dict, list]:
  """A run's detections on the images of `gt`, and the images it has no
  file for (an error unless `missing_as_empty`)."""
  if not os.path.isdir(folder):
    where = (f'{name}={folder!r}' if name.startswith('--')
             else f'of {name}, {folder!r},')
    raise ValueError(f'Prediction folder {where} does not exist.')
  found = {k: v for k, v in det_io.read_folder(
      folder, detections=True).items() if k in gt}
  absent = sorted(set(gt) - set(found))
  if absent and not missing_as_empty:
    shown = ', '.join(absent[:5]) + (', ...' if len(absent) > 5 else '')
    raise ValueError(
        f'{name[0].upper()}{name[1:]} ({folder}) has no prediction file for '
        f'{len(absent)} of the {len(gt)} test images ({shown}); copy them, '
        f'or pass --missing_as_empty to count those images as having no '
        f'detections.')
  return found, absent


def _check_objects(gt: dict, gt_dir: str) -> list:
  """The ground truth's classes; none at all is a named error."""
  classes = sorted({str(x) for g in gt.values() for x in g.labels})
  if not classes:
    raise ValueError(f'The ground truth in {gt_dir!r} holds no objects '
                     f'({len(gt)} label files, all empty): there is '
                     f'nothing to score detections against.')
  return classes


def evaluate_folders(gt_dir: str, pred_dir: str, *,
                     iou_threshold: float = 0.6, inclusive: bool = False,
                     ap_method: str = '11point',
                     score_threshold: Optional[float] = None,
                     missing_as_empty: bool = False) -> dict:
  """Evaluates `pred_dir/<image>.txt` against `gt_dir`.

  A ground-truth image without a detection file is an error (a partly
  copied folder would read as a run that detected nothing there) unless
  `missing_as_empty` counts it as having no detections, as
  `compare_folders` does. Besides the chosen AP,
  `result['ap_protocols']` holds the paper's, VOC07, VOC12 and
  COCO-style mAP (`metrics.evaluate_protocols`);
  `evaluation_markdown(result)` is both tables.
  """
  gt = read_ground_truth(gt_dir)
  _check_objects(gt, gt_dir)
  pred, absent = _predictions('--pred', pred_dir, gt,
                              missing_as_empty=missing_as_empty)
  result = metrics.evaluate(pred, gt, iou_threshold=iou_threshold,
                            inclusive=inclusive, ap_method=ap_method,
                            score_threshold=score_threshold)
  result['ap_protocols'] = metrics.evaluate_protocols(
      pred, gt, classes=list(result['per_class']),
      score_threshold=score_threshold)
  result['inputs'] = {'gt': os.path.abspath(gt_dir),
                      'pred': os.path.abspath(pred_dir),
                      'images': len(gt), 'images_with_detections': len(pred),
                      'missing_predictions': absent}
  return result


def evaluation_markdown(result: dict) -> str:
  """`evaluate_folders`' two tables: per class at its IoU, and the four AP
  protocols."""
  return (metrics.table_markdown(result) + '\n' +
          metrics.protocols_table_markdown(result['ap_protocols']))


def compare_folders(gt_dir: str, preds: dict, *,
                    baseline: Optional[str] = None,
                    differences: Sequence[tuple[str, str]] = (),
                    samples: int = 1000,
                    seed: int = 0, iou_threshold: float = 0.6,
                    ap_method: str = '11point',
                    missing_as_empty: bool = False,
                    max_images: Optional[int] = None) -> dict:
  """Several runs' detections on one test set: per-class AP and paired CIs.

  Args:
    gt_dir: the test set's labels (as `read_ground_truth`).
    preds: run name -> folder of `<image>.txt` detection files.
    baseline: a run name to subtract from every other run.
    differences: more `(a, b)` run-name pairs, a minus b.
    samples, seed: the bootstrap over test images
      (`metrics.bootstrap_map`).
    iou_threshold, ap_method: matching and AP, as `metrics.evaluate`.
    missing_as_empty: count a test image without a prediction file in a
      run's folder as one with no detections (the table then says how many
      were missing); by default a missing file is an error, since a
      partly copied folder would otherwise read as a run that detected
      nothing there.
    max_images: evaluate the first this many test images only (in name
      order): what a smaller test set would resolve.

  Raises:
    ValueError: a run's folder does not exist, or (without
      `missing_as_empty`) lacks prediction files of test images; the
      message names the run and the images.

  Returns:
    `{'classes', 'num_gt' (per class), 'runs': {name: evaluate result},
    'bootstrap': bootstrap_map result, 'settings'}`.
  """
  gt = read_ground_truth(gt_dir)
  if max_images is not None:
    if max_images < 1:
      raise ValueError(f'max_images must be positive, got {max_images}.')
    gt = dict(sorted(gt.items())[:max_images])
  classes = _check_objects(gt, gt_dir)
  dets, missing = {}, {}
  for name, folder in preds.items():
    dets[name], absent = _predictions(f'run {name!r}', folder, gt,
                                      missing_as_empty=missing_as_empty)
    if absent:
      missing[name] = absent
  runs = {name: metrics.evaluate(d, gt, classes=classes,
                                 iou_threshold=iou_threshold,
                                 ap_method=ap_method)
          for name, d in dets.items()}
  first = next(iter(runs.values()))
  return {'classes': classes,
          'num_gt': {c: first['per_class'][c]['num_gt'] for c in classes},
          'runs': runs,
          'bootstrap': metrics.bootstrap_map(
              dets, gt, classes=classes, baseline=baseline,
              differences=differences, samples=samples,
              seed=seed, iou_threshold=iou_threshold, ap_method=ap_method),
          'settings': {'gt': os.path.abspath(gt_dir), 'images': len(gt),
                       'baseline': baseline,
                       'differences': [list(p) for p in differences],
                       'samples': samples,
                       'missing_predictions': missing,
                       'seed': seed, 'iou_threshold': iou_threshold,
                       'ap_method': ap_method,
                       'preds': {k: os.path.abspath(v)
                                 for k, v in preds.items()}}}


def comparison_markdown(result: dict) -> str:
  """Per-class AP (%) by run, then mAP and differences with 95 % CIs."""
  names = list(result['runs'])
  s = result['settings']
  lines = [f"AP ({s['ap_method']}) at rotated IoU > {s['iou_threshold']} "
           f"on {s['images']} test images, %; 95 % CIs from "
           f"{s['samples']} paired bootstrap draws of the test images "
           f"(seed {s['seed']}).", '',
           *[f"Run {n}: {len(m)} test images had no prediction file and "
             f"count as having no detections (--missing_as_empty)."
             for n, m in s.get('missing_predictions', {}).items()],
           *([''] if s.get('missing_predictions') else []),
           '| class | GT | ' + ' | '.join(names) + ' |',
           '|---|---|' + '---|' * len(names)]

  def pct(v):
    return '–' if v is None else f'{100 * v:.1f}'

  for c in result['classes']:
    aps = [pct(result['runs'][n]['per_class'][c]['ap']) for n in names]
    lines.append(f"| {c} | {result['num_gt'][c]} | " + ' | '.join(aps)
                 + ' |')

  def ci(e):
    return f"{pct(e['value'])} [{pct(e['low'])}, {pct(e['high'])}]"

  boot = result['bootstrap']
  lines.append('| **mAP** | | ' + ' | '.join(
      ci(boot['mAP'][n]) for n in names) + ' |')
  if boot['difference']:
    lines += ['', '| paired difference of mAP | points [95 % CI] |',
              '|---|---|']
    lines += [f'| {pair} | {ci(e)} |' for pair, e in
              boot['difference'].items()]
  return '\n'.join(lines) + '\n'
