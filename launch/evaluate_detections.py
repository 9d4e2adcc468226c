r"""Scores rotated detections the paper's way (Table VI): AP at IoU > 0.6.

    python -m launch.evaluate_detections --gt DIR --pred DIR [--iou 0.6] \
        [--ap_method 11point|area] [--missing_as_empty] [--out DIR]

--gt holds DOTA-style `<image>.txt` labels (or a DOTA root with labelTxt/,
or HRSC2016 `<image>.xml`); --pred holds `<image>.txt` detection files with
lines `x1 y1 x2 y2 x3 y3 x4 y4 class score`. Prints the per-class table
(AP, P, R, F1, G-mean at --iou) and a second one of AP under four protocols
side by side: the paper's (IoU > 0.6, 11-point), VOC07 (IoU >= 0.5,
11-point), VOC12 (IoU >= 0.5, all-point) and COCO-style mAP@[0.5:0.95]
(101-point, pycocotools' matching); writes `table.md` and `results.json`
to --out (default: --pred/../eval).
"""

import os

from absl import flags

from cil import workdir
from cil.detection import evaluate
from launch import common

_GT = flags.DEFINE_string('gt', None, 'Ground-truth label folder.')
_PRED = flags.DEFINE_string('pred', None, 'Detection folder.')
_IOU = flags.DEFINE_float('iou', 0.6, 'IoU threshold (a match needs >).')
_INCLUSIVE = flags.DEFINE_bool('inclusive', False, 'Match on IoU >= --iou.')
_AP = flags.DEFINE_enum('ap_method', '11point', ['11point', 'area'],
                        'AP interpolation.')
_SCORE = flags.DEFINE_float('score_threshold', None,
                            'Drop detections scoring below it.')
_OUT = flags.DEFINE_string('out', None, 'Output folder.')
_MISSING_AS_EMPTY = flags.DEFINE_bool(
    'missing_as_empty', False, 'Count a ground-truth image without a '
    'prediction file as having no detections; by default a missing file '
    'is an error.')
flags.mark_flags_as_required(['gt', 'pred'])


def run():
  out = _OUT.value or os.path.join(
      os.path.dirname(os.path.abspath(_PRED.value.rstrip('/'))), 'eval')
  if os.path.exists(out) and not os.path.isdir(out):
    raise ValueError(f'--out {out} is an existing file; choose a folder.')
  result = evaluate.evaluate_folders(
      _GT.value, _PRED.value, iou_threshold=_IOU.value,
      inclusive=_INCLUSIVE.value, ap_method=_AP.value,
      score_threshold=_SCORE.value, missing_as_empty=_MISSING_AS_EMPTY.value)
  table = evaluate.evaluation_markdown(result)
  print(table, end='')
  # Its folders are made; a path it cannot write is a named error.
  workdir.write_text(os.path.join(out, 'table.md'), table)
  workdir.write_json(os.path.join(out, 'results.json'), result)
  print(f'Wrote {out}/table.md and results.json')


if __name__ == '__main__':
  common.launch(run)
