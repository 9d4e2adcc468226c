"""One workdir scaffold for every runner (classify, fewshot, detection).

A runner validates its config and finds its data first, then opens the
workdir, which:

* takes an exclusive lock (`workdir/.lock`, `fcntl.flock`): a second
  process on the same workdir stops at once with
  `cil.errors.WorkdirLockedError` naming the workdir and the holder (pid,
  host, start time, command);
* claims it: `config.json` records `{'config': ..., 'runtime': ...}`; a
  workdir holding a different config is refused
  (`cil.errors.ConfigMismatchError`); `runtime` (backend policy, devices,
  versions, resolved choices) is rewritten on every run;
* keeps finished cells in `runs/<cell>.json`, each written atomically
  (temporary file, fsync, rename); a damaged JSON file is named in the
  error (`cil.errors.CorruptFileError`);
* gives each cell a `Checkpointer` (Orbax, at least the last two steps, a
  checksum of every saved tree recorded before the save) that falls back to
  the previous checkpoint when the newest cannot be read, holds non-finite
  values or fails its checksum, and says so;
* gives each cell a `MetricsLog`: JSON lines under `metrics/<cell>.jsonl`
  that are cut back to the restored step on resume (so a resumed run's log
  equals an uninterrupted one's), mirrored to TensorBoard event files under
  `tensorboard/<cell>/` when `tensorboardX` is installed (extra `tb`);
* `check_finite` is the non-finite guard: a NaN/inf loss or parameter
  raises `cil.errors.NonFiniteError` (cell, step, quantity); nothing is
  recorded as finished, and the last good checkpoint stays.

Launchers catch `cil.errors.RunError` and exit non-zero with its message.
"""

import contextlib
import datetime
import fcntl
import gc
import hashlib
import json
import logging as std_logging
import math
import os
import socket
import sys
import tempfile
from typing import Any, Iterable, Optional, Sequence

from absl import logging
import jax
import numpy as np

from cil import _extras
from cil import distributed
from cil import errors

__all__ = [
    'check_finite',
    'check_record',
    'Checkpointer',
    'first_non_finite',
    'MetricsLog',
    'progress',
    'quiet_logging',
    'read_json',
    'read_metrics',
    'read_runs',
    'tree_checksum',
    'Workdir',
    'write_json',
    'write_text',
]


# ---------------------------------------------------------------------------
# Files.


def _finite_or_none(obj: Any) -> Any:
  """JSON-safe copy: NaN/inf floats (e.g. recall of an absent class) -> None."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: _finite_or_none(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite_or_none(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return _finite_or_none(obj.tolist())
  if isinstance(obj, np.generic):
    return _finite_or_none(obj.item())
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
      raise _write_error(path, e) from None
    raise


def _write_error(path: str, e: OSError) -> errors.WriteError:
  return errors.WriteError(
      e.errno, f'Could not write {path}: {e.strerror or e}; what it held '
      f'before is unchanged. Free space (or fix the permissions) and rerun '
      f'the same command to resume.')


def write_json(path: str, obj: Any, *, indent: Optional[int] = 1) -> None:
  """Writes `obj` as strict JSON (non-finite floats become null), atomically."""
  write_text(path, json.dumps(_finite_or_none(obj), indent=indent,
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


# ---------------------------------------------------------------------------
# The non-finite guard and checksums.


def _leaves_with_paths(tree: Any) -> Iterable[tuple[str, Any]]:
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    yield jax.tree_util.keystr(path), leaf


def first_non_finite(tree: Any) -> Optional[str]:
  """The path of the first leaf of `tree` holding NaN/inf, or None.

  Leaves sharded across processes are gathered (`cil.distributed.to_host`),
  so every process must call it on such a tree.
  """
  for name, leaf in _leaves_with_paths(distributed.to_host(tree)):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
      return name or '(value)'
  return None


def check_finite(cell: str, step: int, **quantities: Any) -> None:
  """Raises `errors.NonFiniteError` if any quantity (a pytree) has NaN/inf.

  Args:
    cell: what is being run (e.g. 'odd10/ci').
    step: the step (or epoch) the quantities belong to.
    **quantities: name -> array or pytree, e.g. `loss=...`, `params=...`.
  """
  for name, value in quantities.items():
    where = first_non_finite(value)
    if where is not None:
      leaf = '' if where == '(value)' else f' (at {where})'
      raise errors.NonFiniteError(
          f'{cell}: non-finite {name}{leaf} at step {step}. The run '
          f'diverged (check the learning rates and loss hyperparameters); '
          f'nothing was recorded as finished and the last good checkpoint '
          f'is kept.')


def tree_checksum(tree: Any) -> str:
  """SHA-256 of a pytree's structure, shapes, dtypes and values."""
  digest = hashlib.sha256()
  for name, leaf in _leaves_with_paths(distributed.to_host(tree)):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
      # A step counter saved as an int32 array restores as whatever the
      # target holds (a Python int): compare values, not widths.
      a = a.astype(np.int64)
    a = np.ascontiguousarray(a)
    digest.update(f'{name}|{a.dtype.kind}|{a.shape}|'.encode())
    digest.update(a.tobytes())
  return digest.hexdigest()


# ---------------------------------------------------------------------------
# Checkpoints.


def _for_orbax(tree: Any) -> Any:
  """Local arrays as host values (the primary writes them); arrays sharded
  across processes stay (each process writes its shards)."""
  def leaf(x):
    if isinstance(x, jax.Array) and x.is_fully_addressable:
      return np.asarray(x)
    return x
  return jax.tree.map(leaf, tree)


@contextlib.contextmanager
def _quiet_closed_event_loops():
  """Drops the "Event loop is closed" errors an unreadable checkpoint
  leaves behind in Orbax's I/O threads (printed as raw tracebacks, though
  the step is already reported and skipped); every other unraisable
  error still reaches the previous hook."""
  previous = sys.unraisablehook

  def hook(unraisable):
    value = unraisable.exc_value
    if not (isinstance(value, RuntimeError)
            and str(value) == 'Event loop is closed'):
      previous(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  finally:
    gc.collect()  # Let the failed reads' leftovers go while the hook holds.
    sys.unraisablehook = previous


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
      self._manager.save(step, args=self._ocp.args.StandardSave(
          _for_orbax(tree)), force=True)
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      if not isinstance(e, OSError) and 'No space left' not in str(e):
        raise
      raise errors.WriteError(
          getattr(e, 'errno', None),
          f'Could not write the checkpoint of step {step} under '
          f'{self.directory}: {getattr(e, "strerror", None) or e}. The '
          f'previous checkpoints are unchanged; free space and rerun the '
          f'same command to resume from them.') from None
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
    with _quiet_closed_event_loops():
      return self._restore(target)

  def _restore(self, target: Any) -> tuple[int, Any]:
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


# ---------------------------------------------------------------------------
# Metrics history.


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
        self._tb = tensorboardX.SummaryWriter(
            tensorboard_dir, purge_step=resume_step + 1, flush_secs=30)

  def write(self, step: int, **scalars: Any) -> None:
    """Appends one record: `{'step': step, **scalars}`."""
    record = {'step': int(step)}
    record.update({k: _finite_or_none(float(v)) for k, v in scalars.items()})
    self._records.append(record)
    if self._file is None:
      return
    try:
      self._file.write(json.dumps(record) + '\n')
      self._file.flush()
    except OSError as e:  # A torn last line is dropped on resume.
      raise _write_error(self._file.name, e) from None
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(k, float(v), int(step))

  def records(self) -> list[dict]:
    return list(self._records)

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()


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


# ---------------------------------------------------------------------------
# Logging and progress.


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


# ---------------------------------------------------------------------------
# The workdir.


def _cell_file(cell: str) -> str:
  """'odd10/ci' -> 'odd10__ci' (a file name for a cell)."""
  safe = cell.replace('/', '__')
  if not safe or safe.startswith('.') or any(c in safe for c in '\\\0'):
    raise ValueError(f'Bad cell name {cell!r}.')
  return safe


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
    self.config = json.loads(json.dumps(_finite_or_none(config)))
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
    if self._lock_file is not None:
      fcntl.flock(self._lock_file, fcntl.LOCK_UN)
      self._lock_file.close()
      self._lock_file = None

  def _make(self) -> None:
    """Creates the workdir; a path that cannot be one is a named error."""
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
    f = open(path, 'a+', encoding='utf-8')  # pylint: disable=R1732
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'unknown process'
      f.close()
      raise errors.WorkdirLockedError(
          f'Workdir {self.path} is in use by another run ({holder}); wait '
          f'for it to finish or use another --workdir.') from None
    f.seek(0)
    f.truncate()
    started = datetime.datetime.now().isoformat(timespec='seconds')
    f.write(f'pid {os.getpid()} on {socket.gethostname()}, started '
            f'{started}: {" ".join(sys.argv)[:300]}\n')
    f.flush()
    self._lock_file = f

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
    return Checkpointer(self.file('checkpoints', *cell.split('/')),
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
