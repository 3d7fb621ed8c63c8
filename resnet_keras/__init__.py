"""CIFAR ResNets of He et al. 2015 and the classic experiments, in TensorFlow/Keras 3."""

import importlib

# Imported on first use (PEP 562), not here: `resnet_keras.cpu` must be
# importable before TensorFlow, which reads its oneDNN switch once, at import.
_LAZY = {
    "build_plainnet": "models",
    "build_resnet": "models",
    "residual_block": "models",
    "load_cifar": "data",
    "pretrained": "presets",
}

__all__ = ["build_plainnet", "build_resnet", "load_cifar", "pretrained", "residual_block"]
__version__ = "0.1.0"


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"resnet_keras.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'resnet_keras' has no attribute {name!r}")
