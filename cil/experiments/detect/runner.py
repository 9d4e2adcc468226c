"""The detection runner: `run(cfg, workdir)` trains (resuming, through
`cil.experiments.loop`) and evaluates one detector; the package docstring
(`cil.experiments.detect`) says what it reads and writes."""

import dataclasses
import functools
import os
from typing import Any, Callable, Optional

from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import distributed
from cil import errors
from cil import runtime
from cil import workdir as workdir_lib
from cil.detection import io as det_io
from cil.detection import metrics
from cil.detection import r2cnn
from cil.experiments import loop
from cil.experiments.detect.config import detector_module
from cil.experiments.detect.config import TrainConfig
from cil.experiments.detect.data import class_names
from cil.experiments.detect.data import data_folder
from cil.experiments.detect.data import load_pretrained
from cil.experiments.detect.data import load_split
from cil.experiments.detect.report import figure_detections


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


@loop.stops_on_signals
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
    data_folder(cfg, workdir, cfg.data)  # Checks the layout before the workdir.
  size, max_gt = cfg.model.image_size, cfg.max_gt
  resolved = runtime.describe(runtime.policy())
  config = dataclasses.asdict(cfg)
  config['data'] = os.path.abspath(cfg.data) if cfg.data else None
  with workdir_lib.Workdir(workdir, config, runtime=resolved) as work:
    data = data_folder(cfg, workdir, cfg.data)
    classes = class_names(data)
    train = load_split(os.path.join(data, 'train'), image_size=size,
                       max_gt=max_gt, class_names=classes)
    work.claim_data({'train': _split_record(train)})
    model_cfg = dataclasses.replace(cfg.model, num_classes=len(classes))
    cfg = dataclasses.replace(cfg, model=model_cfg)
    detector_module(model_cfg).validate(model_cfg)
    instances = np.bincount(train['labels'][train['valid']],
                            minlength=len(classes))
    counts = jnp.asarray(r2cnn.class_counts_with_background(
        instances, model_cfg.roi_positive_fraction,
        background=cfg.background_count))
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
    work.claim_data({'test': _split_record(test)})
    dets = predictions(state.params, test, model_cfg,
                       batch_size=cfg.batch_size)
    result = metrics.evaluate(dets, test['gt'], classes=classes)
    result['ap_protocols'] = metrics.evaluate_protocols(dets, test['gt'],
                                                        classes=classes)
    result['loss'] = cfg.model.loss.name
    result['loss_hparams'] = cfg.model.loss.kwargs
    result['detector'] = cfg.detector
    result['train_instances'] = dict(zip(classes, instances.tolist()))
    result['steps'] = int(state.step)
    work.write_json('results.json', result)
    if work.primary:  # Every detection, for launch.compare_detections.
      folder = work.file('predictions')
      os.makedirs(folder, exist_ok=True)
      for name, image in dets.items():
        det_io.write_dota(os.path.join(folder, name + '.txt'), image)
    work.write_text('table.md', metrics.table_markdown(result) + '\n' +
                    metrics.protocols_table_markdown(result['ap_protocols']))
    figure_detections(test, dets, work.file('detections'))
  return result


def _split_record(split: dict) -> dict:
  """What identifies a loaded detection split (`Workdir.claim_data`): its
  images, boxes and classes, by checksum."""
  arrays = {k: v for k, v in split.items()
            if isinstance(v, np.ndarray) and v.dtype != object}
  return {'images': len(split['names']),
          'classes': len(split['class_names']),
          'sha256': workdir_lib.tree_checksum(
              {**arrays, 'names': np.asarray(split['names']),
               'class_names': np.asarray(split['class_names']),
               'gt': {name: (g.boxes, np.asarray(g.labels, str),
                             g.difficult)
                      for name, g in split['gt'].items()}})}


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
