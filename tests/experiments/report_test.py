"""Tests for cil.experiments.report: scores, summaries, paired statistics
and tables, on hand-made records (no training)."""

import csv
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

from absl.testing import absltest

from cil import metrics
from cil import workdir as workdir_lib
from cil.experiments import report
import testutil
from testutil import ROOT


class ReportTest(absltest.TestCase):

  def _workdir(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def test_summary_and_table_of_a_hand_made_run(self):
    # Two seeds: accuracy 0.8 and 0.9; mean 0.85, standard error
    # 0.0707 / sqrt(2) = 0.05, t(0.975, 1) = 12.706: half-width 0.6353.
    # Class 2 has no test images in seed 0 (None): its mean is seed 1's.
    run = {'protocol': 'p', 'loss': 'ci', 'per_seed': [
        {'seed': 0, 'accuracy': 0.8, 'minority_recall': None,
         'imbalance_degree': 0.5, 'per_class_recall': [1.0, 0.5, None]},
        {'seed': 1, 'accuracy': 0.9, 'minority_recall': None,
         'imbalance_degree': 0.5, 'per_class_recall': [0.5, 0.5, 0.25]}]}
    summary = report.summarize(run)
    self.assertAlmostEqual(summary['accuracy']['mean'], 0.85)
    self.assertAlmostEqual(summary['accuracy']['ci95'], 0.6353, places=4)
    self.assertEqual(summary['minority_recall'],
                     {'mean': None, 'ci95': None})
    self.assertEqual(summary['per_class_recall_mean'], [0.75, 0.5, 0.25])
    # A class that no seed tested: NaN, without NumPy's RuntimeWarning.
    untested = {**run, 'per_seed': [dict(s, per_class_recall=[1.0, None])
                                    for s in run['per_seed']]}
    with warnings.catch_warnings():
      warnings.simplefilter('error')
      mean = report.summarize(untested)['per_class_recall_mean']
    self.assertEqual(mean[0], 1.0)
    self.assertTrue(math.isnan(mean[1]))
    table = report.markdown_table([run], ['p', 'q'], ['ci', 'ce'])
    self.assertEqual(table.splitlines(), [
        '| loss | p | q |', '|---|---|---|',
        '| ci | 85.00 ± 63.53 |  |', '| ce |  |  |'])

  def test_fewshot_table_of_hand_made_runs(self):
    def run(loss, mean, half):
      return {'loss': loss, 'distributions': [
          {'imbalance_degree': 0.2831, 'accuracy_mean': mean,
           'accuracy_ci95': half}]}
    table = report.fewshot_table([run('ce', 0.5, 0.01),
                                  run('ci', 0.625, float('nan'))],
                                 [(1, 2, 3, 4, 5)])
    self.assertEqual(table.splitlines()[2],
                     '| [1, 2, 3, 4, 5] | 0.2831 | 50.00 ± 1.00 | 62.50 |')

  def test_paired_differences_and_the_compare_launcher(self):
    def run(protocol, loss, accs, lam=0.5):
      return {'protocol': protocol, 'loss': loss, 'per_seed': [
          {'seed': k, 'accuracy': a, 'imbalance_degree': lam,
           'minority_recall': None} for k, a in enumerate(accs)]}
    runs = [run('p', 'ce', [0.90, 0.80, 0.70]),
            run('p', 'ci', [0.92, 0.82, 0.72]),      # +2 points every seed
            run('p', 'focal', [0.95, 0.75, 0.70])]   # +5, -5, 0
    diffs = {d['loss']: d for d in report.paired_differences(runs, 'ce')}
    self.assertAlmostEqual(diffs['ci']['mean'], 0.02)
    self.assertAlmostEqual(diffs['ci']['ci95'], 0.0, places=12)
    self.assertTrue(diffs['ci']['significant'])
    self.assertAlmostEqual(diffs['focal']['mean'], 0.0)
    self.assertFalse(diffs['focal']['significant'])
    self.assertEmpty(report.paired_differences(runs, 'ce',
                                               'minority_recall'))
    with self.assertRaisesRegex(ValueError, "No 'la' run for protocol 'p'"):
      report.paired_differences(runs, 'la')
    with self.assertRaisesRegex(ValueError, 'pairing needs the same seeds'):
      report.paired_differences(runs + [run('q', 'ci', [0.5]),
                                        run('q', 'ce', [0.5, 0.6])], 'ce')

    workdir = self._workdir()
    workdir_lib.write_json(os.path.join(workdir, 'runs', 'p__ce.json'),
                           runs[0])
    workdir_lib.write_json(os.path.join(workdir, 'runs', 'p__ci.json'),
                           runs[1])
    out = subprocess.run(
        [sys.executable, '-m', 'launch.compare', f'--workdir={workdir}',
         '--baseline=CE'], cwd=ROOT, capture_output=True, text=True,
        check=False)
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertIn('| ci | +2.00 ± 0.00* |', out.stdout)
    out = subprocess.run(
        [sys.executable, '-m', 'launch.compare', f'--workdir={workdir}',
         '--baseline=la'], cwd=ROOT, capture_output=True, text=True,
        check=False)
    self.assertEqual(out.returncode, 1)
    self.assertIn("error: No 'la' run for protocol 'p'", out.stderr)
    # --out into folders that do not exist yet makes them.
    table = os.path.join(workdir, 'new', 'sub', 'table.md')
    out = testutil.launch('launch.compare', f'--workdir={workdir}',
                          '--baseline=ce', f'--out={table}')
    self.assertEqual(out.returncode, 0, out.stderr)
    with open(table, encoding='utf-8') as f:
      self.assertIn('| ci | +2.00 ± 0.00* |', f.read())
    # Every seed's scores as CSV: the numbers behind the table.
    rows = list(csv.DictReader(io.StringIO(report.per_seed_csv(workdir))))
    self.assertEqual([(r['loss'], r['seed'], r['accuracy']) for r in rows],
                     [('ce', '0', '0.9'), ('ce', '1', '0.8'),
                      ('ce', '2', '0.7'), ('ci', '0', '0.92'),
                      ('ci', '1', '0.82'), ('ci', '2', '0.72')])
    self.assertEqual({(r['lambda'], r['minority_recall']) for r in rows},
                     {('0.5000', '')})

  def test_shot_groups_by_hand(self):
    counts = [150, 100, 20, 19, 5]
    recall = [1.0, 0.5, 0.25, 0.0, None]  # Class 4 has no test images.
    self.assertEqual(metrics.shot_group_accuracy(recall, counts),
                     {'many_shot': 1.0, 'medium_shot': 0.375,
                      'few_shot': 0.0})
    self.assertEqual(metrics.shot_group_accuracy(recall, counts, (5, 19)),
                     {'many_shot': (1.0 + 0.5 + 0.25) / 3,
                      'medium_shot': 0.0, 'few_shot': None})
    for bad in ((100, 20), (20,), (0, 5), ('a', 1), (2.5, 10)):
      with self.assertRaisesRegex(ValueError, 'shot_thresholds'):
        metrics.shot_groups(counts, bad)

  def test_posthoc_and_shot_groups_in_the_paired_comparison(self):
    def seed(k, acc, few, adjusted=None):
      out = {'seed': k, 'accuracy': acc, 'few_shot': few,
             'imbalance_degree': 0.5}
      if adjusted is not None:
        out['posthoc'] = {'tau': 1.0, 'accuracy': adjusted[0],
                          'few_shot': adjusted[1]}
      return out
    runs = [{'protocol': 'p', 'loss': 'ce', 'per_seed': [
        seed(0, 0.90, 0.40, (0.91, 0.60)), seed(1, 0.80, 0.30, (0.79, 0.40))]},
            {'protocol': 'p', 'loss': 'ci', 'per_seed': [
                seed(0, 0.92, 0.50), seed(1, 0.84, 0.40)]}]
    rows = report.with_variants(runs)
    self.assertEqual([r['loss'] for r in rows], ['ce', 'ci', 'ce+posthoc'])
    self.assertEqual(rows[2]['per_seed'][1],
                     {'seed': 1, 'imbalance_degree': 0.5, 'tau': 1.0,
                      'accuracy': 0.79, 'few_shot': 0.40})
    workdir = self._workdir()
    for r in runs:
      workdir_lib.write_json(
          os.path.join(workdir, 'runs', f'p__{r["loss"]}.json'), r)
    table = report.compare_workdir(workdir, baseline='ce', metric='few_shot')
    self.assertIn('| ci | +10.00 ± 0.00* |', table)
    self.assertIn('| ce+posthoc | +15.00 ± 63.53 |', table)
    table = report.compare_workdir(workdir, baseline='CE+posthoc')
    self.assertRegex(table, r'\| ce \| [+-]0\.00 ± 12\.71 \|')
    out = testutil.launch('launch.compare', f'--workdir={workdir}',
                          '--baseline=ci', '--metric=few_shot')
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertIn('| ce+posthoc | +5.00 ± 63.53 |', out.stdout)

  def test_tuned_rows_are_chosen_on_validation_never_on_test(self):
    def run(protocol, loss, test, held):
      return {'protocol': protocol, 'loss': loss, 'per_seed': [
          {'seed': k, 'accuracy': a, 'imbalance_degree': 0.5,
           'validation': {'accuracy': v, 'balanced_accuracy': v}}
          for k, (a, v) in enumerate(zip(test, held))]}
    # In p, la:tau=2 wins on the test split and la:tau=0.5 on validation;
    # in q the other way round: each protocol gets its own choice.
    runs = [run('p', 'ce', [0.70, 0.60], [0.7, 0.6]),
            run('p', 'la:tau=0.5', [0.80, 0.70], [0.90, 0.90]),
            run('p', 'la:tau=2.0', [0.99, 0.99], [0.50, 0.60]),
            run('q', 'ce', [0.70, 0.60], [0.7, 0.6]),
            run('q', 'la:tau=0.5', [0.99, 0.99], [0.10, 0.20]),
            run('q', 'la:tau=2.0', [0.75, 0.65], [0.80, 0.80])]
    rows, choices = report.tuned(runs, ['LA'])
    self.assertEqual([(c['protocol'], c['chosen']) for c in choices],
                     [('p', 'la:tau=0.5'), ('q', 'la:tau=2.0')])
    self.assertAlmostEqual(choices[0]['candidates']['la:tau=2.0'], 0.55)
    tuned_rows = {r['protocol']: r for r in rows if r['loss'] == 'la (tuned)'}
    self.assertEqual([s['accuracy'] for s in tuned_rows['p']['per_seed']],
                     [0.80, 0.70])
    self.assertEqual([s['accuracy'] for s in tuned_rows['q']['per_seed']],
                     [0.75, 0.65])
    # The table: the grid replaced by its tuned row, the choices under it.
    workdir = self._workdir()
    for k, r in enumerate(runs):
      workdir_lib.write_json(os.path.join(workdir, 'runs', f'{k}.json'), r)
    out = testutil.launch('launch.compare', f'--workdir={workdir}',
                          '--baseline=ce', '--tuned=la')
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertIn('| la (tuned) | +10.00 ± 0.00* | +5.00 ± 0.00* |',
                  out.stdout)
    self.assertNotIn('\n| la:tau=2.0 |', out.stdout)  # Not a row.
    self.assertIn('| p | la | la:tau=0.5 | la:tau=0.5 90.00, '
                  'la:tau=2.0 55.00 |', out.stdout)
    # The committed CSV carries the validation scores: the same choice.
    path = os.path.join(workdir, 'per_seed.csv')
    workdir_lib.write_text(path, report.per_seed_csv(workdir))
    _, again = report.tuned(report.runs_from_per_seed_csv(path), ['la'])
    self.assertEqual(again, choices)
    # And the figures from it: the tuned row against CE, the rows named.
    stem = os.path.join(workdir, 'fig')
    plotted = testutil.launch('launch.plot_sweep', f'--per_seed_csv={path}',
                              '--tuned=la', '--rows=ce,la (tuned)',
                              f'--out={stem}')
    self.assertEqual(plotted.returncode, 0, plotted.stderr)
    self.assertIn('| q | la | la:tau=2.0 |', plotted.stdout)
    with open(stem + '_lambda_differences.csv', encoding='utf-8') as f:
      rows = list(csv.DictReader(f))
    self.assertEqual({(r['loss'], r['protocol'], r['difference'])
                      for r in rows},
                     {('la (tuned)', 'p', '0.1'), ('la (tuned)', 'q', '0.05')})
    # Two workdirs read as one (a second run adding losses): the same
    # table; the same row in both, or different data, is named.
    second = self._workdir()
    os.rename(os.path.join(workdir, 'runs', '2.json'),
              os.path.join(second, 'runs.json'))
    os.makedirs(os.path.join(second, 'runs'))
    os.rename(os.path.join(second, 'runs.json'),
              os.path.join(second, 'runs', '2.json'))
    both = testutil.launch('launch.compare', f'--workdir={workdir},{second}',
                           '--baseline=ce', '--tuned=la')
    self.assertEqual(both.returncode, 0, both.stderr)
    self.assertEqual(both.stdout, out.stdout)
    with self.assertRaisesRegex(ValueError, r'p/ce is in both .* compare '
                                'them separately'):
      report.classify_runs([workdir, workdir])
    for path, validation in ((workdir, 'train:0.1'), (second, '')):
      workdir_lib.write_json(os.path.join(path, 'config.json'), {
          'config': {'dataset': 'mnist', 'validation': validation}})
    with self.assertRaisesRegex(ValueError, r'cannot be paired by seed: they '
                                r"differ in \['validation'\]"):
      report.classify_runs([workdir, second])
    # A family missing from a protocol, or a run without validation scores.
    with self.assertRaisesRegex(ValueError, "no 'vs' row in protocol 'p'"):
      report.tuned(runs, ['vs'])
    del runs[1]['per_seed'][1]['validation']
    with self.assertRaisesRegex(
        ValueError, 'p/la:tau=0.5, seed 1: no balanced_accuracy on a '
        'validation split; .*--config.validation'):
      report.tuned(runs, ['la'])

  def test_training_curves_say_which_rows_levelled_off(self):
    workdir = self._workdir()
    for loss, curve in (('ce', [1.0, 0.5, 0.2, 0.1, 0.099, 0.0985]),
                        ('ci', [1.0, 0.8, 0.6, 0.4, 0.2, 0.1])):
      workdir_lib.write_json(os.path.join(workdir, 'runs', f'{loss}.json'), {
          'protocol': 'p', 'loss': loss, 'train_loss_per_epoch': curve,
          'per_seed': [{'seed': 0, 'imbalance_degree': 0.5}]})
    stem = os.path.join(workdir, 'curves')
    out = testutil.launch('launch.plot_training', f'--workdir={workdir}',
                          f'--out={stem}')
    self.assertEqual(out.returncode, 0, out.stderr)
    # ce: |0.0985 - 0.2| / 1.0 over the last 3 epochs = 0.1015 > 0.01.
    self.assertIn('| p | ce | 1 | 0.0985 | 1.02e-01 | no |', out.stdout)
    out = testutil.launch('launch.plot_training', f'--workdir={workdir}',
                          f'--out={stem}', '--last=2', '--rows=ce')
    self.assertIn('| p | ce | 1 | 0.0985 | 1.50e-03 | yes |', out.stdout)
    self.assertNotIn('| p | ci |', out.stdout)
    with open(stem + '.csv', encoding='utf-8') as f:
      self.assertLen(list(csv.DictReader(f)), 6)  # ce's six epochs.

  def test_a_detection_workdir_is_named_not_called_damaged(self):
    path = self._workdir()
    workdir_lib.write_json(os.path.join(path, 'config.json'), {
        'config': {'detector': 'r2cnn', 'steps': 4}, 'runtime': {}})
    workdir_lib.write_json(os.path.join(path, 'results.json'),
                           {'mAP': 0.5, 'per_class': {}})
    result = testutil.launch('launch.compare', f'--workdir={path}',
                             env={'CIL_HUGE_PAGES': '0'})
    self.assertEqual(result.returncode, 1, result.stderr)
    self.assertEqual(result.stderr.splitlines(), [
        f'error: {path} is a launch.detect workdir (one detector, no losses '
        f'to pair); compare detection runs on one test set with python -m '
        f'launch.compare_detections --gt {path}/data/test --runs '
        f'NAME={path}/predictions,...'])
    self.assertTrue(os.path.exists(os.path.join(path, 'results.json')))

  def test_minority_recall(self):
    self.assertAlmostEqual(
        metrics.minority_recall([1.0, 0.5, 0.25], [10, 2, 10]), 0.5)
    self.assertIsNone(metrics.minority_recall([1.0, 0.5], [4, 4]))
    # A minority class without test images is left out, as in the shot
    # groups (it was NaN); none left: None.
    self.assertAlmostEqual(
        metrics.minority_recall([1.0, 0.5, None], [10, 2, 3]), 0.5)
    self.assertIsNone(metrics.minority_recall([1.0, None], [10, 2]))


if __name__ == '__main__':
  absltest.main()
