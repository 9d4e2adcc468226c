"""The GPU benchmark scripts run end to end (`--cpu_smoke`, tiny shapes).

A GPU is lent rarely and briefly, so `benchmarks/gpu.sh` must work the
first time it meets one: this runs every section on the CPU and checks
each printed one JSON line with its measurements and no error. Slow (it
compiles a MAML step, a classifier step, R2CNN and the Cascade): run by
`.ci/run`; the flag check is quick and in the default suite.
"""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import pytest
from testutil import ROOT


@pytest.mark.slow
class GpuScriptTest(absltest.TestCase):

  def test_cpu_smoke_prints_every_section(self):
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.run(
        ['bash', os.path.join(ROOT, 'benchmarks', 'gpu.sh'), '--cpu_smoke',
         '--steps=1'], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=900, check=False)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    rows = [json.loads(line) for line in out.stdout.splitlines()
            if line.startswith('{')]
    self.assertEqual(rows[0]['benchmark'], 'gpu')
    self.assertTrue(rows[0]['cpu_smoke'])
    sections = [r['section'] for r in rows[1:]]
    self.assertEqual(sections, ['maml', 'maml', 'classify', 'detect',
                                'detect', 'resnet50'])
    self.assertEqual([r['detector'] for r in rows[4:6]], ['r2cnn', 'cascade'])
    self.assertEqual(rows[6]['dtype'], 'bfloat16')
    for row in rows[1:]:
      self.assertNotIn('error', row)
      self.assertGreater(row['median_s'], 0)
    maml = rows[1]
    self.assertEqual(maml['order'], 'second')
    self.assertAlmostEqual(maml['projected_60k_min'],
                           60000 * maml['median_s'] / 60, delta=0.1)
    # XLA's FLOP count: second order differentiates through the inner
    # steps, so it costs more than first order; achieved = FLOPs / time.
    self.assertGreater(maml['flops_per_step'], rows[2]['flops_per_step'])
    self.assertAlmostEqual(
        maml['achieved_tflops'],
        maml['flops_per_step'] / maml['median_s'] / 1e12, places=3)
    self.assertIsNone(maml['peak_tflops_fp32'])  # A CPU: no peak listed.


@pytest.mark.slow
class ClassifyLoweringTest(absltest.TestCase):

  def test_prints_both_sides_and_their_ratio(self):
    out = subprocess.run(
        [sys.executable, '-m', 'benchmarks.classify_lowering',
         '--models=digits_cnn', '--seeds=1', '--rounds=2', '--steps=1'],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    row = json.loads(out.stdout.splitlines()[-1])
    self.assertEqual(row['benchmark'], 'classify_lowering')
    self.assertIn('xla_cpu_experimental_ynn_fusion_type', row['options'])
    (result,) = row['results']
    self.assertAlmostEqual(result['ratio'],
                           result['policy_s'] / result['default_s'],
                           delta=0.002)
    self.assertLen(result['round_ratios'], 2)
    # Same initialisation and batch: the first losses agree to rounding.
    self.assertAlmostEqual(result['first_loss']['policy'],
                           result['first_loss']['default'], places=4)


@pytest.mark.slow
class ClassifyStepTest(absltest.TestCase):

  def test_times_the_step_and_scoring_without_the_reference(self):
    out = subprocess.run(
        [sys.executable, '-m', 'benchmarks.classify_step', '--skip_torch',
         '--seeds=2', '--steps=1', '--repeats=1'],
        capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    row = json.loads(out.stdout.splitlines()[-1])
    self.assertEqual(row['benchmark'], 'classify_step')
    self.assertEqual(row['conv_pool'], 's2d_train')  # The CPU policy's.
    self.assertGreater(row['score_s'], 0)
    self.assertEqual(row['eval_batch_size'], 1000)
    self.assertNotIn('ratio', row)  # No reference was run.


class GpuScriptFlagsTest(absltest.TestCase):

  def test_unknown_section_is_refused(self):
    out = subprocess.run(
        [sys.executable, '-m', 'benchmarks.gpu', '--cpu_smoke',
         '--sections=maml,nope'], capture_output=True, text=True, cwd=ROOT,
        timeout=300, check=False)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("unknown 'nope'", out.stderr)


@pytest.mark.slow
class MamlVariantsTest(absltest.TestCase):

  def test_cpu_smoke_times_each_variant_against_the_first(self):
    out = subprocess.run(
        [sys.executable, '-m', 'benchmarks.maml_variants', '--cpu_smoke',
         '--variants=loop/xla,vmap/im2col', '--orders=second'],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    rows = [json.loads(line) for line in out.stdout.splitlines()
            if line.startswith('{')]
    self.assertEqual([r['variant'] for r in rows],
                     ['loop/xla', 'vmap/im2col'])
    self.assertEqual(rows[0]['vs_first'], [1.0, 1.0, 1.0])
    self.assertAlmostEqual(rows[1]['vs_first'][0],
                           rows[1]['median_s'] / rows[0]['median_s'],
                           delta=0.01)


class MamlVariantsFlagsTest(absltest.TestCase):

  def test_malformed_variant_is_refused_before_compiling(self):
    out = subprocess.run(
        [sys.executable, '-m', 'benchmarks.maml_variants', '--cpu_smoke',
         '--variants=vmap/xla,vmap/cudnn'], capture_output=True, text=True,
        cwd=ROOT, timeout=300, check=False)
    self.assertNotEqual(out.returncode, 0)
    self.assertIn("'vmap/cudnn' is not TASK_MAP/CONV_IMPL", out.stderr)


if __name__ == '__main__':
  absltest.main()
