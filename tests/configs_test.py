"""Tests for configs/: every variant builds a valid experiment config."""

import importlib

from absl.testing import absltest
from absl.testing import parameterized

from cil.experiments import classify
from cil.experiments import fewshot
from cil import losses
from cil.experiments import detect
import configs

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
    # Every registry loss's hyperparameters are there, keyed canonically.
    self.assertEqual(set(config.loss_hparams), set(losses.LOSS_NAMES))
    _BUILDERS[family].from_config(config).validate()

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
    self.assertEqual(model.loss, 'focal')
    self.assertEqual(dict(model.loss_hparams), {'gamma': 0.5,
                                                'log_base': 10.0})


if __name__ == '__main__':
  absltest.main()
