"""Tests for configs/: every variant builds a valid experiment config."""

import importlib

from absl.testing import absltest
from absl.testing import parameterized

import dataclasses
import subprocess
import sys

from cil import data
from cil import losses
from cil.detection import cascade
from cil.detection import r2cnn
from cil.experiments import classify
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


class ConfigsTest(parameterized.TestCase):

  @parameterized.named_parameters(*_cases())
  def test_variant_builds_and_validates(self, family, variant):
    config = configs.load(family, variant)
    # Every registry loss's hyperparameters are there, keyed canonically,
    # with the names its signature takes; the default variants keep the
    # signatures' values (other variants may change them, e.g. CIFAR-LT's
    # focal gamma).
    self.assertEqual(set(config.loss_hparams), set(losses.LOSS_NAMES))
    for name in losses.LOSS_NAMES:
      defaults = losses.default_hparams(name)
      self.assertEqual(set(config.loss_hparams[name]), set(defaults), name)
      if variant == 'default':
        self.assertEqual(dict(config.loss_hparams[name]), defaults, name)
    _BUILDERS[family].from_config(config).validate()

  def test_configs_state_what_the_library_would_choose(self):
    # The config files state their own values; where the library has a
    # rule for the same choice, the two agree.
    self.assertEqual(fewshot_configs.ALL_DISTRIBUTIONS,
                     tuple(data.partitions(15, 5)))
    for variant in detect_configs.VARIANTS:
      config = configs.load('detect', variant)
      model = detect.TrainConfig.from_config(config).model
      scaled = r2cnn.scaled_config(image_size=model.image_size,
                                   width=model.width,
                                   backbone=model.backbone, loss='ci')
      if variant == 'smoke':  # Its head and budgets are set smaller.
        scaled = dataclasses.replace(scaled, head_dim=64, pre_nms=200,
                                     post_nms=64)
      self.assertEqual(dataclasses.replace(model, loss='ci'), scaled,
                       variant)
      self.assertEqual(model.loss, losses.LossSpec('ci', tuple(sorted(
          losses.default_hparams('ci').items()))), variant)
      self.assertEqual(dict(config.cascade),
                       {k: getattr(cascade.CascadeConfig, k)
                        for k in cascade.stage_fields()})

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
