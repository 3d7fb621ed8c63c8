"""Question 1: ResNet-20 with Adam for 20 epochs on CIFAR-10 (the original assignment).

    python -m scripts.question1                       # keras.datasets download
    python -m scripts.question1 --data_dir path/to/cifar10
    python -m scripts.question1 --dataset cifar100    # -> resnet_cifar100.h5
    python -m scripts.question1 --n 5                 # -> resnet32_cifar10.h5
    python -m scripts.question1 --publish             # also into saved_models/ and plots/
    python -m scripts.question1 --init resnet20_cifar10 --shortcut identity --opt sgd \
        --lr 0.001 --epochs 25 --run_name resnet20_cifar10_finetune   # fine-tune a paper-grade start

Writes runs/<run_name>/ under --output_dir (default question1_resnet<depth>_<dataset>):
the model as resnet_<dataset>.h5 (the assignment's name, for its ResNet-20;
resnet<depth>_<dataset>.h5 at another --n), its curves as history.png, and the
run's flags, log, history and metrics. Nothing outside runs/ changes unless
--publish asks: then the model is copied to saved_models/ and the curves to
plots/question1_resnet<depth>_<dataset>.png (named after the run with
--run_name), never over a file the repository ships or another run published
unless --replace names it. The same command again reuses the finished run.
"""

import os

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras.classification import pretrained, task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.configs.question1 import DEFAULTS, model_name_for, run_name
from resnet_keras.run import publish, saving

flags.DEFINE_string(
    "init",
    None,
    "random, or a paper-accuracy CIFAR-10 ResNet shipped with the package to start from ("
    + ", ".join(pretrained.PRESETS)
    + "; its --n, with --shortcut identity), e.g. to fine-tune it.",
)


def main(argv):
    settings = common.resolve()
    dataset = settings["dataset"]
    if settings["run_name"] is None:
        settings["run_name"] = run_name(settings["n"], dataset)
    model_name = model_name_for(settings["n"], dataset)
    config = TrainConfig(**settings)
    config.validate()
    # A named trial run publishes under its own name, never the default run's.
    published = common.file_name(config.run_name, model_name)
    shared = publish.run_files(
        config, model_name, published, {"history.png": f"plots/{config.run_name}.png"}
    )
    items = [(config.run_dir, shared)] if common.FLAGS.publish else []
    publish.publish_runs(items, config.output_dir, common.FLAGS.replace, early=True)
    _, metrics, _ = task.run_classification(
        config,
        retrain=common.FLAGS.retrain,
        model_name=model_name,
        title=(
            f"Question 1: {config.run_name}, ResNet-{config.depth} ({config.opt}, "
            f"{config.schedule} schedule) on {config.dataset}, {config.epochs} epochs"
        ),
    )
    publish.publish_runs(items, config.output_dir, common.FLAGS.replace)
    print(
        f"model: {saving.model_path(os.path.join(config.run_dir, model_name), config.formats[0])}"
    )
    print(f"Test accuracy: {metrics['test_accuracy']:.4f}")


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "question1", DEFAULTS, configs=[TrainConfig], argv=argv)


if __name__ == "__main__":
    cli()
