"""One workdir scaffold for every runner (classify, fewshot, detection).

By concern: `directory` (the `Workdir`: create, lock, claim, cells),
`files` (atomic JSON and text, damaged files named), `guard` (the
non-finite guard, checksums), `checkpoints` (`Checkpointer`: Orbax,
verified, with fallback), `metrics_log` (JSON lines and TensorBoard),
`console` (logging levels, progress bars). The names below are the
public face.

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

from cil.workdir.checkpoints import Checkpointer
from cil.workdir.console import progress
from cil.workdir.console import quiet_logging
from cil.workdir.directory import Workdir
from cil.workdir.files import check_record
from cil.workdir.files import read_json
from cil.workdir.files import read_runs
from cil.workdir.files import write_json
from cil.workdir.files import write_text
from cil.workdir.guard import check_finite
from cil.workdir.guard import first_non_finite
from cil.workdir.guard import tree_checksum
from cil.workdir.metrics_log import MetricsLog
from cil.workdir.metrics_log import read_metrics

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
