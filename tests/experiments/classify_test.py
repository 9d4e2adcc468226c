"""Tests for cil.experiments.classify and launch.classify: training,
resume, the record, CIFAR-LT, the launcher.
"""

import contextlib
import dataclasses
import io
import json
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
import pytest

import cifar_fixture  # tests/, beside this file
from cil import data as cil_data
from cil import errors
from cil import losses
from cil import workdir as workdir_lib
from cil.experiments import classify
from cil import runtime
from cil.experiments import report
import configs
import testutil
from testutil import ROOT


_DATA_DIR = None


def setUpModule():
  global _DATA_DIR
  _DATA_DIR = tempfile.mkdtemp()


def tearDownModule():
  shutil.rmtree(_DATA_DIR, ignore_errors=True)


def _config(**overrides) -> classify.ClassifyConfig:
  """`configs/classify.py:smoke` with `overrides` and the test data dir."""
  config = configs.load('classify', 'smoke')
  config.update(data_dir=_DATA_DIR, **overrides)
  return classify.ClassifyConfig.from_config(config)


def _save_png(path: str, array: np.ndarray) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(array).save(path)


class _Interrupted(Exception):
  """Raised by a callback to stop a run (a simulated kill)."""


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': '', 'CIL_DATA_DIR': ''})
class ClassifyTest(absltest.TestCase):
  """Training on the bundled digits; tiny configs, compiled steps reused."""

  def _workdir(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def _killed_then_resumed(self, cfg, workdir, *, epoch):
    """The run of `cfg` killed as `epoch` starts, then rerun to the end."""
    def kill(protocol, loss, at):
      del protocol, loss
      if at == epoch:
        raise _Interrupted()

    with self.assertRaises(_Interrupted):
      classify.run(cfg, workdir, show_progress=False, epoch_callback=kill)
    return classify.run(cfg, workdir, show_progress=False)

  def _cfg(self, **kw):
    return _config(**{'protocols': ('odd25',), 'losses': ('ci',),
                      'seeds': 2, 'epochs': 3, 'checkpoint_every': 1, **kw})

  def test_sigterm_checkpoints_and_the_rerun_resumes_to_the_same_run(self):
    # checkpoint_every=2: epoch 1, where SIGTERM arrives, is not a
    # checkpoint epoch, so the loop saves one there before it stops.
    cfg = self._cfg(checkpoint_every=2)
    handler = signal.getsignal(signal.SIGTERM)
    whole = classify.run(cfg, self._workdir(), show_progress=False)
    workdir = self._workdir()

    def sigterm_in_epoch_1(protocol, loss, epoch):
      del protocol, loss
      if epoch == 1:
        os.kill(os.getpid(), signal.SIGTERM)

    with self.assertRaisesRegex(
        errors.Preempted, 'odd25/ci: stopped by SIGTERM after epoch 1 of 3, '
        'with a checkpoint of that epoch'):
      classify.run(cfg, workdir, show_progress=False,
                   epoch_callback=sigterm_in_epoch_1)
    self.assertFalse(os.path.exists(os.path.join(workdir, 'runs')))
    # One checkpoint, numbered by chunks done: one epoch's (one step each
    # on the CPU).
    steps = max(-(-sum(r['class_counts']) // cfg.batch_size)
                for r in whole['runs'][0]['per_seed'])
    self.assertEqual([d for d in os.listdir(os.path.join(
        workdir, 'checkpoints', 'odd25', 'ci')) if d.isdigit()], [str(steps)])
    # The handler is put back: outside a run SIGTERM does what it did.
    self.assertEqual(signal.getsignal(signal.SIGTERM), handler)
    resumed = classify.run(cfg, workdir, show_progress=False)
    a, b = whole['runs'][0], resumed['runs'][0]
    self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
    for x, y in zip(a['per_seed'], b['per_seed']):
      self.assertEqual(x['confusion'], y['confusion'])

  def test_a_run_stopped_inside_an_epoch_resumes_there_to_the_same_run(self):
    # checkpoint_every_steps=3 saves after steps 3 and 6 of each epoch
    # (chunks of one step on the CPU). Killed after step 5: the rerun
    # resumes at step 3 of epoch 1, streamed. SIGTERM after step 4, in
    # memory: saved there, resumed there. Both equal the whole run.
    cfg = self._cfg(epochs=2, checkpoint_every_steps=3, checkpoint_every=2,
                    input_pipeline='memory')
    whole = classify.run(cfg, self._workdir(), show_progress=False)
    self.assertEqual(whole['config']['checkpoint_every_steps'], 3)

    def kill_at_5(protocol, loss, step):
      del protocol, loss
      if step == 5:
        raise _Interrupted()

    def sigterm_at_4(protocol, loss, step):
      del protocol, loss
      if step == 4:
        os.kill(os.getpid(), signal.SIGTERM)

    streamed = dataclasses.replace(cfg, input_pipeline='stream')
    for run_cfg, stop, expected, saved in (
        (streamed, kill_at_5, _Interrupted, '3'),
        (cfg, sigterm_at_4, errors.Preempted, '4')):
      workdir = self._workdir()
      with self.assertRaises(expected) as stopped:
        classify.run(run_cfg, workdir, show_progress=False,
                     step_callback=stop)
      cell_dir = os.path.join(workdir, 'checkpoints', 'odd25', 'ci')
      self.assertIn(saved, os.listdir(cell_dir))
      if expected is errors.Preempted:
        self.assertRegex(str(stopped.exception),
                         r'odd25/ci: stopped by SIGTERM in epoch 1 of 2, '
                         r'after 4 of its \d+ parts, with a checkpoint there')
      seen = []
      resumed = classify.run(run_cfg, workdir, show_progress=False,
                             step_callback=lambda *a: seen.append(a[-1]))
      self.assertEqual(seen[0], int(saved) + 1)  # Resumed inside epoch 1.
      a, b = whole['runs'][0], resumed['runs'][0]
      self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
      for x, y in zip(a['per_seed'], b['per_seed']):
        self.assertEqual(x['confusion'], y['confusion'])
    with self.assertRaisesRegex(ValueError,
                                'checkpoint_every_steps must be >= 0'):
      self._cfg(checkpoint_every_steps=-1).validate()

  def test_bfloat16_trains_finite_and_within_the_float32_seeds_ci(self):
    # Mixed precision (`dtype='bfloat16'`): the models compute in bfloat16,
    # the parameters, optimizer state, loss and logits stay float32.
    runs = {dtype: classify.run(self._cfg(dtype=dtype, seeds=3, epochs=2),
                                self._workdir(), show_progress=False)
            for dtype in ('float32', 'bfloat16')}
    low, full = runs['bfloat16']['runs'][0], runs['float32']['runs'][0]
    self.assertEqual(low['settings']['dtype'], 'bfloat16')
    self.assertTrue(np.all(np.isfinite(low['train_loss_per_epoch'])))
    a, b = report.summarize(low), report.summarize(full)
    self.assertLessEqual(abs(a['accuracy']['mean'] - b['accuracy']['mean']),
                         b['accuracy']['ci95'])
    self.assertGreater(a['accuracy']['mean'], 0.5)  # Chance is 0.1.
    with self.assertRaisesRegex(ValueError, "dtype must be one of 'float32', "
                                "'bfloat16', got 'float16'"):
      self._cfg(dtype='float16').validate()

  def test_cells_train_each_row_with_its_own_settings(self):
    # 'ce' with the run's settings beside a cell 'ce_drw': the same loss,
    # re-weighted from epoch 1 (the reference table's CE-DRW row) and a
    # cell with its own schedule. (A cell's own model: the slow CIFAR-LT
    # recipe test, where the LDAM rows take the cosine head.)
    config = configs.load('classify', 'smoke')
    config.update(data_dir=_DATA_DIR, protocols=('odd25',), seeds=2,
                  epochs=2, losses=('ce', 'ce_drw', 'la_small'),
                  cells={'ce_drw': {'loss': 'ce', 'drw_epoch': 1},
                         'la_small': {'loss': 'balanced_softmax',
                                      'lr': 3e-4, 'lr_decay_epochs': [1]}})
    cfg = classify.ClassifyConfig.from_config(config)
    self.assertEqual(cfg.cells[1], ('la_small', (
        ('loss', 'la'), ('lr', 3e-4), ('lr_decay_epochs', (1,)))))
    results = classify.run(cfg, self._workdir(), show_progress=False)
    runs = {r['loss']: r for r in results['runs']}
    self.assertEqual(list(runs), ['ce', 'ce_drw', 'la_small'])
    settings = {n: r['settings'] for n, r in runs.items()}
    self.assertEqual((settings['ce']['drw_epoch'],
                      settings['ce_drw']['drw_epoch']), (0, 1))
    self.assertEqual(settings['ce_drw']['trained_loss'], 'ce')
    self.assertEqual((settings['la_small']['lr'],
                      settings['la_small']['lr_decay_epochs'],
                      settings['la_small']['trained_loss']),
                     (3e-4, (1,), 'la'))
    self.assertEqual(settings['ce']['model'], 'digits_cnn')
    # The same first epoch; the second re-weighted.
    ce, drw = runs['ce']['train_loss_per_epoch'], runs[
        'ce_drw']['train_loss_per_epoch']
    self.assertEqual(ce[0], drw[0])
    self.assertNotEqual(ce[1], drw[1])
    self.assertIn('| ce_drw |', results['table_markdown'])
    for cells, message in (
        ({'x': {'loss': 'ce', 'epochs': 3}}, "cell 'x' sets epochs; a cell "
         'may set loss, model'),
        ({'x': {'model': 'resnet32'}}, "cell 'x' has no 'loss'"),
        ({'ce': {'loss': 'ce'}}, "cell 'ce' has the name of a loss"),
        ({'x': {'loss': 'ce', 'lr': -1.0}}, "cell 'x': lr must be >= 0")):
      with self.subTest(message):
        bad = configs.load('classify', 'smoke')
        bad.update(losses=('ce', 'x') if 'x' in cells else ('focal',),
                   cells=cells)
        with self.assertRaisesRegex(ValueError, message):
          classify.ClassifyConfig.from_config(bad).validate()

  @pytest.mark.slow  # About 2 min: eight ResNet-32 cells.
  def test_the_cifar_lt_recipe_trains_the_reference_table(self):
    # configs/classify.py:cifar10_lt cut to 2 epochs on the CIFAR fixture:
    # one table with the reference's rows, each cell's record with its own
    # model, schedule and re-weighting.
    manual = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, manual, ignore_errors=True)
    cifar_fixture.write_cifar(manual, n=12)
    config = configs.load('classify', 'cifar10_lt')
    config.update(manual_dir=manual, data_dir=os.path.join(manual, 'p'),
                  protocols=('longtail:ratio=4',), seeds=1, epochs=2,
                  batch_size=8, eval_batch_size=60)
    results = classify.run(classify.ClassifyConfig.from_config(config),
                           self._workdir(), show_progress=False)
    rows = ['ce', 'focal', 'ldam_cosine', 'ce_drw', 'ldam_drw', 'la', 'vs',
            'ci']
    self.assertEqual([r['loss'] for r in results['runs']], rows)
    settings = {r['loss']: r['settings'] for r in results['runs']}
    for row in rows:
      s = settings[row]
      self.assertEqual(
          (s['model'], s['drw_epoch'], s['lr'], s['lr_decay_epochs'],
           s['lr_decay_factor'], s['optimizer']),
          ('resnet32_normed' if row.startswith('ldam') else 'resnet32',
           160 if row.endswith('_drw') else 0, 0.1, (160, 180), 0.01, 'sgd'),
          row)
      self.assertEqual(s['loss_hparams']['log_base'], math.e, row)
    self.assertEqual(settings['ldam_drw']['trained_loss'], 'ldam')
    self.assertEqual(settings['focal']['loss_hparams']['gamma'], 1.0)
    for row in rows:
      self.assertIn(f'| {row} |', results['table_markdown'])

  def test_taus_are_chosen_on_the_held_out_split_before_the_test_split(self):
    # validation='train:0.2': a fifth of each training class held out
    # (seed 0); post-hoc LA's and tau-norm's tau chosen on it per seed
    # from TAU_GRID and recorded. Every read of test images (the model's
    # logits, tau-norm's features) comes after every choice.
    cfg = self._cfg(epochs=1, posthoc_tau=1.0, decouple=('tau_norm',),
                    decouple_epochs=1, validation='train:0.2')
    events = []
    runner = classify.runner
    outputs_of, choose, features = (runner._split_outputs,
                                    classify.decouple.choose_tau,
                                    classify.decouple.features)

    def logged_outputs(states, split, *args):
      events.append(('logits', split.split))
      return outputs_of(states, split, *args)

    def logged_choice(*args):
      events.append(('choice', None))
      return choose(*args)

    test_images = cil_data.load('digits', 'test', data_dir=_DATA_DIR).images

    def logged_features(model, variables, images, *args):
      is_test = (images.shape == test_images.shape
                 and np.array_equal(images, test_images))
      events.append(('features', 'test' if is_test else 'other'))
      return features(model, variables, images, *args)

    with mock.patch.object(runner, '_split_outputs', logged_outputs), \
        mock.patch.object(classify.decouple, 'choose_tau', logged_choice), \
        mock.patch.object(classify.decouple, 'features', logged_features):
      results = classify.run(cfg, self._workdir(), show_progress=False)
    test_reads = [i for i, (_, what) in enumerate(events) if what == 'test']
    choices = [i for i, (kind, _) in enumerate(events) if kind == 'choice']
    self.assertLen(choices, 2 * cfg.seeds)  # Post-hoc and tau-norm, each seed.
    self.assertLess(max(choices), min(test_reads), events)
    self.assertIn(('logits', 'train[held out train:0.2]'), events)
    for seed in results['runs'][0]['per_seed']:
      for variant in ('posthoc', 'tau_norm'):
        self.assertIn(seed[variant]['tau'], classify.TAU_GRID)
        self.assertEqual(seed[variant]['tau_chosen_on'], 'validation')
      # What `report.tuned` chooses by: the model's own and the post-hoc
      # rule's scores on the held-out split (tau-norm has none).
      for scores in (seed, seed['posthoc']):
        self.assertEqual(set(scores['validation']),
                         {'accuracy', 'balanced_accuracy'})
        self.assertBetween(scores['validation']['accuracy'], 0.0, 1.0)
      self.assertNotIn('validation', seed['tau_norm'])
    # The held-out fifth is not trained on: fewer training images.
    whole = classify.run(dataclasses.replace(cfg, validation=''),
                         self._workdir(), show_progress=False)
    self.assertLess(
        sum(results['runs'][0]['per_seed'][0]['class_counts']),
        sum(whole['runs'][0]['per_seed'][0]['class_counts']))
    self.assertEqual(whole['runs'][0]['per_seed'][0]['posthoc']['tau'], 1.0)
    with self.assertRaisesRegex(ValueError, "validation must be '', "
                                "'train:F' with F in"):
      self._cfg(validation='train:1.5').validate()

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
      record = json.load(f)
    self.assertEqual(record['runtime']['classify']['seeds'], [0, 1])
    self.assertIn(record['runtime']['policy']['seed_parallel'],
                  ('loop', 'vmap'))
    # The claim is the resolved config: read back, it is the config that
    # ran, with every backend choice a value; it resolves to itself under
    # another backend's policy and gives the same compiled-step settings.
    # (The input pipeline is the data's choice: digits are held in memory.)
    ran = dataclasses.replace(cfg.resolve(runtime.policy()),
                              input_pipeline='memory')
    back = classify.ClassifyConfig.from_config(
        dict(record['config'], **record['runtime']['data_location']))
    self.assertEqual(back, ran)
    self.assertEqual(back.resolve(runtime.policy('gpu')), back)
    self.assertEqual(classify.step_settings(back, 'ci'),
                     classify.step_settings(ran, 'ci'))
    self.assertNotIn('', (back.seed_parallel, back.step_loop,
                          back.conv_pool))
    self.assertIsNotNone(back.compiler_options)

    workdir = self._workdir()
    resumed = self._killed_then_resumed(cfg, workdir, epoch=2)
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
    # one and says so (the cell is recomputed from epoch 2). Checkpoints
    # are numbered by chunks done: epoch e's end is e * chunks per epoch.
    os.remove(os.path.join(workdir, 'runs', 'odd25__ci.json'))
    cell_dir = os.path.join(workdir, 'checkpoints', 'odd25', 'ci')
    newest, previous = sorted(
        (int(d) for d in os.listdir(cell_dir) if d.isdigit()), reverse=True)
    self.assertEqual(newest, 3 * (newest - previous))
    ckpt = os.path.join(cell_dir, str(newest))
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
                     rf'odd25/ci/{newest} .*skipped and deleted, resuming '
                     rf'from step {previous}')
    self.assertEqual(again['runs'][0]['per_seed'][0]['confusion'],
                     a['per_seed'][0]['confusion'])

  def test_posthoc_rows_rescore_the_same_models_towards_the_minority(self):
    results = classify.run(self._cfg(epochs=1, posthoc_tau=1.0),
                           self._workdir(), show_progress=False)
    run = results['runs'][0]
    for seed in run['per_seed']:
      counts = np.array(seed['class_counts'])
      minority = counts < counts.max()
      adjusted = seed['posthoc']
      self.assertEqual(adjusted['tau'], 1.0)
      # z - log(pi) raises a minority logit above every majority one that a
      # class it beat had: no prediction leaves the minority classes.
      predicted = np.array(seed['confusion']).sum(axis=0)
      predicted_adjusted = np.array(adjusted['confusion']).sum(axis=0)
      self.assertGreaterEqual(predicted_adjusted[minority].sum(),
                              predicted[minority].sum())
      self.assertEqual(predicted_adjusted.sum(), predicted.sum())
    self.assertIn('accuracy', run['summary']['posthoc'])
    rows = report.with_variants(results['runs'])
    self.assertEqual([r['loss'] for r in rows], ['ci', 'ci+posthoc'])
    self.assertIn('| ci+posthoc | ', results['table_markdown'])
    # Many-shot: the even classes (~180 images); medium-shot: the odd ones
    # at 25 % (~45); no class has fewer than 20.
    for seed in run['per_seed']:
      counts = np.array(seed['class_counts'])
      recall = np.array(seed['per_class_recall'])
      self.assertAlmostEqual(seed['many_shot'], recall[counts > 100].mean())
      self.assertAlmostEqual(seed['medium_shot'],
                             recall[counts <= 100].mean())
      self.assertIsNone(seed['few_shot'])

  def test_a_folder_of_your_images_runs_through_the_runner(self):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    folder = self._workdir()
    for c, name in enumerate(('zero', 'one', 'two')):
      images = digits.images[digits.target == c][:30]
      for i, image in enumerate(images):
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        Image.fromarray(np.uint8(image * 255 / 16)).save(
            os.path.join(folder, name, f'{i}.png'))
    cfg = self._cfg(dataset=f'folder:{folder}', model='digits_cnn',
                    epochs=2, protocols=('odd25',))
    results = classify.run(cfg, self._workdir(), show_progress=False)
    self.assertEqual(results['dataset']['class_names'],
                     ['one', 'two', 'zero'])
    self.assertEqual(results['dataset']['test_class_counts'], [6, 6, 6])
    run = results['runs'][0]
    for seed in run['per_seed']:  # 'two' (label 1, odd) at 25 %.
      self.assertEqual(seed['class_counts'], [24, 6, 24])
      self.assertGreater(seed['accuracy'], 0.5)  # Chance is 1/3.
    # A model that cannot take 8x8 images is named before any work.
    workdir = os.path.join(self._workdir(), 'new')
    with self.assertRaisesRegex(ValueError, r"Model 'lenet' cannot take "
                                r'folder:.* images of shape \(8, 8, 1\).*'
                                r'set --config.model'):
      classify.run(dataclasses.replace(cfg, model='lenet'), workdir)
    # So is input normalisation for another number of channels.
    with self.assertRaisesRegex(ValueError, r'--config.input_norm has 3 '
                                r'means and stds but folder:.* images have '
                                r'1 channel'):
      classify.run(dataclasses.replace(
          cfg, model='resnet8', input_norm=((.5, .5, .5), (.2, .2, .2))),
                   workdir)
    self.assertFalse(os.path.exists(workdir))

  def test_a_resume_on_edited_data_is_refused_naming_what_changed(self):
    # End to end: CE finished and CI interrupted on a folder of images;
    # one class's images replaced; the rerun must not train CI on the new
    # images beside CE's result on the old ones.
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    folder = self._workdir()

    def write_class(name, digit):
      shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
      os.makedirs(os.path.join(folder, name))
      for i, image in enumerate(digits.images[digits.target == digit][:20]):
        _save_png(os.path.join(folder, name, f'{i}.png'),
                  np.uint8(image * 255 / 16))
    for name, digit in (('zero', 0), ('one', 1), ('two', 2)):
      write_class(name, digit)
    cfg = self._cfg(dataset=f'folder:{folder}', model='digits_cnn',
                    protocols=('odd25',), losses=('ce', 'ci'), seeds=1,
                    epochs=2)
    workdir = self._workdir()

    def kill_in_ci(protocol, loss, epoch):
      del protocol
      if loss == 'ci' and epoch == 1:
        raise _Interrupted()
    with self.assertRaises(_Interrupted):
      classify.run(cfg, workdir, show_progress=False,
                   epoch_callback=kill_in_ci)
    self.assertTrue(os.path.exists(os.path.join(workdir, 'runs',
                                                'odd25__ce.json')))
    write_class('one', 7)
    with self.assertRaisesRegex(
        errors.DataMismatchError, r'holds a run on other data than this one '
        r'\(test: was examples 12, classes 3, sha256 \w{12}; now examples '
        r'12, classes 3, sha256 \w{12}; train: was .*\)\. Its finished '
        r'cells were trained on the recorded data'):
      classify.run(cfg, workdir, show_progress=False)
    write_class('one', 1)  # The same data again: the run resumes.
    resumed = classify.run(cfg, workdir, show_progress=False)
    self.assertEqual([r['loss'] for r in resumed['runs']], ['ce', 'ci'])
    write_class('two', 3)  # Finished, then edited: not the old numbers.
    with self.assertRaises(errors.DataMismatchError):
      classify.run(cfg, workdir, show_progress=False)

  def test_classes_without_test_images_are_said_in_one_line(self):
    # pylint: disable=g-import-not-at-top
    from cil import data
    from cil.experiments.classify import runner
    images = np.zeros((6, 8, 8, 1), np.uint8)
    train = data.ArrayDataset(images, np.arange(6) % 3, ('a', 'b', 'c'),
                              'npz:x', 'train')
    test = data.ArrayDataset(images[:2], np.array([0, 2]), ('a', 'b', 'c'),
                             'npz:x', 'test')
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
      runner._check_data(self._cfg(model='digits_cnn'), train, test)
    self.assertEqual(err.getvalue().splitlines(), [
        'cil: digits: 1 of 3 classes have no test image (b); their recall '
        'is undefined and the per-class means (balanced accuracy, minority '
        'recall, shot groups) average over the others.'])

  def test_your_folder_of_mixed_sizes_trains_as_it_is_with_no_flag(self):
    # Three classes of 24-40 pixel images: the default protocol keeps every
    # image (the data's own counts) and the images get one size (the median
    # shorter side), said in one line; the default model for your data.
    rng = np.random.default_rng(0)
    folder = self._workdir()
    counts = {'ant': 5, 'bee': 3, 'cat': 2}
    for split, scale in (('train', 1), ('test', 1)):
      for c, n in counts.items():
        os.makedirs(os.path.join(folder, split, c))
        for i in range(n * scale):
          h, w = rng.integers(24, 41, 2)
          _save_png(os.path.join(folder, split, c, f'{i}.png'),
                    rng.integers(0, 256, (h, w), np.uint8))
    cfg = _config(dataset=f'folder:{folder}', seeds=1, epochs=1,
                  losses=('ce',))
    self.assertEqual((cfg.protocols, cfg.model), ((), ''))
    results = classify.run(cfg, self._workdir(), show_progress=False)
    run = results['runs'][0]
    self.assertEqual(run['protocol'], 'all')
    self.assertEqual(run['per_seed'][0]['class_counts'], [5, 3, 2])
    self.assertEqual(results['config']['protocols'], ['all'])
    self.assertEqual(results['config']['model'], 'lenet')
    self.assertEqual(results['dataset']['test_class_counts'], [5, 3, 2])

  def test_a_streamed_run_equals_the_in_memory_run_and_resumes(self):
    # The same index plan, images read by Grain chunk by chunk instead of
    # from resident arrays: the same result, bit for bit; killed and
    # rerun, the same again. A class-balanced sampler repeats images.
    # Decoupling extracts its features chunk by chunk: the same classifiers.
    cfg = self._cfg(sampler='class_balanced', epochs=2,
                    input_pipeline='memory', decouple=('crt', 'tau_norm'),
                    decouple_epochs=1, eval_batch_size=40)
    whole = classify.run(cfg, self._workdir(), show_progress=False)
    streamed = dataclasses.replace(cfg, input_pipeline='stream')
    for result in (classify.run(streamed, self._workdir(),
                                show_progress=False),
                   self._killed_then_resumed(streamed, self._workdir(),
                                             epoch=1)):
      self.assertEqual(result['config']['input_pipeline'], 'stream')
      a, b = whole['runs'][0], result['runs'][0]
      self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
      for x, y in zip(a['per_seed'], b['per_seed']):
        self.assertEqual(x['confusion'], y['confusion'])
        for method in ('crt', 'tau_norm'):
          self.assertEqual(x[method]['confusion'], y[method]['confusion'])
          self.assertEqual(x[method]['stage2_loss_per_epoch'],
                           y[method]['stage2_loss_per_epoch'])
    # By default the data's size decides (digits: 1 MB, in memory).
    auto = classify.run(dataclasses.replace(cfg, input_pipeline=''),
                        self._workdir(), show_progress=False)
    self.assertEqual(auto['config']['input_pipeline'], 'memory')
    with mock.patch('cil.data.datasets.STREAM_ABOVE_BYTES', 1000):
      self.assertEqual(cil_data.default_pipeline(
          'digits', 'train', data_dir=_DATA_DIR), 'stream')

  def test_a_resampled_run_resumes_to_the_same_result(self):
    cfg = self._cfg(sampler='progressive', epochs=2)
    whole = classify.run(cfg, self._workdir(), show_progress=False)
    resumed = self._killed_then_resumed(cfg, self._workdir(), epoch=1)
    a, b = whole['runs'][0], resumed['runs'][0]
    self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
    for x, y in zip(a['per_seed'], b['per_seed']):
      self.assertEqual(x['confusion'], y['confusion'])
    with self.assertRaisesRegex(ValueError, 'sampler must be one of'):
      self._cfg(sampler='balanced').validate()

  def test_decoupled_classifiers_are_rows_beside_the_trained_model(self):
    cfg = self._cfg(epochs=1, decouple=('crt', 'tau_norm', 'lws'),
                    decouple_epochs=2)
    results = classify.run(cfg, self._workdir(), show_progress=False)
    run = results['runs'][0]
    for seed in run['per_seed']:
      for method in ('crt', 'lws'):
        self.assertLen(seed[method]['stage2_loss_per_epoch'], 2)
      self.assertEqual(seed['tau_norm']['tau'], 1.0)
      # cRT starts from a new classifier: two short epochs of Adam at 1e-3
      # lower its loss and pass chance (0.1); tau-norm and LWS start from
      # the trained one (about 0.5 after one epoch).
      losses = seed['crt']['stage2_loss_per_epoch']
      self.assertLess(losses[1], losses[0])
      self.assertGreater(seed['crt']['accuracy'], 0.1)
      for method in ('tau_norm', 'lws'):
        self.assertGreater(seed[method]['accuracy'], 0.3)
      for method in ('crt', 'tau_norm', 'lws'):
        self.assertIn('few_shot', seed[method])
    for method in ('crt', 'tau_norm', 'lws'):
      self.assertIn(f'| ci+{method} | ', results['table_markdown'])
      self.assertIn('accuracy', run['summary'][method])
    with self.assertRaisesRegex(ValueError, 'decouple methods must be'):
      self._cfg(decouple=('cRT',)).validate()

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
    with self.assertRaisesRegex(ValueError, 'classify config field seeds '
                                'must be a positive integer, got 0'):
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
    self.assertEqual(cfg.loss_spec('fl'), losses.LossSpec(
        'focal', (('gamma', 0.5), ('log_base', 10.0))))
    self.assertEqual(cfg.loss_spec('ldam').kwargs,
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

  def test_bad_shot_thresholds_and_posthoc_tau_are_refused(self):
    with self.assertRaisesRegex(ValueError, 'shot_thresholds'):
      _config(shot_thresholds=(100, 20)).validate()
    with self.assertRaisesRegex(ValueError, 'posthoc_tau must be a finite'):
      _config(posthoc_tau=-1.0).validate()


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


@pytest.mark.slow  # ~60 s on 2 cores: two launcher runs, one under load.
class ReproducibilityTest(absltest.TestCase):

  def test_a_run_under_load_repeats_a_quiet_run_bit_for_bit(self):
    # docs/performance.md, "Same seed, same numbers": the load on the cores
    # changes no bit of a run (the core count it may use would).
    root = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, root, ignore_errors=True)
    results = {}
    for name in ('quiet', 'loaded'):
      busy = []
      if name == 'loaded':
        busy = [subprocess.Popen([sys.executable, '-c', 'while True: pass'])
                for _ in range(3)]
      try:
        out = testutil.launch(
            'launch.classify', '--config=configs/classify.py:smoke',
            '--config.epochs=3', f'--workdir={os.path.join(root, name)}',
            env={'CIL_DATA_DIR': _DATA_DIR, 'CIL_MANUAL_DIR': ''})
      finally:
        for p in busy:
          p.kill()
          p.wait()
      self.assertEqual(out.returncode, 0, out.stderr[-2000:])
      with open(os.path.join(root, name, 'results.json')) as f:
        results[name] = json.load(f)['runs']
    for a, b in zip(results['quiet'], results['loaded']):
      self.assertEqual(a['train_loss_per_epoch'], b['train_loss_per_epoch'])
      self.assertEqual([s['confusion'] for s in a['per_seed']],
                       [s['confusion'] for s in b['per_seed']])
    with open(os.path.join(root, 'quiet', 'config.json')) as f:
      devices = json.load(f)['runtime']['devices']
    self.assertEqual(devices['cpu_cores'], len(os.sched_getaffinity(0)))


class LauncherTest(absltest.TestCase):

  def _launch(self, workdir, *flags):
    return testutil.launch(
        'launch.classify', '--config=configs/classify.py:smoke',
        f'--workdir={workdir}', *flags,
        env={'CIL_DATA_DIR': _DATA_DIR, 'CIL_MANUAL_DIR': ''})

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
    with open(os.path.join(workdir, 'config.json')) as f:
      record = json.load(f)['runtime']
    # The launcher said when it restarted itself with huge pages for malloc
    # (launch/startup.py), and the record agrees with what it said.
    restarted = 'cil: restarting with GLIBC_TUNABLES' in result.stderr
    inherited = 'glibc.malloc.hugetlb=1' in os.environ.get('GLIBC_TUNABLES',
                                                           '')
    self.assertEqual(record['host_memory']['malloc_hugetlb'],
                     restarted or inherited)
    # The record names the code that ran and each cell's settings.
    head = subprocess.run(['git', '-C', ROOT, 'rev-parse', 'HEAD'],
                          capture_output=True, text=True, check=False)
    if head.returncode == 0:
      self.assertEqual(record['code']['commit'], head.stdout.strip())
      self.assertIsInstance(record['code']['dirty'], bool)
    cell = record['classify']['cells']['step:ratio=10,mu=0.5/focal']
    self.assertEqual(cell['loss_hparams'], {'gamma': 0.5, 'log_base': 10.0})
    self.assertEqual(run['settings'], cell)

  def test_unknown_config_fields_are_named_in_one_line(self):
    result = self._launch(tempfile.mkdtemp(), '--config.seed=3')
    self.assertEqual(result.returncode, 2)
    self.assertIn("error: --config.seed=3: configs/classify.py has no field "
                  "'seed'; the nearest is 'seeds'.", result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    lines = [line for line in result.stderr.strip().splitlines()
             if not line.startswith('cil: restarting with')]
    self.assertLen(lines, 1, result.stderr)
    # The message for other fields, without another process.
    from launch import common  # pylint: disable=g-import-not-at-top
    smoke = f'--config={os.path.join(ROOT, "configs", "classify.py")}:smoke'
    for flag, message in (
        ('--config.nosuchfield=1', "has no field 'nosuchfield'."),
        ('--config.loss_hparams.focal.gama=1', "has no field "
         "'loss_hparams.focal.gama'; the nearest is "
         "'loss_hparams.focal.gamma'.")):
      self.assertIn(message, common.config_flag_error(
          ['prog', smoke, flag], AttributeError(flag)))

  @pytest.mark.slow  # ~40 s: two smoke runs.
  def test_a_disk_that_fills_is_one_named_line_and_the_rerun_finishes(self):
    # A file size limit (300 KB) stands in for a full disk: the first
    # checkpoint cannot be written.
    workdir = os.path.join(tempfile.mkdtemp(), 'w')
    self.addCleanup(shutil.rmtree, os.path.dirname(workdir),
                    ignore_errors=True)
    env = dict(os.environ, CIL_MANUAL_DIR='',
               CIL_HUGE_PAGES='0', JAX_COMPILATION_CACHE_DIR=os.path.join(
                   os.path.dirname(workdir), 'cache'))

    def limited():
      signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
      resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

    def launch(data_dir):
      result = subprocess.run(
          [sys.executable, '-m', 'launch.classify',
           '--config=configs/classify.py:smoke', f'--workdir={workdir}'],
          cwd=ROOT, env=dict(env, CIL_DATA_DIR=data_dir),
          capture_output=True, text=True, timeout=600, preexec_fn=limited,
          check=False)
      self.assertEqual(result.returncode, 1, result.stderr[-3000:])
      noise = ('training steps', 'cil: preparing')
      return [line for line in result.stderr.replace('\r', '\n').splitlines()
              if line.strip() and not line.startswith(noise)]

    # Preparing the data on a full disk ...
    fresh = os.path.join(os.path.dirname(workdir), 'data')
    self.assertEqual(launch(fresh), [
        f'error: Could not prepare digits in {fresh}: File too large. What '
        f'it wrote is removed; free space (or set another data dir) and '
        f'rerun.'])
    self.assertEqual(os.listdir(fresh), [])
    # ... and writing a checkpoint (the data prepared beforehand).
    from cil import data  # pylint: disable=g-import-not-at-top
    data.load('digits', 'train', data_dir=_DATA_DIR)
    # (Checkpoints are numbered by chunks done: the first, after epoch 1,
    # is its number of steps on the CPU.)
    lines = launch(_DATA_DIR)
    self.assertLen(lines, 1)
    self.assertRegex(lines[0], re.escape(
        'error: Could not write the checkpoint of step ') + r'\d+' +
                     re.escape(
        f' under {workdir}/checkpoints/odd10/ce: File too large. The previous '
        f'checkpoints are unchanged; free space (or fix the permissions) and '
        f'rerun the same command to resume from them.'))
    self.assertFalse(os.path.exists(os.path.join(workdir, 'runs')))
    again = self._launch(workdir)
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])

  def test_a_config_file_or_variant_that_fails_is_one_line(self):
    for config, message in (
        ('configs/classify.py:nosuch', "error: --config=configs/classify.py:"
         "nosuch: Unknown config variant 'nosuch'; known: default, smoke"),
        ('configs/nofile.py', "error: --config=configs/nofile.py: [Errno 2] "
         "No such file or directory: 'configs/nofile.py'")):
      result = testutil.launch('launch.classify', f'--config={config}',
                               env={'CIL_HUGE_PAGES': '0'})
      self.assertEqual(result.returncode, 2, result.stderr)
      self.assertStartsWith(result.stderr, message)
      self.assertNotIn('Traceback', result.stderr)
      self.assertLessEqual(len(result.stderr.strip().splitlines()), 2)

  def test_missing_manual_dir_is_named_with_its_flag(self):
    workdir = os.path.join(tempfile.mkdtemp(), 'w')
    self.addCleanup(shutil.rmtree, os.path.dirname(workdir),
                    ignore_errors=True)
    result = self._launch(workdir, '--config.dataset=mnist',
                          '--config.protocols=odd10',
                          '--config.manual_dir=/nonexistent/manual')
    self.assertEqual(result.returncode, 1, result.stderr[-2000:])
    self.assertIn("error: mnist: manual directory '/nonexistent/manual/mnist' "
                  'does not exist', result.stderr)
    self.assertIn('--config.manual_dir', result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertFalse(os.path.exists(workdir))

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
