"""A cell's metrics history: JSON lines cut back to the restored step on
resume, mirrored to TensorBoard when tensorboardX is installed."""

import contextlib
import json
import os
import threading
from typing import Any, Optional

from absl import logging

from cil import errors
from cil.workdir.files import finite_or_none
from cil.workdir.files import write_error
from cil.workdir.files import write_text


class MetricsLog:
  """Per-step scalars as JSON lines (and TensorBoard events, if available).

  Opened with the step a cell resumed from: records of later steps (work
  that the restored checkpoint does not contain, and that will be redone)
  are dropped, as is a torn last line of a killed writer. The log of a
  resumed run therefore equals that of an uninterrupted one.
  """

  def __init__(self, path: Optional[str], *, resume_step: int,
               tensorboard_dir: Optional[str] = None):
    self.path = path
    self._records: list[dict] = []
    self._file = self._tb = None
    if path is None:  # In memory only (a process that writes no files).
      return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    kept = []
    if os.path.exists(path):
      lines = _read_lines(path)
      for i, line in enumerate(lines):
        if not line.strip():
          continue
        try:
          record = json.loads(line)
          if not isinstance(record, dict):
            raise json.JSONDecodeError('not a record', line, 0)
        except json.JSONDecodeError:
          if i >= len(lines) - 2:  # A torn last line: the writer was killed.
            break
          raise errors.CorruptFileError(
              f'{path}, line {i + 1}, is damaged and cannot be parsed; '
              f'delete the file to drop the history.') from None
        if record.get('step', 0) <= resume_step:
          kept.append(record)
    write_text(path, ''.join(json.dumps(r) + '\n' for r in kept))
    self._records = kept
    self._file = open(path, 'a', encoding='utf-8')  # pylint: disable=R1732
    self._tb = None
    if tensorboard_dir is not None:
      try:
        import tensorboardX  # pylint: disable=g-import-not-at-top
      except ImportError:
        tensorboardX = None
      if tensorboardX is not None:
        _tensorboard_write_errors_logged()
        self._tb = tensorboardX.SummaryWriter(
            tensorboard_dir, purge_step=resume_step + 1, flush_secs=30)

  def write(self, step: int, **scalars: Any) -> None:
    """Appends one record: `{'step': step, **scalars}`."""
    record = {'step': int(step)}
    record.update({k: finite_or_none(float(v)) for k, v in scalars.items()})
    self._records.append(record)
    if self._file is None:
      return
    try:
      self._file.write(json.dumps(record) + '\n')
      self._file.flush()
    except OSError as e:  # A torn last line is dropped on resume.
      raise write_error(self._file.name, e) from None
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, float(v), int(step))

  def records(self) -> list[dict]:
    return list(self._records)

  def close(self) -> None:
    """Closes the log; a JSON-lines file that cannot be written is a
    `WriteError`, TensorBoard events that cannot (a mirror) a warning."""
    file, tb, self._file, self._tb = self._file, self._tb, None, None
    if tb is not None:
      try:
        tb.close()
      except OSError as e:
        logging.warning('The TensorBoard events of %s could not be written '
                        '(%s); the metrics log is the record.', self.path,
                        e.strerror or e)
        _abandon(tb)
    if file is not None:
      try:
        file.close()
      except OSError as e:
        raise write_error(file.name, e) from None


def _abandon(tb) -> None:
  """Stops a tensorboardX writer whose file cannot be written from trying
  again (its exit handler would print the same error as a traceback)."""
  writer = getattr(tb, 'event_writer', None)
  with contextlib.suppress(Exception):
    writer._closed = True  # pylint: disable=protected-access
  with contextlib.suppress(Exception):
    # pylint: disable-next=protected-access
    writer._ev_writer._py_recordio_writer._writer.close()


def _tensorboard_write_errors_logged() -> None:
  """A tensorboardX writer thread that fails to write (a full disk) logs
  one warning instead of printing its traceback; other threads' errors go
  to the hook that was there. Installed once per process."""
  previous = threading.excepthook
  if getattr(previous, 'cil_logs_tensorboard_errors', False):
    return

  def hook(args):
    if (isinstance(args.exc_value, OSError) and args.thread is not None
        and type(args.thread).__module__.startswith('tensorboardX')):
      logging.warning('TensorBoard events could not be written (%s); the '
                      'metrics log is the record.',
                      args.exc_value.strerror or args.exc_value)
      return
    previous(args)

  hook.cil_logs_tensorboard_errors = True
  threading.excepthook = hook


def read_metrics(path: str) -> list[dict]:
  """The records of a metrics log (JSON lines)."""
  if not os.path.exists(path):
    return []
  out = []
  for i, line in enumerate(_read_lines(path)):
    if line.strip():
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        raise errors.CorruptFileError(
            f'{path}, line {i + 1}, is damaged.') from None
  return out


def _read_lines(path: str) -> list[str]:
  """A text file's lines; bytes that are not UTF-8 name the file."""
  try:
    with open(path, encoding='utf-8') as f:
      return f.read().split('\n')
  except UnicodeDecodeError as e:
    raise errors.CorruptFileError(
        f'{path} is damaged: not UTF-8 text ({e.reason} at byte '
        f'{e.start}); delete the file to drop what it held.') from None
