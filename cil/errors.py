
__all__ = [
    'CheckpointError',
    'ConfigMismatchError',
    'CorruptFileError',
    'DataError',
    'DataMismatchError',
    'DataNotFoundError',
    'NonFiniteError',
    'Preempted',
    'RunError',
    'WorkdirError',
    'WorkdirLockedError',
    'WriteError',
]
"""The errors a run stops with: the bottom layer, importing nothing of `cil`.

Every module that stops a run raises one of these, so that the launchers
can turn any of them into one line on stderr and exit status 1
(`launch/common.py`), and so that lower layers (`cil.distributed`) never
import an upper one (`cil.workdir`) to raise an error.
"""

import errno
import os
import re
from typing import Optional


class RunError(Exception):
  """An error that stops a run; its message says what and where."""


class WorkdirError(RunError):
  """The workdir cannot be created or used."""


class WorkdirLockedError(RunError):
  """Another process holds the workdir."""


class ConfigMismatchError(RunError, ValueError):
  """The workdir holds a run of a different config."""


class DataMismatchError(ConfigMismatchError):
  """The workdir holds a run on other data (a resume must not mix them)."""


class CorruptFileError(RunError):
  """A file of the workdir cannot be parsed."""


class CheckpointError(RunError):
  """No checkpoint of a cell can be restored."""


class NonFiniteError(RunError, FloatingPointError):
  """A loss, metric or parameter became NaN or infinite."""


class Preempted(RunError):
  """The run was asked to stop (SIGTERM) and stopped at a step boundary
  with a checkpoint saved; rerunning the same command resumes it."""

  # The exit status of a launcher stopped this way (BSD's EX_TEMPFAIL:
  # "try again later"), so that a scheduler can requeue it.
  EXIT_CODE = 75


class WriteError(RunError, OSError):
  """A file of the run could not be written (a full disk, say); what was
  there before is left as it was.

  Raised as `WriteError(errno, message)`: `errno` is kept (ENOSPC, EACCES,
  ...), and the message is what it prints, without OSError's "[Errno N]".
  """

  def __str__(self) -> str:
    return str(self.strerror) if self.strerror else super().__str__()


# The errors of a write that a full or read-only disk makes.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def os_error_code(e: BaseException) -> Optional[int]:
  """The errno of a failed file operation: an OSError's, or the one a
  library wrote into its message (TensorStore's `[os_error_code='28']`,
  array_record's "write() failed: No space left on device"); None when
  it names none."""
  if isinstance(e, OSError) and e.errno:
    return e.errno
  text = str(e)
  found = re.search(r"os_error_code='?(\d+)", text)
  if found:
    return int(found.group(1))
  for code in DISK_FULL_ERRNOS + (errno.EACCES,):
    if os.strerror(code) in text:
      return code
  return None


class DataNotFoundError(RunError, FileNotFoundError):
  """A dataset is neither prepared nor in its manual directory."""


class DataError(RunError, ValueError):
  """Data a user gave is malformed (an unreadable image, an empty class
  folder, labels out of range, ...); the message names the file."""
