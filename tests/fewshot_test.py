"""Tests for the few-shot experiment (cil.fewshot) and launch.fewshot."""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest

from cil import fewshot

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Killed(Exception):
  pass


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': ''})
class FewShotRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = tempfile.mkdtemp()
    cls.cfg = fewshot.FewShotConfig(
        dataset='digits', support=((1, 1, 1, 1, 4), (2, 2, 2, 1, 1)),
        losses=('ci',), meta_batch=2, meta_steps=4, inner_steps=1,
        test_inner_steps=2, features=4, test_tasks=4, checkpoint_every=1,
        parallel='none',
        data_dir=cls.data_dir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.data_dir, ignore_errors=True)
    super().tearDownClass()

  def _workdir(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def test_resume_after_kill_equals_uninterrupted(self):
    whole = fewshot.run(self.cfg, self._workdir(), show_progress=False)
    workdir = self._workdir()

    def kill(loss, step):
      del loss
      if step == 2:
        raise _Killed()

    with self.assertRaises(_Killed):
      fewshot.run(self.cfg, workdir, show_progress=False, step_callback=kill)
    resumed = fewshot.run(self.cfg, workdir, show_progress=False)
    self.assertLen(resumed['runs'][0]['meta_loss_resumed_part'], 2)
    self.assertEqual(whole['runs'][0]['meta_loss_resumed_part'][2:],
                     resumed['runs'][0]['meta_loss_resumed_part'])
    self.assertEqual(whole['runs'][0]['distributions'],
                     resumed['runs'][0]['distributions'])
    # Table IV's shape and Fig. 5 are written.
    self.assertIn('| [1, 1, 1, 1, 4] | 0.4', resumed['table_markdown'])
    self.assertTrue(os.path.exists(os.path.join(workdir, 'fig5.png')))
    for d in resumed['runs'][0]['distributions']:
      self.assertEqual(d['num_tasks'], 4)
      self.assertBetween(d['accuracy_mean'], 0.0, 1.0)

  def test_bad_configs(self):
    with self.assertRaisesRegex(ValueError, 'same total'):
      fewshot.run(dataclasses.replace(
          self.cfg, support=((1, 1, 1, 1, 4), (1, 1, 1, 1, 5))),
                  self._workdir())
    with self.assertRaisesRegex(ValueError, 'zero or negative entry'):
      fewshot.run(dataclasses.replace(self.cfg, support=((0, 2, 2, 2, 2),)),
                  self._workdir())
    with self.assertRaisesRegex(ValueError, 'has 4 entries but ways = 5'):
      fewshot.run(dataclasses.replace(self.cfg, support=((2, 2, 2, 2),)),
                  self._workdir())


class LauncherTest(absltest.TestCase):

  def test_smoke_run_prints_table_iv(self):
    workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    data_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
    env = dict(os.environ, CIL_DATA_DIR=data_dir, CIL_MANUAL_DIR='')
    result = subprocess.run(
        [sys.executable, '-m', 'launch.fewshot', '--smoke', '--loss=ci',
         '--features=4', '--test_inner_steps=2', '--parallel=none',
         f'--workdir={workdir}'],
        cwd=_ROOT, env=env, capture_output=True, text=True, timeout=900,
        check=False)
    self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
    self.assertIn('| distribution | λ | ci |', result.stdout)
    self.assertIn('| [1, 1, 1, 1, 11] | 0.8331 |', result.stdout)


if __name__ == '__main__':
  absltest.main()
