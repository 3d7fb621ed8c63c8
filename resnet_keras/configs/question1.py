"""Question 1: ResNet-20 with Adam for 20 epochs on CIFAR-10, the original assignment.

`python -m scripts.question1` trains one run: `DEFAULTS`, over
`classification.config.TrainConfig`'s field defaults for everything else
(weight decay, shortcuts, normalisation, augmentation, ...), under the flags given.
"""

from resnet_keras.classification.models import n_to_depth

DEFAULTS = dict(
    model="resnet",
    n=3,
    dataset="cifar10",
    epochs=20,
    batch_size=128,
    opt="adam",
    schedule="constant",
    val_size=5000,
    output_dir=".",
    formats=["h5"],
    init="random",
)


def run_name(n, dataset):
    """The run's folder under runs/ unless --run_name names another."""
    return f"question1_resnet{n_to_depth(n)}_{dataset}"


def model_name_for(n, dataset):
    """resnet_cifar10 (the assignment's file name) for its ResNet-20, and
    resnet<depth>_<dataset> at any other depth: each depth has its own run
    folder, so a run at another --n must not replace the ResNet-20's model."""
    return f"resnet_{dataset}" if n == DEFAULTS["n"] else f"resnet{n_to_depth(n)}_{dataset}"
