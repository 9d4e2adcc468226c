"""Tests for cil.experiments.fewshot and launch.fewshot."""

import csv
import dataclasses
import io
import os
import shutil
import signal
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
import pytest

from cil import errors
from cil.experiments import fewshot
from cil.experiments import report
from cil import runtime
from cil import workdir as workdir_lib
import configs
import testutil


class _Killed(Exception):
  pass


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': ''})
class FewShotRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = tempfile.mkdtemp()
    config = configs.load('fewshot', 'smoke')
    config.update(support=((1, 1, 1, 1, 4), (2, 2, 2, 1, 1)),
                  losses=('ci',), meta_batch=2, meta_steps=4, features=4,
                  test_tasks=4, checkpoint_every=1, parallel='none',
                  data_dir=cls.data_dir)
    config.maml.update(adaptation_steps=1, test_adaptation_steps=2)
    cls.config = config
    cls.cfg = fewshot.FewShotConfig.from_config(config)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.data_dir, ignore_errors=True)
    super().tearDownClass()

  def _workdir(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def test_resume_after_kill_equals_uninterrupted(self):
    whole_dir = self._workdir()
    whole = fewshot.run(self.cfg, whole_dir, show_progress=False)
    # The claim is the resolved config (every backend choice a value): read
    # back, it is the config that ran and resolves to itself elsewhere.
    record = workdir_lib.read_json(os.path.join(whole_dir, 'config.json'))
    back = fewshot.FewShotConfig.from_config(
        dict(record['config'], **record['runtime']['data_location']))
    self.assertEqual(back, self.cfg.resolve(runtime.policy()))
    self.assertEqual(back.resolve(runtime.policy('gpu')), back)
    self.assertNotIn('', (back.conv_impl, back.maml.task_map))
    self.assertIsNotNone(back.compiler_options)
    workdir = self._workdir()

    def kill(loss, step):
      del loss
      if step == 2:
        raise _Killed()

    with self.assertRaises(_Killed):
      fewshot.run(self.cfg, workdir, show_progress=False, step_callback=kill)
    resumed = fewshot.run(self.cfg, workdir, show_progress=False)
    # The meta-loss history survives the resume and equals the whole run's.
    self.assertLen(resumed['runs'][0]['meta_loss'], 4)
    self.assertEqual(whole['runs'][0]['meta_loss'],
                     resumed['runs'][0]['meta_loss'])
    logs = [workdir_lib.read_metrics(os.path.join(d, 'metrics', 'ci.jsonl'))
            for d in (whole_dir, workdir)]
    self.assertEqual([r['step'] for r in logs[1]], [1, 2, 3, 4])
    self.assertEqual([r['query_accuracy'] for r in logs[0]],
                     [r['query_accuracy'] for r in logs[1]])
    self.assertEqual(whole['runs'][0]['distributions'],
                     resumed['runs'][0]['distributions'])

    # SIGTERM (a scheduler's pre-emption) after step 2 of 4: a checkpoint
    # of step 2, nothing recorded, and the rerun resumes to the same run.
    preempted_dir = self._workdir()

    def sigterm(loss, step):
      del loss
      if step == 2:
        os.kill(os.getpid(), signal.SIGTERM)

    with self.assertRaisesRegex(errors.Preempted,
                                'ci: stopped by SIGTERM after step 2 of 4'):
      fewshot.run(self.cfg, preempted_dir, show_progress=False,
                  step_callback=sigterm)
    self.assertFalse(os.path.exists(os.path.join(preempted_dir, 'runs')))
    again = fewshot.run(self.cfg, preempted_dir, show_progress=False)
    self.assertEqual(whole['runs'][0]['meta_loss'],
                     again['runs'][0]['meta_loss'])
    self.assertEqual(whole['runs'][0]['distributions'],
                     again['runs'][0]['distributions'])
    # Table IV's shape and Fig. 5 are written.
    self.assertIn('| [1, 1, 1, 1, 4] | 0.4', resumed['table_markdown'])
    for ext in ('png', 'pdf', 'csv'):
      self.assertTrue(os.path.exists(os.path.join(
          workdir, f'accuracy_vs_lambda.{ext}')))
    for d in resumed['runs'][0]['distributions']:
      self.assertEqual(d['num_tasks'], 4)
      self.assertBetween(d['accuracy_mean'], 0.0, 1.0)
      self.assertLen(d['task_accuracies'], 4)
      self.assertAlmostEqual(np.mean(d['task_accuracies']),
                             d['accuracy_mean'])

  @pytest.mark.slow  # ~20 s: another compile.
  def test_bfloat16_run_records_finite_results(self):
    result = fewshot.run(dataclasses.replace(self.cfg, dtype='bfloat16'),
                         self._workdir(), show_progress=False)
    run = result['runs'][0]
    self.assertLen(run['meta_loss'], 4)
    self.assertTrue(np.all(np.isfinite(run['meta_loss'])))
    for d in run['distributions']:
      self.assertBetween(d['accuracy_mean'], 0.0, 1.0)

  @pytest.mark.slow  # ~30 s: another compile.
  def test_first_order_run_uses_and_records_the_policys_lowering(self):
    # 16 filters, so Winograd (the CPU's first-order choice) runs in blocks
    # 2-4, down to 1x1 maps (odd sizes padded to whole tiles).
    cfg = dataclasses.replace(
        self.cfg, features=16,
        maml=dataclasses.replace(self.cfg.maml, first_order=True))
    workdir = self._workdir()
    result = fewshot.run(cfg, workdir, show_progress=False)
    self.assertTrue(np.all(np.isfinite(result['runs'][0]['meta_loss'])))
    recorded = workdir_lib.read_json(os.path.join(workdir, 'config.json'))
    cell = recorded['runtime']['fewshot']['cells']['ci']
    self.assertEqual(result['runs'][0]['settings'], cell)
    self.assertTrue(cell['first_order'])
    if runtime.policy().backend == 'cpu':
      self.assertEqual(cell['conv_impl'], 'winograd')
      self.assertEqual(cell['task_map'], 'calls')
    # The config field overrides the policy; '' leaves it to the policy.
    policy = runtime.policy()
    self.assertEqual(dataclasses.replace(cfg, conv_impl='im2col')
                     .resolve(policy).conv_impl, 'im2col')
    self.assertEqual(recorded['config']['conv_impl'], cell['conv_impl'])

  @pytest.mark.slow  # ~40 s: two more compiles (ROS changes the shapes).
  def test_oversampling_cells_run_on_the_same_tasks(self):
    config = self.config.copy_and_resolve_references()
    config.losses = ('CI+ROS', 'ce+ros')
    cfg = fewshot.FewShotConfig.from_config(config)
    self.assertEqual(cfg.losses, ('ci+ros', 'ce+ros'))
    workdir = self._workdir()
    result = fewshot.run(cfg, workdir, show_progress=False)
    plain = fewshot.run(self.cfg, self._workdir(), show_progress=False)
    ros = {r['loss']: r for r in result['runs']}
    self.assertTrue(ros['ci+ros']['settings']['oversample'])
    self.assertEqual(ros['ci+ros']['settings']['inner_loss'], 'ci')
    for name in ('ci+ros', 'ce+ros'):
      self.assertTrue(np.all(np.isfinite(ros[name]['meta_loss'])))
    # Over-sampling changes training (the meta-losses differ from plain CI
    # on the same tasks) but not which tasks are met.
    self.assertNotEqual(ros['ci+ros']['meta_loss'],
                        plain['runs'][0]['meta_loss'])
    with open(os.path.join(workdir, 'table.md')) as f:
      self.assertIn('| ci+ros | ce+ros |', f.read())
    # Paired by task: the same tasks, so each distribution's difference is
    # the mean of the per-task differences.
    diffs = report.fewshot_paired_differences(result['runs'], 'ce+ros')
    for d, ci, ce in zip(diffs, ros['ci+ros']['distributions'],
                         ros['ce+ros']['distributions']):
      self.assertEqual(d['distribution'], ci['distribution'])
      self.assertAlmostEqual(d['mean'], np.mean(np.subtract(
          ci['task_accuracies'], ce['task_accuracies'])))
    self.assertTrue(report.is_fewshot_workdir(workdir))
    out = testutil.launch('launch.compare', f'--workdir={workdir}',
                          '--baseline=ce+ros')
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertIn('| support | λ | ci+ros − ce+ros |', out.stdout)
    self.assertIn('| [1, 1, 1, 1, 4] | ', out.stdout)
    out = testutil.launch('launch.compare', f'--workdir={workdir}',
                          '--baseline=ce+ros', '--metric=macro_f1')
    self.assertEqual(out.returncode, 1)
    self.assertIn('--metric=macro_f1', out.stderr)

  def test_paired_by_task_comparison_by_hand(self):
    def run(loss, *task_accuracies):
      return {'loss': loss, 'meta_loss': [0.5], 'distributions': [
          {'distribution': [1, 1, 1, 1, 4 + d], 'imbalance_degree': 0.5,
           'task_accuracies': list(accs)}
          for d, accs in enumerate(task_accuracies)]}
    runs = [run('ce', [0.6, 0.7, 0.8], [0.5, 0.5, 0.5]),
            run('ci', [0.7, 0.8, 0.9], [0.6, 0.4, 0.5])]
    first, second = report.fewshot_paired_differences(runs, 'ce')
    self.assertAlmostEqual(first['mean'], 0.1)  # +10 points every task.
    self.assertAlmostEqual(first['ci95'], 0.0, places=12)
    self.assertTrue(first['significant'])
    self.assertAlmostEqual(second['mean'], 0.0)
    self.assertFalse(second['significant'])
    self.assertEqual((second['distribution'], second['tasks']),
                     ([1, 1, 1, 1, 5], 3))
    with self.assertRaisesRegex(ValueError, "No 'la' run"):
      report.fewshot_paired_differences(runs, 'la')
    short = run('focal', [0.6, 0.7], [0.5, 0.5])
    with self.assertRaisesRegex(ValueError, "'focal' has 2 tasks but 'ce' "
                                'has 3'):
      report.fewshot_paired_differences(runs + [short], 'ce')
    old = run('focal', [0.6], [0.5])
    del old['distributions'][0]['task_accuracies']
    with self.assertRaisesRegex(ValueError, 'no per-task accuracies'):
      report.fewshot_paired_differences([runs[0], old], 'ce')
    # A workdir's finished cells, as the launcher reads them.
    workdir = self._workdir()
    for r in runs:
      workdir_lib.write_json(os.path.join(workdir, 'runs', f"{r['loss']}.json"),
                             r)
    self.assertTrue(report.is_fewshot_workdir(workdir))
    table = report.compare_fewshot_workdir(workdir, baseline='ce')
    self.assertIn('| [1, 1, 1, 1, 4] | 0.500 | +10.00 ± 0.00* |', table)
    self.assertIn('| [1, 1, 1, 1, 5] | 0.500 | +0.00 ± ', table)
    rows = list(csv.DictReader(io.StringIO(report.per_task_csv(workdir))))
    self.assertLen(rows, 12)  # 2 losses x 2 distributions x 3 tasks.
    self.assertEqual(rows[3], {'distribution': '1-1-1-1-5', 'lambda': '0.5000',
                               'loss': 'ce', 'task': '0', 'accuracy': '0.5'})

  @pytest.mark.slow  # ~16 s: another compile (inner_lr is static).
  def test_diverged_run_stops_and_records_nothing(self):
    cfg = dataclasses.replace(
        self.cfg, maml=dataclasses.replace(self.cfg.maml, inner_lr=1e30))
    workdir = self._workdir()
    for _ in range(2):  # A rerun fails the same way.
      with self.assertRaisesRegex(errors.NonFiniteError,
                                  r'ci: non-finite meta_loss at step 1'):
        fewshot.run(cfg, workdir, show_progress=False)
      self.assertFalse(os.path.exists(os.path.join(workdir, 'runs')))

  def test_bad_configs(self):
    config = self.config.copy_and_resolve_references()
    config.support = ('a,b,c,d,e',)  # What --config.support=a,b,c,d,e gives.
    with self.assertRaisesRegex(ValueError, 'support must be a sequence of '
                                'distributions of integers'):
      fewshot.FewShotConfig.from_config(config)
    with self.assertRaisesRegex(
        ValueError, 'fewshot config field maml.ways must be a positive '
        'integer, got 0'):
      fewshot.run(dataclasses.replace(self.cfg, maml=dataclasses.replace(
          self.cfg.maml, ways=0)), self._workdir())
    with self.assertRaisesRegex(ValueError, 'same total'):
      fewshot.run(dataclasses.replace(
          self.cfg, support=((1, 1, 1, 1, 4), (1, 1, 1, 1, 5))),
                  self._workdir())
    with self.assertRaisesRegex(ValueError, 'support and train_support .* '
                                'same total'):
      fewshot.run(dataclasses.replace(
          self.cfg, train_support=((1, 1, 1, 1, 5),)), self._workdir())
    with self.assertRaisesRegex(ValueError, 'train_support must be a '
                                'sequence of distributions'):
      config = self.config.copy_and_resolve_references()
      config.train_support = ('a,b,c,d,e',)
      fewshot.FewShotConfig.from_config(config)
    self.assertEqual(self.cfg.meta_train_support, self.cfg.support)
    self.assertEqual(dataclasses.replace(
        self.cfg, train_support=((2, 2, 2, 2, 2),)).meta_train_support,
                     ((2, 2, 2, 2, 2),))
    with self.assertRaisesRegex(ValueError, 'zero or negative entry'):
      fewshot.run(dataclasses.replace(self.cfg, support=((0, 2, 2, 2, 2),)),
                  self._workdir())
    with self.assertRaisesRegex(ValueError, 'has 4 entries but ways = 5'):
      fewshot.run(dataclasses.replace(self.cfg, support=((2, 2, 2, 2),)),
                  self._workdir())
    with self.assertRaisesRegex(ValueError, 'maml.inner_lr is non-finite'):
      fewshot.run(dataclasses.replace(self.cfg, maml=dataclasses.replace(
          self.cfg.maml, inner_lr=float('nan'))), self._workdir())
    with self.assertRaisesRegex(ValueError, "conv_impl must be one of "
                                "'winograd', 'im2col', 'xla' \\('' for the "
                                "backend's choice\\), got 'fft'"):
      fewshot.run(dataclasses.replace(self.cfg, conv_impl='fft'),
                  self._workdir(), show_progress=False)
    with self.assertRaisesRegex(ValueError, 'dtype must be one of float32, '
                                "bfloat16, got 'float16'"):
      fewshot.run(dataclasses.replace(self.cfg, dtype='float16'),
                  self._workdir())
    with self.assertRaisesRegex(ValueError, "Unknown few-shot loss suffix "
                                "'\\+smote'.*'\\+ros'"):
      config = self.config.copy_and_resolve_references()
      config.losses = ('ci+smote',)
      fewshot.FewShotConfig.from_config(config)
    with self.assertRaisesRegex(ValueError, 'Unknown maml config field'):
      config = self.config.copy_and_resolve_references()
      config.maml.inner_steps = 1
      fewshot.FewShotConfig.from_config(config)


class LauncherTest(absltest.TestCase):

  def _launch(self, workdir, *flags):
    data_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
    return testutil.launch(
        'launch.fewshot', '--config=configs/fewshot.py:smoke',
        f'--workdir={workdir}', *flags,
        env={'CIL_DATA_DIR': data_dir, 'CIL_MANUAL_DIR': ''}, timeout=900)

  @pytest.mark.slow  # ~45 s on 2 cores, most of it compiling.
  def test_smoke_run_prints_table_iv(self):
    workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    result = self._launch(workdir, '--config.losses=ci',
                          '--config.features=4', '--config.parallel=none')
    self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
    self.assertIn('| distribution | λ | ci |', result.stdout)
    self.assertIn('| [1, 1, 1, 1, 11] | 0.8331 |', result.stdout)

  def test_non_finite_inner_learning_rate_is_a_named_error(self):
    workdir = os.path.join(tempfile.mkdtemp(), 'w')
    self.addCleanup(shutil.rmtree, os.path.dirname(workdir),
                    ignore_errors=True)
    result = self._launch(workdir, '--config.maml.inner_lr=nan')
    self.assertEqual(result.returncode, 1)
    self.assertIn('non-finite', result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertFalse(os.path.exists(workdir))


if __name__ == '__main__':
  absltest.main()
