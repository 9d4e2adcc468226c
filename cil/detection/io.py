"""Readers and writers for rotated-box annotations.

* DOTA-style text labels, one object per line:
  `x1 y1 x2 y2 x3 y3 x4 y4 class difficult` (corners clockwise on screen;
  `difficult` may be left out and means 0). Header lines `imagesource:...`
  and `gsd:...` of DOTA v1 are skipped. Files are `<image id>.txt`.
* Detections in the same layout with a score: `x1 y1 ... y4 class score`.
* HRSC2016 XML (`<HRSC_Object>` with `mbox_cx, mbox_cy, mbox_w, mbox_h,
  mbox_ang`, angle in radians, `Class_ID`, `difficult`), the public stand-in
  for the paper's non-public NUDT-AOSR15. Its angle is read as this
  package's `theta` (from +x toward +y, image coordinates).

Bad input raises `ValueError` naming the file and line (or object).
"""

import os
from typing import Optional
import xml.etree.ElementTree as ET

import numpy as np

from cil.detection import boxes as boxes_lib
from cil.detection.metrics import ImageBoxes

__all__ = [
    'read_detections',
    'read_dota',
    'read_folder',
    'read_hrsc',
    'write_dota',
]


def _check_sizes(boxes: np.ndarray, where: list) -> None:
  for (w, h), loc in zip(boxes[:, 2:4], where):
    if not (w > 0 and h > 0):
      raise ValueError(f'{loc}: box of non-positive size (w={w:.4g}, '
                       f'h={h:.4g}).')


def _parse_lines(path: str, *, with_score: bool) -> ImageBoxes:
  corners, labels, extra, where = [], [], [], []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      text = line.strip()
      if not text or text.startswith(('imagesource:', 'gsd:')):
        continue
      parts = text.split()
      loc = f'{path}:{number}'
      expected = '10 fields (x1 y1 ... y4 class score)' if with_score else (
          '9 or 10 fields (x1 y1 ... y4 class [difficult])')
      if len(parts) not in ((10,) if with_score else (9, 10)):
        raise ValueError(f'{loc}: expected {expected}, got {len(parts)}: '
                         f'{text!r}.')
      try:
        xy = [float(v) for v in parts[:8]]
      except ValueError:
        raise ValueError(f'{loc}: corner coordinates must be numbers: '
                         f'{text!r}.') from None
      if not np.all(np.isfinite(xy)):
        raise ValueError(f'{loc}: corner coordinates must be finite.')
      last = parts[9] if len(parts) == 10 else '0'
      try:
        value = float(last) if with_score else int(last)
      except ValueError:
        kind = 'score' if with_score else 'difficult flag (0 or 1)'
        raise ValueError(f'{loc}: bad {kind} {last!r}.') from None
      if with_score and not np.isfinite(value):
        raise ValueError(f'{loc}: the score must be finite, got {last!r}.')
      corners.append(np.reshape(xy, (4, 2)))
      labels.append(parts[8])
      extra.append(value)
      where.append(loc)
  boxes = boxes_lib.corners_to_rbox(
      np.asarray(corners, np.float64).reshape(-1, 4, 2), xp=np)
  _check_sizes(boxes, where)
  if with_score:
    return ImageBoxes(boxes, np.asarray(labels, str),
                      scores=np.asarray(extra, np.float64))
  return ImageBoxes(boxes, np.asarray(labels, str),
                    difficult=np.asarray(extra, bool))


def read_dota(path: str) -> ImageBoxes:
  """One DOTA-style label file -> ground-truth `ImageBoxes`."""
  return _parse_lines(path, with_score=False)


def read_detections(path: str) -> ImageBoxes:
  """One detection file, lines of `x1 y1 x2 y2 x3 y3 x4 y4 class score`."""
  return _parse_lines(path, with_score=True)


def _format(boxes: np.ndarray) -> list:
  corners = boxes_lib.rbox_to_corners(np.asarray(boxes, np.float64), xp=np)
  return [' '.join(f'{v:.2f}' for v in c.reshape(-1)) for c in corners]


def write_dota(path: str, image: ImageBoxes) -> None:
  """Writes ground truth (or, with scores, detections) as text lines."""
  lines = []
  for i, xy in enumerate(_format(image.boxes)):
    last = (f'{image.scores[i]:.6f}' if image.scores is not None
            else str(int(image.difficult[i])))
    lines.append(f'{xy} {image.labels[i]} {last}')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + ('\n' if lines else ''))


def read_folder(directory: str, *, detections: bool = False,
                suffix: str = '.txt') -> dict:
  """All `<image id>.txt` files of a folder -> {image id: ImageBoxes}.

  `detections` reads detection files (with scores), else labels; the
  errors say which ("Prediction folder", "Label folder").
  """
  what = 'Prediction' if detections else 'Label'
  if not os.path.isdir(directory):
    raise ValueError(f'{what} folder {directory!r} does not exist.')
  reader = read_detections if detections else read_dota
  out = {}
  for name in sorted(os.listdir(directory)):
    if name.endswith(suffix):
      out[name[:-len(suffix)]] = reader(os.path.join(directory, name))
  if not out:
    raise ValueError(f'No *{suffix} {what.lower()} files in {directory!r}.')
  return out


def read_hrsc(path: str, *, class_names: Optional[dict] = None
              ) -> ImageBoxes:
  """One HRSC2016 annotation XML -> ground-truth `ImageBoxes`.

  Args:
    path: the XML file.
    class_names: optional map from `Class_ID` (str) to a name; otherwise the
      id is the label.
  """
  try:
    root = ET.parse(path).getroot()
  except ET.ParseError as e:
    raise ValueError(f'{path}: not well-formed XML ({e}).') from None
  boxes, labels, difficult, where = [], [], [], []
  for k, obj in enumerate(root.iter('HRSC_Object')):
    loc = f'{path}: HRSC_Object {k}'
    values = []
    for tag in ('mbox_cx', 'mbox_cy', 'mbox_w', 'mbox_h', 'mbox_ang'):
      node = obj.find(tag)
      if node is None or node.text is None:
        raise ValueError(f'{loc}: missing <{tag}>.')
      try:
        values.append(float(node.text))
      except ValueError:
        raise ValueError(f'{loc}: <{tag}> is not a number: '
                         f'{node.text!r}.') from None
    cls = obj.findtext('Class_ID', default='ship').strip()
    labels.append(class_names.get(cls, cls) if class_names else cls)
    difficult.append(obj.findtext('difficult', default='0').strip() == '1')
    boxes.append(values)
    where.append(loc)
  boxes = np.asarray(boxes, np.float64).reshape(-1, 5)
  _check_sizes(boxes, where)
  return ImageBoxes(boxes, np.asarray(labels, str),
                    difficult=np.asarray(difficult, bool))
