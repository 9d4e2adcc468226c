"""What every launcher does around its one library call.

* `config_file(family)`: the default `--config` (`configs/<family>.py`,
  found from this file, so launchers work from any directory).
* `main(run)`: rejects stray arguments, keeps library INFO logs (Orbax,
  absl) quiet unless `--verbosity`/`-v` is given (`-v 0` shows INFO, `-v 1`
  debug), logs the devices at INFO, and turns a run error (a `ValueError`
  from validation, a `cil.errors.RunError`) into its message on stderr and
  exit status 1; with `-v 1` the traceback is printed too; a run stopped
  by SIGTERM or SIGINT (Ctrl-C) at any moment, from JAX's start to the
  last file (`cil.errors.Preempted`: finished work kept, resumable) prints
  one line and exits with status 75 (`cil.experiments.loop`);
* joins a multi-process run (`cil.distributed`) when the distributed flags
  or their environment variables say so, before JAX starts: every process
  runs the same command with its own `--process_id` (docs/multihost.md);
* keeps XLA's compiled programs in JAX's persistent compilation cache,
  `<repo>/.jax_cache` unless `$JAX_COMPILATION_CACHE_DIR` says otherwise
  (XLA compiles slowly on CPUs: a rerun or a resumed run skips it).
"""

import difflib
import importlib.util
import os
import sys
from typing import Callable

from absl import app
from absl import flags
from absl import logging

from cil import distributed
from cil import errors
from cil import workdir
from cil.experiments import loop

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


def launch(run: Callable[[], None]) -> None:
  """`app.run(main(run))` with flag errors reported in one line."""
  app.run(main(run), flags_parser=parse_flags)


def parse_flags(argv: list) -> list:
  """absl's flag parsing, with a bad flag named in one line.

  ml_collections raises from deep inside absl for an unknown field or a
  value of the wrong type; this prints `error: --config.seed=3: ...` with
  the config file and the nearest known field. absl's own flag errors (a
  value it rejects, a config file or variant that fails to load) print
  as `error: --flag=value: why`, without a traceback. Both exit with
  status 2 (a usage error).
  """
  try:
    argv = flags.FLAGS(argv)
    if 'config' in flags.FLAGS:  # ml_collections defers a file's failure.
      _ = flags.FLAGS['config'].value.items
    return argv
  except OSError as e:  # The config file cannot be read.
    last = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
    spec = flags.FLAGS['config'].serialize().removeprefix('--config=')
    print(f'error: --config={spec}: {last}', file=sys.stderr)
    sys.exit(2)
  except flags.Error as e:  # absl's: printed as one line, not its dump.
    print(f'error: {flag_error(e)}\nPass --helpshort or --helpfull to see '
          f'help on flags.', file=sys.stderr)
    sys.exit(2)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    if 'config' not in flags.FLAGS:  # Not a config launcher: not ours.
      raise
    print(f'error: {config_flag_error(argv, e)}', file=sys.stderr)
    sys.exit(2)


def flag_error(error: Exception) -> str:
  """An absl flag error in one line: a config file that fails to load
  (an unknown variant, say) gives the flag and its error's last line, not
  ml_collections' traceback."""
  text = str(error).strip()
  first = text.splitlines()[0].rstrip(':') if text else repr(error)
  if 'Traceback (most recent call last)' in text:
    last = [line.strip() for line in text.splitlines() if line.strip()][-1]
    flag = first.split(': Error whilst parsing', 1)[0]
    return f'{flag.removeprefix("flag ")}: {last.split(": ", 1)[-1]}'
  return first


def config_flag_error(argv: list, error: BaseException) -> str:
  """What was wrong with the `--config...` flags of `argv`, in one line."""
  spec = next((a.split('=', 1)[1] for a in argv
               if a.startswith('--config=')), None)
  path = spec or (flags.FLAGS['config'].default_as_str or '').strip("'")
  try:
    config = _load_config(path)
  except Exception:  # pylint: disable=broad-except
    return f'{path or "--config"}: {error}'
  fields = sorted(_field_paths(config))
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    name = arg[len('--config.'):].split('=', 1)[0]
    if name not in fields and not any(f.startswith(name + '.')
                                      for f in fields):
      near = difflib.get_close_matches(name, fields, n=1, cutoff=0.6)
      hint = f"; the nearest is '{near[0]}'" if near else ''
      return (f"{arg}: {path.split(':')[0]} has no field '{name}'{hint}.")
  bad = [a for a in argv if a.startswith('--config.')]
  return f"{' '.join(bad) or path}: {str(error).splitlines()[0]}"


def _load_config(spec: str):
  """The ConfigDict of `file.py[:variant]`, as `--config` loads it."""
  file, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_cil_config', file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant or None)


def _field_paths(config, prefix: str = '') -> list:
  out = []
  for key, value in config.items():
    out.append(prefix + key)
    if hasattr(value, 'items'):
      out += _field_paths(value, prefix + key + '.')
  return out


def main(run: Callable[[], None]) -> Callable[[list], None]:
  """An `app.run` main that calls `run()` as described above."""

  def wrapped(argv):
    # SIGTERM and SIGINT (Ctrl-C) at any moment, JAX's start included, end
    # as pre-emption: one line, exit status 75.
    with loop.stop_signals():
      try:
        _main(argv)
      except errors.Preempted as e:  # Checkpointed, resumable.
        print(f'stopped: {e}', file=sys.stderr)
        sys.exit(errors.Preempted.EXIT_CODE)

  def _main(argv):
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
    except errors.Preempted:
      raise
    except (errors.RunError, ValueError) as e:
      if verbosity.present and verbosity.value >= 1:
        raise
      print(f'error: {e}', file=sys.stderr)
      sys.exit(1)

  return wrapped
