"""Question 3: transfer learning from a pretrained base to CIFAR-10.

`python -m scripts.question3 --all` trains a head on the frozen base for each
optimizer of `ORIGINAL_OPTIMIZERS`, each with `DEFAULTS` and Keras' default
learning rate (`LR`), over `classification.config.TrainConfig`'s and
`transfer.config.TransferOptions`' field defaults for the rest (`make_configs`).
A run is named after its base, mode, data set and optimizer (`run_name`).
"""

import dataclasses

from resnet_keras.classification.config import TrainConfig
from resnet_keras.configs import presets
from resnet_keras.run import optim
from resnet_keras.transfer.config import TransferOptions

DEFAULTS = dict(
    dataset="cifar10",
    epochs=20,
    batch_size=128,
    opt="adam",
    schedule="constant",
    # The original trains on the images as they are; fixed images also let
    # the head train on cached features.
    augment=False,
    val_size=5000,
    output_dir=".",
    formats=["h5"],
    base="resnet50",
    weights=None,
    image_size=32,
    head_units=256,
    train_base=False,
    fine_tune_epochs=0,
    unfreeze=1,
    fine_tune_lr=None,
    cache_features=None,
)
ORIGINAL_OPTIMIZERS = ["rmsprop", "adam", "sgd"]
# Keras' default learning rates, as the original builds its optimizers (and as
# question2 does): SGD at the paper's 0.1 is too large for a head on features.
LR = optim.KERAS_DEFAULT_LR


def run_name(options, dataset, opt, given=None, run_all=False):
    """question3_<stem> (`TransferOptions.stem`), or the --run_name `given`,
    suffixed with the optimizer when --all trains one run per optimizer."""
    if given is None:
        return f"question3_{options.stem(dataset, opt)}"
    return f"{given}_{opt}" if run_all else given


def make_configs(settings, explicit, run_all=False):
    """(TransferOptions, [TrainConfig per optimizer]) of the resolved `settings`,
    each checked; `explicit`: the flags given; `run_all`: one run per
    optimizer of `ORIGINAL_OPTIMIZERS` (--all)."""
    settings = dict(settings)
    fields = [f.name for f in dataclasses.fields(TransferOptions)]
    options = TransferOptions(**{name: settings.pop(name) for name in fields})
    if run_all and "opt" in explicit:
        *first, last = ORIGINAL_OPTIMIZERS
        raise ValueError(f"--all runs {', '.join(first)} and {last}; drop --opt")
    configs = []
    for opt in ORIGINAL_OPTIMIZERS if run_all else [settings["opt"]]:
        name = run_name(options, settings["dataset"], opt, settings["run_name"], run_all)
        s = presets.for_optimizer(settings, opt, explicit)
        lr = optim.base_learning_rate(opt, s["lr"], LR)
        config = TrainConfig(**(s | {"opt": opt, "run_name": name, "lr": lr}))
        config.validate()
        options.validate(config.augment)
        configs.append(config)
    return options, configs
