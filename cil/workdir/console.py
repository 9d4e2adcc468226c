"""What a run prints: logging levels and the progress bar."""

import logging as std_logging
import sys
from typing import Optional

from absl import logging

from cil import _extras


def quiet_logging(verbosity: Optional[int] = None) -> None:
  """Keeps library INFO logs (Orbax, absl) out of the console.

  Args:
    verbosity: absl verbosity (-1 warning, 0 info, 1 debug); None keeps
      warnings and errors only.
  """
  level = logging.WARNING if verbosity is None else verbosity
  logging.set_verbosity(level)
  py_level = {-1: std_logging.WARNING, 0: std_logging.INFO}.get(
      level, std_logging.DEBUG if level > 0 else std_logging.WARNING)
  for name in ('absl', 'orbax', 'jax', 'tensorflow_datasets'):
    std_logging.getLogger(name).setLevel(py_level)


def progress(total: int, *, desc: str, unit: str, initial: int = 0,
             enabled: bool = True):
  """A labelled tqdm bar on stderr (refreshed at most once a second)."""
  tqdm = _extras.require('tqdm.auto', what='progress bars')
  return tqdm.tqdm(total=total, initial=initial, desc=desc, unit=unit,
                   mininterval=1.0, disable=not enabled, file=sys.stderr,
                   dynamic_ncols=True, leave=True)
