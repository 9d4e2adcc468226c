"""Tests for cil.detection.r2cnn: the model, its loss and the train step of
both detectors.
"""

import dataclasses

from absl.testing import absltest
from flax.training import train_state
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cil.detection import cascade
from cil.detection import r2cnn
from cil.experiments import detect
from testutil import TINY_R2CNN


_DETECTORS = {'r2cnn': (r2cnn, TINY_R2CNN),
              'cascade': (cascade, cascade.CascadeConfig(
                  **dataclasses.asdict(TINY_R2CNN)))}


class R2CNNTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = r2cnn.init_params(TINY_R2CNN, jax.random.key(0))
    cls.batch = detect.synthetic_batch(2, size=128, max_gt=16)

  def test_head_outputs_and_backbones(self):
    model = r2cnn.R2CNN(TINY_R2CNN)
    pooled = jnp.zeros((3, 115 * 32))  # 7x7 + 11x3 + 3x11 bins, 32 ch.
    logits, aabb, inclined = model.apply({'params': self.params}, pooled,
                                         method=r2cnn.R2CNN.head)
    self.assertEqual(logits.shape, (3, 16))  # 15 classes + background.
    self.assertEqual((aabb.shape, inclined.shape), ((3, 4), (3, 5)))
    with self.assertRaisesRegex(ValueError, 'Unknown backbone'):
      r2cnn.validate(dataclasses.replace(TINY_R2CNN, backbone='vgg'))
    with self.assertRaisesRegex(ValueError, 'multiple of 16'):
      r2cnn.validate(dataclasses.replace(TINY_R2CNN, image_size=100))

  def test_counts_reach_the_classification_loss(self):
    # CI loss: the head's classification term changes with the class counts
    # (the same parameters, images and sampling); CE ignores them.
    def cls_term(loss, counts):
      cfg = dataclasses.replace(TINY_R2CNN, loss=loss)
      _, parts = jax.jit(lambda p, b, c: r2cnn.loss_fn(
          p, b, jax.random.key(1), cfg=cfg, model=r2cnn.R2CNN(cfg),
          counts=c))(self.params, self.batch, counts)
      return float(parts['cls'])

    balanced = jnp.asarray(r2cnn.class_counts_with_background(
        np.full(15, 50.0), 0.25))
    skewed = jnp.asarray(r2cnn.class_counts_with_background(
        np.geomspace(2000, 5, 15), 0.25))
    self.assertNotAlmostEqual(cls_term('ci', balanced),
                              cls_term('ci', skewed), places=4)
    self.assertAlmostEqual(cls_term('ce', balanced), cls_term('ce', skewed),
                           places=6)

  def test_background_count(self):
    counts = r2cnn.class_counts_with_background([10, 0, 30], 0.25)
    # Absent classes count 1; background is 3x the foreground total.
    np.testing.assert_allclose(counts, [123, 10, 1, 30])
    counts = r2cnn.class_counts_with_background(
        [10, 0, 30], 0.25, background='foreground_mean')
    np.testing.assert_allclose(counts, [41 / 3, 10, 1, 30], rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "background must be one of.*"
                                "'sampled'.*got 'ships'"):
      r2cnn.class_counts_with_background([10], 0.25, background='ships')

  def test_background_left_out_of_balancing_gives_ce_on_equal_ships(self):
    # Equal ship counts: with background at the ships' mean every class
    # counts the same, so LA, VS and class-balanced CE are CE; counted as
    # its share of the sampled RoIs (3x the ships), background is balanced
    # away and each differs from CE.
    logits = jax.random.normal(jax.random.key(0), (12, 4))
    classes = jnp.arange(12) % 4
    mask = jnp.arange(12) < 10
    term = {}
    for background in r2cnn.BACKGROUND_COUNTS:
      counts = jnp.asarray(r2cnn.class_counts_with_background(
          [20, 20, 20], 0.25, background=background))
      for loss in ('ce', 'la', 'vs', 'cb'):
        cfg = dataclasses.replace(TINY_R2CNN, loss=loss)
        term[background, loss] = float(r2cnn.classification_loss(
            cfg, logits, classes, counts, mask))
    for loss in ('la', 'vs', 'cb'):
      self.assertAlmostEqual(term['foreground_mean', loss],
                             term['foreground_mean', 'ce'], places=5)
      self.assertGreater(abs(term['sampled', loss] - term['sampled', 'ce']),
                         1e-2)


class DetectorStepTest(absltest.TestCase):

  def test_r2cnn_train_steps_lower_the_loss_and_detect_has_fixed_shape(self):
    self._train_steps_lower_the_loss_and_detect_has_fixed_shape('r2cnn')

  # Slow: ~30 s, and OverfitTest trains the Cascade further (slow too).
  @pytest.mark.slow
  def test_cascade_train_steps_lower_the_loss_and_detect_has_fixed_shape(
      self):
    self._train_steps_lower_the_loss_and_detect_has_fixed_shape('cascade')

  def _train_steps_lower_the_loss_and_detect_has_fixed_shape(self, name):
    module, cfg = _DETECTORS[name]
    batch = detect.synthetic_batch(2, size=128, max_gt=16)
    counts = jnp.asarray(r2cnn.class_counts_with_background(
        np.full(15, 10.0), 0.25))
    state = train_state.TrainState.create(
        apply_fn=None, params=module.init_params(cfg, jax.random.key(0)),
        tx=optax.adam(2e-3))
    step = jax.jit(lambda s, b: module.train_step(
        s, b, jax.random.key(2), cfg=cfg, counts=counts))
    losses = []
    for _ in range(12):
      state, metrics = step(state, batch)
      losses.append(float(metrics['loss']))
    self.assertTrue(np.all(np.isfinite(losses)))
    self.assertLess(np.mean(losses[-3:]), 0.8 * np.mean(losses[:3]))
    if name == 'cascade':
      # The ground truth joins every stage's candidates: each has foreground.
      for t in (1, 2, 3):
        self.assertGreater(int(metrics[f'fg{t}']), 0)
        self.assertIn(f'cls{t}', metrics)
        self.assertIn(f'rbox{t}', metrics)
    det = jax.jit(lambda p, x: module.detect(p, x, cfg=cfg))(
        state.params, batch['images'])
    self.assertEqual(det['boxes'].shape, (2, cfg.max_detections, 5))
    self.assertEqual(det['mask'].dtype, jnp.bool_)
    kept = np.asarray(det['scores'])[np.asarray(det['mask'])]
    self.assertTrue(np.all(kept > cfg.score_threshold))


if __name__ == '__main__':
  absltest.main()
