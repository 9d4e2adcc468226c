"""Flax Linen models: LeNet, a digits CNN, A-ConvNets, MAML's Conv4, and
the CIFAR ResNet-32."""

from cil.models.cnn import AConvNet
from cil.models.cnn import BatchStatNorm
from cil.models.cnn import CifarResNet32
from cil.models.cnn import Conv4
from cil.models.cnn import conv_pool_s2d
from cil.models.cnn import CONV_POOL_IMPLS
from cil.models.cnn import CONV_POOL_MODELS
from cil.models.cnn import DigitsCNN
from cil.models.cnn import get_model
from cil.models.cnn import LeNet
from cil.models.cnn import MODEL_NAMES

__all__ = [
    'AConvNet',
    'BatchStatNorm',
    'CifarResNet32',
    'Conv4',
    'conv_pool_s2d',
    'CONV_POOL_IMPLS',
    'CONV_POOL_MODELS',
    'DigitsCNN',
    'get_model',
    'LeNet',
    'MODEL_NAMES',
]
