"""The detector train steps the benchmarks time, in one place (no flags).

`benchmarks.detect_step` (CPU-sized, CE against CI) and `benchmarks.gpu`
(800 px, ResNet-50) build their R2CNN and rotated Cascade R-CNN steps here:
the scaled configuration, class counts of a long-tailed 15-class ship set
(450 down to 10 instances), Adam at 1e-4, and a jitted
`(state, batch) -> (state, metrics)` with a fixed sampling key.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from cil.detection import r2cnn
from cil.experiments import detect


def check_detector(name: str) -> None:
  """Raises ValueError naming the known detectors unless `name` is one."""
  if name not in detect.DETECTORS:
    raise ValueError(f'unknown detector {name!r}; known: '
                     f'{", ".join(detect.DETECTORS)}.')


def train_step(detector: str, *, loss: str, image_size: int, width: int,
               backbone: str) -> tuple[Callable, Any]:
  """`(step, state)`: the jitted train step of `detector` and its state.

  Args:
    detector: a key of `cil.experiments.detect.DETECTORS` ('r2cnn', 'cascade').
    loss: the classification loss spec ('ce', 'ci', ...).
    image_size, width, backbone: `r2cnn.scaled_config`'s.

  Raises:
    ValueError: an unknown detector, named with the known ones.
  """
  check_detector(detector)
  config_cls, module = detect.DETECTORS[detector]
  cfg = r2cnn.scaled_config(image_size=image_size, width=width,
                            backbone=backbone, loss=loss)
  cfg = config_cls(**dataclasses.asdict(cfg))
  counts = jnp.asarray(r2cnn.class_counts_with_background(
      np.geomspace(450, 10, 15), cfg.roi_positive_fraction))
  state = train_state.TrainState.create(
      apply_fn=None, params=module.init_params(cfg, jax.random.key(0)),
      tx=optax.adam(1e-4))
  step = jax.jit(lambda s, b: module.train_step(
      s, b, jax.random.key(1), cfg=cfg, counts=counts))
  return step, state
