"""Tests for cil.hugepages: when a launcher restarts itself, and that it
does."""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from cil import hugepages
from launch import startup
from testutil import ROOT

_GLIBC = (2, 36)


def _clean_env(**extra) -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in ('GLIBC_TUNABLES', hugepages.OPT_OUT)}
  return {**env, **extra}


class WantedEnvironmentTest(absltest.TestCase):

  def test_madvise_kernel_and_recent_glibc_add_the_tunable(self):
    env = hugepages.wanted_environment({'A': '1'}, mode='madvise',
                                       glibc=_GLIBC)
    self.assertEqual(env, {'A': '1',
                           'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'})

  def test_other_tunables_are_kept(self):
    env = hugepages.wanted_environment(
        {'GLIBC_TUNABLES': 'glibc.malloc.arena_max=2'}, mode='madvise',
        glibc=_GLIBC)
    self.assertEqual(env['GLIBC_TUNABLES'],
                     'glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1')

  def test_nothing_to_do_leaves_the_process_alone(self):
    cases = {
        'already on': ({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'},
                       'madvise', _GLIBC),
        'set off by the caller': (
            {'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'}, 'madvise', _GLIBC),
        'opted out': ({hugepages.OPT_OUT: '0'}, 'madvise', _GLIBC),
        'kernel gives them anyway': ({}, 'always', _GLIBC),
        'kernel never gives them': ({}, 'never', _GLIBC),
        'no such kernel setting': ({}, '', _GLIBC),
        'glibc without the tunable': ({}, 'madvise', (2, 34)),
        'not glibc': ({}, 'madvise', None),
    }
    for name, (environ, mode, glibc) in cases.items():
      with self.subTest(name):
        self.assertIsNone(hugepages.wanted_environment(
            environ, mode=mode, glibc=glibc))

  def test_thp_mode_reads_the_bracketed_choice(self):
    with tempfile.NamedTemporaryFile('w', suffix='enabled') as f:
      f.write('always [madvise] never\n')
      f.flush()
      self.assertEqual(hugepages.thp_mode(f.name), 'madvise')
    self.assertEqual(hugepages.thp_mode('/nonexistent/enabled'), '')


class RestartTest(absltest.TestCase):

  def _run(self, code: str, env: dict) -> str:
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True,
                         timeout=60)
    return out.stdout.strip()

  def test_restart_sets_the_tunable_in_the_same_command(self):
    if hugepages.wanted_here(_clean_env()) is None:
      self.skipTest('needs Linux, glibc >= 2.35 and THP in madvise mode')
    code = ('import sys; print("start", flush=True); '
            'from cil import hugepages; from launch import startup; '
            'startup.restart(); '
            'print(hugepages.enabled(), sys.argv[1:])')
    # Flushed output of the first run is kept; the command runs again.
    self.assertEqual(self._run(code + '\n', _clean_env()).splitlines(),
                     ['start', 'start', 'True []'])
    self.assertEqual(
        self._run(code, _clean_env(**{hugepages.OPT_OUT: '0'})).splitlines(),
        ['start', 'False []'])

  def test_a_script_of_your_own_restarts_by_calling_the_library(self):
    if hugepages.wanted_here(_clean_env()) is None:
      self.skipTest('needs Linux, glibc >= 2.35 and THP in madvise mode')
    code = ('import sys; print("start", flush=True); '
            'from cil import hugepages; hugepages.restart(); '
            'print(hugepages.enabled())')
    self.assertEqual(self._run(code, _clean_env()).splitlines(),
                     ['start', 'start', 'True'])

  def test_the_launched_module_is_found_behind_a_profiler(self):
    self.assertEqual(startup._launched_module(
        ['python', '-m', 'launch.classify', '--config.seeds=2']),
        'launch.classify')
    self.assertEqual(startup._launched_module(
        ['python', '-m', 'cProfile', '-o', 'x.prof', '-m', 'launch.detect']),
        'launch.detect')
    self.assertEqual(startup._launched_module(['python', '-c', 'pass']), '')
    self.assertEqual(startup._launched_module(['python', '-m']), '')

  def test_only_a_module_launch_of_the_package_restarts(self):
    # `python -c` is not `python -m launch.NAME`: importing the package
    # (as tests and other code do) leaves the process alone.
    if hugepages.wanted_here(_clean_env()) is None:
      self.skipTest('needs a machine where launchers restart (Linux, glibc '
                    '>= 2.35, THP in madvise mode): elsewhere nothing '
                    'restarts either way')
    code = ('import launch; from cil import hugepages; '
            'print(hugepages.enabled())')
    self.assertEqual(self._run(code, _clean_env()), 'False')


if __name__ == '__main__':
  absltest.main()
