"""The workdir itself: created, locked, claimed for one config, and the
files of its cells (`Workdir`)."""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from typing import Any, Optional, Sequence


from cil import _validation
from cil import distributed
from cil import errors
from cil.workdir.checkpoints import Checkpointer
from cil.workdir.files import check_record
from cil.workdir.files import finite_or_none
from cil.workdir.files import read_json
from cil.workdir.files import write_json
from cil.workdir.files import write_text
from cil.workdir.metrics_log import MetricsLog


def _cell_parts(cell: str) -> list[str]:
  """'odd10/ci' -> ['odd10', 'ci']: each part one plain name (a cell's
  checkpoints live in `checkpoints/<part>/<part>/`)."""
  if not isinstance(cell, str):
    raise ValueError(f'A cell name must be a string, got {cell!r}.')
  return [_validation.check_path_component(part, f'Cell {cell!r}: part')
          for part in cell.split('/')]


def _cell_file(cell: str) -> str:
  """'odd10/ci' -> 'odd10__ci' (a file name for a cell)."""
  return '__'.join(_cell_parts(cell))


class Workdir:
  """An experiment's directory; use as a context manager.

  Args:
    path: the directory (created on open).
    config: the run's config as a JSON-able dict (what must not change
      between a run and its resumption).
    runtime: resolved choices, devices, versions (`cil.runtime.describe`);
      recorded, not compared.

  In a multi-process run (`cil.distributed`) every process opens the same
  workdir, which must be on storage they all see (a shared or network file
  system, as Orbax's multi-host checkpoints need). Only the primary locks,
  claims and writes files (`finish`, `write_json`, `write_text`, metrics
  logs; runners write figures only `if work.primary`); the others read. If
  opening fails on any process, it fails on all of them.
  """

  def __init__(self, path: str, config: dict, *,
               runtime: Optional[dict] = None):
    self.path = path
    self.config = json.loads(json.dumps(finite_or_none(config)))
    self.runtime = runtime or {}
    self.primary = distributed.is_primary()
    self._lock_file = None

  # -- lifecycle --------------------------------------------------------

  def __enter__(self) -> 'Workdir':
    self.open()
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def open(self) -> None:
    """Locks the workdir, then claims it for `config` (on the primary)."""
    error = None
    if self.primary:
      try:
        self._make()
        self._lock()
        self._claim()
      except (errors.RunError, OSError, ValueError) as e:
        self.close()
        error = e
    try:
      distributed.agree(error)
    except BaseException:
      self.close()
      raise

  def close(self) -> None:
    f, self._lock_file = self._lock_file, None
    if f is not None:
      with contextlib.suppress(OSError):  # Closing releases the lock too.
        fcntl.flock(f, fcntl.LOCK_UN)
      with contextlib.suppress(OSError):  # A full disk: nothing to keep.
        f.close()

  def _make(self) -> None:
    """Creates the workdir; a path that cannot be one is a named error."""
    if not self.path:
      raise errors.WorkdirError('--workdir is empty; give the directory to '
                                'write the run to.')
    if os.path.exists(self.path) and not os.path.isdir(self.path):
      raise errors.WorkdirError(
          f'--workdir {self.path} is an existing file, not a directory; '
          f'choose another --workdir.')
    try:
      os.makedirs(self.path, exist_ok=True)
    except OSError as e:
      raise errors.WorkdirError(
          f'--workdir {self.path} cannot be created ({e.strerror}); choose '
          f'a --workdir in a directory you can write to.') from None

  def _lock(self) -> None:
    path = os.path.join(self.path, '.lock')
    try:
      f = open(path, 'a+', encoding='utf-8')  # pylint: disable=R1732
    except OSError as e:
      raise self._unusable(path, e) from None
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'unknown process'
      f.close()
      raise errors.WorkdirLockedError(
          f'Workdir {self.path} is in use by another run ({holder}); wait '
          f'for it to finish or use another --workdir.') from None
    except OSError as e:  # A file system without locks.
      f.close()
      raise self._unusable(path, e) from None
    self._lock_file = f
    try:
      f.seek(0)
      f.truncate()
      started = datetime.datetime.now().isoformat(timespec='seconds')
      f.write(f'pid {os.getpid()} on {socket.gethostname()}, started '
              f'{started}: {" ".join(sys.argv)[:300]}\n')
      f.flush()
    except OSError as e:
      raise self._unusable(path, e) from None

  def _unusable(self, path: str, e: OSError) -> errors.WorkdirError:
    """The named error of a workdir whose files cannot be written."""
    why = e.strerror or str(e)
    if isinstance(e, IsADirectoryError):
      why = 'it is a directory; remove it'
    hint = {errno.ENOSPC: 'free space', errno.EDQUOT: 'free space',
            errno.EROFS: 'choose a --workdir on a writable disk',
            errno.EACCES: 'fix its permissions or choose another --workdir',
            errno.EPERM: 'fix its permissions or choose another --workdir',
            }.get(e.errno, 'fix it or choose another --workdir')
    return errors.WorkdirError(
        f'Workdir {self.path} cannot be used: {path} cannot be written '
        f'({why}); {hint}.')

  def _claim(self) -> None:
    path = os.path.join(self.path, 'config.json')
    if os.path.exists(path):
      previous = read_json(path)
      if not isinstance(previous, dict) or 'config' not in previous:
        raise errors.CorruptFileError(
            f'{path} is not a cil config record (no "config" key); delete '
            f'it or use a new --workdir.')
      if previous['config'] != self.config:
        changed = sorted(
            k for k in set(previous['config']) | set(self.config)
            if previous['config'].get(k) != self.config.get(k))
        raise errors.ConfigMismatchError(
            f'{self.path} holds a run with a different config (fields '
            f'{", ".join(changed)} differ); use a new --workdir or delete '
            f'it.\nold: {previous["config"]}\nnew: {self.config}')
    write_json(path, {'config': self.config, 'runtime': self.runtime})

  def claim_data(self, data: dict) -> None:
    """Claims the workdir for the data the run trains and tests on.

    Args:
      data: name -> a JSON-able record that identifies that data (e.g.
        `{'train': ArrayDataset.record(), 'test': ...}`); its `sha256`
        decides, the other fields describe.

    The first call records `data.json`; later calls (a resume, or another
    part of the same run) must give the same record for every name both
    hold, else `DataMismatchError` names what changed: finished cells
    trained on the recorded data, so a resume on other data would mix
    two datasets in one comparison.
    """
    error = None
    if self.primary:
      try:
        self._claim_data(data)
      except (errors.RunError, OSError, ValueError) as e:
        error = e
    distributed.agree(error)

  def _claim_data(self, data: dict) -> None:
    path = self.file('data.json')
    previous = read_json(path) if os.path.exists(path) else {}
    if not isinstance(previous, dict):
      raise errors.CorruptFileError(
          f'{path} is not a data record (a JSON object); delete it and '
          f'the workdir, or use a new --workdir.')
    data = json.loads(json.dumps(finite_or_none(data)))
    changed = []
    for name in sorted(set(previous) & set(data)):
      old, new = previous[name], data[name]
      if not (isinstance(old, dict) and old.get('sha256') == new.get(
          'sha256')):
        described = lambda r: ', '.join(  # noqa: E731
            f'{k} {str(v)[:12]}' for k, v in r.items()) if isinstance(
                r, dict) else repr(r)
        changed.append(f'{name}: was {described(old)}; now '
                       f'{described(new)}')
    if changed:
      raise errors.DataMismatchError(
          f'{self.path} holds a run on other data than this one '
          f'({"; ".join(changed)}). Its finished cells were trained on the '
          f'recorded data, so resuming would mix two datasets in one '
          f'comparison: restore that data, or use a new --workdir (or '
          f'delete this one).')
    if set(data) - set(previous):
      write_json(path, {**previous, **data})

  # -- cells ------------------------------------------------------------

  def file(self, *parts: str) -> str:
    return os.path.join(self.path, *parts)

  def finished(self, cell: str, *, keys: Sequence[str] = ()
               ) -> Optional[dict]:
    """The recorded result of a finished cell, or None.

    A record that is not a JSON object holding `keys` raises
    `CorruptFileError` naming its file.
    """
    path = self.file('runs', _cell_file(cell) + '.json')
    if not os.path.exists(path):
      return None
    return check_record(read_json(path), path, keys)

  def finish(self, cell: str, result: dict) -> None:
    """Records a cell's result (atomically; on the primary)."""
    if not self.primary:
      return
    write_json(self.file('runs', _cell_file(cell) + '.json'), result,
               indent=None)

  def checkpointer(self, cell: str, *, max_to_keep: int = 2) -> Checkpointer:
    return Checkpointer(self.file('checkpoints', *_cell_parts(cell)),
                        max_to_keep=max_to_keep)

  def metrics(self, cell: str, *, resume_step: int) -> MetricsLog:
    if not self.primary:
      return MetricsLog(None, resume_step=resume_step)
    return MetricsLog(self.file('metrics', _cell_file(cell) + '.jsonl'),
                      resume_step=resume_step,
                      tensorboard_dir=self.file('tensorboard',
                                                _cell_file(cell)))

  def write_json(self, name: str, obj: Any) -> str:
    path = self.file(name)
    if self.primary:
      write_json(path, obj)
    return path

  def write_text(self, name: str, text: str) -> str:
    path = self.file(name)
    if self.primary:
      write_text(path, text)
    return path
