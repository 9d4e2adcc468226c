"""Tests for cil.experiments.detect and launch.detect: data, training,
resume, evaluation, the launcher, configs of both detectors.
"""

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cil import errors
from cil import losses as losses_lib
from cil import workdir
from cil.detection import cascade
from cil.detection import r2cnn
from cil.detection import synthetic
from cil.experiments import detect
import configs
import testutil
from testutil import ROOT
from testutil import TINY_R2CNN


def _train_config(**overrides) -> detect.TrainConfig:
  """`configs/detect.py:smoke` with `TINY_R2CNN`'s model and `overrides`."""
  config = configs.load('detect', 'smoke')
  for k in ('image_size', 'width', 'head_dim', 'pre_nms', 'post_nms',
            'rpn_batch', 'roi_batch'):
    config.model[k] = getattr(TINY_R2CNN, k)
  config.model.loss = TINY_R2CNN.loss.name
  for k, v in overrides.items():
    target = config.model if k in config.model else config
    target[k] = v
  return detect.TrainConfig.from_config(config)


class TrainTest(absltest.TestCase):

  def test_bad_run_settings_are_refused_before_any_work(self):
    work = os.path.join(tempfile.mkdtemp(), 'w')
    self.addCleanup(shutil.rmtree, os.path.dirname(work), ignore_errors=True)
    with self.assertRaisesRegex(ValueError, 'detect config field steps must '
                                'be a positive integer, got 0'):
      detect.run(_train_config(steps=0), work)
    self.assertFalse(os.path.exists(work))
    # Evaluating a workdir with no checkpoint is an error, not a table of
    # random weights' detections.
    with self.assertRaisesRegex(errors.RunError, 'holds no checkpoint to '
                                'evaluate'):
      detect.run(_train_config(mode='eval', synthetic_train=2,
                               synthetic_test=1), work, show_progress=False)

  def test_load_split_errors(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    synthetic.write_dataset(root, images=1, size=128, seed=0)
    split = detect.load_split(root, image_size=128, max_gt=32)
    self.assertEqual(split['images'].shape, (1, 128, 128, 3))
    with self.assertRaisesRegex(ValueError, 'more than max_gt 1'):
      detect.load_split(root, image_size=128, max_gt=1)
    small = detect.load_split(root, image_size=64, max_gt=32)  # Scaled.
    np.testing.assert_allclose(small['boxes'][0, :, :4],
                               split['boxes'][0, :, :4] / 2, rtol=1e-6)
    with open(os.path.join(root, 'images', 'P0000.png'), 'wb') as f:
      f.write(b'\x89PNG damaged')  # Not PIL's raw UnidentifiedImageError.
    with self.assertRaisesRegex(errors.DataError, r'images/P0000.png is not '
                                r'a readable image \(.*\); replace or '
                                r'remove it'):
      detect.load_split(root, image_size=128, max_gt=32)
    os.remove(os.path.join(root, 'images', 'P0000.png'))
    with self.assertRaisesRegex(ValueError, "No image for labels 'P0000'"):
      detect.load_split(root, image_size=128, max_gt=32)
    with self.assertRaisesRegex(ValueError, 'must hold train/'):
      detect.run(_train_config(data=root), root)

  def test_hrsc_layout_is_read_and_scaled(self):
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    os.makedirs(os.path.join(root, 'Annotations'))
    os.makedirs(os.path.join(root, 'AllImages'))
    from PIL import Image  # pylint: disable=g-import-not-at-top
    Image.new('RGB', (200, 100)).save(os.path.join(root, 'AllImages',
                                                   '1001.bmp'))
    with open(os.path.join(root, 'Annotations', '1001.xml'), 'w') as f:
      f.write('<HRSC_Image><HRSC_Objects><HRSC_Object><Class_ID>1'
              '</Class_ID><mbox_cx>100</mbox_cx><mbox_cy>50</mbox_cy>'
              '<mbox_w>80</mbox_w><mbox_h>20</mbox_h><mbox_ang>0.3'
              '</mbox_ang></HRSC_Object></HRSC_Objects></HRSC_Image>')
    split = detect.load_split(root, image_size=100, max_gt=4)
    np.testing.assert_allclose(split['boxes'][0, 0], [50, 25, 40, 10, 0.3],
                               rtol=1e-6)
    self.assertEqual(split['class_names'], ['1'])
    self.assertEqual(split['images'].shape, (1, 100, 100, 3))

  def test_pretrained_weights_by_path(self):
    params = {'backbone': {'Conv_0': {'kernel': jnp.zeros((3, 3, 3, 4))}},
              'fc1': {'bias': jnp.zeros(4)}}
    path = os.path.join(tempfile.mkdtemp(), 'w.npz')
    self.addCleanup(shutil.rmtree, os.path.dirname(path), ignore_errors=True)
    np.savez(path, **{'backbone/Conv_0/kernel': np.ones((3, 3, 3, 4))})
    new, loaded = detect.load_pretrained(params, path)
    self.assertEqual(loaded, ['backbone/Conv_0/kernel'])
    np.testing.assert_array_equal(new['backbone']['Conv_0']['kernel'], 1.0)
    np.testing.assert_array_equal(new['fc1']['bias'], 0.0)
    np.savez(path, **{'backbone/Conv_0/kernel': np.ones((3, 3, 3, 5))})
    with self.assertRaisesRegex(ValueError, 'model expects'):
      detect.load_pretrained(params, path)
    # A crafted file (object arrays: a pickle inside) or not an .npz at
    # all: refused, naming the file and the flag.
    np.savez(path, **{'backbone/Conv_0/kernel': np.array([object()])})
    with self.assertRaisesRegex(errors.DataError, r'--config.pretrained=.*'
                                r'w.npz is not an .npz of plain arrays \(it '
                                r'holds object arrays'):
      detect.load_pretrained(params, path)
    with open(path, 'w') as f:
      f.write('weights')
    with self.assertRaisesRegex(errors.DataError, r'w.npz is not an .npz of '
                                r'plain arrays \(not a zip archive'):
      detect.load_pretrained(params, path)

  def test_launcher_refuses_a_bad_config_before_any_work(self):
    work = os.path.join(tempfile.mkdtemp(), 'w')
    self.addCleanup(shutil.rmtree, os.path.dirname(work), ignore_errors=True)
    bad = testutil.launch('launch.detect', '--config=configs/detect.py:smoke',
                          '--config.model.loss=xent', f'--workdir={work}')
    self.assertEqual(bad.returncode, 1)
    self.assertIn("error: Unknown loss 'xent'", bad.stderr)
    self.assertNotIn('Traceback', bad.stderr)
    self.assertFalse(os.path.exists(work))

  @pytest.mark.slow  # ~70 s on 2 cores, most of it compiling.
  def test_launcher_smoke_and_changed_config(self):
    work = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, work, ignore_errors=True)
    # The Cascade detector, so the launcher's path is run with it too (R2CNN
    # goes through detect.run in ResumeTest and OverfitTest).
    cmd = [sys.executable, '-m', 'launch.detect',
           '--config=configs/detect.py:smoke', '--config.steps=2',
           '--config.detector=cascade',
           '--config.synthetic_train=2', '--config.synthetic_test=2',
           '--config.loss_hparams.ci.log_base=2.718281828459045',
           f'--workdir={work}']
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run(cmd, cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    self.assertIn('overall (mAP)', out.stdout)
    for name in ('table.md', 'results.json', 'detections.png'):
      self.assertTrue(os.path.exists(os.path.join(work, name)), name)
    with open(os.path.join(work, 'results.json')) as f:
      result = json.load(f)
    self.assertEqual(result['steps'], 2)
    self.assertEqual(result['loss'], 'ci')
    self.assertEqual(result['detector'], 'cascade')
    self.assertEqual(list(result['ap_protocols']),
                     ['paper', 'voc07', 'voc12', 'coco'])
    with open(os.path.join(work, 'table.md')) as f:
      self.assertIn('COCO (0.5:0.95, 101-pt)', f.read())
    self.assertLen(os.listdir(os.path.join(work, 'predictions')), 2)
    with open(os.path.join(work, 'config.json')) as f:
      model = json.load(f)['config']['model']
    self.assertEqual(model['loss']['name'], 'ci')
    self.assertEqual(dict(model['loss']['hparams']),
                     {**losses_lib.default_hparams('ci'), 'log_base': math.e})
    self.assertEqual(result['loss_hparams'], dict(model['loss']['hparams']))
    self.assertLen(workdir.read_metrics(
        os.path.join(work, 'metrics', 'train.jsonl')), 2)
    # A changed config in the same workdir is refused (before any
    # compilation); rerunning the same command restores the last checkpoint
    # (tested in ResumeTest and with classify and fewshot).
    bad = subprocess.run(cmd[:-1] + ['--config.steps=3', f'--workdir={work}'],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    self.assertEqual(bad.returncode, 1)
    self.assertIn('different config (fields steps differ)', bad.stderr)
    self.assertNotIn('Traceback', bad.stderr)


@pytest.mark.slow
class ResumeTest(absltest.TestCase):

  def test_resume_after_kill_equals_uninterrupted(self):
    # Batches and sampling keys depend only on (seed, step), so a run killed
    # after its step-2 checkpoint and rerun ends with the same parameters as
    # one that was never stopped.
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    cfg = _train_config(steps=4, batch_size=2, checkpoint_every=2,
                        synthetic_train=3, synthetic_test=1, mode='train')
    final, seen = {}, []

    def keep(name):
      def callback(step, state, metrics):
        del metrics
        seen.append((name, step))
        if step == cfg.steps:
          final[name] = jax.device_get(state.params)
      return callback

    class Killed(Exception):
      pass

    def kill_after_step_3(step, state, metrics):
      del state, metrics
      if step == 3:  # The step-2 checkpoint is the latest.
        raise Killed()

    detect.run(cfg, os.path.join(root, 'a'), show_progress=False,
               step_callback=keep('uninterrupted'))
    cfg = dataclasses.replace(cfg, data=os.path.join(root, 'a', 'data'))
    with self.assertRaises(Killed):
      detect.run(cfg, os.path.join(root, 'b'), show_progress=False,
                 step_callback=kill_after_step_3)
    detect.run(cfg, os.path.join(root, 'b'), show_progress=False,
               step_callback=keep('resumed'))
    # The metrics log of the resumed run equals the uninterrupted one's.
    logs = [workdir.read_metrics(
        os.path.join(root, w, 'metrics', 'train.jsonl')) for w in 'ab']
    self.assertEqual([r['step'] for r in logs[1]], [1, 2, 3, 4])
    self.assertEqual([r['loss'] for r in logs[0]],
                     [r['loss'] for r in logs[1]])
    # The rerun restored step 2 and ran steps 3 and 4 only.
    self.assertEqual([s for n, s in seen if n == 'resumed'], [3, 4])
    jax.tree.map(np.testing.assert_array_equal, final['uninterrupted'],
                 final['resumed'])

    # SIGTERM after step 1 (not a checkpoint step): checkpointed there,
    # stopped with errors.Preempted, resumed from step 2 to the same end.
    def sigterm_after_step_1(step, state, metrics):
      del state, metrics
      if step == 1:
        os.kill(os.getpid(), signal.SIGTERM)

    with self.assertRaisesRegex(errors.Preempted, 'after step 1 of 4'):
      detect.run(cfg, os.path.join(root, 'c'), show_progress=False,
                 step_callback=sigterm_after_step_1)
    detect.run(cfg, os.path.join(root, 'c'), show_progress=False,
               step_callback=keep('after SIGTERM'))
    self.assertEqual([s for n, s in seen if n == 'after SIGTERM'],
                     [2, 3, 4])
    jax.tree.map(np.testing.assert_array_equal, final['uninterrupted'],
                 final['after SIGTERM'])


@pytest.mark.slow
class OverfitTest(parameterized.TestCase):

  @parameterized.parameters('r2cnn', 'cascade')
  def test_detector_overfits_a_handful_of_images(self, detector):
    # A detector that cannot fit 4 images is broken: their own mAP at
    # rotated IoU > 0.6 must pass 0.9 (about 5 minutes each on 2 CPU
    # cores), through detect.run (the launcher's path).
    # 600 steps: running time dominates, so XLA optimises (conftest turns
    # that off for the suite; it took this test from ~5 to ~10 minutes).
    previous = jax.config.read('jax_disable_most_optimizations')
    jax.config.update('jax_disable_most_optimizations', False)
    self.addCleanup(jax.config.update, 'jax_disable_most_optimizations',
                    previous)
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    synthetic.write_dataset(os.path.join(root, 'data', 'train'), images=4,
                            size=256, seed=5)
    shutil.copytree(os.path.join(root, 'data', 'train'),
                    os.path.join(root, 'data', 'test'))
    config = configs.load('detect')
    config.detector = detector
    config.model.update(image_size=256, width=16, head_dim=256, pre_nms=400,
                        post_nms=128, rpn_batch=128, roi_batch=64, loss='ce')
    config.update(steps=600, batch_size=4, lr=2e-3, checkpoint_every=10 ** 6,
                  data=os.path.join(root, 'data'))
    result = detect.run(detect.TrainConfig.from_config(config),
                        os.path.join(root, 'work'), show_progress=False)
    self.assertEqual(result['detector'], detector)
    self.assertGreater(result['mAP'], 0.9)


class CascadeConfigTest(absltest.TestCase):

  def test_detector_and_cascade_block_from_the_config_file(self):
    config = configs.load('detect', 'smoke')
    self.assertEqual(detect.TrainConfig.from_config(config).detector, 'r2cnn')
    self.assertIs(type(detect.TrainConfig.from_config(config).model),
                  r2cnn.R2CNNConfig)
    config.detector = 'cascade'
    config.cascade.stage_ious = (0.4, 0.55, 0.65, 0.75)
    config.cascade.stage_loss_weights = (1.0, 0.5, 0.25, 0.25)
    cfg = detect.TrainConfig.from_config(config)
    self.assertIsInstance(cfg.model, cascade.CascadeConfig)
    self.assertEqual(cfg.model.num_stages, 4)
    self.assertEqual(cfg.model.image_size, 128)  # The smoke model block.
    cfg.validate()
    self.assertIs(detect.detector_module(cfg.model), cascade)

  def test_bad_settings_are_named(self):
    config = configs.load('detect')
    config.detector = 'yolo'
    with self.assertRaisesRegex(ValueError, r"Unknown detector 'yolo' "
                                r'\(--config.detector\)'):
      detect.TrainConfig.from_config(config)
    config = configs.load('detect')
    config.detector = 'cascade'
    with config.cascade.unlocked():
      config.cascade.stage_iou = 0.5
    with self.assertRaisesRegex(ValueError, 'Unknown cascade config field'
                                r'\(s\): stage_iou'):
      detect.TrainConfig.from_config(config)
    for field, value, message in (
        ('stage_ious', (0.5, 0.5, 0.7), 'increasing IoU thresholds'),
        ('stage_ious', (0.5, 1.2, 0.7), 'increasing IoU thresholds'),
        ('stage_loss_weights', (1.0, 0.5), 'one weight >= 0 per stage'),
        ('pooled_size', (7, 0), 'two positive integers')):
      config = configs.load('detect')
      config.detector = 'cascade'
      config.cascade[field] = value
      with self.assertRaisesRegex(ValueError, f'cascade.{field} .*'
                                  f'{message}'):
        detect.TrainConfig.from_config(config).validate()
    config = configs.load('detect')
    config.background_count = 'ships'
    with self.assertRaisesRegex(ValueError, r'background_count '
                                r"\(--config.background_count\) must be one "
                                r"of 'sampled', 'foreground_mean'"):
      detect.TrainConfig.from_config(config).validate()


if __name__ == '__main__':
  absltest.main()
