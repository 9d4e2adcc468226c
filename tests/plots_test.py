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


def _sweep_runs(num_losses: int, rules=('', 'posthoc')) -> list:
  """Hand-made sweep records: `num_losses` losses at 3 lambdas, each also
  scored by every prediction rule in `rules`."""
  runs = []
  for k in range(num_losses):
    for rule in rules:
      for lam, protocol in ((0.5, 'p1'), (1.0, 'p2'), (1.35, 'p3')):
        name = f'loss_{k:02d}:with_a_long_spec=0.5' + (f'+{rule}' if rule
                                                       else '')
        per_seed = [{'seed': s, 'imbalance_degree': lam,
                     'accuracy': 0.9 - 0.2 * lam + 0.01 * k + 0.005 * s,
                     'balanced_accuracy': 0.8, 'minority_recall': 0.5}
                    for s in range(3)]
        runs.append({'protocol': protocol, 'loss': name,
                     'per_seed': per_seed,
                     'summary': {'imbalance_degree': {'mean': lam},
                                 **{m: {'mean': per_seed[0][m], 'ci95': 0.01}
                                    for m in ('accuracy', 'balanced_accuracy',
                                              'minority_recall')}}})
  return runs


class ManySeriesTest(absltest.TestCase):
  """With 60 losses the legend is inside the figure and off every axes."""

  def _check_legend_placement(self, fig):
    # pylint: disable-next=g-import-not-at-top
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # Constrained layout places everything on draw.
    renderer = canvas.get_renderer()
    legends = fig.legends
    self.assertLen(legends, 1)
    box = legends[0].get_window_extent(renderer)
    figure_box = fig.bbox
    self.assertGreaterEqual(box.x0, figure_box.x0 - 1)
    self.assertGreaterEqual(box.y0, figure_box.y0 - 1)
    self.assertLessEqual(box.x1, figure_box.x1 + 1)
    self.assertLessEqual(box.y1, figure_box.y1 + 1)
    for ax in fig.axes:
      self.assertFalse(box.overlaps(ax.get_window_extent(renderer)),
                       ax.get_title())
    self.assertEqual(len(legends[0].get_texts()), 60)

  def test_sweep_figure_of_sixty_losses(self):
    fig, rows = plots.sweep_figure(
        _sweep_runs(60), ('accuracy', 'balanced_accuracy', 'minority_recall'))
    self.assertLen(fig.axes, 6)  # A row per prediction rule.
    self.assertLen(rows, 60 * 2 * 3 * 3)
    self._check_legend_placement(fig)

  def test_differences_figure_of_sixty_losses(self):
    runs = _sweep_runs(60, rules=('',))
    differences = [{'protocol': r['protocol'], 'loss': r['loss'],
                    'lambda': r['summary']['imbalance_degree']['mean'],
                    'seeds': 3, 'mean': 0.01, 'ci95': 0.02}
                   for r in runs]
    fig, rows = plots.differences_figure(differences, baseline='ce',
                                         metric='accuracy')
    self.assertLen(rows, 180)
    self._check_legend_placement(fig)

  def test_sixty_styles_are_distinct(self):
    styles = plots._styles([f'l{k}' for k in range(60)])
    self.assertLen({tuple(sorted(s.items())) for s in styles.values()}, 60)


if __name__ == '__main__':
  absltest.main()
