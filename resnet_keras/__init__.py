"""CIFAR ResNets of He et al. 2015 and the classic experiments, in TensorFlow/Keras 3.

The package is a stack of layers; a module imports only from its own layer and
the layers below it, never from one above or from a sibling family
(tests/layout_test.py checks every import):

    base            checks, files, cpu, keras_private, stats: nothing of the project
                    but each other (`cpu` imports no TensorFlow)
    data/           CIFAR and image folders, the tf.data pipeline
    run/            the run contract every family shares: config, lifecycle,
                    folders, fit, optim, publish, saving, tables, plots, ...
    classification/ the CIFAR ResNets and PlainNets, their runs, metrics and reports
    transfer/       a base under a new head (Question 3); its bases are
                    classification models, so it may import classification
    colorization/   the colorizers: on run/ and data/ only
    export          a classifier's or colorizer's file to SavedModel, TFLite, ONNX
    configs/        one file per experiment: every run it trains, its defaults
    scripts/        (outside the package) flags to configs, on top of everything

Each family has the same role files: `models.py` (builders), `config.py` (a
run's settings), `task.py` (one run), `report.py` (tables and figures), and
`metrics.py` where the family has metrics of its own (transfer is scored by
classification's). The names below are the declared public API.
"""

import importlib

# Imported on first use (PEP 562), not here: `resnet_keras.cpu` must be
# importable before TensorFlow, which reads its oneDNN switch once, at import.
# Public name -> (module, its name there).
_LAZY = {
    # builders
    "build_resnet": ("classification.models", "build_resnet"),
    "build_plainnet": ("classification.models", "build_plainnet"),
    "residual_block": ("classification.models", "residual_block"),
    "build_autoencoder": ("colorization.models", "build_autoencoder"),
    "build_unet": ("colorization.models", "build_unet"),
    "build_colorizer": ("colorization.models", "build_colorizer"),
    "build_transfer_model": ("transfer.models", "build_transfer_model"),
    "pretrained": ("classification.pretrained", "pretrained"),
    # data
    "load_cifar": ("data.cifar", "load_cifar"),
    "load_dataset": ("data.cifar", "load_dataset"),
    "load_image_folder": ("data.image_folders", "load_image_folder"),
    # runs: one config and one run function per family
    "TrainConfig": ("classification.config", "TrainConfig"),
    "run_classification": ("classification.task", "run_classification"),
    "TransferOptions": ("transfer.config", "TransferOptions"),
    "run_transfer": ("transfer.task", "run_transfer"),
    "ColorizeConfig": ("colorization.config", "ColorizeConfig"),
    "train_colorizer": ("colorization.task", "train"),
    "evaluate_colorizer": ("colorization.task", "evaluate_file"),
}

__all__ = sorted(_LAZY)
__version__ = "0.1.0"


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"resnet_keras.{module}"), attr)
    raise AttributeError(f"module 'resnet_keras' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
