"""Transparent huge pages for XLA's host buffers: whether they would help here.

XLA:CPU takes each program's temporary buffers from `malloc`. glibc serves
blocks this large (hundreds of MB in MAML's meta-step) straight from `mmap`
and hands them back with `munmap` when the call ends, so every call touches
fresh pages. With the kernel's 4 KiB pages, one second-order meta-step at
84x84x3 (`benchmarks/maml_step.py`'s) takes millions of minor page faults
and seconds of system time on a 2-core CPU (docs/performance.md).

glibc 2.35 and later can ask the kernel to back those blocks with
transparent huge pages (the `glibc.malloc.hugetlb=1` tunable:
`madvise(MADV_HUGEPAGE)` on them), which takes 512 times fewer faults and
made the same meta-step faster on that CPU (docs/performance.md has the
measurements). The tunable is read once,
when the process starts, so the programs (not this library) restart
themselves with it:
`launch/startup.py`, which `launch/__init__.py` and
`benchmarks/__init__.py` call before anything else is imported. This
module decides (`wanted_environment`, `wanted_here`) and describes
(`describe`, for a run's record); importing it, or `cil`, never
re-executes anything. A script of your own gets the same by calling
`restart()` first thing (or by starting Python with
`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`): glibc's run-time knobs
(`mallopt`) cannot stand in for it (measured, docs/performance.md).

Nothing happens when it cannot help: not Linux with glibc 2.35 or later,
the kernel's transparent huge pages set to 'never' (or 'always', which
already gives them), the tunable already set, or `CIL_HUGE_PAGES=0`.
No JAX import here: this runs before JAX is loaded.
"""

import os
import sys
from typing import Mapping, Optional

TUNABLE = 'glibc.malloc.hugetlb'
OPT_OUT = 'CIL_HUGE_PAGES'
_THP_FILE = '/sys/kernel/mm/transparent_hugepage/enabled'


def thp_mode(path: str = _THP_FILE) -> str:
  """The kernel's transparent huge page mode: 'always', 'madvise', 'never',
  or '' where there is none (not Linux, or no such file)."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError:
    return ''
  start, end = text.find('['), text.find(']')
  return text[start + 1:end] if 0 <= start < end else ''


def glibc_version() -> Optional[tuple[int, int]]:
  """`(major, minor)` of the C library when it is glibc, else None."""
  try:
    name, version = os.confstr('CS_GNU_LIBC_VERSION').split()
    major, minor = version.split('.')[:2]
    return (int(major), int(minor)) if name == 'glibc' else None
  except (AttributeError, OSError, TypeError, ValueError):
    return None


def _tunables(environ: Mapping[str, str]) -> list[str]:
  return [t for t in environ.get('GLIBC_TUNABLES', '').split(':') if t]


def enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
  """Whether this process's environment sets the tunable to 1."""
  environ = os.environ if environ is None else environ
  return f'{TUNABLE}=1' in _tunables(environ)


def wanted_environment(environ: Mapping[str, str], *, mode: str,
                       glibc: Optional[tuple[int, int]]
                       ) -> Optional[dict]:
  """The environment to restart with, or None to go on as is.

  Args:
    environ: the current environment.
    mode: `thp_mode()`.
    glibc: `glibc_version()`.
  """
  if environ.get(OPT_OUT, '') == '0' or mode != 'madvise':
    return None
  if glibc is None or glibc < (2, 35):
    return None
  tunables = _tunables(environ)
  if any(t.split('=')[0] == TUNABLE for t in tunables):
    return None  # Set either way by whoever started us: theirs to decide.
  return {**environ, 'GLIBC_TUNABLES': ':'.join(tunables + [f'{TUNABLE}=1'])}


def wanted_here(environ: Mapping[str, str]) -> Optional[dict]:
  """`wanted_environment` on this machine's kernel mode and C library."""
  return wanted_environment(environ, mode=thp_mode(), glibc=glibc_version())


def describe() -> dict:
  """For a run's record: the kernel's mode and whether malloc asks for them."""
  return {'transparent_hugepage': thp_mode(), 'malloc_hugetlb': enabled()}


def restart() -> None:
  """Runs this process's command again with the tunable set, if it helps.

  For the top of a program (before JAX is imported; launchers and
  benchmarks call it through `launch/startup.py`): returns, doing nothing,
  where `wanted_here` says so; otherwise it says so in one line on stderr
  and does not return. Output not yet flushed is flushed; any work done
  before the call is done again.
  """
  env = wanted_here(os.environ)
  argv = getattr(sys, 'orig_argv', None)
  if env is None or not argv or not sys.executable:
    return
  print(f'cil: restarting with GLIBC_TUNABLES={TUNABLE}=1 (transparent huge '
        f'pages for XLA\'s buffers; {OPT_OUT}=0 turns this off)',
        file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, argv, env)
  except OSError:
    return  # Not fatal: the run goes on with the kernel's small pages.
