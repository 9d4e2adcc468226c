"""What every launcher does around its one library call.

* `config_file(family)`: the default `--config` (`configs/<family>.py`,
  found from this file, so launchers work from any directory).
* `main(run)`: rejects stray arguments, keeps library INFO logs (Orbax,
  absl) quiet unless `--verbosity`/`-v` is given (`-v 0` shows INFO, `-v 1`
  debug), logs the devices at INFO, and turns a run error (a `ValueError`
  from validation, a `cil.errors.RunError`) into its message on stderr and
  exit status 1; with `-v 1` the traceback is printed too;
* joins a multi-process run (`cil.distributed`) when the distributed flags
  or their environment variables say so, before JAX starts: every process
  runs the same command with its own `--process_id` (docs/multihost.md);
* keeps XLA's compiled programs in JAX's persistent compilation cache,
  `<repo>/.jax_cache` unless `$JAX_COMPILATION_CACHE_DIR` says otherwise
  (XLA compiles slowly on CPUs: a rerun or a resumed run skips it).
"""

import os
import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging

from cil import distributed
from cil import errors
from cil import workdir

_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', '',
    'Multi-process runs: host:port of process 0 (default: '
    '$JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', 0, 'Multi-process runs: the number of processes '
    '(default: $JAX_NUM_PROCESSES, else 1).', lower_bound=0)
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', -1, 'Multi-process runs: this process, 0 ... '
    'num_processes - 1 (default: $JAX_PROCESS_ID).', lower_bound=-1)
_CLUSTER_DETECT = flags.DEFINE_bool(
    'cluster_detect', False, 'Join the multi-process run that JAX finds in '
    'the environment (SLURM, Open MPI, Kubernetes, Cloud TPU).')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 0, 'Fake CPU devices per process (to try multi-device '
    'runs on one CPU); 0 keeps JAX\'s default.', lower_bound=0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def config_file(family: str) -> str:
  return os.path.join(ROOT, 'configs', f'{family}.py')


def main(run: Callable[[], None]) -> Callable[[list], None]:
  """An `app.run` main that calls `run()` as described above."""

  def wrapped(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    verbosity = flags.FLAGS['verbosity']
    workdir.quiet_logging(verbosity.value if verbosity.present else None)
    try:
      distributed.initialize(distributed.Settings(
          coordinator_address=_COORDINATOR.value,
          num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value,
          cluster_detect=_CLUSTER_DETECT.value,
          cpu_devices=_CPU_DEVICES.value))
    except ValueError as e:
      raise app.UsageError(str(e)) from None
    import jax  # pylint: disable=g-import-not-at-top
    if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
      jax.config.update('jax_compilation_cache_dir',
                        os.path.join(ROOT, '.jax_cache'))
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
    logging.info('JAX devices: %s; %s', jax.devices(),
                 distributed.describe())
    try:
      run()
    except (errors.RunError, ValueError) as e:
      if verbosity.present and verbosity.value >= 1:
        raise
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)

  return wrapped
