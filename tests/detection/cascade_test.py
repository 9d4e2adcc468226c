"""Tests for cil.detection.cascade: stage targets and the model.
"""

import dataclasses

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from cil.detection import boxes as boxes_lib
from cil.detection import cascade
from cil.detection import r2cnn


_CFG = cascade.CascadeConfig(image_size=128, width=8, head_dim=64,
                             pre_nms=200, post_nms=32, rpn_batch=64,
                             roi_batch=16, loss='ci')


class StageTargetsTest(absltest.TestCase):
  """Hand-made candidates against two ground-truth ships."""

  def setUp(self):
    super().setUp()
    # Ship A lies along x; ship B is thin and diagonal; the third is padding.
    self.gt = jnp.array([[60., 60, 40, 10, 0], [100, 100, 60, 8, np.pi / 4],
                         [0, 0, 1, 1, 0]])
    self.labels = jnp.array([3, 5, 0])
    self.valid = jnp.array([True, True, False])
    enclosing_b = boxes_lib.aabb_to_rbox(boxes_lib.rbox_to_aabb(self.gt[1]))
    self.candidates = jnp.stack([
        self.gt[0],                                # IoU 1 with A
        self.gt[0] + jnp.array([8.5, 0, 0, 0, 0]),  # IoU 31.5 / 48.5 = 0.65
        enclosing_b,                               # B's enclosing box
        jnp.array([20., 110, 10, 10, 0]),          # background
        self.gt[0]])                               # invalid (padding)
    self.cvalid = jnp.array([True, True, True, True, False])

  def _targets(self, stage, aabb_first=True):
    cfg = dataclasses.replace(_CFG, roi_batch=8, roi_positive_fraction=0.5,
                              first_stage_aabb_match=aabb_first)
    tg = cascade.stage_targets(cfg, stage, self.candidates, self.cvalid,
                               self.gt, self.labels, self.valid,
                               jax.random.key(0))
    tg = jax.tree.map(np.asarray, tg)
    fg = {int(i): (int(c), d) for i, c, d, f in zip(
        tg['idx'], tg['classes'], tg['deltas'], tg['fg']) if f}
    sampled = set(tg['idx'][tg['mask']].tolist())
    return fg, sampled, tg

  def test_each_stage_raises_the_bar(self):
    # Stage thresholds 0.5 / 0.6 / 0.7: the 0.65 box is foreground in the
    # first two stages only; B's enclosing box is foreground in stage 1
    # only, by the axis-aligned match (its rotated IoU is about 0.2).
    expected = {0: {0, 1, 2}, 1: {0, 1}, 2: {0}}
    for stage, want in expected.items():
      fg, sampled, _ = self._targets(stage)
      self.assertEqual(set(fg), want, f'stage {stage}')
      self.assertEqual(sampled, {0, 1, 2, 3}, f'stage {stage}')
    fg, _, _ = self._targets(0, aabb_first=False)
    self.assertEqual(set(fg), {0, 1})

  def test_classes_and_deltas(self):
    fg, _, tg = self._targets(1)
    self.assertEqual(fg[0][0], 4)  # Label 3 + 1 (background is 0).
    self.assertEqual(fg[1][0], 4)
    np.testing.assert_allclose(fg[0][1], 0, atol=1e-6)
    # Candidate 1 sits 8.5 px right of A: dx = -8.5 / 40 x stage 2's 20.
    np.testing.assert_allclose(fg[1][1], [-8.5 / 40 * 20, 0, 0, 0, 0],
                               atol=1e-5)
    background = ~tg['fg'] & tg['mask']
    self.assertTrue(np.all(tg['classes'][background] == 0))
    self.assertTrue(np.all(tg['deltas'][~tg['fg']] == 0))
    self.assertEqual(cascade.stage_weights(2), (30, 30, 15, 15, 30))

  def test_diagonal_ship_regression_target_from_its_enclosing_box(self):
    fg, _, _ = self._targets(0)
    self.assertEqual(fg[2][0], 6)
    # The target turns the axis-aligned box by 45 degrees (x 10).
    self.assertAlmostEqual(abs(float(fg[2][1][4])), np.pi / 4 * 10, places=4)


class CascadeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = cascade.init_params(_CFG, jax.random.key(0))

  def test_stage_heads_and_shared_trunk_paths(self):
    self.assertEqual(sorted(k for k in self.params if k.startswith('stages')),
                     ['stages_0', 'stages_1', 'stages_2'])
    r2 = jax.eval_shape(lambda: r2cnn.init_params(_CFG, jax.random.key(0)))
    for name in ('backbone', 'rpn_conv', 'rpn_cls', 'rpn_box'):
      self.assertEqual(jax.tree.map(jnp.shape, self.params[name]),
                       jax.tree.map(lambda x: x.shape, r2[name]), name)
    logits, deltas = cascade.CascadeRCNN(_CFG).apply(
        {'params': self.params}, jnp.zeros((3, 7 * 7 * 32)), 1,
        method=cascade.CascadeRCNN.stage)
    self.assertEqual((logits.shape, deltas.shape), ((3, 16), (3, 5)))


if __name__ == '__main__':
  absltest.main()
