"""Around a dataset's one-time preparation (a TFDS build), for the built-in
datasets (`cil.data.datasets`) and your own (`cil.data.custom`) alike: one
line of ours instead of TFDS's output, its warnings held, and nothing
half-built left behind by a failed build."""

import contextlib
import fcntl
import hashlib
import io
import logging as std_logging
import os
import sys

from absl import logging

from cil import errors


def _directories(root: str) -> set:
  return {dirpath for dirpath, _, _ in os.walk(root)}


@contextlib.contextmanager
def removing_what_a_failed_build_left(data_dir: str):
  """On an error, removes the empty folders the build made under `data_dir`.

  A failed `download_and_prepare` leaves `downloads/extracted/` (with, for
  builders that extract archives, empty `tmp*tfds` folders) and the empty
  `<name>/<version>/` folders; a later build does not need them and they
  make a failed build look half-done. Folders that existed before, and any
  folder that is not empty, are kept.
  """
  data_dir = os.fspath(data_dir)
  before = _directories(data_dir)
  try:
    yield
  except BaseException:
    for path in sorted(_directories(data_dir) - before, reverse=True):
      with contextlib.suppress(OSError):
        os.rmdir(path)  # Only if empty; children come first (reverse).
    raise


@contextlib.contextmanager
def tfds_warnings_held():
  """TFDS's warnings (and absl's) held to errors, unless absl's verbosity is
  debug (`-v 1`): a builder for a dataset not yet prepared warns that its
  folder "has no dataset_info.json", which is how a first run starts."""
  if logging.get_verbosity() >= logging.DEBUG:
    yield
    return
  loggers = [std_logging.getLogger(n) for n in ('absl', 'tensorflow_datasets')]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(std_logging.ERROR)
  try:
    yield
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


@contextlib.contextmanager
def first_build(name: str, data_dir: str):
  """Around a dataset's one-time preparation: one line of ours, not TFDS's.

  Prints `cil: preparing NAME in DATA_DIR (first run) ...` to stderr and
  keeps TFDS's own output (its warnings, its "Downloading and preparing
  dataset" line, its progress bars) out of the console, unless absl's
  verbosity is debug (`-v 1` in the launchers), which shows all of it.
  What was held back is logged at debug level if the build fails; a
  failure is raised as ever, and `removing_what_a_failed_build_left`
  cleans up.
  """
  if logging.get_verbosity() >= logging.DEBUG:
    yield
    return
  print(f'cil: preparing {name} in {data_dir} (first run) ...',
        file=sys.stderr, flush=True)
  held = io.StringIO()
  try:
    with tfds_warnings_held(), contextlib.redirect_stdout(held), \
        contextlib.redirect_stderr(held):
      yield
  except BaseException as e:
    logging.debug('Output of the failed build of %s:\n%s', name,
                  held.getvalue())
    code = errors.os_error_code(e)
    if code in errors.DISK_FULL_ERRNOS and not isinstance(e, errors.RunError):
      raise errors.WriteError(
          code, f'Could not prepare {name} in {data_dir}: '
          f'{os.strerror(code)}. What it wrote is removed; free space (or '
          f'set another data dir) and rerun.') from None
    raise


@contextlib.contextmanager
def one_build_at_a_time(name: str, data_dir: str):
  """Holds a lock on the preparation of `name` in `data_dir`.

  Two processes preparing the same dataset at once (two runs started
  together on new data) would race on TFDS's folders; the second waits
  here (saying so) and then finds the dataset prepared, which the caller
  checks again inside the block. The lock file is removed on release
  (a waiter that locked the removed file tries again on a new one), so
  the data dir is left as it was.
  """
  os.makedirs(data_dir, exist_ok=True)
  key = hashlib.sha256(name.encode()).hexdigest()[:16]
  path = os.path.join(data_dir, f'.cil-prepare-{key}.lock')
  said = False
  while True:
    f = open(path, 'a+', encoding='utf-8')  # pylint: disable=R1732
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      if not said:
        print(f'cil: another process is preparing {name} in {data_dir}; '
              f'waiting for it ...', file=sys.stderr, flush=True)
        said = True
      fcntl.flock(f, fcntl.LOCK_EX)
    try:
      if os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
        break  # Still the lock file: ours.
    except FileNotFoundError:
      pass  # Its holder removed it: lock the next one.
    f.close()
  try:
    yield
  finally:
    with contextlib.suppress(OSError):
      os.unlink(path)
    f.close()  # Releases the lock.
