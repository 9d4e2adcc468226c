"""Scoring a folder of detections against a folder of ground truth."""

import json
import os
from typing import Optional

from cil.detection import io as det_io
from cil.detection import metrics


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


def evaluate_folders(gt_dir: str, pred_dir: str, *, out_dir: Optional[str],
                     iou_threshold: float = 0.6, inclusive: bool = False,
                     ap_method: str = '11point',
                     score_threshold: Optional[float] = None) -> dict:
  """Evaluates `pred_dir/<image>.txt` against `gt_dir`; writes the table.

  Images in the ground truth without a detection file have no detections.
  Writes `table.md` and `results.json` to `out_dir` when given.
  """
  gt = read_ground_truth(gt_dir)
  pred = det_io.read_folder(pred_dir, detections=True)
  result = metrics.evaluate(pred, gt, iou_threshold=iou_threshold,
                            inclusive=inclusive, ap_method=ap_method,
                            score_threshold=score_threshold)
  result['inputs'] = {'gt': os.path.abspath(gt_dir),
                      'pred': os.path.abspath(pred_dir),
                      'images': len(gt), 'images_with_detections': len(pred)}
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'table.md'), 'w', encoding='utf-8') as f:
      f.write(metrics.table_markdown(result))
    with open(os.path.join(out_dir, 'results.json'), 'w',
              encoding='utf-8') as f:
      json.dump(result, f, indent=1)
  return result
