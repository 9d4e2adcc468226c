"""Tests for cil.models, cil.metrics, cil.classify and launch.classify."""

import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cil import errors
from cil.experiments import classify
from cil.experiments import report
from cil import hugepages
from cil import metrics
from cil import models
from cil import workdir as workdir_lib
import configs
import cifar_fixture  # tests/, beside this file

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Interrupted(Exception):
  """Raised by a callback to stop a run (a simulated kill)."""


_DATA_DIR = None


def setUpModule():
  global _DATA_DIR
  _DATA_DIR = tempfile.mkdtemp()


def tearDownModule():
  shutil.rmtree(_DATA_DIR, ignore_errors=True)


class ModelsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('lenet', 'lenet', (2, 28, 28, 1), 10, 431_080),      # Caffe LeNet.
      ('aconvnet', 'aconvnet', (2, 88, 88, 1), 10, 303_498),  # Chen et al.
      ('conv4', 'conv4', (2, 28, 28, 1), 5, 112_261),
      ('conv4_84', 'conv4', (2, 84, 84, 3), 5, 121_093),  # MAML: 1600 -> 5.
      ('digits_cnn', 'digits_cnn', (2, 8, 8, 1), 10, 151_306),
  )
  def test_shapes_and_parameter_counts(self, name, shape, classes, size):
    model = models.get_model(name, classes)
    x = jnp.zeros(shape, jnp.uint8)
    params = model.init(jax.random.key(0), x)
    self.assertEqual(set(params), {'params'})  # No mutable collections.
    self.assertEqual(sum(p.size for p in jax.tree.leaves(params)), size)
    self.assertEqual(model.apply(params, x).shape, (shape[0], classes))

  def test_cifar_resnet32_matches_cao_et_al(self):
    # He et al.'s CIFAR ResNet-32 as in Cao et al.'s code: 0.46 M
    # parameters (464,154 with a 10-class dense head; the cosine head has no
    # bias), batch norm with running averages.
    for name, size in (('resnet32', 464_154), ('resnet32_normed', 464_144)):
      model = models.get_model(name, 10)
      x = jnp.zeros((2, 32, 32, 3), jnp.uint8)
      variables = jax.jit(functools.partial(model.init, train=False))(
          jax.random.key(0), x)
      self.assertEqual(set(variables), {'params', 'batch_stats'})
      self.assertEqual(
          sum(p.size for p in jax.tree.leaves(variables['params'])), size)
      convs = [k for k in jax.tree_util.tree_flatten_with_path(
          variables['params'])[0] if 'Conv' in jax.tree_util.keystr(k[0])]
      self.assertLen(convs, 31)  # 1 + 3 stages x 5 blocks x 2.

  def test_conv4_uses_the_batch_statistics(self):
    model = models.Conv4(num_classes=5, features=8)
    x = jax.random.uniform(jax.random.key(1), (6, 28, 28, 1))
    params = model.init(jax.random.key(0), x)
    full = model.apply(params, x)
    alone = model.apply(params, x[:3])
    # Transductive batch norm: an example's output depends on its batch.
    self.assertGreater(float(jnp.max(jnp.abs(full[:3] - alone))), 1e-4)

  def test_conv4_bfloat16_keeps_float32_parameters_and_logits(self):
    x = jax.random.uniform(jax.random.key(1), (6, 16, 16, 3))
    full = models.Conv4(num_classes=5, features=8)
    half = models.Conv4(num_classes=5, features=8, dtype=jnp.bfloat16)
    params = full.init(jax.random.key(0), x)
    for leaf in jax.tree.leaves(half.init(jax.random.key(0), x)):
      self.assertEqual(leaf.dtype, jnp.float32)
    logits = half.apply(params, x)
    self.assertEqual(logits.dtype, jnp.float32)
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    reference = full.apply(params, x)
    np.testing.assert_allclose(logits, reference, atol=0.1, rtol=0.05)
    self.assertGreater(float(jnp.max(jnp.abs(logits - reference))), 0.0)

  def test_reshape_max_pool_equals_flax_valid_pool(self):
    import flax.linen as nn  # pylint: disable=g-import-not-at-top
    x = jax.random.normal(jax.random.key(2), (2, 7, 9, 3))
    np.testing.assert_array_equal(models.cnn.max_pool_2x2(x),
                                  nn.max_pool(x, (2, 2), (2, 2)))

  def test_max_pool_gradients_equal_jax_max_to_second_order(self):
    # Without ties, the custom VJP's first and second derivatives are
    # those of JAX's own `max` (float64); odd edges get no gradient.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(8), (2, 5, 7, 3), jnp.float64)
      w = jax.random.normal(jax.random.key(9), (2, 2, 3, 3), jnp.float64)
      v = jax.random.normal(jax.random.key(10), x.shape, jnp.float64)

      def jax_max(x):
        return x[:, :4, :6].reshape(2, 2, 2, 3, 2, 3).max(axis=(2, 4))

      def second_order(pool):
        def inner(x):
          g = jax.grad(lambda y: jnp.sum(jnp.sin(pool(y)) * w))(x)
          return jnp.sum(g * v) + jnp.sum(jnp.cos(pool(x)))
        return jax.value_and_grad(inner)(x)

      pool = models.cnn.max_pool_2x2
      np.testing.assert_array_equal(pool(x), jax_max(x))
      for a, b in zip(second_order(pool), second_order(jax_max)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
      g = jax.grad(lambda y: jnp.sum(pool(y)))(x)
      self.assertEqual(float(jnp.sum(jnp.abs(g[:, 4:]))), 0.0)
      self.assertEqual(float(jnp.sum(jnp.abs(g[:, :, 6:]))), 0.0)

  def test_max_pool_tie_gradient_goes_to_the_first_maximum(self):
    # PyTorch's convention (row-major in the window), not an even split.
    x = jnp.array([[0., 1., 1., 1.], [1., 1., 0., 1.]]).reshape(1, 2, 4, 1)
    g = jax.grad(lambda y: jnp.sum(models.cnn.max_pool_2x2(y)))(x)
    np.testing.assert_array_equal(
        g.reshape(2, 4), [[0., 1., 1., 0.], [0., 0., 0., 0.]])

  def test_im2col_and_winograd_convs_equal_xla_conv_to_second_order(self):
    # Values, gradients and the gradient of a gradient (what MAML's
    # meta-step differentiates) agree between the lowerings, in float64.
    # Odd H (5) and even W (6): Winograd pads to whole 2x2 tiles and crops.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(3), (2, 5, 6, 3), jnp.float64)
      k = jax.random.normal(jax.random.key(4), (3, 3, 3, 4), jnp.float64)
      ct = jax.random.normal(jax.random.key(5), (2, 5, 6, 4), jnp.float64)

      def xla(x, k):
        return jax.lax.conv_general_dilated(
            x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

      def second_order(conv):
        def inner(k, x):  # A squared norm of the first-order gradients.
          dx, dk = jax.vjp(conv, x, k)[1](ct)
          return jnp.sum(dx ** 2) + jnp.sum(jnp.sin(dk))
        return jax.grad(inner, (0, 1))(k, x)

      want = second_order(xla)
      for conv in (models.cnn.conv3x3_im2col, models.cnn.conv3x3_winograd):
        with self.subTest(conv.__name__):
          np.testing.assert_allclose(conv(x, k), xla(x, k), rtol=1e-12,
                                     atol=1e-12)
          for a, b in zip(second_order(conv), want):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)

  def test_winograd_conv_handles_odd_widths_in_float32(self):
    # Both sizes odd, 16 channels (Conv3x3's Winograd threshold): float32
    # rounding of the transforms stays near im2col's.
    x = jax.random.normal(jax.random.key(6), (2, 7, 9, 16))
    k = jax.random.normal(jax.random.key(7), (3, 3, 16, 8)) * 0.1
    np.testing.assert_allclose(models.cnn.conv3x3_winograd(x, k),
                               models.cnn.conv3x3_im2col(x, k), rtol=1e-4,
                               atol=1e-5)

  def test_fused_norm_relu_pool_equals_unfused_to_second_order(self):
    # Pooling before the affine map and ReLU is exact for either sign of the
    # scale (channel 1 is negative, channel 2 zero), and so are its first-
    # and second-order derivatives, in float64. Odd sizes are floored.
    with jax.enable_x64(True):
      x = jax.random.normal(jax.random.key(6), (3, 5, 7, 3), jnp.float64)
      scale = jnp.array([1.5, -0.7, 0.0], jnp.float64)
      bias = jnp.array([0.1, 0.3, -0.2], jnp.float64)
      ct = jax.random.normal(jax.random.key(7), (3, 2, 3, 3), jnp.float64)

      def unfused(x, scale, bias):
        mean = jnp.mean(x, (0, 1, 2))
        var = jnp.mean(jnp.square(x - mean), (0, 1, 2))
        y = (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias
        return models.cnn.max_pool_2x2(jax.nn.relu(y))

      fused = models.cnn.batch_norm_relu_pool

      def second_order(fn):
        def inner(scale, bias, x):
          grads = jax.vjp(fn, x, scale, bias)[1](ct)
          return sum(jnp.sum(jnp.sin(g)) for g in grads)
        return jax.grad(inner, (0, 1, 2))(scale, bias, x)

      np.testing.assert_allclose(fused(x, scale, bias),
                                 unfused(x, scale, bias), atol=1e-12)
      for a, b in zip(second_order(fused), second_order(unfused)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)

  def test_one_pass_statistics_hold_for_a_large_mean_in_float32(self):
    # The variance is E[d^2] - E[d]^2 of shifted values: with a channel mean
    # 1e4 times its spread, the unshifted one-pass form loses every digit
    # in float32 (variances 8 and 128 for 1.13 and 1.04); the shifted one
    # stays within float32's rounding of the inputs (ulp 2e-3 at 3e4) of
    # the two-pass float64 normalisation.
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((4, 6, 6, 2)) + [1e4, -3e4]).astype(np.float32)
    scale, bias = np.array([1.0, -2.0]), np.array([0.5, 0.0])
    got = models.cnn.batch_norm_relu_pool(
        jnp.asarray(x), jnp.asarray(scale, jnp.float32),
        jnp.asarray(bias, jnp.float32), relu=False, pool=False)
    x64 = x.astype(np.float64)
    want = ((x64 - x64.mean((0, 1, 2))) / np.sqrt(x64.var((0, 1, 2)) + 1e-5)
            * scale + bias)
    np.testing.assert_allclose(got, want, atol=1e-2)

  def test_conv4_lowerings_share_parameters_and_outputs(self):
    # 16 filters: blocks 2-4 have the channels 'winograd' needs to use
    # Winograd (block 1's 3 channels fall back to im2col).
    x = jax.random.uniform(jax.random.key(1), (4, 16, 16, 3))
    outs, trees = [], []
    for impl in models.cnn.CONV_IMPLS:
      model = models.Conv4(num_classes=5, features=16, conv_impl=impl)
      params = model.init(jax.random.key(0), x)
      trees.append(jax.tree.map(jnp.shape, params))
      outs.append(model.apply(params, x))
    # Winograd did run: its float32 rounding differs from im2col's.
    by_impl = dict(zip(models.cnn.CONV_IMPLS, outs))
    self.assertFalse(np.array_equal(by_impl['winograd'], by_impl['im2col']))
    for tree, out in zip(trees[1:], outs[1:]):
      self.assertEqual(tree, trees[0])
      np.testing.assert_allclose(out, outs[0], rtol=1e-4, atol=1e-4)
    self.assertIn('Conv_3', trees[0]['params'])  # nn.Conv's names.
    with self.assertRaisesRegex(ValueError, "impl must be 'winograd'"):
      models.Conv4(num_classes=5, conv_impl='fft').init(jax.random.key(0), x)

  def test_conv4_too_small_input_names_the_fix(self):
    with self.assertRaisesRegex(ValueError, 'at least 16x16.*lower `pools`'):
      models.Conv4(num_classes=5).init(jax.random.key(0),
                                       jnp.zeros((1, 8, 8, 1)))

  def test_unknown_model(self):
    with self.assertRaisesRegex(ValueError, 'Unknown model .*lenet'):
      models.get_model('resnet', 10)


class MetricsTest(absltest.TestCase):

  def test_hand_made_confusion_matrix(self):
    # Rows true, columns predicted.
    cm = np.array([[4, 1, 0], [0, 3, 1], [2, 0, 2]])
    labels = np.repeat([0, 1, 2], [5, 4, 4])
    predictions = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 0, 0, 2, 2])
    np.testing.assert_array_equal(
        metrics.confusion_matrix(labels, predictions, 3), cm)
    m = metrics.classification_metrics(cm)
    self.assertAlmostEqual(m['accuracy'], 9 / 13)
    np.testing.assert_allclose(m['per_class_recall'], [0.8, 0.75, 0.5])
    np.testing.assert_allclose(m['per_class_precision'], [4 / 6, 3 / 4, 2 / 3])
    self.assertAlmostEqual(m['balanced_accuracy'], (0.8 + 0.75 + 0.5) / 3)
    # F1 per class: 2PR/(P+R) = 0.727273, 0.75, 0.571429.
    self.assertAlmostEqual(m['macro_f1'], (8 / 11 + 0.75 + 4 / 7) / 3)
    self.assertAlmostEqual(m['g_mean'], (0.8 * 0.75 * 0.5) ** (1 / 3))

  def test_class_without_test_examples_is_left_out(self):
    m = metrics.classification_metrics(np.array([[3, 1], [0, 0]]))
    self.assertTrue(math.isnan(m['per_class_recall'][1]))
    self.assertAlmostEqual(m['balanced_accuracy'], 0.75)

  def test_confidence_interval(self):
    # mean 2, sd 1, n 3: t_{0.975, 2} = 4.302653 -> half-width 2.484138.
    mean, half = metrics.mean_confidence_interval([1.0, 2.0, 3.0])
    self.assertAlmostEqual(mean, 2.0)
    self.assertAlmostEqual(half, 4.302653 / math.sqrt(3), places=5)
    self.assertEqual(metrics.format_mean_ci([0.5, 0.5]), '50.00 ± 0.00')

  def test_bad_predictions(self):
    with self.assertRaisesRegex(ValueError, r'predictions must be in \[0, 2\)'):
      metrics.confusion_matrix(np.array([0, 1]), np.array([0, 2]), 2)


def _config(**overrides) -> classify.ClassifyConfig:
  """`configs/classify.py:smoke` with `overrides` and the test data dir."""
  config = configs.load('classify', 'smoke')
  config.update(data_dir=_DATA_DIR, **overrides)
  return classify.ClassifyConfig.from_config(config)


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': '', 'CIL_DATA_DIR': ''})
class ClassifyTest(absltest.TestCase):
  """Training on the bundled digits; tiny configs, compiled steps reused."""

  def _workdir(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def _cfg(self, **kw):
    return _config(**{'protocols': ('odd25',), 'losses': ('ci',),
                      'seeds': 2, 'epochs': 3, 'checkpoint_every': 1, **kw})

  def test_resume_after_kill_equals_uninterrupted(self):
    cfg = self._cfg()
    whole_dir = self._workdir()
    uninterrupted = classify.run(cfg, whole_dir, show_progress=False)
    run = uninterrupted['runs'][0]
    history = run['train_loss_per_epoch']
    self.assertLen(history, 3)
    self.assertLess(history[-1], 0.5 * history[0])
    self.assertLen(run['per_seed'], 2)
    for seed_result in run['per_seed']:
      self.assertGreater(seed_result['accuracy'], 0.5)  # Chance is 0.1.
      # Odd classes at 25 % of ~120: lambda near log10(4) / 2 = 0.301.
      self.assertAlmostEqual(seed_result['imbalance_degree'], 0.301,
                             delta=0.01)
    for name in ('results.json', 'table.md', 'per_class_recall.png',
                 'per_class_recall.pdf', 'per_class_recall.csv',
                 'config.json', 'metrics/odd25__ci.jsonl'):
      self.assertTrue(os.path.exists(os.path.join(whole_dir, name)), name)
    with open(os.path.join(whole_dir, 'table.md')) as f:
      self.assertIn('| ci | ', f.read())
    with open(os.path.join(whole_dir, 'config.json')) as f:
      runtime = json.load(f)['runtime']
    self.assertEqual(runtime['classify']['seeds'], [0, 1])
    self.assertIn(runtime['policy']['seed_parallel'], ('loop', 'vmap'))

    workdir = self._workdir()

    def kill_after_second_epoch(protocol, loss, epoch):
      del protocol, loss
      if epoch == 2:
        raise _Interrupted()

    with self.assertRaises(_Interrupted):
      classify.run(cfg, workdir, show_progress=False,
                   epoch_callback=kill_after_second_epoch)
    resumed = classify.run(cfg, workdir, show_progress=False)
    a = uninterrupted['runs'][0]
    b = resumed['runs'][0]
    # The metrics history survives the resume and equals the whole run's.
    self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
    logs = [workdir_lib.read_metrics(os.path.join(d, 'metrics',
                                                  'odd25__ci.jsonl'))
            for d in (whole_dir, workdir)]
    self.assertEqual([r['step'] for r in logs[1]], [1, 2, 3])
    self.assertEqual([r['train_loss'] for r in logs[0]],
                     [r['train_loss'] for r in logs[1]])
    for x, y in zip(a['per_seed'], b['per_seed']):
      self.assertEqual(x['confusion'], y['confusion'])
      self.assertEqual(x['accuracy'], y['accuracy'])

    # A byte-flipped newest checkpoint: the run falls back to the previous
    # one and says so (the cell is recomputed from epoch 2).
    os.remove(os.path.join(workdir, 'runs', 'odd25__ci.json'))
    ckpt = os.path.join(workdir, 'checkpoints', 'odd25', 'ci', '3')
    data_files = sorted(
        (os.path.join(r, n) for r, _, ns in os.walk(ckpt) for n in ns
         if os.path.basename(r) == 'd'), key=os.path.getsize)
    with open(data_files[-1], 'r+b') as f:
      blob = bytearray(f.read())
      for i in range(len(blob) // 2, len(blob) // 2 + 32):
        blob[i] ^= 0xFF
      f.seek(0)
      f.write(blob)
    with self.assertLogs(level='WARNING') as logged:
      again = classify.run(cfg, workdir, show_progress=False)
    self.assertRegex('\n'.join(logged.output),
                     r'odd25/ci/3 .*skipped and deleted, resuming from '
                     r'step 2')
    self.assertEqual(again['runs'][0]['per_seed'][0]['confusion'],
                     a['per_seed'][0]['confusion'])

  def test_diverged_run_stops_and_records_nothing(self):
    cfg = self._cfg(lr=1e30)
    workdir = self._workdir()
    for _ in range(2):  # A rerun fails the same way.
      with self.assertRaisesRegex(errors.NonFiniteError,
                                  r'odd25/ci: non-finite loss at step \d+'):
        classify.run(cfg, workdir, show_progress=False)
      self.assertFalse(os.path.exists(os.path.join(workdir, 'runs')))

  def test_changed_config_in_same_workdir_is_refused(self):
    workdir = self._workdir()
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      json.dump({'config': {'dataset': 'mnist'}}, f)
    with self.assertRaisesRegex(ValueError, 'different config'):
      classify.run(self._cfg(), workdir, show_progress=False)

  def test_bad_config_is_refused_before_the_workdir_is_touched(self):
    workdir = os.path.join(self._workdir(), 'new')
    with self.assertRaisesRegex(ValueError, 'Unknown loss'):
      classify.run(self._cfg(losses=('xent',)), workdir)
    with self.assertRaisesRegex(ValueError, 'Unknown protocol'):
      classify.run(self._cfg(protocols=('odd7',)), workdir)
    with self.assertRaisesRegex(ValueError, 'must be positive'):
      classify.run(self._cfg(seeds=0), workdir)
    with self.assertRaisesRegex(ValueError, 'first_seed must be >= 0'):
      classify.run(self._cfg(first_seed=-1), workdir)
    with self.assertRaisesRegex(ValueError, 'lr is non-finite'):
      classify.run(self._cfg(lr=float('nan')), workdir)
    with self.assertRaisesRegex(ValueError, 'takes no hyperparameter'):
      _config(loss_hparams={'ci': {'gamma': 1.0}}).validate()
    self.assertFalse(os.path.exists(workdir))

  def test_aliases_and_hyperparameters_reach_the_loss(self):
    cfg = _config(losses=('fl',), loss_hparams={'focal': {'gamma': 0.5},
                                                'ldam': {'scale': 10.0}})
    self.assertEqual(cfg.losses, ('focal',))
    self.assertEqual(cfg.hparams_for('fl'), {'gamma': 0.5, 'log_base': 10.0})
    self.assertEqual(cfg.hparams_for('ldam'),
                     {'log_base': 10.0, 'max_margin': 0.5, 'scale': 10.0})

  @pytest.mark.slow  # ~16 s on 2 cores: a sweep of several programs.
  def test_sweep_runs_loss_variants_and_plots_metrics_against_lambda(self):
    # Digits' smallest training class has 118 images: step ratios 2, 10 and
    # 118 give lambda 0.15, 0.5 and 1.04 (one image per minority class).
    protocols = tuple(f'step:ratio={r},mu=0.5' for r in (2, 10, 118))
    cfg = _config(protocols=protocols, epochs=1,
                  losses=('ci', 'CI: high_exponent=0.5'))
    self.assertEqual(cfg.losses, ('ci', 'ci:high_exponent=0.5'))
    workdir = self._workdir()
    results = classify.run(cfg, workdir, show_progress=False)
    runs = {(r['protocol'], r['loss']): r for r in results['runs']}
    lam = [runs[(p, 'ci')]['summary']['imbalance_degree']['mean']
           for p in protocols]
    self.assertLess(lam[1], 1.0)
    self.assertGreater(lam[2], 1.0)
    # "Always 1/2" is the paper's rule below lambda = 1: same training.
    # Above it the minority factor is 118 ** (1/2) instead of 118 ** (1/8).
    for p, same in zip(protocols, (True, True, False)):
      a, b = runs[(p, 'ci')], runs[(p, 'ci:high_exponent=0.5')]
      self.assertEqual(b['loss_hparams']['high_exponent'], 0.5)
      self.assertEqual(
          a['train_loss_per_epoch'] == b['train_loss_per_epoch'], same, p)
      for seed in a['per_seed']:
        counts = np.array(seed['class_counts'])
        recall = np.array(seed['per_class_recall'])
        self.assertAlmostEqual(seed['minority_recall'],
                               recall[counts < counts.max()].mean())
    for ext in ('png', 'pdf', 'csv'):
      self.assertTrue(os.path.exists(
          os.path.join(workdir, f'lambda_sweep.{ext}')))
    with open(os.path.join(workdir, 'lambda_sweep.csv')) as f:
      rows = f.read().splitlines()
    self.assertEqual(rows[0], 'loss,metric,protocol,lambda,mean,ci95,seeds')
    self.assertLen(rows, 1 + 2 * 3 * 3)  # losses x metrics x protocols
    with open(os.path.join(workdir, 'table.md')) as f:
      table = f.read()
    self.assertIn('| ci:high_exponent=0.5 |', table)
    self.assertIn('Minority recall', table)

  def test_crop_flip_augmentation(self):
    images = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
    self.assertIs(classify.augment_batch(images, jax.random.key(0), ''),
                  images)
    seen_flip = seen_shift = False
    for seed in range(8):
      out = np.asarray(classify.augment_batch(images, jax.random.key(seed),
                                              'crop_flip'))
      self.assertEqual(out.shape, images.shape)
      padded = np.pad(np.asarray(images), ((0, 0), (4, 4), (4, 4), (0, 0)))
      for b in range(2):
        # Each output is a 6x6 window of the zero-padded image, maybe
        # mirrored left-right.
        windows = [padded[b, i:i + 6, j:j + 6] for i in range(9)
                   for j in range(9)]
        match = [k for k, w in enumerate(windows)
                 if np.array_equal(w, out[b]) or np.array_equal(
                     w[:, ::-1], out[b])]
        self.assertNotEmpty(match)
        seen_shift |= 40 not in match  # 40: the centred window.
        seen_flip |= not any(np.array_equal(windows[k], out[b])
                             for k in match)
    self.assertTrue(seen_flip and seen_shift)

  def test_deferred_reweighting_weights_and_learning_rate_schedule(self):
    w = classify.drw_weights(np.array([[5000, 50], [10, 10]]), 0.9999)
    eff = (1 - 0.9999) / (1 - 0.9999 ** np.array([5000, 50]))
    np.testing.assert_allclose(w[0], eff / eff.mean())
    np.testing.assert_allclose(w[1], [1.0, 1.0])
    cfg = classify.ClassifyConfig.from_config(
        configs.load('classify', 'cifar10_lt'))
    schedule = classify.learning_rate(cfg, steps_per_epoch=10)
    lr = [float(schedule(step)) for step in (0, 25, 49, 50, 1599, 1600,
                                             1799, 1800, 1999)]
    np.testing.assert_allclose(
        lr, [0.1 / 50, 0.1 * 26 / 50, 0.1, 0.1, 0.1, 0.01, 0.01, 0.001,
             0.001], rtol=1e-5)
    self.assertEqual(classify.learning_rate(_config(), 10), 1e-3)

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
         '--baseline=CE'], cwd=_ROOT, capture_output=True, text=True,
        check=False)
    self.assertEqual(out.returncode, 0, out.stderr)
    self.assertIn('| ci | +2.00 ± 0.00* |', out.stdout)
    out = subprocess.run(
        [sys.executable, '-m', 'launch.compare', f'--workdir={workdir}',
         '--baseline=la'], cwd=_ROOT, capture_output=True, text=True,
        check=False)
    self.assertEqual(out.returncode, 1)
    self.assertIn("error: No 'la' run for protocol 'p'", out.stderr)

  def test_minority_recall(self):
    self.assertAlmostEqual(
        report.minority_recall([1.0, 0.5, 0.25], [10, 2, 10]), 0.5)
    self.assertIsNone(report.minority_recall([1.0, 0.5], [4, 4]))

  def test_epoch_batches_cover_each_seed_once(self):
    from cil import data  # pylint: disable=g-import-not-at-top
    labels = np.repeat(np.arange(4), [50, 5, 50, 5])
    splits = [data.get_protocol('minority:k=1,n=3')(labels, seed=s)
              for s in (0, 1)]
    idx, mask = classify.epoch_batches(splits, [0, 1], 0, 16)
    for k, split in enumerate(splits):
      seen = idx[:, k][mask[:, k]]
      np.testing.assert_array_equal(np.sort(seen), split.indices)


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': '', 'CIL_DATA_DIR': ''})
class CifarLongTailTest(absltest.TestCase):

  @pytest.mark.slow  # ~120 s on 2 busy cores, most of it compiling ResNet-32.
  def test_resnet32_with_augmentation_drw_and_schedule_resumes_exactly(self):
    # The cifar10_lt recipe (batch norm running averages, crop + flip,
    # warm-up and decay, deferred re-weighting) on pickles the test writes,
    # cut to 3 epochs; a run killed after epoch 2 resumes to the same result.
    manual = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, manual, ignore_errors=True)
    cifar_fixture.write_cifar(manual, n=12)
    config = configs.load('classify', 'cifar10_lt')
    config.update(
        manual_dir=manual, data_dir=os.path.join(manual, 'prepared'),
        protocols=('longtail:ratio=4',), losses=('ci',), seeds=2, epochs=3,
        batch_size=8, eval_batch_size=60, lr_warmup_epochs=1,
        lr_decay_epochs=(2,), drw_epoch=1, checkpoint_every=1)
    cfg = classify.ClassifyConfig.from_config(config)
    whole = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, whole, ignore_errors=True)
    a = classify.run(cfg, whole, show_progress=False)['runs'][0]
    self.assertEqual(a['model'], 'resnet32')
    self.assertLen(a['train_loss_per_epoch'], 3)
    self.assertTrue(np.all(np.isfinite(a['train_loss_per_epoch'])))

    def kill_after_second_epoch(protocol, loss, epoch):
      del protocol, loss
      if epoch == 2:
        raise _Interrupted()

    workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    with self.assertRaises(_Interrupted):
      classify.run(cfg, workdir, show_progress=False,
                   epoch_callback=kill_after_second_epoch)
    b = classify.run(cfg, workdir, show_progress=False)['runs'][0]
    self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
    for x, y in zip(a['per_seed'], b['per_seed']):
      self.assertEqual(x['confusion'], y['confusion'])


class LauncherTest(absltest.TestCase):

  def _launch(self, workdir, *flags):
    env = dict(os.environ, CIL_DATA_DIR=_DATA_DIR, CIL_MANUAL_DIR='')
    return subprocess.run(
        [sys.executable, '-m', 'launch.classify',
         '--config=configs/classify.py:smoke', f'--workdir={workdir}',
         *flags], cwd=_ROOT, env=env, capture_output=True, text=True,
        timeout=600, check=False)

  def test_smoke_run_prints_the_table_in_few_lines(self):
    workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
    # An alias, its hyperparameter keyed by canonical name, and a protocol
    # spec that holds a comma.
    result = self._launch(workdir, '--config.losses=fl',
                          '--config.loss_hparams.focal.gamma=0.5',
                          "--config.protocols='step:ratio=10,mu=0.5'")
    self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
    self.assertIn('| loss | step:ratio=10,mu=0.5 |', result.stdout)
    self.assertIn('| focal | ', result.stdout)
    lines = (result.stdout + result.stderr).splitlines()
    self.assertLessEqual(len(lines), 40, msg='\n'.join(lines))
    with open(os.path.join(workdir, 'results.json')) as f:
      run = json.load(f)['runs'][0]
    self.assertEqual(run['loss_hparams'], {'gamma': 0.5, 'log_base': 10.0})
    # `python -m launch.classify` restarted itself with huge pages for
    # malloc where the machine allows (cil.hugepages), and recorded it.
    with open(os.path.join(workdir, 'config.json')) as f:
      host_memory = json.load(f)['runtime']['host_memory']
    self.assertEqual(host_memory['malloc_hugetlb'],
                     hugepages.enabled()
                     or hugepages.wanted_here(os.environ) is not None)

  def test_non_finite_learning_rate_is_a_named_error(self):
    workdir = os.path.join(tempfile.mkdtemp(), 'w')
    self.addCleanup(shutil.rmtree, os.path.dirname(workdir),
                    ignore_errors=True)
    result = self._launch(workdir, '--config.lr=nan')
    self.assertEqual(result.returncode, 1)
    self.assertIn('non-finite', result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertFalse(os.path.exists(workdir))


if __name__ == '__main__':
  absltest.main()
