"""The detection runner's data: DOTA- or HRSC2016-layout folders read into
fixed-shape arrays, generated ships, pretrained weights."""

import json
import os
import zipfile
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cil import _extras
from cil import errors
from cil.detection import io as det_io
from cil.detection import metrics
from cil.detection import synthetic
from cil.experiments.detect.config import TrainConfig


Image = _extras.require('PIL.Image', what='cil.detection')


def _read_labels(directory: str) -> tuple[dict, str]:
  """Labels and image folder of a split: DOTA layout or HRSC2016's."""
  if os.path.isdir(os.path.join(directory, 'labelTxt')):
    return (det_io.read_folder(os.path.join(directory, 'labelTxt')),
            os.path.join(directory, 'images'))
  ann = os.path.join(directory, 'Annotations')
  if os.path.isdir(ann):  # HRSC2016: Annotations/*.xml, AllImages/*.bmp.
    xml = sorted(n for n in os.listdir(ann) if n.endswith('.xml'))
    if not xml:
      raise ValueError(f'No *.xml annotations in {ann}.')
    return ({n[:-4]: det_io.read_hrsc(os.path.join(ann, n)) for n in xml},
            os.path.join(directory, 'AllImages'))
  raise ValueError(f'{directory} holds neither labelTxt/ (DOTA layout) nor '
                   f'Annotations/ (HRSC2016).')


def load_split(directory: str, *, image_size: int, max_gt: int,
               class_names: Optional[Sequence[str]] = None) -> dict:
  """A DOTA-layout (or HRSC2016-layout) folder -> padded arrays.

  Images larger than `image_size` are scaled down to fit (aspect kept, the
  boxes scaled alike; IoU-based metrics do not change under a uniform
  scale), then padded bottom and right. Difficult objects are left out of
  training targets but kept in the ground truth used for evaluation.
  """
  gt, image_dir = _read_labels(directory)
  if class_names is None:
    class_names = sorted({str(x) for g in gt.values() for x in g.labels})
  index = {n: i for i, n in enumerate(class_names)}
  n = len(gt)
  images = np.zeros((n, image_size, image_size, 3), np.uint8)
  boxes = np.zeros((n, max_gt, 5), np.float32)
  labels = np.zeros((n, max_gt), np.int32)
  valid = np.zeros((n, max_gt), bool)
  names = sorted(gt)
  for i, name in enumerate(names):
    path = None
    for ext in ('.png', '.jpg', '.jpeg', '.bmp', '.tif'):
      if os.path.exists(os.path.join(image_dir, name + ext)):
        path = os.path.join(image_dir, name + ext)
        break
    if path is None:
      raise ValueError(f'No image for labels {name!r} in {image_dir}.')
    try:
      img = Image.open(path).convert('RGB')
    except (OSError, Image.DecompressionBombError, SyntaxError) as e:
      raise errors.DataError(f'{path} is not a readable image ({e}); '
                             f'replace or remove it (and its labels).'
                             ) from None
    scale = min(1.0, image_size / max(img.size))
    if scale < 1:
      img = img.resize((max(1, round(img.size[0] * scale)),
                        max(1, round(img.size[1] * scale))), Image.BILINEAR)
    img = np.asarray(img)
    images[i, :img.shape[0], :img.shape[1]] = img
    g = gt[name]
    if scale < 1:
      g = metrics.ImageBoxes(g.boxes * [scale, scale, scale, scale, 1],
                             g.labels, difficult=g.difficult)
      gt[name] = g
    keep = ~g.difficult
    if keep.sum() > max_gt:
      raise ValueError(f'{name} has {keep.sum()} objects, more than max_gt '
                       f'{max_gt}.')
    unknown = set(map(str, g.labels)) - set(index)
    if unknown:
      raise ValueError(f'{name}: classes {sorted(unknown)} not in the '
                       f'training classes.')
    k = int(keep.sum())
    boxes[i, :k] = g.boxes[keep]
    labels[i, :k] = [index[str(x)] for x in g.labels[keep]]
    valid[i, :k] = True
  return {'images': images, 'boxes': boxes, 'labels': labels,
          'valid': valid, 'names': names, 'class_names': list(class_names),
          'gt': gt}


def synthetic_batch(count: int, *, size: int, max_gt: int,
                    seed: int = 0) -> dict:
  """Generated scenes 0 to `count - 1` as one padded batch (jnp arrays).

  For tests and benchmarks: `images [B, S, S, 3]`, `boxes [B, G, 5]`,
  `labels [B, G]` (indices into `synthetic.CLASS_NAMES`), `valid [B, G]`;
  scenes with more than `max_gt` ships keep the first `max_gt`.
  """
  arrays = {'images': [], 'boxes': [], 'labels': [], 'valid': []}
  for i in range(count):
    image, gt = synthetic.make_scene(seed, i, size)
    k = min(len(gt.boxes), max_gt)
    boxes = np.zeros((max_gt, 5), np.float32)
    labels = np.zeros(max_gt, np.int32)
    boxes[:k] = gt.boxes[:k]
    labels[:k] = [synthetic.CLASS_NAMES.index(x) for x in gt.labels[:k]]
    for key, value in zip(arrays,
                          (image, boxes, labels, np.arange(max_gt) < k)):
      arrays[key].append(value)
  return {k: jnp.asarray(np.stack(value)) for k, value in arrays.items()}


def load_pretrained(params, path: str):
  """Replaces parameters with arrays from an .npz keyed by their paths.

  Keys are '/'-joined parameter paths (e.g. 'backbone/Conv_0/kernel'), so
  ImageNet weights converted to this layout can initialise the backbone.
  Arrays of the wrong shape are an error; paths absent from the file keep
  their initialisation.

  Returns:
    `(params, loaded)`: the new parameters and the paths that were loaded.
  """
  if not os.path.exists(path):
    raise ValueError(f'Pretrained weights file {path!r} does not exist.')
  try:
    if not zipfile.is_zipfile(path):  # np.load would try it as a pickle.
      raise ValueError('not a zip archive of .npy arrays')
    with np.load(path, allow_pickle=False) as f:
      stored = {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except
    why = ('it holds object arrays, which are not read'
           if 'allow_pickle' in str(e) else str(e))
    raise errors.DataError(
        f'--config.pretrained={path} is not an .npz of plain arrays ({why}); '
        f'save the weights with np.savez, keyed by parameter path.') from None
  loaded = []

  def replace(key_path, leaf):
    key = '/'.join(str(getattr(k, 'key', k)) for k in key_path)
    if key not in stored:
      return leaf
    if stored[key].shape != leaf.shape:
      raise ValueError(f'{path}: {key} has shape {stored[key].shape}, the '
                       f'model expects {leaf.shape}.')
    loaded.append(key)
    return jnp.asarray(stored[key], leaf.dtype)

  params = jax.tree_util.tree_map_with_path(replace, params)
  if not loaded:
    raise ValueError(f'{path}: no array matches a parameter path (e.g. '
                     f'backbone/Conv_0/kernel).')
  return params, loaded


def class_names(data: str) -> list:
  """The classes of a dataset with train/ and test/ splits.

  The generator's `meta.json` list when there is one (so a class that is
  rare enough to miss the training split still has its output), otherwise
  the sorted union of the labels of both splits.
  """
  meta = os.path.join(data, 'train', 'meta.json')
  if os.path.exists(meta):
    with open(meta) as f:
      listed = json.load(f).get('classes')
    if listed:
      return list(listed)
  names = set()
  for split in ('train', 'test'):
    gt, _ = _read_labels(os.path.join(data, split))
    names |= {str(x) for g in gt.values() for x in g.labels}
  return sorted(names)


def data_folder(cfg: TrainConfig, workdir: str, data: Optional[str]) -> str:
  if data is not None:
    for split in ('train', 'test'):
      if not os.path.isdir(os.path.join(data, split)):
        raise ValueError(f'{data} must hold {split}/ with labelTxt/ and '
                         f'images/ (DOTA layout) or Annotations/ and '
                         f'AllImages/ (HRSC2016).')
    return data
  data = os.path.join(workdir, 'data')
  size = cfg.model.image_size
  for split, count, seed in (('train', cfg.synthetic_train, cfg.seed),
                             ('test', cfg.synthetic_test, cfg.seed + 1000)):
    meta = os.path.join(data, split, 'meta.json')
    want = {'images': count, 'size': size, 'seed': seed,
            'ship_scale': cfg.synthetic_ship_scale}
    if os.path.exists(meta):
      with open(meta, encoding='utf-8') as f:
        written = json.load(f)
      have = {k: written.get(k) for k in want}
      if have != want:
        raise ValueError(f'{os.path.dirname(meta)} was generated with '
                         f'{have}, not {want}; use a new workdir.')
    else:
      synthetic.write_dataset(os.path.join(data, split), images=count,
                              size=size, seed=seed,
                              ship_scale=cfg.synthetic_ship_scale)
  return data
