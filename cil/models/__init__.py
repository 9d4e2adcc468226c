"""Flax Linen models, one module per family: the paper's classifiers
(`classifiers`: LeNet, the digits CNN, A-ConvNets), the long-tail
references' ResNets (`resnet`: CIFAR ResNet-32, ResNet-50, ResNeXt-50,
LDAM's cosine head), MAML's Conv4 (`conv4`); the convolution, pooling and
normalisation kernels under them (`_kernels`, private, apart from the
architectures); the models by name (`registry`)."""

from cil.models._kernels import conv_pool_s2d
from cil.models.classifiers import AConvNet
from cil.models.classifiers import CONV_POOL_IMPLS
from cil.models.classifiers import DigitsCNN
from cil.models.classifiers import LeNet
from cil.models.conv4 import BatchStatNorm
from cil.models.conv4 import Conv3x3
from cil.models.conv4 import Conv4
from cil.models.conv4 import CONV_IMPLS
from cil.models.registry import BATCH_NORM_MODELS
from cil.models.registry import INPUT_NORM_MODELS
from cil.models.registry import CONV_POOL_MODELS
from cil.models.registry import get_model
from cil.models.registry import MODEL_NAMES
from cil.models.resnet import BatchNorm
from cil.models.resnet import CifarResNet32
from cil.models.resnet import ImageNetResNet
from cil.models.resnet import NormedLinear

__all__ = [
    'AConvNet',
    'BATCH_NORM_MODELS',
    'INPUT_NORM_MODELS',
    'BatchNorm',
    'BatchStatNorm',
    'CifarResNet32',
    'Conv3x3',
    'Conv4',
    'conv_pool_s2d',
    'CONV_IMPLS',
    'CONV_POOL_IMPLS',
    'CONV_POOL_MODELS',
    'DigitsCNN',
    'get_model',
    'ImageNetResNet',
    'LeNet',
    'MODEL_NAMES',
    'NormedLinear',
]
