"""Tests for cil.maml: second-order numerics, FOMAML, devices, CI counts."""

import dataclasses
import functools
import importlib.util
import math

from absl.testing import absltest
import pytest
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import losses
from cil import maml
from cil import models
import testutil


def setUpModule():
  testutil.four_cpu_devices()


def _sigmoid(z):
  return 1 / (1 + math.exp(-z))


def _scalar_model(variables, x):
  """Two-class logits [w x, 0]: p(class 0) = sigmoid(w x)."""
  w = variables['params']['w']
  return jnp.stack([w * x[:, 0], jnp.zeros(x.shape[0])], axis=-1)


class SecondOrderTest(absltest.TestCase):
  """One inner step on a scalar model, against the hand-derived gradient.

  With natural-log CE and label 0, L(w; x) = -log sigmoid(w x), so
  dL/dw = -x sigmoid(-w x). One inner step: w' = w + a x_s sigmoid(-w x_s),
  and dw'/dw = 1 - a x_s^2 sigmoid(w x_s) sigmoid(-w x_s). The meta-gradient
  is dL(w'; x_q)/dw = -x_q sigmoid(-w' x_q) * dw'/dw; FOMAML drops the
  second-order term, i.e. sets dw'/dw = 1.
  """

  W, X_S, X_Q, LR = 0.3, 1.5, -0.7, 0.5

  def _meta_grad(self, first_order):
    loss = functools.partial(losses.get_loss('ce'), log_base=math.e)
    support = (jnp.array([[self.X_S]]), jnp.array([0]), jnp.array([1., 1.]))

    def meta_loss(w):
      adapted = maml.inner_adapt({'w': w}, _scalar_model, support, loss=loss,
                                 inner_lr=self.LR, num_steps=1,
                                 first_order=first_order)
      return jnp.mean(maml.support_loss(
          adapted, _scalar_model, jnp.array([[self.X_Q]]), jnp.array([0]),
          jnp.array([1., 1.]), loss=loss))

    with jax.enable_x64(True):
      return float(jax.grad(meta_loss)(jnp.float64(self.W)))

  def _hand(self, first_order):
    w_adapted = self.W + self.LR * self.X_S * _sigmoid(-self.W * self.X_S)
    outer = -self.X_Q * _sigmoid(-w_adapted * self.X_Q)
    if first_order:
      return outer
    inner = 1 - self.LR * self.X_S ** 2 * _sigmoid(self.W * self.X_S) * (
        _sigmoid(-self.W * self.X_S))
    return outer * inner

  def test_second_order_gradient_is_hand_derived_value(self):
    self.assertAlmostEqual(self._meta_grad(False), self._hand(False),
                           places=12)

  def test_first_order_drops_the_second_order_term(self):
    self.assertAlmostEqual(self._meta_grad(True), self._hand(True),
                           places=12)
    self.assertNotAlmostEqual(self._hand(True), self._hand(False), places=3)


class CountsReachTheLossTest(absltest.TestCase):

  def test_minority_support_examples_are_weighted_by_f(self):
    # Uniform predictions (zero logits): every example has p = 1/5, so the CI
    # loss of an example is proportional to the factor f of its class.
    # Counts [1, 1, 1, 1, 11]: lambda = 0.833 <= 1, f = sqrt(11 / N_i).
    counts = jnp.array([1., 1., 1., 1., 11.])
    labels = jnp.array([0, 1, 2, 3] + [4] * 11)

    def zero_logits(variables, x):
      del variables
      return jnp.zeros((x.shape[0], 5))

    per_example = maml.support_loss({}, zero_logits, jnp.zeros((15, 1)),
                                    labels, counts, loss=losses.ci_loss)
    np.testing.assert_allclose(per_example[:4] / per_example[4],
                               [math.sqrt(11)] * 4, rtol=1e-5)
    np.testing.assert_allclose(per_example[4:], per_example[4], rtol=1e-6)

  def test_inner_step_depends_on_the_task_counts(self):
    model = models.Conv4(num_classes=5, features=2, pools=3)
    x = jax.random.uniform(jax.random.key(0), (15, 8, 8, 1))
    labels = jnp.array([0, 1, 2, 3] + [4] * 11)
    params = model.init(jax.random.key(1), x)['params']
    adapt = jax.jit(lambda c: maml.inner_adapt(
        params, model.apply, (x, labels, c), loss=losses.ci_loss,
        inner_lr=0.1, num_steps=1))
    imbalanced = adapt(jnp.array([1., 1., 1., 1., 11.]))
    balanced = adapt(jnp.array([3., 3., 3., 3., 3.]))
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                        imbalanced, balanced)
    self.assertGreater(max(jax.tree.leaves(diff)), 1e-6)


class MultiDeviceTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if jax.local_device_count() < 4:
      raise absltest.SkipTest('needs 4 (fake) devices')
    cfg = maml.MamlConfig(ways=5, inner_lr=0.1, meta_lr=1e-3,
                          adaptation_steps=1, test_adaptation_steps=1,
                          task_map='calls')
    model = models.Conv4(num_classes=5, features=4, pools=3)
    rng = np.random.default_rng(0)
    # 4 tasks, support [1, 1, 1, 1, 4] (8 images), proportional queries.
    labels = np.tile(np.array([0, 1, 2, 3, 4, 4, 4, 4]), (4, 1))
    cls.tasks = {
        'support_images': jnp.asarray(rng.integers(0, 256, (4, 8, 8, 8, 1)),
                                      jnp.uint8),
        'support_labels': jnp.asarray(labels, jnp.int32),
        'support_counts': jnp.tile(jnp.array([1, 1, 1, 1, 4], jnp.int32),
                                   (4, 1)),
        'query_images': jnp.asarray(rng.integers(0, 256, (4, 8, 8, 8, 1)),
                                    jnp.uint8),
        'query_labels': jnp.asarray(labels, jnp.int32),
    }
    cls.cfg = cfg
    cls.state = maml.create_state(model, cfg, jax.random.key(0),
                                  cls.tasks['support_images'][0])
    cls.single = maml.parallel_meta_train_step(cfg, parallel='none')(
        cls.state, cls.tasks)

  def _check(self, parallel, cfg=None):
    """The step `parallel` on `cfg` (default: the policy's) equals `single`."""
    state, metrics = maml.parallel_meta_train_step(
        cfg or self.cfg, parallel=parallel)(self.state, self.tasks)
    chex.assert_trees_all_close(state.params, self.single[0].params,
                                atol=1e-6)
    chex.assert_trees_all_close(metrics, self.single[1], rtol=1e-5)
    self.assertEqual(int(state.step), 1)
    return state

  def test_pmap_equals_single_device(self):
    self._check('pmap')

  def test_shard_map_equals_single_device(self):
    self._check('shard_map')

  def test_per_task_calls_equal_one_program(self):
    # `single` ran the CPU's task_map='calls' (a compiled call per task);
    # the tasks unrolled in one program give the same update.
    if self.cfg.task_map != 'calls':
      self.skipTest('the CPU policy runs one call per task')
    state = self._check('none', dataclasses.replace(self.cfg,
                                                    task_map='loop'))
    moved = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)),
                         state.params, self.state.params)
    self.assertGreater(max(jax.tree.leaves(moved)), 1e-4)

  def test_meta_batch_must_divide_over_devices(self):
    tasks = {k: v[:3] for k, v in self.tasks.items()}
    with self.assertRaisesRegex(ValueError, 'divide evenly over its 4 devices'):
      maml.parallel_meta_train_step(self.cfg, parallel='pmap')(self.state,
                                                               tasks)

  def test_meta_step_reduces_the_meta_loss(self):
    # A few meta-steps on the same meta-batch must lower its meta-loss.
    step = maml.parallel_meta_train_step(self.cfg, parallel='none')
    state = self.state.replace(tx=optax.adam(1e-2),
                               opt_state=optax.adam(1e-2).init(
                                   self.state.params))
    first = None
    for _ in range(5):
      state, metrics = step(state, self.tasks)
      first = first if first is not None else float(metrics['meta_loss'])
    self.assertLess(float(metrics['meta_loss']), first)


@absltest.skipIf(importlib.util.find_spec('tensorflow_datasets') is None,
                 'cil.data (the episode over-sampler) needs the data extra; '
                 'the base install runs the rest')
class OversamplingTest(absltest.TestCase):
  """Random over-sampling (ROS) in the inner and outer loss."""

  def test_masked_positions_equal_the_materialised_oversampled_task(self):
    # A linear model on 4 features, 3 ways, support counts [1, 2, 3] and
    # proportional queries (p = 1). ROS by positions and a mask must give
    # the loss and meta-gradient of the task built with the duplicates
    # themselves and balanced counts [3, 3, 3].
    from cil import data  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1, 2, 2, 2])
    size = data.episodes.oversampled_size(6, 3)
    s_idx, s_mask = data.random_oversample(labels, 3, size, rng)
    q_idx, q_mask = data.random_oversample(labels, 3, size, rng)
    self.assertEqual(np.bincount(labels[s_idx[s_mask]]).tolist(), [3, 3, 3])

    def apply_fn(variables, x):
      return x @ variables['params']['w']

    with jax.enable_x64(True):
      support_x = jnp.asarray(rng.normal(size=(6, 4)))
      query_x = jnp.asarray(rng.normal(size=(6, 4)))
      w = jnp.asarray(rng.normal(size=(4, 3)))
      ros_task = {
          'support_images': support_x, 'support_labels': jnp.asarray(labels),
          'support_counts': jnp.array([1, 2, 3]), 'query_images': query_x,
          'query_labels': jnp.asarray(labels),
          'support_ros_index': jnp.asarray(s_idx),
          'support_ros_mask': jnp.asarray(s_mask),
          'query_ros_index': jnp.asarray(q_idx),
          'query_ros_mask': jnp.asarray(q_mask)}
      s, q = s_idx[s_mask], q_idx[q_mask]
      plain_task = {
          'support_images': support_x[s],
          'support_labels': jnp.asarray(labels[s]),
          'support_counts': jnp.array([3, 3, 3]),
          'query_images': query_x[q], 'query_labels': jnp.asarray(labels[q])}
      for loss in ('ce', 'ci'):
        cfg = maml.MamlConfig(ways=3, inner_lr=0.3, meta_lr=1e-3,
                              adaptation_steps=2, test_adaptation_steps=2,
                              inner_loss=loss, outer_loss=loss,
                              task_map='loop')

        def value_and_grad(task, cfg=cfg):
          return jax.value_and_grad(lambda p: maml.task_loss(
              p, apply_fn, task, cfg=cfg)[0])({'w': w})
        (a, ga), (b, gb) = value_and_grad(ros_task), value_and_grad(
            plain_task)
        np.testing.assert_allclose(a, b, rtol=1e-12)
        np.testing.assert_allclose(ga['w'], gb['w'], rtol=1e-10)
        # And ROS changes the loss: the task as drawn gives another value.
        drawn = {k: v for k, v in ros_task.items()
                 if k in maml.TASK_KEYS}
        self.assertNotAlmostEqual(float(value_and_grad(drawn)[0]), float(a),
                                  places=6)

  @pytest.mark.slow  # ~20-60 s: Conv4's meta-gradient compiles twice.
  def test_padding_of_an_oversampled_set_leaves_batch_statistics_alone(self):
    # Conv4 normalises with the batch's statistics: the masked padding of
    # an over-sampled support (40 copies of position 0 for [3, 3, 3, 3, 3]
    # at the fixed size 55) must not enter them, so the masked task's loss
    # and meta-gradient equal those of the materialised over-sampled task.
    from cil import data  # pylint: disable=g-import-not-at-top
    from cil import models  # pylint: disable=g-import-not-at-top
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 3)
    size = data.episodes.oversampled_size(15, 5)
    s_idx, s_mask = data.random_oversample(labels, 5, size, rng)
    self.assertEqual(int(s_mask.sum()), 15)
    model = models.Conv4(num_classes=5, features=4, pools=2)
    with jax.enable_x64(True):
      x = jnp.asarray(rng.normal(size=(15, 8, 8, 1)))
      params = model.init(jax.random.key(0), x)['params']
      ros_task = {
          'support_images': x, 'support_labels': jnp.asarray(labels),
          'support_counts': jnp.full(5, 3), 'query_images': x,
          'query_labels': jnp.asarray(labels),
          'support_ros_index': jnp.asarray(s_idx),
          'support_ros_mask': jnp.asarray(s_mask)}
      s = s_idx[s_mask]
      plain_task = {
          'support_images': x[s], 'support_labels': jnp.asarray(labels[s]),
          'support_counts': jnp.full(5, 3), 'query_images': x,
          'query_labels': jnp.asarray(labels)}
      cfg = maml.MamlConfig(ways=5, inner_lr=0.4, meta_lr=1e-3,
                            adaptation_steps=1, test_adaptation_steps=1,
                            inner_loss='ci', outer_loss='ci',
                            first_order=True, task_map='loop')

      def value_and_grad(task):
        return jax.value_and_grad(lambda p: maml.task_loss(
            p, model.apply, task, cfg=cfg)[0])(params)
      (a, ga), (b, gb) = value_and_grad(ros_task), value_and_grad(
          plain_task)
      # Conv4 computes in float32: equal to its rounding.
      np.testing.assert_allclose(a, b, rtol=1e-5)
      for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6)
      # Without the mask the padding shifts the statistics, and the
      # logits of the real examples move far beyond rounding.
      padded = jnp.take(x, jnp.asarray(s_idx), axis=0)
      unmasked = model.apply({'params': params}, padded)[:15]
      self.assertGreater(float(jnp.max(jnp.abs(
          unmasked - model.apply({'params': params}, x[s])))), 1e-2)


if __name__ == '__main__':
  absltest.main()
