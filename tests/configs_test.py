"""Tests for configs/: every variant builds a valid experiment config."""

import dataclasses
import importlib
import math

from absl.testing import absltest
from absl.testing import parameterized

import subprocess
import sys

from cil import data
from cil import losses
from cil.experiments import classify
from cil.experiments.classify import step as classify_step
from cil.experiments import detect
from cil.experiments import fewshot
import configs
from configs import detect as detect_configs
from configs import fewshot as fewshot_configs
from testutil import ROOT

_BUILDERS = {'classify': classify.ClassifyConfig,
             'fewshot': fewshot.FewShotConfig,
             'detect': detect.TrainConfig}


def _cases():
  for family in _BUILDERS:
    for variant in importlib.import_module(f'configs.{family}').VARIANTS:
      yield f'{family}_{variant}', family, variant


# Every registry loss's scalar hyperparameters in the default variants,
# written out by hand: the losses' defaults (read from their signatures by
# the config files) with the CI paper's base-10 logarithms, which the
# paper's configs state (the losses' own default is the natural log).
LOSS_DEFAULTS = {
    'ce': {'log_base': 10.0},
    'focal': {'gamma': 2.0, 'log_base': 10.0},
    'ci': {'log_base': 10.0, 'threshold': 1.0, 'low_exponent': 0.5,
           'high_exponent': 0.125, 'transition_width': 0.0},
    'cb': {'beta': 0.9999, 'gamma': 0.0, 'log_base': 10.0},
    'ldam': {'max_margin': 0.5, 'scale': 30.0, 'log_base': 10.0},
    'la': {'tau': 1.0, 'log_base': 10.0},
    'wce': {'log_base': 10.0},
    'vs': {'gamma': 0.2, 'tau': 1.0, 'log_base': 10.0},
    'ci_parts': {'modulation': 1.0, 'threshold': 1.0, 'low_exponent': 0.5,
                 'high_exponent': 0.125, 'transition_width': 0.0,
                 'cb_beta': 0.0, 'tau': 0.0, 'log_base': 10.0},
}


class ConfigsTest(parameterized.TestCase):

  @parameterized.named_parameters(*_cases())
  def test_variant_builds_and_validates(self, family, variant):
    config = configs.load(family, variant)
    # Every registry loss's hyperparameters are there, keyed canonically,
    # with the names its signature takes; the default variants keep the
    # signatures' values (other variants may change them, e.g. CIFAR-LT's
    # focal gamma).
    self.assertEqual(set(config.loss_hparams), set(LOSS_DEFAULTS))
    for name, defaults in LOSS_DEFAULTS.items():
      self.assertEqual(set(config.loss_hparams[name]), set(defaults), name)
      if variant == 'default':
        self.assertEqual(dict(config.loss_hparams[name]), defaults, name)
    _BUILDERS[family].from_config(config).validate()

  def test_the_paper_configs_state_base_ten_the_library_is_natural(self):
    for name in LOSS_DEFAULTS:
      self.assertEqual(losses.default_hparams(name)['log_base'], math.e)
    for family in _BUILDERS:
      self.assertEqual(
          {h['log_base'] for h in configs.load(family).loss_hparams.values()},
          {10.0}, family)
    for variant in ('cifar10_lt', 'cifar100_lt'):  # Their code's: natural.
      self.assertEqual({h['log_base'] for h in configs.load(
          'classify', variant).loss_hparams.values()}, {math.e})

  def test_the_cifar_lt_learning_rate_is_the_reference_s(self):
    # kaidic/LDAM-DRW cifar_train.py, adjust_learning_rate: lr 0.1 to epoch
    # 160, x 0.01 to 180, x 0.0001 after (epochs counted from 1 there).
    for variant in ('cifar10_lt', 'cifar100_lt'):
      cfg = classify.ClassifyConfig.from_config(
          configs.load('classify', variant))
      schedule = classify_step.learning_rate(cfg, steps_per_epoch=10)
      # Warm-up per epoch (theirs): lr (e + 1) / 5 through epoch e < 5.
      for epoch, lr in ((0, 0.02), (0.9, 0.02), (2, 0.06), (4.5, 0.1),
                        (5, 0.1), (150, 0.1), (170, 0.1 * 0.01),
                        (190, 0.1 * 1e-4)):
        self.assertAlmostEqual(float(schedule(int(epoch * 10))), lr, delta=lr
                               * 1e-6, msg=(variant, epoch))

  def test_the_recipes_normalise_inputs_by_the_references_statistics(self):
    # LDAM-DRW cifar_train.py: Normalize((0.4914, 0.4822, 0.4465),
    # (0.2023, 0.1994, 0.2010)); classifier-balancing data/dataloader.py's
    # RGB_statistics: 'default' (ImageNet's) and 'iNaturalist18'.
    cifar = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    for variant, want in (
        ('cifar10_lt', cifar), ('cifar100_lt', cifar),
        ('imagenet_lt', ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
        ('inaturalist2018', ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192))),
        ('default', ())):
      cfg = classify.ClassifyConfig.from_config(
          configs.load('classify', variant))
      cfg.validate()
      self.assertEqual(cfg.input_norm, want, variant)
    cfg = classify.ClassifyConfig.from_config(
        configs.load('classify', 'cifar10_lt'))
    for bad, message in (
        (((0.5, 0.5), (0.2,)), '2 means and 1 stds'),
        (((0.5,), (0.0,)), 'stds finite and > 0'),
        ((0.5, 0.2), r'must be \(mean per channel, std per channel\)')):
      config = configs.load('classify', 'cifar10_lt')
      config.input_norm = bad
      with self.assertRaisesRegex(ValueError, message):
        classify.ClassifyConfig.from_config(config)
    with self.assertRaisesRegex(ValueError, "model 'digits_cnn' does not "
                                'take it'):
      dataclasses.replace(cfg, model='digits_cnn').validate()

  def test_the_long_tail_recipes_are_kang_et_al_s(self):
    # classifier-balancing's feat_uniform.yaml: lr 0.2, cosine per epoch
    # over 90 epochs (CosineAnnealingLR, eta_min 0), batch 512.
    # Their data/dataloader.py: colour jitter for all but iNaturalist.
    for variant, model, decay, test, augment in (
        ('imagenet_lt', 'resnext50', 5e-4, 'test',
         'resized_crop_flip_jitter'),
        ('inaturalist2018', 'resnet50', 1e-4, 'val', 'resized_crop_flip')):
      cfg = classify.ClassifyConfig.from_config(
          configs.load('classify', variant))
      cfg.validate()
      self.assertEqual((cfg.model, cfg.weight_decay, cfg.test_split,
                        cfg.batch_size, cfg.epochs, cfg.augment),
                       (model, decay, test, 512, 90, augment))
      schedule = classify_step.learning_rate(cfg, steps_per_epoch=10)
      for epoch in (0, 1, 45, 89):
        want = 0.2 * (1 + math.cos(math.pi * epoch / 90)) / 2
        for step in (epoch * 10, epoch * 10 + 9):  # Constant in an epoch.
          self.assertAlmostEqual(float(schedule(step)), want, places=6)
    with self.assertRaisesRegex(ValueError, "validation and test_split are "
                                "both 'val'"):
      cfg = classify.ClassifyConfig.from_config(
          configs.load('classify', 'inaturalist2018'))
      dataclasses.replace(cfg, validation='val').validate()

  def test_configs_state_what_the_library_would_choose(self):
    self.assertEqual(fewshot_configs.ALL_DISTRIBUTIONS,
                     tuple(data.partitions(15, 5)))
    # Detection's budgets follow the image size and width (written out by
    # hand here: r2cnn.scaled_config's rule, which the config file reads).
    budgets = ('image_size', 'width', 'backbone', 'pre_nms', 'post_nms',
               'rpn_batch', 'roi_batch', 'head_dim')
    want = {'default': (256, 16, 'resnet18', 600, 128, 128, 64, 256),
            'smoke': (128, 8, 'resnet18', 200, 64, 128, 64, 64),
            'hrsc': (800, 64, 'resnet50', 2000, 512, 256, 256, 1024),
            'dota': (800, 64, 'resnet50', 2000, 512, 256, 256, 1024)}
    for variant in detect_configs.VARIANTS:
      config = configs.load('detect', variant)
      model = detect.TrainConfig.from_config(config).model
      self.assertEqual(tuple(getattr(model, k) for k in budgets),
                       want[variant], variant)
      self.assertEqual((model.anchor_sizes, model.anchor_ratios),
                       ((16, 32, 64, 128), (0.2, 0.5, 1.0, 2.0, 5.0)))
      self.assertEqual(model.loss, losses.LossSpec('ci', tuple(sorted(
          LOSS_DEFAULTS['ci'].items()))), variant)
      self.assertEqual(dict(config.cascade), {
          'stage_ious': (0.5, 0.6, 0.7),
          'stage_loss_weights': (1.0, 0.5, 0.25),
          'pooled_size': (7, 7), 'first_stage_aabb_match': True})

  def test_reading_a_config_imports_no_dataset_code(self):
    code = ('import sys, configs\n'
            'for family in ("classify", "fewshot", "detect"):\n'
            '  configs.load(family)\n'
            'heavy = [m for m in ("tensorflow_datasets", "cil.data", '
            '"orbax", "matplotlib") if m in sys.modules]\n'
            'print(heavy)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, check=True, timeout=120,
                         cwd=ROOT).stdout.strip()
    self.assertEqual(out, '[]')

  def test_default_is_the_embedded_default(self):
    self.assertEqual(configs.load('classify').dataset, 'digits')
    self.assertEqual(configs.load('fewshot').dataset, 'digits')
    self.assertIsNone(configs.load('detect').data)

  def test_unknown_variant_and_fields_are_named(self):
    with self.assertRaisesRegex(ValueError, "Unknown config variant 'smok'"):
      configs.load('classify', 'smok')
    config = configs.load('classify', 'smoke')
    config.learning_rate = 0.1
    with self.assertRaisesRegex(ValueError,
                                'Unknown classify config field.*learning_rate'):
      classify.ClassifyConfig.from_config(config)
    config = configs.load('detect', 'smoke')
    config.model.loss = 'fl'
    config.loss_hparams.focal.gamma = 0.5
    model = detect.TrainConfig.from_config(config).model
    self.assertEqual(model.loss, losses.LossSpec(
        'focal', (('gamma', 0.5), ('log_base', 10.0))))


if __name__ == '__main__':
  absltest.main()
