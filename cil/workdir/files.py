"""A workdir's files: JSON and text written atomically (temporary file,
fsync, rename), JSON read back with damage named, finished records read
and checked."""

import contextlib
import json
import math
import os
import tempfile
from typing import Any, Optional, Sequence

import numpy as np

from cil import errors


def finite_or_none(obj: Any) -> Any:
  """JSON-safe copy: NaN/inf floats (e.g. recall of an absent class) -> None."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: finite_or_none(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [finite_or_none(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return finite_or_none(obj.tolist())
  if isinstance(obj, np.generic):
    return finite_or_none(obj.item())
  return obj


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (temporary file, fsync, rename).

  Raises:
    errors.WriteError: it could not be written (a full disk, no
      permission); the previous file, if any, is left as it was.
  """
  directory = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-',
                               suffix=os.path.basename(path))
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if tmp is not None:
      with contextlib.suppress(OSError):
        os.unlink(tmp)
    if isinstance(e, OSError) and not isinstance(e, errors.RunError):
      raise write_error(path, e) from None
    raise


def write_error(path: str, e: OSError) -> errors.WriteError:
  return errors.WriteError(
      e.errno, f'Could not write {path}: {e.strerror or e}; what it held '
      f'before is unchanged. Free space (or fix the permissions) and rerun '
      f'the same command to resume.')


def write_json(path: str, obj: Any, *, indent: Optional[int] = 1) -> None:
  """Writes `obj` as strict JSON (non-finite floats become null), atomically."""
  write_text(path, json.dumps(finite_or_none(obj), indent=indent,
                              allow_nan=False, ensure_ascii=False) + '\n')


def read_json(path: str) -> Any:
  """Parses `path`; a damaged file raises `CorruptFileError` naming it."""
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
    return json.loads(text)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.CorruptFileError(
        f'{path} is damaged and cannot be parsed ({e}); delete it to '
        f'recompute what it held.') from None


def read_runs(workdir: str, *, keys: Sequence[str] = ()) -> list[dict]:
  """A workdir's finished results, without locking it (a run may be going).

  `results.json`'s runs if the run has finished, else the finished cells
  in `runs/` (sorted by file name). Each must be a JSON object with `keys`
  (`check_record`).
  """
  if not os.path.isdir(workdir):
    raise errors.RunError(f'{workdir} is not a workdir (no such directory).')
  results = os.path.join(workdir, 'results.json')
  if os.path.exists(results):
    record = check_record(read_json(results), results, ('runs',))
    return [check_record(r, f'{results} (runs[{i}])', keys)
            for i, r in enumerate(record['runs'])]
  cells = os.path.join(workdir, 'runs')
  names = sorted(os.listdir(cells)) if os.path.isdir(cells) else []
  return [check_record(read_json(os.path.join(cells, n)),
                       os.path.join(cells, n), keys)
          for n in names if n.endswith('.json')]


def check_record(record: Any, where: str, keys: Sequence[str]) -> Any:
  """`record` if it is a JSON object holding `keys`; else a named error."""
  if not isinstance(record, dict):
    raise errors.CorruptFileError(
        f'{where} is not a result record (a JSON object, got '
        f'{type(record).__name__}); delete it to recompute what it held.')
  missing = [k for k in keys if k not in record]
  if missing:
    raise errors.CorruptFileError(
        f'{where} is not a result record of this runner: it lacks '
        f'{", ".join(missing)}; delete it to recompute what it held.')
  return record
