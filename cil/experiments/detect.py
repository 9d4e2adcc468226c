"""Training and evaluating R2CNN or the rotated Cascade R-CNN on a
DOTA-layout folder (or generated ships).

`run(TrainConfig.from_config(config), workdir)`, the config from
`configs/detect.py`:

* `cfg.data`: a folder with `train/` and `test/` subfolders, each in DOTA layout
  (`images/*.png|jpg`, `labelTxt/*.txt`) or HRSC2016's (`AllImages/*.bmp`,
  `Annotations/*.xml`); with None a synthetic ship set is generated
  into `workdir/data` (`cil.detection.synthetic`).
* trains with Adam and a cosine schedule, one jitted step; the workdir
  (`cil.workdir`) is locked, checkpoints are verified and resumed (rerun
  the same command), per-step losses go to `metrics/train.jsonl`;
* evaluates on the test split the paper's way (rotated IoU > 0.6, 11-point
  AP, P, R, F1, G-mean) and writes `table.md`, `results.json`,
  `predictions/<image>.txt` (every detection, DOTA-style with scores, for
  `launch.compare_detections`) and `detections.{png,pdf,csv}` (test images
  with labelled rotated boxes).
"""

import dataclasses
import functools
import json
import math
import os
from typing import Any, Callable, Optional, Sequence

from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import _extras
from cil import _validation as v
from cil import distributed
from cil import errors
from cil import losses as losses_lib
from cil import plots
from cil import runtime
from cil import workdir as workdir_lib
from cil.experiments import loop
from cil.detection import boxes as boxes_lib
from cil.detection import cascade
from cil.detection import io as det_io
from cil.detection import metrics
from cil.detection import r2cnn
from cil.detection import synthetic

Image = _extras.require('PIL.Image', what='cil.detection')


# name -> (model config class, module with init_params, train_step, detect
# and validate).
DETECTORS = {'r2cnn': (r2cnn.R2CNNConfig, r2cnn),
             'cascade': (cascade.CascadeConfig, cascade)}


def detector_module(model: r2cnn.R2CNNConfig):
  """The module (`r2cnn` or `cascade`) that trains and runs `model`, looked
  up by its config class in `DETECTORS`."""
  for config_cls, module in DETECTORS.values():
    # Exact class: CascadeConfig subclasses R2CNNConfig.
    if type(model) is config_cls:  # pylint: disable=unidiomatic-typecheck
      return module
  raise ValueError(f'No detector takes a {type(model).__name__}; known: '
                   f'{", ".join(c.__name__ for c, _ in DETECTORS.values())}.')


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """What `run` trains and how; build it with `TrainConfig.from_config`.

  `configs/detect.py` states every default, once.

  Attributes:
    detector: 'r2cnn' (`cil.detection.r2cnn`) or 'cascade'
      (`cil.detection.cascade`).
    model: the detector's configuration (`R2CNNConfig`, or `CascadeConfig`
      for 'cascade'); its `num_classes` is set from the data.
    data: a folder with train/ and test/ (DOTA or HRSC2016 layout); None
      generates synthetic ships into the workdir.
    mode: 'train', 'eval' or 'both'.
    steps: optimizer steps.
    batch_size: images per step.
    lr: peak Adam learning rate (cosine decay, 2 % warm-up).
    max_gt: ground-truth boxes per image (padding; more are an error).
    seed: initialisation, batch order and sampling.
    checkpoint_every: steps between checkpoints.
    synthetic_train, synthetic_test: images generated when no data is given.
    synthetic_ship_scale: their ships' size factor (`make_scene`'s
      `ship_scale`); 1.0 keeps the 512-pixel sizes at any image size, so
      small images are like crops of a 512-pixel harbour.
    pretrained: optional .npz of parameters keyed by path (`load_pretrained`).
  """
  detector: str
  model: r2cnn.R2CNNConfig
  data: Optional[str]
  mode: str
  steps: int
  batch_size: int
  lr: float
  max_gt: int
  seed: int
  checkpoint_every: int
  synthetic_train: int
  synthetic_test: int
  synthetic_ship_scale: float
  pretrained: Optional[str]

  @classmethod
  def from_config(cls, config: Any) -> 'TrainConfig':
    """From a `configs/detect.py` config (a ConfigDict or a dict)."""
    c = dict(config)
    hparams = losses_lib.freeze_hparams(c.pop('loss_hparams', {}))
    stages = dict(c.pop('cascade', {}))
    c = v.config_fields(c, cls, 'detect config')
    detector = c.get('detector')
    if detector not in DETECTORS:
      raise ValueError(f'Unknown detector {detector!r} (--config.detector); '
                       f'known: {", ".join(DETECTORS)}.')
    model = v.config_fields(c['model'], r2cnn.R2CNNConfig, 'model config')
    if detector == 'cascade':
      known = cascade.stage_fields()
      unknown = sorted(set(stages) - set(known))
      if unknown:
        raise ValueError(f'Unknown cascade config field(s): '
                         f'{", ".join(unknown)}; known: {", ".join(known)}.')
      model.update(stages)
    for k in ('anchor_sizes', 'anchor_ratios', 'stage_ious',
              'stage_loss_weights', 'pooled_size'):
      if k in model:
        model[k] = tuple(model[k])
    loss = losses_lib.canonical_spec(model.get('loss', 'ce'))
    model['loss'] = loss
    model['loss_hparams'] = tuple(sorted(
        losses_lib.resolve_hparams(loss, hparams).items()))
    c['model'] = DETECTORS[detector][0](**model)
    return cls(**c)

  def validate(self) -> None:
    """Checks every field before any work (or workdir) is touched."""
    detector_module(self.model).validate(self.model)
    if self.mode not in ('train', 'eval', 'both'):
      raise ValueError(f"mode must be 'train', 'eval' or 'both', got "
                       f'{self.mode!r}.')
    if min(self.steps, self.batch_size, self.max_gt, self.checkpoint_every,
           self.synthetic_train, self.synthetic_test) < 1:
      raise ValueError('steps, batch_size, max_gt, checkpoint_every and '
                       'synthetic_train/test must be positive.')
    if not math.isfinite(self.lr):
      raise ValueError(f'lr is non-finite ({self.lr}); it must be a finite '
                       f'positive number.')
    if self.lr <= 0:
      raise ValueError(f'lr must be positive, got {self.lr}.')
    if not self.synthetic_ship_scale > 0:
      raise ValueError(f'synthetic_ship_scale must be positive, got '
                       f'{self.synthetic_ship_scale}.')
    if self.seed < 0:
      raise ValueError(f'seed must be >= 0, got {self.seed}.')
    if self.pretrained and not os.path.exists(self.pretrained):
      raise ValueError(f'pretrained weights file {self.pretrained!r} does '
                       f'not exist.')


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
    img = Image.open(path).convert('RGB')
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
  """Generated scenes `0 .. count - 1` as one padded batch (jnp arrays).

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
  stored = dict(np.load(path))
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


def _data(cfg: TrainConfig, workdir: str, data: Optional[str]) -> str:
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


def create_state(cfg: TrainConfig) -> train_state.TrainState:
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, cfg.lr, max(cfg.steps // 50, 1), cfg.steps)
  params = detector_module(cfg.model).init_params(cfg.model,
                                                  jax.random.key(cfg.seed))
  return train_state.TrainState.create(
      apply_fn=None, params=params,
      tx=optax.chain(optax.clip_by_global_norm(10.0), optax.adam(schedule)))


def predictions(params, split: dict, cfg: r2cnn.R2CNNConfig, *,
                batch_size: int = 4) -> dict:
  """Detections on every image of a split: image name -> ImageBoxes."""
  detect = jax.jit(functools.partial(detector_module(cfg).detect, cfg=cfg))
  out = {}
  names = split['names']
  for start in range(0, len(names), batch_size):
    images = split['images'][start:start + batch_size]
    pad = batch_size - len(images)
    if pad:
      images = np.concatenate([images, np.zeros((pad,) + images.shape[1:],
                                                images.dtype)])
    det = jax.tree.map(np.asarray, detect(params, jnp.asarray(images)))
    for j, name in enumerate(names[start:start + batch_size]):
      m = det['mask'][j]
      out[name] = metrics.ImageBoxes(
          det['boxes'][j][m],
          np.asarray(split['class_names'])[det['labels'][j][m]],
          scores=det['scores'][j][m])
  return out


def run(cfg: TrainConfig, workdir: str, *, show_progress: bool = True,
        step_callback: Optional[Callable[[int, Any, dict], None]] = None
        ) -> Optional[dict]:
  """Trains (resuming) and/or evaluates; returns the evaluation result.

  The config and a given data folder are checked before the workdir is
  touched; then it is locked and claimed (`cil.workdir`), synthetic data is
  generated into it if no folder is given, and training resumes from the
  newest good checkpoint. Each step appends its loss terms and wall time to
  `metrics/train.jsonl` (and TensorBoard); a NaN/inf loss or parameter
  stops the run (`errors.NonFiniteError`).

  Args:
    cfg: the configuration; a different one in the same `workdir` is
      refused. `cfg.mode` picks 'train', 'eval' (needs a checkpoint) or
      'both'.
    workdir: checkpoints, `config.json`, metrics, and the evaluation's
      `results.json`, `table.md` and `detections.{png,pdf,csv}`.
    show_progress: a progress bar with the loss terms.
    step_callback: called as `step_callback(step, state, metrics)` after
      each training step (and its checkpoint, if one is due), `step`
      counting from 1; an exception raised there stops the run, which the
      next call resumes from the last checkpoint. `state` is donated to the
      next step: copy what you keep.

  Returns:
    The evaluation result (`cil.detection.metrics.evaluate` plus `loss`,
    `train_instances`, `steps`), or None in 'train' mode.
  """
  cfg.validate()
  if distributed.process_count() > 1:
    raise ValueError(
        f'Detection training runs in one process; this is process '
        f'{distributed.process_index()} of {distributed.process_count()}. '
        f'Drop the multi-process flags (--num_processes, '
        f'--coordinator_address, --process_id, --cluster_detect).')
  if cfg.data is not None:
    _data(cfg, workdir, cfg.data)  # Checks the layout before the workdir.
  size, max_gt = cfg.model.image_size, cfg.max_gt
  resolved = runtime.describe(runtime.policy())
  config = dataclasses.asdict(cfg)
  config['data'] = os.path.abspath(cfg.data) if cfg.data else None
  with workdir_lib.Workdir(workdir, config, runtime=resolved) as work:
    data = _data(cfg, workdir, cfg.data)
    classes = class_names(data)
    train = load_split(os.path.join(data, 'train'), image_size=size,
                       max_gt=max_gt, class_names=classes)
    model_cfg = dataclasses.replace(cfg.model, num_classes=len(classes))
    cfg = dataclasses.replace(cfg, model=model_cfg)
    detector_module(model_cfg).validate(model_cfg)
    instances = np.bincount(train['labels'][train['valid']],
                            minlength=len(classes))
    counts = jnp.asarray(r2cnn.class_counts_with_background(
        instances, model_cfg.roi_positive_fraction))
    state = create_state(cfg)
    if cfg.pretrained:
      params, _ = load_pretrained(state.params, cfg.pretrained)
      state = state.replace(params=params)
    with loop.CellTraining(work, 'train', state,
                           checkpoint_every=cfg.checkpoint_every,
                           guard_name='detection') as training:
      if cfg.mode == 'eval' and not training.start:
        raise errors.RunError(
            f'{workdir} holds no checkpoint to evaluate; train first '
            f"(--config.mode=both or 'train').")
      if cfg.mode in ('train', 'both') and training.start < cfg.steps:
        _train(cfg, training, train, counts, show_progress, step_callback)
      state = training.state
    if cfg.mode == 'train':
      return None
    test = load_split(os.path.join(data, 'test'), image_size=size,
                      max_gt=max_gt, class_names=classes)
    dets = predictions(state.params, test, model_cfg,
                       batch_size=cfg.batch_size)
    result = metrics.evaluate(dets, test['gt'], classes=classes)
    result['loss'] = cfg.model.loss
    result['detector'] = cfg.detector
    result['train_instances'] = dict(zip(classes, instances.tolist()))
    result['steps'] = int(state.step)
    work.write_json('results.json', result)
    if work.primary:  # Every detection, for launch.compare_detections.
      folder = work.file('predictions')
      os.makedirs(folder, exist_ok=True)
      for name, image in dets.items():
        det_io.write_dota(os.path.join(folder, name + '.txt'), image)
    work.write_text('table.md', metrics.table_markdown(result))
    figure_detections(test, dets, work.file('detections'))
  return result


def _train(cfg: TrainConfig, training: loop.CellTraining, train: dict,
           counts, show_progress: bool, step_callback) -> None:
  """Steps `training.start .. cfg.steps` through the cell loop."""
  model_cfg = cfg.model
  step_fn = jax.jit(lambda s, b, k: detector_module(model_cfg).train_step(
      s, b, k, cfg=model_cfg, counts=counts), donate_argnums=(0,))
  bar = workdir_lib.progress(cfg.steps, initial=training.start,
                             desc='training steps', unit='step',
                             enabled=show_progress)
  key = jax.random.key(cfg.seed + 1)
  n = len(train['names'])
  arrays = {k: train[k] for k in ('images', 'boxes', 'labels', 'valid')}

  def step(state, i):
    rng = np.random.default_rng([cfg.seed, i])
    idx = rng.choice(n, cfg.batch_size, replace=n < cfg.batch_size)
    batch = {k: jnp.asarray(v[idx]) for k, v in arrays.items()}
    state, m = step_fn(state, batch, key)
    m = jax.device_get(m)
    bar.update(1)
    if i % 10 == 0:
      bar.set_postfix({k: f'{float(v):.3f}' for k, v in m.items()
                       if k != 'fg_rois'}, refresh=False)
    return state, m

  try:
    training.run(cfg.steps, step, callback=step_callback)
  finally:
    bar.close()


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
