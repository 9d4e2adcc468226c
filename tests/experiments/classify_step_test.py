"""Tests for the classifier's pure step (cil.experiments.classify.step):
augmentation, deferred re-weighting and the schedule, batch orders, the
seeds' mappings and the CPU lowering (no runner, no workdir)."""

import functools
import re

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from cil import losses
from cil import models
from cil import runtime
from cil.experiments import classify
from cil.experiments.classify import step as step_lib
import configs

CI = losses.get_loss('ci')


def _config(**overrides) -> classify.ClassifyConfig:
  """`configs/classify.py:smoke` with `overrides`."""
  config = configs.load('classify', 'smoke')
  config.update(**overrides)
  return classify.ClassifyConfig.from_config(config)


class StepTest(absltest.TestCase):

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

  def test_learning_rate_schedule(self):
    cfg = classify.ClassifyConfig.from_config(
        configs.load('classify', 'cifar10_lt'))
    schedule = classify.learning_rate(cfg, steps_per_epoch=10)
    lr = [float(schedule(step)) for step in (0, 25, 49, 50, 1599, 1600,
                                             1799, 1800, 1999)]
    # Warm-up per epoch (the reference's: lr (e + 1) / 5 in epoch e), then
    # its x 0.01 at each boundary.
    np.testing.assert_allclose(
        lr, [0.1 / 5, 0.1 * 3 / 5, 0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-5,
             1e-5], rtol=1e-5)
    self.assertEqual(classify.learning_rate(_config(), 10), 1e-3)

  def test_epoch_batches_cover_each_seed_once(self):
    from cil import data  # pylint: disable=g-import-not-at-top
    labels = np.repeat(np.arange(4), [50, 5, 50, 5])
    splits = [data.get_protocol('minority:k=1,n=3')(labels, seed=s)
              for s in (0, 1)]
    idx, mask = classify.epoch_batches(splits, [0, 1], 0, 16)
    for k, split in enumerate(splits):
      seen = idx[:, k][mask[:, k]]
      np.testing.assert_array_equal(np.sort(seen), split.indices)


class SeedParallelTest(absltest.TestCase):

  def test_loop_split_and_vmap_train_the_seeds_alike_and_skip_empty_batches(
      self):
    # 'loop' computes each seed's gradients in turn and updates the stacked
    # states once, or steps each seed's own state (`split_seeds`); 'vmap'
    # maps the whole step. Two steps of 3 seeds, Adam (per-seed step
    # counts), DRW class weights; seed 1's second batch is all padding, so
    # its state after two steps is its state after one.
    model = models.get_model('digits_cnn', 4)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (32, 8, 8, 1), np.uint8))
    labels = jnp.asarray(rng.integers(0, 4, 32), jnp.int32)
    tx = classify.make_optimizer(_config())
    states = classify.create_states(model, tx, jax.vmap(jax.random.key)(
        jnp.arange(3)), images[:1])
    idx = jnp.asarray(rng.integers(0, 32, (2, 3, 8)), jnp.int32)
    mask = np.ones((2, 3, 8), bool)
    mask[1, 1] = False
    mask[0, 2, 5:] = False
    mask = jnp.asarray(mask)
    counts = jnp.asarray(rng.integers(1, 20, (3, 4)), jnp.float32)
    weights = jnp.asarray(rng.uniform(0.5, 2, (3, 4)), jnp.float32)
    rngs = jax.random.split(jax.random.key(1), (2, 3))
    out = {}
    for mode in ('loop', 'vmap'):
      out[mode] = step_lib.chunk_program(
          jax.tree.map(jnp.copy, states), images, labels, idx,
          mask, counts, rngs, weights, loss=CI,
          seed_parallel=mode, unroll=True)
    split, split_metrics = step_lib.chunk_program(
        classify.split_seeds(jax.tree.map(jnp.copy, states)), images, labels,
        idx, mask, counts, rngs, weights, loss=CI,
        seed_parallel='loop', unroll=True)
    self.assertIsInstance(split, tuple)
    out['split'] = (classify.stack_seeds(split), split_metrics)
    chex.assert_trees_all_close(out['loop'], out['vmap'], rtol=1e-5,
                                atol=1e-6)
    chex.assert_trees_all_close(out['loop'], out['split'], rtol=1e-5,
                                atol=1e-6)
    with self.assertRaisesRegex(ValueError, "need seed_parallel='loop'"):
      step_lib.chunk_program(split, images, labels, idx, mask, counts,
                             rngs, weights, loss=CI, seed_parallel='vmap',
                             unroll=True)
    np.testing.assert_array_equal(out['loop'][0].step, [2, 1, 2])
    one, _ = step_lib.chunk_program(
        states, images, labels, idx[:1], mask[:1], counts,
        rngs[:1], weights, loss=CI,
        seed_parallel='loop', unroll=True)
    chex.assert_trees_all_equal(
        jax.tree.map(lambda a: a[1], out['loop'][0].params),
        jax.tree.map(lambda a: a[1], one.params))
    self.assertFalse(np.allclose(out['loop'][0].params['Dense_0']['kernel'][0],
                                 one.params['Dense_0']['kernel'][0]))


def _ynn_fused(model_name: str, image_shape, compiler_options, op: str):
  """How many of the YNNPACK fusions in the compiled one-seed train step of
  `model_name` contain `op` (e.g. 'convolution(', 'reduce(')."""
  model = models.get_model(model_name, 10)
  images = jnp.zeros((8,) + image_shape, jnp.uint8)
  tx = classify.make_optimizer(_config())
  states = classify.create_states(model, tx, jax.vmap(jax.random.key)(
      jnp.arange(1)), images[:1])
  args = (states, images, jnp.zeros(8, jnp.int32),
          jnp.zeros((1, 1, 4), jnp.int32), jnp.ones((1, 1, 4), bool),
          jnp.ones((1, 10)), jax.random.split(jax.random.key(0), (1, 1)))
  text = step_lib._jitted_chunk(compiler_options).lower(
      *args, loss=CI, seed_parallel='loop', unroll=True).compile().as_text()
  assert text.count('convolution(') > 0, 'no convolution in the program'
  fused = re.findall(r'ynn_fusion[\w.]* = .*?calls=%([\w.]+)', text)
  bodies = [re.search(r'%' + re.escape(name) + r' .*?\{(.*?)\n\}',
                      text, re.S).group(1) for name in fused]
  return len([b for b in bodies if op in b])


class CpuLoweringTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.policy = runtime.policy()
    if self.policy.backend != 'cpu':
      self.skipTest('CPU policy')

  def test_cpu_step_keeps_convolutions_out_of_ynnpack_fusions(self):
    # The CPU policy compiles the train step with XLA's YNNPACK fusions for
    # dots only (cil.runtime; the measurements in docs/performance.md).
    # Checked in LeNet's compiled step, against the positive control: the
    # default lowering of the same program, which puts convolutions into
    # YNNPACK fusions (else this check could not fail).
    options = self.policy.classify_step_compiler_options
    self.assertNotEmpty(options)  # This jaxlib knows the option.
    self.assertEqual(classify.ClassifyConfig.from_config(
        configs.load('classify', 'smoke')).resolve(
            self.policy).compiler_options, options)
    conv = functools.partial(_ynn_fused, 'lenet', (28, 28, 1),
                             op='convolution(')
    self.assertGreater(conv(()), 0)  # The positive control.
    self.assertEqual(conv(options), 0)

  def test_batch_norm_models_also_fuse_reductions_into_ynnpack(self):
    # A model with batch norm resolves to the batch-norm options: its
    # moments (reductions) go to YNNPACK, its convolutions still do not;
    # the dots-only options are the positive control (no reduction fused).
    options = self.policy.batch_norm_step_compiler_options
    self.assertNotEmpty(options)
    config = configs.load('classify', 'smoke')
    config.model = 'resnet8'
    self.assertEqual(classify.ClassifyConfig.from_config(config).resolve(
        self.policy).compiler_options, options)
    fused = functools.partial(_ynn_fused, 'resnet8', (8, 8, 1))
    self.assertEqual(
        fused(self.policy.classify_step_compiler_options, op='reduce('), 0)
    self.assertGreater(fused(options, op='reduce('), 0)
    self.assertEqual(fused(options, op='convolution('), 0)


if __name__ == '__main__':
  absltest.main()
