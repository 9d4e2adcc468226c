"""The models by name (`get_model`), for configs and launchers."""

import functools
from typing import Sequence

import flax.linen as nn

from cil.models.classifiers import AConvNet
from cil.models.classifiers import DigitsCNN
from cil.models.classifiers import LeNet
from cil.models.conv4 import Conv4
from cil.models.resnet import CifarResNet32
from cil.models.resnet import ImageNetResNet


_MODELS = {
    'lenet': LeNet,
    'lenet_normed': functools.partial(LeNet, normed_head=True),
    'digits_cnn': DigitsCNN,
    'aconvnet': AConvNet,
    'conv4': Conv4,
    'resnet32': CifarResNet32,
    'resnet32_normed': functools.partial(CifarResNet32, normed_head=True),
    # He et al.'s 6n + 2 family at n = 1: the small ResNet with batch norm
    # of RESULTS.md's second-architecture studies (MNIST's 28 x 28).
    'resnet8': functools.partial(CifarResNet32, blocks_per_stage=1),
    'resnet8_normed': functools.partial(CifarResNet32, blocks_per_stage=1,
                                        normed_head=True),
    'resnet50': ImageNetResNet,
    'resnet50_normed': functools.partial(ImageNetResNet, normed_head=True),
    'resnext50': functools.partial(ImageNetResNet, groups=32,
                                   width_per_group=4),
    'resnext50_normed': functools.partial(ImageNetResNet, groups=32,
                                          width_per_group=4,
                                          normed_head=True),
}
MODEL_NAMES: Sequence[str] = tuple(_MODELS)
# The models that take `batch_norm_groups` (`cil.models.resnet.BatchNorm`).
BATCH_NORM_MODELS: Sequence[str] = tuple(
    name for name in _MODELS if name.startswith(('resnet', 'resnext')))
# The models that take `input_norm` (per-channel mean and std of the
# [0, 1]-scaled inputs, `cil.models._kernels.to_float`): the ResNets, as
# the long-tail references normalise their inputs.
INPUT_NORM_MODELS: Sequence[str] = BATCH_NORM_MODELS
# The models that take `conv_pool` (`CONV_POOL_IMPLS`).
CONV_POOL_MODELS: Sequence[str] = ('lenet', 'lenet_normed')


def get_model(name: str, num_classes: int, **kwargs) -> nn.Module:
  """Returns the model called `name` (lenet, lenet_normed, digits_cnn,
  aconvnet, conv4, resnet8, resnet32, resnet50, resnext50; `_normed`:
  LDAM's cosine head)."""
  if name not in _MODELS:
    raise ValueError(f'Unknown model {name!r}; known: '
                     f'{", ".join(MODEL_NAMES)}.')
  return _MODELS[name](num_classes=num_classes, **kwargs)
