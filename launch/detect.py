r"""R2CNN rotated-ship detection with CE, focal or CI loss (Tables V-VII).

The embedded default (no data given): generates a small synthetic
long-tailed ship set into --workdir/data, trains a small configuration on
the CPU and evaluates it:

    python -m launch.detect

On a folder with train/ and test/, each in DOTA layout (images/,
labelTxt/) or HRSC2016's (AllImages/, Annotations/); larger images are
scaled to fit --image_size:

    python -m launch.detect --data=/data/ships --backbone=resnet50 \
        --image_size=800 --steps=40000 --batch_size=2 --loss=ci \
        --workdir=results/detect_ci

--mode=train or --mode=eval do one half; rerunning resumes from the last
checkpoint. Writes table.md, results.json and detections.png to --workdir.
"""

from absl import app
from absl import flags
from absl import logging
import jax

from cil import losses
from cil.detection import metrics
from cil.detection import r2cnn
from cil.detection import train

_MODE = flags.DEFINE_enum('mode', 'both', ['train', 'eval', 'both'],
                          'Train, evaluate, or both.')
_DATA = flags.DEFINE_string('data', None, 'DOTA-layout folder with train/ '
                            'and test/ (default: generated ships).')
_LOSS = flags.DEFINE_string('loss', 'ci', 'Classification loss. Known: '
                            + ', '.join(losses.LOSS_NAMES))
_BACKBONE = flags.DEFINE_enum('backbone', 'resnet18',
                              ['resnet18', 'resnet34', 'resnet50',
                               'resnet101'], 'Backbone.')
_WIDTH = flags.DEFINE_integer('width', 16, 'First-stage channels (64 in '
                              'the ResNet papers; 16 for the CPU default).')
_IMAGE_SIZE = flags.DEFINE_integer('image_size', 256, 'Padded image side.')
_STEPS = flags.DEFINE_integer('steps', 1500, 'Training steps.')
_BATCH = flags.DEFINE_integer('batch_size', 4, 'Images per step.')
_LR = flags.DEFINE_float('lr', 1e-3, 'Peak learning rate.')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_TRAIN_IMAGES = flags.DEFINE_integer('synthetic_train', 200,
                                     'Generated training images.')
_TEST_IMAGES = flags.DEFINE_integer('synthetic_test', 50,
                                    'Generated test images.')
_SHIP_SCALE = flags.DEFINE_float(
    'synthetic_ship_scale', 1.0, 'Generated ships are this times their '
    '512-pixel sizes (1.0: small images are crops of a 512-pixel harbour).')
_PRETRAINED = flags.DEFINE_string(
    'pretrained', None, 'Optional .npz of parameters keyed by path, e.g. '
    'ImageNet backbone weights converted to backbone/Conv_0/kernel ...')
_WORKDIR = flags.DEFINE_string('workdir', 'results/detect',
                               'Output and checkpoint directory.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.info('Devices: %s', jax.devices())
  model = r2cnn.scaled_config(
      image_size=_IMAGE_SIZE.value, width=_WIDTH.value,
      backbone=_BACKBONE.value, loss=_LOSS.value)
  cfg = train.TrainConfig(model=model, steps=_STEPS.value,
                          batch_size=_BATCH.value, lr=_LR.value,
                          seed=_SEED.value,
                          synthetic_train=_TRAIN_IMAGES.value,
                          synthetic_test=_TEST_IMAGES.value,
                          synthetic_ship_scale=_SHIP_SCALE.value,
                          pretrained=_PRETRAINED.value)
  result = train.run(cfg, _WORKDIR.value, data=_DATA.value, mode=_MODE.value)
  if result is not None:
    print(metrics.table_markdown(result), end='')
    print(f'Wrote {_WORKDIR.value}/table.md, results.json, detections.png')


if __name__ == '__main__':
  app.run(main)
