"""Host-side image transforms of the long-tail references, on decoded
uint8 images as a streamed split reads them (`cil.data.StreamedSplit`).

The ImageNet-LT, Places-LT and iNaturalist codes (Kang et al. 2020,
`facebookresearch/classifier-balancing`, `data/dataloader.py`; Cao et al.
2019's iNaturalist script) train on torchvision's
`RandomResizedCrop(224)` + `RandomHorizontalFlip()` of the original image
(ImageNet-LT and Places-LT, not iNaturalist: then
`ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0)`)
and test on `Resize(256)` + `CenterCrop(224)`. These are those transforms
for NumPy images and a `np.random.Generator`, with torchvision's crop
parameters (`RandomResizedCrop.get_params`: ten tries of an area in
`scale` and a log-uniform aspect ratio in `ratio`, then the central crop
clamped to `ratio`) and Pillow's bilinear resampling (torchvision's on
PIL images). A random transform is `(image, rng) -> image`; Grain hands
each position of an epoch its own generator (`grain.MapDataset.random_map`),
so a resumed epoch draws the same crops.

The CIFAR references' pad-and-crop + flip runs on the device, inside the
compiled step (`cil.experiments.classify.augment_batch`).
"""

import math
from typing import Callable

import numpy as np

from cil import _extras

Image = _extras.require('PIL.Image', what='cil.data.transforms')
ImageEnhance = _extras.require('PIL.ImageEnhance', what='cil.data.transforms')

__all__ = ['adjust_colour', 'colour_jitter_params', 'CROP_FRACTION', 'JITTER',
           'random_resized_crop_flip', 'RATIO', 'resize_centre_crop',
           'resized_crop_box', 'SCALE']

# torchvision's RandomResizedCrop defaults.
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
# Resize(256) + CenterCrop(224): the crop is 0.875 of the shorter side.
CROP_FRACTION = 0.875
# Kang et al.'s ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4).
JITTER = 0.4
# torchvision's adjustments by their index in `ColorJitter.forward`, as
# Pillow's enhancers (its functions on PIL images); hue (3) is not used.
_ENHANCERS = ('Brightness', 'Contrast', 'Color')


def resized_crop_box(height: int, width: int, rng: np.random.Generator, *,
                     scale: tuple[float, float] = SCALE,
                     ratio: tuple[float, float] = RATIO
                     ) -> tuple[int, int, int, int]:
  """`(top, left, h, w)` of a random-resized crop (torchvision's rule)."""
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def colour_jitter_params(rng: np.random.Generator, strength: float = JITTER
                         ) -> tuple[tuple[int, ...], tuple[float, ...]]:
  """`(order, factors)` of one `ColorJitter(strength, strength, strength)`
  draw (torchvision's `get_params`): the adjustments' order (0 brightness,
  1 contrast, 2 saturation) and their factors, uniform in
  [1 - strength, 1 + strength]."""
  order = tuple(int(i) for i in rng.permutation(3))
  factors = tuple(float(f) for f in rng.uniform(
      max(0.0, 1 - strength), 1 + strength, size=3))
  return order, factors


def adjust_colour(image: np.ndarray, order, factors) -> np.ndarray:
  """`image [H, W, C] uint8` with brightness, contrast and saturation
  changed by `factors` (indexed 0, 1, 2) in `order`: torchvision's
  `adjust_brightness` / `_contrast` / `_saturation` of a PIL image
  (Pillow's `ImageEnhance` blends, rounded to uint8 after each)."""
  squeeze = image.ndim == 3 and image.shape[-1] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image)
  for i in order:
    pil = getattr(ImageEnhance, _ENHANCERS[i])(pil).enhance(factors[i])
  out = np.asarray(pil)
  return out[..., None] if squeeze else out


def random_resized_crop_flip(size: int, *, scale: tuple[float, float] = SCALE,
                             ratio: tuple[float, float] = RATIO,
                             jitter: float = 0.0
                             ) -> Callable[[np.ndarray, np.random.Generator],
                                           np.ndarray]:
  """`(image [H, W, C] uint8, rng) -> [size, size, C]`: a random-resized
  crop resized bilinearly to `size`, flipped left-right with probability
  1/2 (`RandomResizedCrop(size)` + `RandomHorizontalFlip()`), then with
  `jitter` > 0 `ColorJitter(jitter, jitter, jitter)` (`adjust_colour`)."""

  def transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    top, left, h, w = resized_crop_box(image.shape[0], image.shape[1], rng,
                                       scale=scale, ratio=ratio)
    out = _resize(image, (size, size), (left, top, left + w, top + h))
    if rng.random() < 0.5:
      out = out[:, ::-1]
    if jitter:
      out = adjust_colour(np.ascontiguousarray(out),
                          *colour_jitter_params(rng, jitter))
    return out

  return transform


def resize_centre_crop(size: int, *, crop_fraction: float = CROP_FRACTION
                       ) -> Callable[[np.ndarray], np.ndarray]:
  """`image [H, W, C] uint8 -> [size, size, C]`: the shorter side resized to
  `int(size / crop_fraction)` (torchvision's `Resize`: the longer side
  scaled and truncated), then the centre `size` x `size` crop
  (`CenterCrop`, offsets rounded)."""
  short = int(size / crop_fraction)

  def transform(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    if height <= width:
      new = (short, int(short * width / height))
    else:
      new = (int(short * height / width), short)
    resized = _resize(image, (new[1], new[0]))
    top = int(round((new[0] - size) / 2.0))
    left = int(round((new[1] - size) / 2.0))
    return np.ascontiguousarray(resized[top:top + size, left:left + size])

  return transform


def _resize(image: np.ndarray, size_wh: tuple[int, int], box=None
            ) -> np.ndarray:
  """Pillow's bilinear resize of a uint8 `[H, W]` or `[H, W, C]` image (of
  its crop `box`, (left, top, right, bottom), when given: cropped first,
  as torchvision's `resized_crop`)."""
  squeeze = image.ndim == 3 and image.shape[-1] == 1
  pil = Image.fromarray(image[..., 0] if squeeze else image)
  if box is not None:
    pil = pil.crop(box)
  out = np.asarray(pil.resize(size_wh, Image.BILINEAR))
  return out[..., None] if squeeze else out
