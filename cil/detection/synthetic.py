"""Synthetic harbour scenes with rotated, long-tailed ship annotations.

A stand-in for the paper's non-public NUDT-AOSR15 that this machine can
make: 15 ship classes that differ in length, beam, hull outline (bow and
stern) and deck marks, at random positions and headings on a textured sea,
with shore clutter (land, buildings, piers) in most scenes and groups of
ships moored side by side at a slant, where axis-aligned boxes overlap
heavily (the paper's Fig. 1). Class frequencies are long-tailed like the
paper's Fig. 6: class k is drawn with weight 45^(-k/14), so the most
frequent class is 45 times the rarest.

Everything is deterministic in `(seed, image index)`: image i is the same
whatever the number of images asked for. Labels are DOTA-style, boxes are
the hulls' tight rotated boxes (`w` along the heading).
"""

import dataclasses
import json
import os
from typing import Optional

import numpy as np

from cil import _extras
from cil.detection import boxes as boxes_lib
from cil.detection import io as det_io
from cil.detection.metrics import ImageBoxes

__all__ = [
    'class_weights',
    'make_scene',
    'ShipClass',
    'write_dataset',
]

Image = _extras.require('PIL.Image', what='cil.detection')


@dataclasses.dataclass(frozen=True)
class ShipClass:
  """How one class looks.

  Attributes:
    name: label.
    length: (min, max) hull length in pixels at image size 512.
    beam: beam / length.
    bow: 'pointed', 'round' or 'blunt'.
    stern: 'square' or 'round'.
    tone: hull brightness in [0, 1].
    marks: deck marks `(kind, u, length, width, tone)`: kind 'box'
      (superstructure), 'disc' (turret, helipad), 'stripes' (containers,
      hatches) or 'line' (a flight-deck centre line); u is the centre along
      the hull in [-1, 1] (bow +1), length and width are fractions of the
      length and the beam.
  """
  name: str
  length: tuple
  beam: float
  bow: str
  stern: str
  tone: float
  marks: tuple = ()


# Ordered from most to least frequent (the paper: submarine 2306 instances,
# tanker over 45 times fewer).
CLASSES = (
    ShipClass('submarine', (40, 60), 0.11, 'round', 'round', 0.18, (
        ('box', 0.25, 0.1, 0.5, 0.05),)),
    ShipClass('destroyer', (60, 80), 0.12, 'pointed', 'square', 0.55, (
        ('box', 0.05, 0.25, 0.6, 0.75),
        ('disc', 0.6, 0.06, 0.5, 0.35),
        ('disc', -0.6, 0.06, 0.5, 0.35))),
    ShipClass('frigate', (45, 60), 0.14, 'pointed', 'square', 0.58, (
        ('box', 0.0, 0.3, 0.7, 0.8),
        ('disc', 0.55, 0.07, 0.5, 0.3),
        ('box', -0.7, 0.2, 0.8, 0.45))),
    ShipClass('cargo', (55, 75), 0.16, 'blunt', 'square', 0.5, (
        ('box', -0.75, 0.12, 0.9, 0.9),
        ('stripes', 0.1, 0.6, 0.8, 0.3))),
    ShipClass('container', (80, 110), 0.14, 'blunt', 'square', 0.45, (
        ('stripes', 0.05, 0.75, 0.9, 0.85),
        ('box', -0.8, 0.1, 0.9, 0.95))),
    ShipClass('fishing', (14, 22), 0.3, 'round', 'square', 0.7, (
        ('box', -0.2, 0.35, 0.6, 0.95),)),
    ShipClass('tug', (16, 24), 0.36, 'round', 'round', 0.35, (
        ('box', 0.1, 0.4, 0.6, 0.85),)),
    ShipClass('patrol', (24, 34), 0.2, 'pointed', 'square', 0.8, (
        ('box', 0.0, 0.3, 0.6, 0.4),)),
    ShipClass('yacht', (18, 28), 0.28, 'pointed', 'round', 0.95, (
        ('box', -0.1, 0.4, 0.55, 0.7),)),
    ShipClass('landing', (50, 65), 0.2, 'blunt', 'square', 0.5, (
        ('line', 0.1, 0.8, 0.08, 0.85),
        ('box', -0.75, 0.15, 0.7, 0.75))),
    ShipClass('cruiser', (75, 95), 0.11, 'pointed', 'square', 0.6, (
        ('box', 0.05, 0.35, 0.55, 0.8),
        ('disc', 0.65, 0.05, 0.45, 0.3),
        ('disc', -0.65, 0.05, 0.45, 0.3))),
    ShipClass('carrier', (110, 140), 0.2, 'blunt', 'square', 0.42, (
        ('line', 0.0, 0.9, 0.04, 0.95),
        ('box', 0.0, 0.15, 0.2, 0.8))),
    ShipClass('hospital', (60, 75), 0.15, 'round', 'square', 0.97, (
        ('disc', 0.0, 0.12, 0.6, 0.15),
        ('box', -0.5, 0.2, 0.6, 0.85))),
    ShipClass('bulk', (85, 105), 0.17, 'round', 'square', 0.4, (
        ('stripes', 0.1, 0.7, 0.7, 0.6),
        ('box', -0.82, 0.08, 0.9, 0.95))),
    ShipClass('tanker', (90, 115), 0.18, 'round', 'square', 0.3, (
        ('line', 0.05, 0.75, 0.1, 0.7),
        ('box', -0.8, 0.1, 0.9, 0.95))),
)
CLASS_NAMES = tuple(c.name for c in CLASSES)
IMBALANCE = 45.0


def class_weights(num_classes: int = len(CLASSES),
                  ratio: float = IMBALANCE) -> np.ndarray:
  """Long-tailed draw weights: w_k = ratio^(-k / (K - 1)), normalised."""
  w = ratio ** (-np.arange(num_classes) / (num_classes - 1))
  return w / w.sum()


def _smooth_noise(rng, size: int, cells: int) -> np.ndarray:
  grid = rng.random((cells, cells)).astype(np.float32)
  img = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
  return np.asarray(img)


def _sea(rng, size: int) -> np.ndarray:
  texture = sum(_smooth_noise(rng, size, c) * a
                for c, a in ((4, 0.5), (16, 0.3), (64, 0.2)))
  texture = 0.1 + 0.08 * texture + 0.02 * rng.standard_normal((size, size))
  base = np.array([0.35, 0.55, 0.75], np.float32)  # Blue-grey water.
  return texture[..., None] * base * 2.2


def _shore(rng, img: np.ndarray) -> np.ndarray:
  """Adds land along one side with buildings and piers; returns land mask."""
  size = img.shape[0]
  depth = rng.uniform(0.12, 0.3) * size
  edge = depth + 0.06 * size * (_smooth_noise(rng, size, 6)[0] - 0.5) * 4
  rows = np.arange(size)[:, None]
  land = rows < edge[None, :]
  tex = 0.45 + 0.25 * _smooth_noise(rng, size, 32)
  tex += 0.05 * rng.standard_normal((size, size))
  colour = np.array([0.75, 0.7, 0.6], np.float32)
  img[land] = (tex[..., None] * colour)[land]
  for _ in range(rng.integers(8, 20)):  # Buildings.
    w, h = rng.integers(6, 30, 2)
    x = rng.integers(0, size - w)
    y = rng.integers(0, max(int(depth) - h, 1))
    img[y:y + h, x:x + w] = rng.uniform(0.5, 1.0) * np.array(
        [1.0, 0.97, 0.92])
    land[y:y + h, x:x + w] = True
  for _ in range(rng.integers(1, 4)):  # Piers into the water.
    x = int(rng.integers(size // 10, size - size // 10))
    length = int(rng.uniform(0.15, 0.3) * size)
    y0 = int(edge[x]) - 2
    img[y0:y0 + length, x:x + 5] = 0.8
    land[y0:y0 + length, x:x + 5] = True
  # The world is upside down at random, so the shore is on any side.
  k = int(rng.integers(4))
  img[:] = np.rot90(img, k)
  land = np.rot90(land, k)
  return np.ascontiguousarray(land)


def _profile(u: np.ndarray, cls: ShipClass) -> np.ndarray:
  """Half-beam fraction along the hull, u in [-1, 1] (bow at +1)."""
  p = np.ones_like(u)
  bow = 0.3
  t = np.clip((u - (1 - bow)) / bow, 0, 1)
  if cls.bow == 'pointed':
    p = np.where(t > 0, 1 - t ** 1.5, p)
  elif cls.bow == 'round':
    p = np.where(t > 0, np.sqrt(np.clip(1 - t ** 2, 0, 1)), p)
  else:  # blunt
    p = np.where(t > 0, np.sqrt(np.clip(1 - t ** 4, 0, 1)), p)
  stern = 0.12
  s = np.clip((-u - (1 - stern)) / stern, 0, 1)
  if cls.stern == 'round':
    p = np.where(s > 0, np.minimum(p, np.sqrt(np.clip(1 - s ** 2, 0, 1))), p)
  return np.where(np.abs(u) <= 1, p, 0)


def _draw_ship(img: np.ndarray, box: np.ndarray, cls: ShipClass,
               rng) -> None:
  size = img.shape[0]
  cx, cy, length, beam, theta = box
  x1, y1, x2, y2 = boxes_lib.rbox_to_aabb(box, xp=np)
  xs = np.arange(max(int(x1) - 1, 0), min(int(x2) + 2, size))
  ys = np.arange(max(int(y1) - 1, 0), min(int(y2) + 2, size))
  gx, gy = np.meshgrid(xs + 0.5, ys + 0.5)
  c, s = np.cos(theta), np.sin(theta)
  u = ((gx - cx) * c + (gy - cy) * s) / (length / 2)  # Along, bow +1.
  v = (-(gx - cx) * s + (gy - cy) * c) / (beam / 2)   # Across.
  half = _profile(u, cls)
  # Soft edge one pixel wide.
  cover = np.clip((half - np.abs(v)) * beam / 2 + 0.5, 0, 1)
  tone = np.full_like(u, cls.tone)
  for kind, uc, lf, wf, mark_tone in cls.marks:
    du = np.abs(u - uc) * length / 2
    inside = (du <= lf * length / 2) & (np.abs(v) <= wf)
    if kind == 'disc':
      r = lf * length / 2
      inside = (du ** 2 + (v * beam / 2) ** 2) <= r ** 2
    elif kind == 'stripes':
      period = max(length * lf / 8, 3.0)
      inside &= np.mod(u * length / 2, period) > 0.35 * period
    elif kind == 'line':
      inside = (du <= lf * length / 2) & (np.abs(v) <= max(wf, 0.12))
    tone = np.where(inside, mark_tone, tone)
  tint = np.array([1.0, 1.0, 1.0]) * (0.95 + 0.1 * rng.random(3))
  colour = tone[..., None] * tint
  window = img[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
  window[:] = cover[..., None] * colour + (1 - cover[..., None]) * window


def _wake(img: np.ndarray, box: np.ndarray) -> None:
  """A faint bright wake behind a moving ship."""
  size = img.shape[0]
  cx, cy, length, beam, theta = box
  c, s = np.cos(theta), np.sin(theta)
  wake_len = 1.5 * length
  back = np.array([cx - c * (length / 2 + wake_len / 2),
                   cy - s * (length / 2 + wake_len / 2)])
  x1, y1, x2, y2 = boxes_lib.rbox_to_aabb(
      np.array([*back, wake_len, 3 * beam, theta]), xp=np)
  xs = np.arange(max(int(x1), 0), min(int(x2) + 1, size))
  ys = np.arange(max(int(y1), 0), min(int(y2) + 1, size))
  if not xs.size or not ys.size:
    return
  gx, gy = np.meshgrid(xs + 0.5, ys + 0.5)
  u = -((gx - cx) * c + (gy - cy) * s) - length / 2  # Distance behind.
  v = np.abs(-(gx - cx) * s + (gy - cy) * c)
  spread = beam / 2 + 0.35 * np.clip(u, 0, None)
  strength = np.clip(1 - u / wake_len, 0, 1) * (u > 0)
  arm = np.exp(-((v - spread) / 1.5) ** 2) * strength * 0.25
  window = img[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1]
  window += arm[..., None]


def _fits(box, placed, land, size, margin) -> bool:
  corners = boxes_lib.rbox_to_corners(box, xp=np)
  if corners.min() < 1 or corners.max() > size - 2:
    return False
  ix = np.clip(np.concatenate([corners[:, 0], [box[0]]]).astype(int), 0,
               size - 1)
  iy = np.clip(np.concatenate([corners[:, 1], [box[1]]]).astype(int), 0,
               size - 1)
  if land is not None and land[iy, ix].any():
    return False
  if placed:
    grown = box.copy()
    grown[2:4] += margin
    inter = boxes_lib.rotated_intersection(
        grown[None], np.asarray(placed), xp=np)
    if (inter > 0).any():
      return False
  return True


def make_scene(seed: int, index: int, size: int = 512, *,
               max_ships: int = 14, ship_scale: Optional[float] = None
               ) -> tuple[np.ndarray, ImageBoxes]:
  """One scene: `(image [size, size, 3] uint8, ground truth)`.

  Args:
    seed, index: the scene depends only on these two.
    size: image side in pixels.
    max_ships: at most this many ships.
    ship_scale: ship sizes are `ShipClass.length * ship_scale` pixels.
      Default `size / 512`: the same harbour at a coarser ground resolution.
      1.0 keeps the 512-pixel sizes, so a smaller `size` is like a crop of
      a 512-pixel scene (how DOTA's large images are trained on). A hull is
      at most `size / 2.5` long, and large hulls fit less often in a small
      scene, so the realised long tail is then steeper than the draw
      weights (`write_dataset`'s `meta.json` records the counts).
  """
  rng = np.random.default_rng([seed, index])
  img = _sea(rng, size)
  land = _shore(rng, img) if rng.random() < 0.75 else None
  weights = class_weights()
  scale = size / 512 if ship_scale is None else float(ship_scale)
  if scale <= 0:
    raise ValueError(f'ship_scale must be positive, got {ship_scale}.')
  placed, labels, moving = [], [], []

  def sample_box(k, heading, centre=None):
    cls = CLASSES[k]
    length = min(rng.uniform(*cls.length) * scale, size / 2.5)
    beam = max(length * cls.beam, 3.0)
    if centre is None:
      centre = rng.uniform(0, size, 2)
    return np.array([centre[0], centre[1], length, beam, heading])

  # A group moored side by side at a slant (Fig. 1): common heading, a small
  # gap across the beam.
  if rng.random() < 0.6:
    heading = rng.choice([-1, 1]) * rng.uniform(np.pi / 6, np.pi / 3)
    heading += rng.choice([0, np.pi])
    k = int(rng.choice(len(CLASSES), p=weights))
    group = int(rng.integers(2, 5))
    for _ in range(50):
      start = rng.uniform(0.2 * size, 0.8 * size, 2)
      boxes = []
      offset = 0.0
      normal = np.array([-np.sin(heading), np.cos(heading)])
      for g in range(group):
        kk = k if rng.random() < 0.7 else int(rng.choice(len(CLASSES),
                                                         p=weights))
        box = sample_box(kk, heading, start)
        if g:
          offset += (boxes[-1][1][3] + box[3]) / 2 + rng.uniform(1.5, 4)
        box[:2] = start + offset * normal
        boxes.append((kk, box))
      if all(_fits(b, placed + [p for _, p in boxes[:i]], land, size, 0.5)
             for i, (_, b) in enumerate(boxes)):
        for kk, b in boxes:
          placed.append(b)
          labels.append(kk)
          moving.append(False)
        break

  target = int(rng.integers(4, max_ships + 1))
  tries = 0
  while len(placed) < target and tries < 400:
    tries += 1
    k = int(rng.choice(len(CLASSES), p=weights))
    box = sample_box(k, rng.uniform(-np.pi, np.pi))
    if _fits(box, placed, land, size, 6.0):
      placed.append(box)
      labels.append(k)
      moving.append(rng.random() < 0.5)

  for box, is_moving in zip(placed, moving):
    if is_moving:
      _wake(img, box)
  for box, k in zip(placed, labels):
    _draw_ship(img, box, CLASSES[k], rng)
  img = img + 0.015 * rng.standard_normal(img.shape)
  image = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
  boxes = boxes_lib.canonical_rbox(np.asarray(placed).reshape(-1, 5), xp=np)
  return image, ImageBoxes(boxes, np.asarray([CLASS_NAMES[k] for k in labels],
                                             str))


def write_dataset(out: str, *, images: int, size: int = 512, seed: int = 0,
                  ship_scale: Optional[float] = None,
                  progress: Optional[callable] = None) -> dict:
  """Writes `images/Pxxxx.png` and `labelTxt/Pxxxx.txt` (DOTA layout).

  Returns (and writes as `meta.json`) the settings and per-class counts.
  """
  if images < 1:
    raise ValueError(f'images must be >= 1, got {images}.')
  if size < 128:
    raise ValueError(f'size must be >= 128 pixels, got {size}.')
  os.makedirs(os.path.join(out, 'images'), exist_ok=True)
  os.makedirs(os.path.join(out, 'labelTxt'), exist_ok=True)
  if ship_scale is None:
    ship_scale = size / 512  # make_scene's default, recorded in meta.json.
  counts = dict.fromkeys(CLASS_NAMES, 0)
  for i in range(images):
    image, gt = make_scene(seed, i, size, ship_scale=ship_scale)
    name = f'P{i:04d}'
    Image.fromarray(image).save(os.path.join(out, 'images', name + '.png'))
    det_io.write_dota(os.path.join(out, 'labelTxt', name + '.txt'), gt)
    for label in gt.labels:
      counts[str(label)] += 1
    if progress:
      progress(i + 1)
  meta = {'generator': 'cil.detection.synthetic', 'images': images,
          'size': size, 'seed': seed,
          'ship_scale': ship_scale,
          'classes': list(CLASS_NAMES),
          'draw_weights': [round(float(w), 6) for w in class_weights()],
          'instances': counts}
  with open(os.path.join(out, 'meta.json'), 'w', encoding='utf-8') as f:
    json.dump(meta, f, indent=1)
  return meta
