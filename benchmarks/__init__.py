"""Benchmarks: `python -m benchmarks.NAME` (docs/performance.md lists them).

Like the launchers, a benchmark started with `python -m` first re-runs
itself with glibc's malloc asking for transparent huge pages
(`launch/startup.py`; `CIL_HUGE_PAGES=0` opts out). Child processes (the
PyTorch reference's included) inherit that environment, so both sides of
a comparison run under the same allocator settings.
"""

from launch import startup

startup.restart_for('benchmarks')
