"""The detection runner's figure: test images with true and predicted
rotated boxes (PNG, PDF and the CSV of the boxes drawn)."""


import numpy as np

from cil import plots
from cil.detection import boxes as boxes_lib


def figure_detections(split: dict, dets: dict, stem: str, *, count: int = 4,
                      min_score: float = 0.3) -> dict:
  """Detection: test images with true (green) and predicted (red) boxes.

  Every box is labelled with its class name (predictions also with their
  score).

  Args:
    split: `load_split` output (`images`, `names`,
      `gt` name -> ImageBoxes).
    dets: image name -> predicted ImageBoxes (with scores).
    stem: output path without extension.
    count: images drawn (the first of the split).
    min_score: predictions below it are not drawn.
  """
  names = split['names'][:count]
  fig = plots.figure(figsize=(3.2 * max(len(names), 1), 3.4), layout='tight')
  axes = fig.subplots(1, max(len(names), 1), squeeze=False)[0]
  rows = []
  for ax, (k, name) in zip(axes, enumerate(names)):
    ax.imshow(split['images'][k])
    ax.set_title(name, fontsize=8)
    ax.set_axis_off()
    gt = split['gt'][name]
    det = dets[name]
    keep = np.asarray(det.scores) >= min_score
    for kind, colour, boxes, labels, scores in (
        ('truth', 'lime', gt.boxes, gt.labels, [None] * len(gt.labels)),
        ('prediction', 'red', det.boxes[keep], det.labels[keep],
         det.scores[keep])):
      for corners, label, score in zip(
          boxes_lib.rbox_to_corners(np.asarray(boxes), xp=np), labels,
          scores):
        closed = np.concatenate([corners, corners[:1]])
        ax.plot(closed[:, 0], closed[:, 1], color=colour, lw=0.9)
        text = str(label) if score is None else f'{label} {score:.2f}'
        ax.text(corners[0, 0], corners[0, 1], text, color=colour,
                fontsize=5, va='bottom')
        rows.append([name, kind, str(label),
                     '' if score is None else float(score)]
                    + [float(v) for v in corners.reshape(-1)])
  header = ['image', 'kind', 'class', 'score'] + [
      f'{a}{i}' for i in range(4) for a in 'xy']
  return plots.save(fig, stem, header, rows)
