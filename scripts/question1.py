"""Question 1: ResNet-20 with Adam for 20 epochs on CIFAR-10 (the original assignment).

    python -m scripts.question1                       # keras.datasets download
    python -m scripts.question1 --data_dir ../shared/datasets/cifar10
    python -m scripts.question1 --dataset cifar100    # -> saved_models/resnet_cifar100.h5

Writes saved_models/resnet_<dataset>.h5, plots/question1_resnet<depth>_<dataset>.png
and runs/<run_name>/ (flags, history, metrics) under --output_dir.
"""

import os

from scripts import common  # defines the shared flags  # noqa: I001

from resnet_keras import classification, experiment

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
)


def main(argv):
    settings = common.resolve(DEFAULTS)
    formats = settings.pop("formats")
    depth = 6 * settings["n"] + 2
    settings.setdefault("run_name", f"question1_resnet{depth}_{settings['dataset']}")
    config = experiment.TrainConfig(**settings)
    config.validate()
    model, metrics, history = classification.run_classification(
        config, retrain=common.FLAGS.retrain
    )
    out = config.output_dir
    paths = classification.save_outputs(
        model,
        history,
        stem=os.path.join(out, "saved_models", f"resnet_{config.dataset}"),
        plot_path=os.path.join(out, "plots", f"question1_resnet{depth}_{config.dataset}.png"),
        title=f"Question 1: ResNet-{depth} ({config.opt}) on {config.dataset}",
        formats=formats,
    )
    for p in paths:
        print(f"wrote {p}")
    print(f"Test accuracy: {metrics['test_accuracy']:.4f}")


if __name__ == "__main__":
    common.run(main, "question1")
