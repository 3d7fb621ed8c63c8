"""Question 1: ResNet-20 with Adam for 20 epochs on CIFAR-10 (the original assignment).

    python -m scripts.question1                       # keras.datasets download
    python -m scripts.question1 --data_dir ../shared/datasets/cifar10
    python -m scripts.question1 --dataset cifar100    # -> saved_models/resnet_cifar100.h5
    python -m scripts.question1 --n 5                 # -> saved_models/resnet32_cifar10.h5
    python -m scripts.question1 --init resnet20_cifar10 --shortcut identity --opt sgd \
        --lr 0.001 --epochs 25 --run_name resnet20_cifar10_finetune   # fine-tune a paper-grade start

Writes saved_models/resnet_<dataset>.h5 (the assignment's name, for its ResNet-20;
resnet<depth>_<dataset>.h5 at another --n), plots/question1_resnet<depth>_<dataset>.png
and runs/<run_name>/ (flags, history, metrics) under --output_dir. With
--run_name the model and plot are named after the run, so a trial run never
replaces the default one's.
"""

import os

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import classification, experiment, presets

flags.DEFINE_string(
    "init",
    None,
    "random, or a paper-accuracy CIFAR-10 ResNet shipped with the package to start from ("
    + ", ".join(presets.PRESETS)
    + "; its --n, with --shortcut identity), e.g. to fine-tune it.",
)

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


def model_name_for(n, dataset):
    """resnet_cifar10 (the assignment's file name) for its ResNet-20, and
    resnet<depth>_<dataset> at any other depth: each depth has its own run
    folder, so a run at another --n must not replace the ResNet-20's model."""
    return f"resnet_{dataset}" if n == DEFAULTS["n"] else f"resnet{6 * n + 2}_{dataset}"


def main(argv):
    settings = common.resolve()
    formats = settings.pop("formats")
    depth = 6 * settings["n"] + 2
    dataset = settings["dataset"]
    if settings["run_name"] is None:
        settings["run_name"] = f"question1_resnet{depth}_{dataset}"
    model_name = common.file_name(settings["run_name"], model_name_for(settings["n"], dataset))
    config = experiment.TrainConfig(**settings)
    config.validate()
    model, metrics, history = classification.run_classification(
        config, retrain=common.FLAGS.retrain
    )
    out = config.output_dir
    paths = classification.save_outputs(
        model,
        history,
        stem=os.path.join(out, "saved_models", model_name),
        plot_path=os.path.join(out, "plots", f"{config.run_name}.png"),
        title=f"Question 1: ResNet-{depth} ({config.opt}) on {config.dataset}",
        formats=formats,
        class_names=classification.run_class_names(config),
    )
    for p in paths:
        print(f"wrote {p}")
    print(f"Test accuracy: {metrics['test_accuracy']:.4f}")


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "question1", DEFAULTS, configs=[experiment.TrainConfig], argv=argv)


if __name__ == "__main__":
    cli()
