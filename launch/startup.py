"""Process start-up for `python -m launch.NAME` and `python -m benchmarks.NAME`.

`restart_for(package)` runs the current command again in place
(`os.execve`) with glibc's malloc asking for transparent huge pages
(`glibc.malloc.hugetlb=1`), where `cil.hugepages.wanted_here` says it helps
(Linux, glibc 2.35 or later, the kernel's THP in 'madvise' mode, not
already set, not opted out with `CIL_HUGE_PAGES=0`). The tunable is read
once, when a process starts, so it cannot be switched on later; the
measurements behind it are in docs/performance.md.

This is start-up code of the programs, not of the library: importing
`cil` never re-executes anything. It says so on stderr in one line when it
restarts, and it works the same under a profiler: `python -m cProfile -m
launch.classify` restarts the whole command (profiler included), so the
profile is of a process with huge pages, as a plain run is.

No JAX import here: this runs before JAX is loaded.
"""

import sys

from cil import hugepages


def _launched_module(argv: list) -> str:
  """The module of the last `-m MODULE` in a command line ('' if none).

  `python -m launch.classify` gives 'launch.classify'; so does `python -m
  cProfile -o out -m launch.classify` (the profiled module is the last).
  """
  modules = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == '-m']
  return modules[-1] if modules else ''


def restart_for(package: str) -> None:
  """Restarts with huge pages if this process runs `-m PACKAGE.NAME`.

  For a package's `__init__`: an import from tests or other code (whose
  command line runs no module of `package`) leaves the process alone.
  Returns where nothing is to be done; otherwise it does not return.
  """
  argv = list(getattr(sys, 'orig_argv', []))
  if _launched_module(argv).split('.')[0] != package:
    return
  restart()


def restart() -> None:
  """`cil.hugepages.restart`: the command again with huge pages, if they
  help (it does not return then)."""
  hugepages.restart()
