"""Work directories and Orbax checkpoints shared by the experiment runners.

* `claim_workdir(workdir, config)`: records the config in
  `workdir/config.json`, refusing a workdir that holds a different one (so a
  resumed run cannot silently mix configurations).
* `Checkpointer`: saves and restores a pytree of arrays (parameters,
  optimizer state, step) at integer steps, keeping the latest.
"""

import json
import os
from typing import Any

import orbax.checkpoint as ocp


def claim_workdir(workdir: str, config: dict) -> dict:
  """Writes `config` to `workdir/config.json`; refuses a different one.

  Returns:
    The config as JSON round-trips it (tuples become lists).
  """
  os.makedirs(workdir, exist_ok=True)
  config = json.loads(json.dumps(config))
  path = os.path.join(workdir, 'config.json')
  if os.path.exists(path):
    with open(path) as f:
      previous = json.load(f)
    if previous != config:
      raise ValueError(
          f'{workdir} holds a run with a different config; use a new '
          f'--workdir or delete it.\nold: {previous}\nnew: {config}')
  with open(path, 'w') as f:
    json.dump(config, f, indent=1)
  return config


class Checkpointer:
  """The latest checkpoint of a pytree under `directory` (Orbax)."""

  def __init__(self, directory: str):
    self._manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))

  def latest_step(self) -> int:
    """The step of the latest checkpoint, 0 if there is none."""
    return self._manager.latest_step() or 0

  def save(self, step: int, tree: Any) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(tree))
    self._manager.wait_until_finished()

  def restore(self, target: Any) -> tuple[int, Any]:
    """`(step, tree)` of the latest checkpoint, or `(0, target)`."""
    step = self.latest_step()
    if not step:
      return 0, target
    return step, self._manager.restore(
        step, args=ocp.args.StandardRestore(target))

  def close(self) -> None:
    self._manager.close()
