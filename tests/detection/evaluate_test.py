"""Tests for cil.detection.evaluate and its launchers
(launch.evaluate_detections, launch.compare_detections).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from cil.detection import evaluate
from cil.detection import io as det_io
from cil.detection import metrics
from cil.detection import synthetic
from testutil import ROOT


class EvaluateCliTest(absltest.TestCase):

  def test_generated_ground_truth_against_perturbed_copy(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, '-m', 'launch.make_ships', '--out',
                    os.path.join(root, 'gt'), '--images', '3', '--size',
                    '256', '--seed', '1'], check=True, cwd=ROOT, env=env,
                   capture_output=True)
    gt = evaluate.read_ground_truth(os.path.join(root, 'gt'))
    pred_dir = os.path.join(root, 'pred')
    os.makedirs(pred_dir)
    expected = {}
    for image, g in gt.items():
      # Keep every other box, moved by 0.5 px (IoU well above 0.6), and add
      # one far-off false positive of the first kept class.
      keep = np.arange(len(g.boxes)) % 2 == 0
      boxes = g.boxes[keep].copy()
      boxes[:, 0] += 0.5
      labels = list(g.labels[keep])
      boxes = np.concatenate([boxes, [[-500, -500, 10, 5, 0]]])
      labels.append(labels[0])
      scores = np.linspace(1, 0.5, len(labels))
      det_io.write_dota(os.path.join(pred_dir, image + '.txt'),
                        metrics.ImageBoxes(boxes, np.asarray(labels),
                                           scores=scores))
      for label, k in zip(g.labels, keep):
        e = expected.setdefault(str(label), [0, 0, 0])
        e[0 if k else 2] += 1
      expected[labels[0]][1] += 1
    out = os.path.join(root, 'eval')
    run = subprocess.run(
        [sys.executable, '-m', 'launch.evaluate_detections', '--gt',
         os.path.join(root, 'gt'), '--pred', pred_dir, '--out', out],
        check=True, cwd=ROOT, env=env, capture_output=True, text=True)
    self.assertIn('overall (mAP)', run.stdout)
    self.assertIn('| mAP | ', run.stdout)  # The four protocols' table.
    with open(os.path.join(out, 'results.json')) as f:
      result = json.load(f)
    for name, (tp, fp, fn) in expected.items():
      e = result['per_class'][name]
      self.assertEqual((e['tp'], e['fp'], e['fn']), (tp, fp, fn), name)
    total = np.sum(list(expected.values()), 0)
    self.assertAlmostEqual(result['overall']['recall'],
                           total[0] / (total[0] + total[2]))
    self.assertAlmostEqual(result['overall']['precision'],
                           total[0] / (total[0] + total[1]))
    self.assertTrue(os.path.exists(os.path.join(out, 'table.md')))
    # The protocols' paper column (IoUs computed once, cached) equals the
    # direct evaluation's AP, class by class.
    paper = result['ap_protocols']['paper']
    self.assertAlmostEqual(paper['mAP'], result['mAP'])
    for name, e in result['per_class'].items():
      self.assertAlmostEqual(paper['per_class'][name], e['ap'], msg=name)

    # The launcher's faults, each one named line: a prediction folder that
    # does not exist (not a "Label folder"), prediction files missing (as
    # compare_detections refuses them; --missing_as_empty counts them as
    # empty), --out an existing file.
    os.remove(os.path.join(pred_dir, sorted(gt)[0] + '.txt'))
    for flags, message in (
        (['--pred', os.path.join(root, 'none')], "Prediction folder "
         "--pred='.*none' does not exist"),
        (['--pred', pred_dir], r'--pred \(.*pred\) has no prediction file '
         r'for 1 of the 3 test images'),
        (['--pred', pred_dir, '--missing_as_empty',
          '--out', os.path.join(out, 'results.json')],
         '--out .*results.json is an existing file; choose a folder')):
      bad = subprocess.run(
          [sys.executable, '-m', 'launch.evaluate_detections', '--gt',
           os.path.join(root, 'gt'), *flags], cwd=ROOT,
          env=dict(env, CIL_HUGE_PAGES='0'), capture_output=True, text=True)
      self.assertEqual(bad.returncode, 1, bad.stderr)
      self.assertRegex(bad.stderr, f'^error: {message}')
      self.assertLen(bad.stderr.strip().splitlines(), 1, bad.stderr)
    counted = evaluate.evaluate_folders(os.path.join(root, 'gt'), pred_dir,
                                        missing_as_empty=True)
    self.assertEqual(counted['inputs']['missing_predictions'],
                     [sorted(gt)[0]])

  def test_compare_runs_with_paired_bootstrap(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=ROOT)
    synthetic.write_dataset(os.path.join(root, 'gt'), images=4, size=256,
                            seed=2)
    gt = evaluate.read_ground_truth(os.path.join(root, 'gt'))
    for run, step in (('perfect', 1), ('half', 2)):
      os.makedirs(os.path.join(root, run))
      for image, g in gt.items():
        keep = np.arange(len(g.boxes)) % step == 0
        det_io.write_dota(os.path.join(root, run, image + '.txt'),
                          metrics.ImageBoxes(g.boxes[keep], g.labels[keep],
                                             scores=np.ones(keep.sum())))
    out = os.path.join(root, 'compare.md')
    cmd = [sys.executable, '-m', 'launch.compare_detections', '--gt',
           os.path.join(root, 'gt'), '--runs',
           f'perfect={root}/perfect,half={root}/half',
           '--differences=perfect:half', '--baseline', 'perfect',
           '--samples', '200', f'--out={out}']
    run = subprocess.run(cmd, check=True, cwd=ROOT, env=env,
                         capture_output=True, text=True)
    self.assertIn('| half - perfect |', run.stdout)
    self.assertIn('| perfect - half |', run.stdout)
    with open(os.path.join(root, 'compare.json')) as f:
      result = json.load(f)
    boot = result['bootstrap']
    self.assertEqual(boot['mAP']['perfect'],
                     {'value': 1.0, 'low': 1.0, 'high': 1.0})
    # The point mAP is evaluate's; missing half the ships costs AP in every
    # draw, so the paired difference's CI lies below 0.
    half = evaluate.evaluate_folders(os.path.join(root, 'gt'),
                                     os.path.join(root, 'half'))
    self.assertAlmostEqual(boot['mAP']['half']['value'], half['mAP'])
    self.assertLess(boot['difference']['half - perfect']['high'], 0)
    bad = subprocess.run(cmd[:-4] + ['nobody'], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    self.assertEqual(bad.returncode, 1)
    self.assertIn("'nobody' (baseline or difference) is not a run",
                  bad.stderr)
    self.assertNotIn('Traceback', bad.stderr)

    # A run folder missing 3 of the 4 prediction files is an error naming
    # the run and the images, not a run that "detected nothing" there ...
    partial = os.path.join(root, 'partial')
    os.makedirs(partial)
    first = sorted(gt)[0]
    shutil.copy(os.path.join(root, 'perfect', first + '.txt'), partial)
    runs = {'perfect': os.path.join(root, 'perfect'), 'partial': partial}
    with self.assertRaisesRegex(
        ValueError, r"Run 'partial' .* no prediction file for 3 of the 4 "
        r'test images .*--missing_as_empty'):
      evaluate.compare_folders(os.path.join(root, 'gt'), runs, samples=10)
    # ... unless asked, and then the table says so.
    result = evaluate.compare_folders(os.path.join(root, 'gt'), runs,
                                      samples=10, missing_as_empty=True)
    self.assertLen(result['settings']['missing_predictions']['partial'], 3)
    self.assertIn('Run partial: 3 test images had no prediction file',
                  evaluate.comparison_markdown(result))
    # The first image only (name order): the partial run then has all it
    # needs, and only that image's ships count.
    result = evaluate.compare_folders(os.path.join(root, 'gt'), runs,
                                      samples=10, max_images=1)
    self.assertEqual(result['settings']['images'], 1)
    self.assertEqual(sum(result['num_gt'].values()), len(gt[first].labels))
    self.assertEqual(result['bootstrap']['mAP']['partial']['value'], 1.0)
    with self.assertRaisesRegex(ValueError, 'max_images must be positive'):
      evaluate.compare_folders(os.path.join(root, 'gt'), runs, max_images=0)
    # Ground truth without a single object: nothing to score, named.
    empty = os.path.join(root, 'empty_gt')
    os.makedirs(empty)
    for name in gt:
      open(os.path.join(empty, name + '.txt'), 'w').close()
    with self.assertRaisesRegex(ValueError, 'empty_gt.* holds no objects '
                                r'\(4 label files, all empty\)'):
      evaluate.compare_folders(empty, runs, samples=10)
    # A run folder that does not exist is named as the run's.
    with self.assertRaisesRegex(ValueError, "Prediction folder of run 'b', "
                                "'/nonexistent/b', does not exist"):
      evaluate.compare_folders(os.path.join(root, 'gt'),
                               {'a': runs['perfect'], 'b': '/nonexistent/b'})


if __name__ == '__main__':
  absltest.main()
