"""Question 2: the multi-configuration study on CIFAR-10 and CIFAR-100.

`python -m scripts.question2 --all` trains the three configurations of `ALL`,
each with `DEFAULTS`, its optimizer's batch size (`BATCH_SIZE`) and Keras'
default learning rate (`LR`), over `classification.config.TrainConfig`'s field
defaults for the rest (weight decay 1e-4, projection shortcuts, per-channel
normalisation, crop + flip):

    run (runs/...)                n  optimizer           batch  lr     epochs
    question2_resnet_n7_RMSprop   7  RMSprop             128    0.001  20
    question2_resnet_n7_Adam      7  Adam                64     0.001  20
    question2_resnet_n5_SGD       5  SGD, momentum 0.9   256    0.01   20

(`--dataset cifar100` adds `_cifar100` to each name.) A flag given replaces
its value in every configuration; --batch_size and --lr replace the
per-optimizer ones.
"""

from resnet_keras.classification.config import TrainConfig
from resnet_keras.configs import presets
from resnet_keras.run import optim

DEFAULTS = dict(
    model="resnet",
    n=7,
    dataset="cifar10",
    opt="rmsprop",
    batch_size=None,  # unset: the optimizer's (BATCH_SIZE)
    lr=None,  # unset: the optimizer's (LR)
    epochs=20,
    schedule="constant",
    val_size=5000,
    output_dir=".",
    formats=["h5"],
)
# The original's batch size per optimizer, and Keras' default learning rates
# (the original builds its optimizers with default arguments: SGD lr 0.01).
# Each applies unless its flag is given; --schedule fast does not replace them.
BATCH_SIZE = {"rmsprop": 128, "adam": 64, "sgd": 256}
LR = optim.KERAS_DEFAULT_LR
ALL = [(7, "rmsprop"), (7, "adam"), (5, "sgd")]


def config_name(n, opt, dataset):
    """resnet_n7_RMSprop, resnet_n5_SGD_cifar100: the original's file names."""
    suffix = "" if dataset == "cifar10" else f"_{dataset}"
    return f"resnet_n{n}_{optim.DISPLAY_NAMES.get(opt, opt)}{suffix}"


def make_config(n, opt, settings, explicit):
    """The TrainConfig of one configuration; `explicit`: the flags given."""
    s = presets.for_optimizer(dict(settings, n=n, opt=opt), opt, explicit)
    if "batch_size" not in explicit:
        s["batch_size"] = BATCH_SIZE.get(opt, 128)
    if "lr" not in explicit:
        s["lr"] = optim.base_learning_rate(opt, None, LR)
    if s.get("run_name") is None:
        s["run_name"] = f"question2_{config_name(n, opt, s['dataset'])}"
    return TrainConfig(**s)
