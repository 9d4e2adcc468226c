"""Tests for Fig. 2 (cil.plots and `python -m launch.plot_losses`)."""

import csv
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np

from cil import plots
from testutil import ROOT


class LossCurvesTest(absltest.TestCase):

  def test_curves_have_the_papers_shape(self):
    p = np.linspace(0.01, 0.99, 99)
    curves = plots.loss_curves(p)
    ce = curves['CE'][0]
    fl5 = curves['FL (gamma=5)'][0]
    majority = curves['CI majority (f=1)']
    minority = curves['CI minority (f=2)']
    # Fig. 2: majority CI below CE and above FL(gamma=5); minority twice it.
    self.assertTrue(np.all(majority[0] <= ce))
    self.assertTrue(np.all(majority[0] >= fl5))
    np.testing.assert_allclose(minority[0], 2 * majority[0], rtol=1e-9)
    np.testing.assert_allclose(minority[1], 2 * majority[1], rtol=1e-9)
    # All losses decrease in p: their derivatives are negative.
    for name, value in curves.items():
      if name != 'p':
        self.assertTrue(np.all(value[1] < 0), msg=name)


class LauncherTest(absltest.TestCase):

  def test_writes_png_and_csv(self):
    # tempfile rather than create_tempdir: absl flags are unparsed in pytest.
    tmp = tempfile.TemporaryDirectory()
    self.addCleanup(tmp.cleanup)
    out = tmp.name
    result = subprocess.run(
        [sys.executable, '-m', 'launch.plot_losses', f'--out={out}',
         '--points=50'], cwd=ROOT, capture_output=True, text=True,
        timeout=300, check=False)
    self.assertEqual(result.returncode, 0, msg=result.stderr[-2000:])
    with open(os.path.join(out, 'fig2_losses.png'), 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
    with open(os.path.join(out, 'fig2_losses.csv')) as f:
      rows = list(csv.reader(f))
    self.assertLen(rows, 51)
    self.assertEqual(rows[0][0], 'p')
    self.assertTrue(os.path.exists(os.path.join(out, 'fig2_losses.pdf')))

  def test_too_few_points_is_a_named_error(self):
    with self.assertRaisesRegex(ValueError, 'num_points must be at least 2'):
      plots.plot_loss_curves(tempfile.mkdtemp(), num_points=0)


if __name__ == '__main__':
  absltest.main()
