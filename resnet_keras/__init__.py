"""CIFAR ResNets of He et al. 2015 and the classic experiments, in TensorFlow/Keras 3."""

from resnet_keras.data import load_cifar
from resnet_keras.models import build_plainnet, build_resnet, residual_block

__all__ = ["build_plainnet", "build_resnet", "load_cifar", "residual_block"]
__version__ = "0.1.0"
