"""`python -m launch.NAME` entry points (run from the repository root).

They need the `experiments` extra; a missing package is named up front.
Started with `python -m`, a launcher first re-runs itself with glibc's
malloc asking for transparent huge pages (`launch/startup.py`; opt out with
`CIL_HUGE_PAGES=0`).
"""

from launch import startup  # No JAX: before anything heavy is imported.

startup.restart_for('launch')

# pylint: disable-next=g-import-not-at-top,wrong-import-position
from cil import _extras  # noqa: E402

_extras.require('ml_collections', what='the launchers (python -m launch.*)')
