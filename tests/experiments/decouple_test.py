"""Tests for cil.experiments.classify.decouple: cRT, tau-norm and LWS."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import models
from cil.experiments.classify import config as config_lib
from cil.experiments.classify import decouple
from cil.experiments.classify import runner
from configs import classify as classify_configs


class DecoupleTest(absltest.TestCase):

  def test_features_times_the_head_are_the_logits(self):
    images = np.random.default_rng(0).integers(0, 255, (5, 28, 28, 1),
                                               np.uint8)
    for name in ('digits_cnn', 'lenet'):
      model = models.get_model(name, 4)
      variables = model.init(jax.random.key(1), images[:1], train=False)
      path = decouple.head_path(model, variables, images[:1])
      head = decouple.get_head(variables['params'], path)
      feats, logits = decouple.features(model, variables, images, 2)
      self.assertEqual(feats.shape[0], 5)
      np.testing.assert_allclose(feats @ head['kernel'] + head['bias'],
                                 logits, rtol=1e-5, atol=1e-5)
    # A cosine head (LDAM's): unit-norm features times unit-norm weights.
    for name in ('lenet_normed', 'resnet8_normed'):
      model = models.get_model(name, 4)
      variables = model.init(jax.random.key(1), images[:1], train=False)
      head = decouple.get_head(variables['params'], decouple.head_path(
          model, variables, images[:1]))
      feats, logits = decouple.features(model, variables, images, 2)
      self.assertIsNone(head['bias'])
      np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1, rtol=1e-5)
      np.testing.assert_allclose(np.linalg.norm(head['kernel'], axis=0), 1,
                                 rtol=1e-5)
      np.testing.assert_allclose(feats @ head['kernel'], logits, rtol=1e-5,
                                 atol=1e-5)
    model = models.get_model('aconvnet', 4)  # All-convolutional.
    sample = np.zeros((1, 88, 88, 1), np.uint8)
    with self.assertRaisesRegex(ValueError, 'AConvNet calls no Dense layer'):
      decouple.head_path(model, jax.eval_shape(
          lambda x: model.init(jax.random.key(0), x, train=False), sample),
                         sample)

  def test_stage_two_anneals_as_kang_et_al_with_a_cosine_run(self):
    # cls_crt.yaml: SGD (momentum 0.9) with `coslr`, CosineAnnealingLR over
    # the stage's epochs stepped per epoch: lr (1 + cos(pi e / E)) / 2 in
    # epoch e. With a gradient of 1 every step, momentum's trace after step
    # t is (1 - 0.9^(t+1)) / 0.1, so each update gives back its rate.
    cfg = config_lib.ClassifyConfig.from_config(
        classify_configs.get_config('imagenet_lt'))
    self.assertEqual((cfg.lr_schedule, cfg.decouple_epochs), ('cosine', 10))
    steps = 3
    tx = runner._stage_two_optimizer(cfg, steps)
    self.assertIs(tx, runner._stage_two_optimizer(cfg, steps))  # Cached.
    params = jnp.zeros(())  # Weight decay adds nothing at zero.
    state = tx.init(params)
    rates = []
    for t in range(10 * steps):
      update, state = tx.update(jnp.ones(()), state, params)
      rates.append(-float(update) * 0.1 / (1 - 0.9 ** (t + 1)))
    epoch = np.arange(10 * steps) // steps
    np.testing.assert_allclose(
        rates, cfg.lr * (1 + np.cos(np.pi * epoch / 10)) / 2, rtol=1e-5,
        atol=1e-7)
    # A run on the step schedule keeps stage 2 at its constant rate.
    tx = runner._stage_two_optimizer(
        config_lib.ClassifyConfig.from_config(
            classify_configs.get_config('cifar10_lt')), steps)
    state = tx.init(params)
    for t in range(4 * steps):
      update, state = tx.update(jnp.ones(()), state, params)
      self.assertAlmostEqual(-float(update) * 0.1 / (1 - 0.9 ** (t + 1)),
                             0.1, places=6)
    # An epoch is C x n_max class-aware draws.
    self.assertEqual(decouple.steps_per_epoch(np.array([0, 0, 0, 1, 2]), 2),
                     5)

  def test_tau_normalisation_by_hand(self):
    head = {'kernel': jnp.array([[3.0, 0.0], [4.0, 1.0]]),
            'bias': jnp.array([10.0, -10.0])}
    f = jnp.array([[1.0, 1.0]])
    # Column norms 5 and 1; the bias is dropped.
    np.testing.assert_allclose(
        decouple.classifier_logits('tau_norm', head, f, tau=1.0),
        [[(3 + 4) / 5, 1.0]])
    np.testing.assert_allclose(
        decouple.classifier_logits('tau_norm', head, f, tau=0.0), [[7, 1]])
    np.testing.assert_allclose(
        decouple.classifier_logits('tau_norm', head, f, tau=0.5),
        [[7 / 5 ** 0.5, 1.0]], rtol=1e-6)
    # LWS with unit scales is the plain classifier, bias included.
    np.testing.assert_allclose(
        decouple.classifier_logits('lws', {**head, 'scale': jnp.ones(2)}, f),
        [[17.0, -9.0]])

  def test_lws_gradient_matches_its_closed_form(self):
    # z = s * (f W + b); d CE / d s_j = (softmax(z)_j - y_j) (f W + b)_j.
    with jax.enable_x64(True):
      rng = np.random.default_rng(0)
      head = {'kernel': jnp.asarray(rng.normal(size=(4, 3))),
              'bias': jnp.asarray(rng.normal(size=3))}
      f = jnp.asarray(rng.normal(size=(5, 4)))
      y = jnp.array([0, 2, 1, 1, 0])
      scale = jnp.asarray(rng.uniform(0.5, 2, 3))

      def loss(s):
        z = decouple.classifier_logits('lws', {**head, 'scale': s}, f)
        return optax.softmax_cross_entropy_with_integer_labels(z, y).sum()
      base = f @ head['kernel'] + head['bias']
      p = jax.nn.softmax(scale * base)
      expected = ((p - jax.nn.one_hot(y, 3)) * base).sum(0)
      np.testing.assert_allclose(jax.grad(loss)(scale), expected, rtol=1e-10)

  def test_class_balanced_retraining_undoes_the_prior(self):
    # 1-D features, class 0 ~ N(-1, 1) x 900 and class 1 ~ N(+1, 1) x 100:
    # the balanced Bayes boundary is 0, the prior-weighted one at
    # ln(9) / 2 = 1.1. cRT trains on class-balanced draws: boundary near 0.
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [900, 100])
    feats = np.where(labels == 1, 1.0, -1.0)[:, None] + rng.normal(
        size=(1000, 1))
    head = {'kernel': jnp.zeros((1, 2)), 'bias': jnp.zeros(2)}
    trained, losses = decouple.fit(
        'crt', head, feats.astype(np.float32), labels,
        tx=optax.adam(0.05), epochs=10, batch_size=64, seed=0)
    self.assertLen(losses, 10)
    self.assertLess(losses[-1], losses[0])
    w = np.asarray(trained['kernel'])[0]
    b = np.asarray(trained['bias'])
    boundary = -(b[1] - b[0]) / (w[1] - w[0])
    self.assertLess(abs(boundary), 0.3)
    # tau_norm trains nothing.
    same, none = decouple.fit('tau_norm', head, feats, labels, tx=None,
                              epochs=10, batch_size=64, seed=0)
    self.assertIs(same, head)
    self.assertEmpty(none)
    with self.assertRaisesRegex(ValueError, 'decouple methods must be'):
      decouple.check_methods(['crt', 'lsw'])


if __name__ == '__main__':
  absltest.main()
