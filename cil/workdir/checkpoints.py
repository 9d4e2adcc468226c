"""Orbax checkpoints of one pytree, verified on restore (`Checkpointer`)."""

import contextlib
import logging as std_logging
import os
import sys
from typing import Any, Optional

from absl import logging
import jax
import numpy as np

from cil import _extras
from cil import distributed
from cil import errors
from cil.workdir.files import read_json
from cil.workdir.files import write_json
from cil.workdir.guard import first_non_finite
from cil.workdir.guard import tree_checksum


def _for_orbax(tree: Any) -> Any:
  """Local arrays as host values (the primary writes them); arrays sharded
  across processes stay (each process writes its shards)."""
  def leaf(x):
    if isinstance(x, jax.Array) and x.is_fully_addressable:
      return np.asarray(x)
    return x
  return jax.tree.map(leaf, tree)


def _drop_closed_event_loop_errors() -> None:
  """Drops the "Event loop is closed" errors that a failed read or write
  leaves behind in Orbax's I/O threads (TensorStore callbacks that fire
  after Orbax closed their event loop, printed as raw tracebacks, often
  well after the step was reported); every other unraisable error still
  reaches the hook that was there. Installed once per process, by the
  first `Checkpointer`."""
  previous = sys.unraisablehook
  if getattr(previous, 'cil_drops_closed_event_loops', False):
    return

  def hook(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError)
            and str(value) == 'Event loop is closed'):
      previous(unraisable)

  hook.cil_drops_closed_event_loops = True
  sys.unraisablehook = hook


class _HeldErrors(std_logging.Filter):
  """Holds back the ERROR records Orbax's writer threads log (each with a
  traceback) while a save runs; the save's own error says what failed."""

  def __init__(self):
    super().__init__()
    self.held = []

  def filter(self, record) -> bool:
    if record.levelno >= std_logging.ERROR and 'orbax' in record.pathname:
      self.held.append(record)
      return False
    return True


@contextlib.contextmanager
def _orbax_errors_held():
  """Orbax's thread errors during a save: dropped if the save fails (its
  `WriteError` is the one line), logged as usual if it succeeds."""
  held = _HeldErrors()
  loggers = [std_logging.getLogger(n) for n in ('absl', 'orbax')]
  for logger in loggers:
    logger.addFilter(held)
  failed = True
  try:
    yield
    failed = False
  finally:
    for logger in loggers:
      logger.removeFilter(held)
    if not failed:
      for record in held.held:
        std_logging.getLogger(record.name).handle(record)


class Checkpointer:
  """Orbax checkpoints of one pytree, verified on restore.

  The checksum of every saved tree is recorded in `checksums.json` before
  Orbax writes it (so every finalised step has one). `restore` tries the
  steps newest first and takes the first that reads, holds only finite
  values and matches its checksum; the damaged ones it skips are deleted
  (so training can save those steps again) and reported with
  `logging.warning`, and kept in `self.skipped`.

  In a multi-process run every process calls `save` and `restore` with
  the same tree (Orbax multi-host: leaves sharded across processes are
  written by the processes that hold them, host values and local arrays by
  the primary, which alone keeps `checksums.json`); all processes read the
  same files, so they agree on the step they resume from.
  """

  def __init__(self, directory: str, *, max_to_keep: int = 2):
    ocp = _extras.require('orbax.checkpoint',
                          what='cil.workdir checkpoints')
    if max_to_keep < 2:
      raise ValueError(f'max_to_keep must be at least 2 (a fallback), got '
                       f'{max_to_keep}.')
    self._ocp = ocp
    _drop_closed_event_loop_errors()
    self.directory = os.path.abspath(directory)
    self._max_to_keep = max_to_keep
    self._manager = self._new_manager()
    self._sums_path = os.path.join(self.directory, 'checksums.json')
    self._primary = distributed.is_primary()
    self.skipped: list[str] = []

  def _new_manager(self):
    return self._ocp.CheckpointManager(
        self.directory, options=self._ocp.CheckpointManagerOptions(
            max_to_keep=self._max_to_keep, create=True))

  def _sums(self) -> dict:
    if not os.path.exists(self._sums_path):
      return {}
    return read_json(self._sums_path)

  def _recorded_sums(self) -> Optional[dict]:
    """The recorded checksums, or None when the record is missing or
    damaged (then moved aside to `checksums.json.damaged`, with a
    warning)."""
    if not os.path.exists(self._sums_path):
      return None
    try:
      sums = read_json(self._sums_path)
      if not isinstance(sums, dict):
        raise errors.CorruptFileError(f'{self._sums_path} is not a mapping.')
      return sums
    except errors.CorruptFileError:
      logging.warning('%s is damaged (moved to %s.damaged); checkpoints are '
                      'restored unverified (they must read and be finite) '
                      'and their checksums recorded anew.', self._sums_path,
                      self._sums_path)
      if self._primary:
        os.replace(self._sums_path, self._sums_path + '.damaged')
      return None

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, tree: Any) -> None:
    """Saves `tree` at `step` (a non-finite tree is refused)."""
    host = distributed.to_host(tree)  # Gathered once for both checks.
    where = first_non_finite(host)
    if where is not None:
      raise errors.NonFiniteError(
          f'{self.directory}: refusing to save a checkpoint with non-finite '
          f'{where} at step {step}.')
    checksum = tree_checksum(host)
    if self._primary:
      sums = self._sums()
      sums[str(step)] = checksum
      write_json(self._sums_path, sums)
    try:
      with _orbax_errors_held():
        self._manager.save(step, args=self._ocp.args.StandardSave(
            _for_orbax(tree)), force=True)
        self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      code = errors.os_error_code(e)
      if code is None:
        raise
      raise errors.WriteError(
          code, f'Could not write the checkpoint of step {step} under '
          f'{self.directory}: {os.strerror(code)}. The previous checkpoints '
          f'are unchanged; free space (or fix the permissions) and rerun '
          f'the same command to resume from them.') from None
    if self._primary:
      kept = {str(s) for s in self._manager.all_steps()}
      write_json(self._sums_path, {k: v for k, v in self._sums().items()
                                   if k in kept})
    distributed.barrier(f'checkpoint {self.directory} {step}')

  def restore(self, target: Any) -> tuple[int, Any]:
    """`(step, tree)` of the newest good checkpoint, or `(0, target)`.

    A step that cannot be read is tried with a fresh Orbax manager for the
    next one (a damaged step must not make an intact one unreadable). When
    `checksums.json` is missing or damaged, steps that read and hold finite
    values are restored unverified, with a warning, and their checksums
    are recorded again; with an intact record, a step it lacks or
    contradicts is skipped.

    Raises:
      errors.CheckpointError: checkpoints exist but none of them is good.
    """
    sums = self._recorded_sums()
    problems = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        tree = self._manager.restore(
            step, args=self._ocp.args.StandardRestore(_for_orbax(target)))
      except Exception as e:  # pylint: disable=broad-except
        first = str(e).strip().splitlines()[0][:200] if str(e) else ''
        problems.append((step, f'could not be read ({type(e).__name__}: '
                               f'{first})'))
        self._manager.close()  # Its state may speak of this step only.
        self._manager = self._new_manager()
        continue
      host = distributed.to_host(tree)  # Gathered once for both checks.
      where = first_non_finite(host)
      if where is not None:
        problems.append((step, f'holds non-finite values ({where})'))
        continue
      if sums is None:
        logging.warning('Checkpoint %s/%d restored without a recorded '
                        'checksum (it reads and is finite).', self.directory,
                        step)
        if self._primary:
          write_json(self._sums_path, {str(step): tree_checksum(host)})
      elif sums.get(str(step)) is None:
        problems.append((step, 'has no recorded checksum'))
        continue
      elif tree_checksum(host) != sums[str(step)]:
        problems.append((step, 'does not match its recorded checksum'))
        continue
      for bad, why in problems:
        message = (f'Checkpoint {self.directory}/{bad} {why}; skipped and '
                   f'deleted, resuming from step {step}.')
        logging.warning(message)
        self.skipped.append(message)
        self._manager.delete(bad)
      return step, tree
    if problems:
      listing = '; '.join(f'step {s} {why}' for s, why in problems)
      raise errors.CheckpointError(
          f'No checkpoint under {self.directory} can be restored: {listing}. '
          f'Each step was tried on its own; delete {self.directory} to '
          f'start this cell again.')
    return 0, target

  def close(self) -> None:
    self._manager.close()
