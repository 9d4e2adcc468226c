"""One model's batch over 4 (fake CPU) devices equals one device: the
step (ResNet-32 with batch norm: per-step losses, final parameters and
batch statistics; per-device batch norm as four groups on one device) and
the runner (`--config.data_parallel`)."""

import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from cil import distributed
from cil import losses
from cil import models
from cil.experiments import classify
from cil.experiments.classify import parallel
from cil.experiments.classify.step import step_keys
import configs
import testutil


_OPTIMIZATIONS_OFF = None


def setUpModule():
  global _OPTIMIZATIONS_OFF
  try:
    testutil.four_cpu_devices()
  except RuntimeError:
    # JAX started in this worker already (`tests/conftest.py` asked it for
    # 4 CPU devices then); the tests need them.
    pass
  if jax.device_count() < 4:
    raise RuntimeError(f'These tests need 4 (fake CPU) devices; JAX has '
                       f'{jax.device_count()}.')
  # XLA's optimizations on, as in every run: with the suite's
  # `jax_disable_most_optimizations`, the (2 x 2) mesh's step with
  # crop-and-flip drifts by 0.2 % at its third step (not with them on,
  # nor without the augmentation, nor on the (1 x 4) mesh).
  _OPTIMIZATIONS_OFF = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', False)


def tearDownModule():
  jax.config.update('jax_disable_most_optimizations', _OPTIMIZATIONS_OFF)


class DataParallelStepTest(absltest.TestCase):

  def test_a_batch_split_over_four_devices_equals_one_device(self):
    # Two seeds, batches of 8: one device for both, or a (1 x 4) mesh
    # (each batch over 4 devices) and a (2 x 2) mesh (seeds over 2 groups
    # of 2). Three steps, crop-and-flip augmentation, the CI loss.
    model = models.get_model('resnet32', 3)
    # SGD (the references' optimizer): an update proportional to the
    # gradient, so float32 sums in another order stay at float32's scale
    # (Adam's g / sqrt(v) would magnify them where a gradient is near 0).
    config = configs.load('classify', 'smoke')
    config.update(optimizer='sgd', lr=0.01, weight_decay=5e-4)
    tx = classify.make_optimizer(classify.ClassifyConfig.from_config(config),
                                 10)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 8, 8, 3)).astype(np.uint8)
    labels = rng.integers(0, 3, 40).astype(np.int32)
    idx = rng.integers(0, 40, (3, 2, 8)).astype(np.int32)
    mask = np.ones((3, 2, 8), bool)
    mask[-1, 1, 5:] = False  # A short last batch.
    counts = np.array([[20, 12, 8], [30, 6, 4]], np.float32)
    seeds, steps = np.array([0, 1]), np.arange(3)
    static = {'loss': losses.get_loss('ci'), 'seed_parallel': 'vmap',
              'unroll': True, 'augment': 'crop_flip'}

    def fresh():
      return classify.create_states(model, tx, jax.vmap(jax.random.key)(
          jnp.asarray(seeds)), jnp.asarray(images[:1]))

    one, one_metrics = classify.train_chunk(
        fresh(), jnp.asarray(images), jnp.asarray(labels), jnp.asarray(idx),
        jnp.asarray(mask), jnp.asarray(counts),
        step_keys(jnp.asarray(seeds), jnp.asarray(steps)), **static)
    P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
    for data_parallel in (4, 2):
      mesh = parallel.data_mesh(2, data_parallel, 8)
      self.assertEqual(dict(mesh.shape), {'seeds': 4 // data_parallel,
                                          'data': data_parallel})
      fn = parallel.data_parallel_chunk(mesh, False, False, **static)
      states = distributed.put(fresh(), mesh, P('seeds'))
      split, metrics = fn(
          states, *distributed.put((images, labels), mesh, P()),
          *distributed.put((idx, mask), mesh, P(None, 'seeds', 'data')),
          *distributed.put((counts, seeds), mesh, P('seeds')),
          distributed.put(steps, mesh, P()))
      # The batch really is split: each device holds a quarter or half.
      self.assertLen(metrics['loss'].sharding.device_set, 4)
      np.testing.assert_allclose(metrics['loss'], one_metrics['loss'],
                                 rtol=2e-5, err_msg=str(data_parallel))
      np.testing.assert_allclose(metrics['accuracy'],
                                 one_metrics['accuracy'])
      for a, b in zip(jax.tree.leaves(distributed.to_host(
          (split.params, split.batch_stats))), jax.tree.leaves(
              (one.params, one.batch_stats))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

  def test_per_device_batch_norm_over_four_devices_equals_four_groups(self):
    # batch_norm_groups=4 (PyTorch's DataParallel on 4 GPUs): each device's
    # quarter of the batch normalised by its own statistics; on one device,
    # the same four groups. Different from the whole batch's statistics.
    config = configs.load('classify', 'smoke')
    config.update(optimizer='sgd', lr=0.01)
    tx = classify.make_optimizer(classify.ClassifyConfig.from_config(config),
                                 10)
    # Groups of 4 images of 16 x 16 (groups of a few 2 x 2 maps are so
    # ill-conditioned that float32 sums in another order show).
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 16, 16, 3)).astype(np.uint8)
    labels = rng.integers(0, 3, 40).astype(np.int32)
    idx = rng.integers(0, 40, (2, 1, 16)).astype(np.int32)
    mask = np.ones((2, 1, 16), bool)
    counts = np.array([[20, 12, 8]], np.float32)
    seeds, steps = np.array([0]), np.arange(2)
    static = {'loss': losses.get_loss('ce'), 'seed_parallel': 'vmap',
              'unroll': True, 'augment': ''}
    P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
    mesh = parallel.data_mesh(1, 4, 16)
    out = {}
    for groups in (1, 4):
      model = classify.model_for('resnet8', 3, batch_norm_groups=groups)
      fresh = lambda m=model: classify.create_states(  # noqa: E731
          m, tx, jax.vmap(jax.random.key)(jnp.asarray(seeds)),
          jnp.asarray(images[:1]))  # (train_chunk donates its states.)
      out[groups, 'one'] = classify.train_chunk(
          fresh(), jnp.asarray(images), jnp.asarray(labels), jnp.asarray(idx),
          jnp.asarray(mask), jnp.asarray(counts),
          step_keys(jnp.asarray(seeds), jnp.asarray(steps)), **static)
      fn = parallel.data_parallel_chunk(mesh, False, False, **static)
      out[groups, 'mesh'] = fn(
          distributed.put(fresh(), mesh, P('seeds')),
          *distributed.put((images, labels), mesh, P()),
          *distributed.put((idx, mask), mesh, P(None, 'seeds', 'data')),
          *distributed.put((counts, seeds), mesh, P('seeds')),
          distributed.put(steps, mesh, P()))
    for groups in (1, 4):
      (one, one_m), (split, split_m) = out[groups, 'one'], out[groups, 'mesh']
      np.testing.assert_allclose(split_m['loss'], one_m['loss'], rtol=2e-5)
      for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(
          distributed.to_host((split.params, split.batch_stats)))[0],
                              jax.tree.leaves((one.params, one.batch_stats))):
        np.testing.assert_allclose(
            a, b, rtol=1e-5, atol=1e-5,
            err_msg=f'groups {groups}: {jax.tree_util.keystr(path)}')
    self.assertGreater(
        np.abs(np.asarray(out[1, 'one'][1]['loss'][1])
               - np.asarray(one_m['loss'][1])).max(), 1e-4)

  def test_uneven_splits_are_named(self):
    with self.assertRaisesRegex(ValueError, r'data_parallel=3 does not '
                                r'divide the 4 devices'):
      parallel.data_mesh(1, 3, 12)
    with self.assertRaisesRegex(ValueError, r'seeds \(3\) must divide evenly '
                                r'over the 2 groups of 2 devices'):
      parallel.data_mesh(3, 2, 8)
    with self.assertRaisesRegex(ValueError, r'batch_size \(6\) must divide '
                                r'evenly over the 4 devices'):
      parallel.data_mesh(1, -1, 6)
    self.assertIsNone(parallel.data_mesh(5, 1, 7))


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': '', 'CIL_DATA_DIR': ''})
class DataParallelRunTest(absltest.TestCase):

  def test_a_run_split_over_every_device_equals_the_one_device_run(self):
    data_dir, work = tempfile.mkdtemp(), tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
    self.addCleanup(shutil.rmtree, work, ignore_errors=True)
    config = configs.load('classify', 'smoke')
    config.update(data_dir=data_dir, protocols=('odd25',), losses=('ce',),
                  seeds=2, epochs=1, batch_size=32)
    results = {}
    for data_parallel in (1, -1):
      config.data_parallel = data_parallel
      cfg = classify.ClassifyConfig.from_config(config)
      results[data_parallel] = classify.run(
          cfg, os.path.join(work, str(data_parallel)), show_progress=False)
    a, b = results[1]['runs'][0], results[-1]['runs'][0]
    self.assertEqual(b['settings']['data_parallel'], -1)
    np.testing.assert_allclose(a['train_loss_per_epoch'],
                               b['train_loss_per_epoch'], rtol=1e-5)
    for x, y in zip(a['per_seed'], b['per_seed']):
      # Float32 sums in another order may move a borderline test image.
      self.assertLessEqual(abs(x['accuracy'] - y['accuracy']), 0.01)
    with self.assertRaisesRegex(ValueError, 'data_parallel must be -1'):
      config.data_parallel = 0
      classify.ClassifyConfig.from_config(config).validate()


if __name__ == '__main__':
  absltest.main()
