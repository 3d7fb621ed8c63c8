"""Question 3: transfer learning with ResNet-50, or from the project's own models.

    python -m scripts.question3                      # ResNet-50, ImageNet weights, adam
    python -m scripts.question3 --all                # rmsprop, adam and sgd (the original)
    python -m scripts.question3 --all --report_only  # redraw figure and table from saved runs
    python -m scripts.question3 --image_size 128 --fine_tune_epochs 5
    python -m scripts.question3 --weights ~/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
    python -m scripts.question3 --base saved_models/resnet_cifar10.h5 --dataset cifar100
    python -m scripts.question3 --base resnet56_cifar10 --data_dir path/to/cifar10

Each run trains in runs/<run_name>/ under --output_dir, its model there as
<base>_<mode>_<dataset>_<opt>.h5 (e.g. resnet50_transfer_cifar10_adam.h5).
The report is drawn into reports/question3/: plots/question3_<base>_<dataset>_<images>.png
(curves of every run with the same base, data set and training images, drawn
from their history.json) and results/question3.{md,json} (one row per run,
merged). --publish copies the models to saved_models/ and the report to
plots/ and results/. A finished run made with the same settings is reused,
so an interrupted --all picks up where it stopped; --retrain trains again.
"""

import os

from scripts import _flags, common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras.classification.config import TrainConfig
from resnet_keras.configs.presets import PRESETS
from resnet_keras.configs.question3 import DEFAULTS, LR, ORIGINAL_OPTIMIZERS, make_configs
from resnet_keras.run import distribute, folders, publish, saving, tables
from resnet_keras.transfer import report, task
from resnet_keras.transfer.models import MIN_IMAGE_SIZE

FLAGS = flags.FLAGS

flags.DEFINE_string(
    "base",
    None,
    "resnet50, resnet101, densenet121, efficientnet_b0 (ImageNet); resnet20_cifar10 ... "
    "resnet56_cifar10 (the paper-accuracy CIFAR-10 ResNets shipped with the package); or a "
    "model file of this project (e.g. saved_models/resnet_cifar10.h5).",
)
flags.DEFINE_string(
    "weights",
    None,
    "imagenet (Keras' download), PATH of a local notop weights "
    "file, or none (random). Unset: imagenet, or a model file's own weights.",
)
flags.DEFINE_integer(
    "head_units", None, "Units of the Dense(relu) layer of the head.", lower_bound=1
)
flags.DEFINE_bool(
    "train_base",
    None,
    "Train every layer from the start, BatchNorm included "
    "(with --weights none: the same network from scratch, a baseline).",
)
flags.DEFINE_integer(
    "fine_tune_epochs",
    None,
    "After the head: epochs with the top of the base unfrozen, at a smaller learning rate.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "unfreeze",
    None,
    "Stages to unfreeze for fine-tuning, from the top (1: ResNet-50's conv5).",
    lower_bound=1,
)
flags.DEFINE_float("fine_tune_lr", None, "Fine-tuning learning rate (unset: the head's / 10).")
flags.DEFINE_bool(
    "cache_features",
    None,
    "Train the head on features computed once (unset: "
    "whenever the base is frozen and --augment is off).",
)

HELP = {
    "lr": "Base learning rate. Unset: the optimizer's Keras default, as in the original "
    f"({_flags.per_optimizer(LR)}); --schedule fast: its {PRESETS['fast']['lr']} for SGD.",
    "all": f"Run each of {', '.join(ORIGINAL_OPTIMIZERS)}, as the original; it sets --opt.",
    "image_size": f"Side the base sees, at least {MIN_IMAGE_SIZE} (CIFAR images are "
    "resized inside the model).",
}


def configure():
    """(options, [TrainConfig per optimizer]), all checked before any work."""
    options, configs = make_configs(common.resolve(), common.explicit_flags(), FLAGS.all)
    if task.is_saved_model(options.base):  # a file that is no model: refused before any run folder
        saving.load_model(task.model_file(options.base), compile=False)
    return options, configs


def main(argv):
    options, configs = configure()
    out, dataset = configs[0].output_dir, configs[0].dataset
    dest = publish.report_dir(out, "question3")
    publish.start_table(dest, out, os.path.join("results", "question3.json"))
    if FLAGS.report_only:
        rows = tables.load_rows(os.path.join(dest, "results", "question3.json"))
        label = task.base_label(options.base)
        sizes = sorted(
            {r.get("train_images") for r in rows if (r["base"], r["dataset"]) == (label, dataset)}
        )
        if not sizes:
            raise ValueError(f"{dest}/results/question3.json holds no run of {label} on {dataset}")
        rows = report.record(dest, runs_dir=out)  # intervals and paired tests from the runs
        print(f"wrote {os.path.join(dest, 'results', 'question3.md')} and .json")
        for images in sizes:
            path = report.plot_results(rows, out, options.base, dataset, images, dest)
            print(f"wrote {path}")
        _publish(out, dest, [])
        return
    stems = [options.stem(dataset, c.opt) for c in configs]
    trained = [
        (c.run_dir, publish.run_files(c, stem, common.file_name(c.run_name, stem)))
        for c, stem in zip(configs, stems)
    ]
    trained = trained if FLAGS.publish else []
    publish.publish_runs(trained, out, FLAGS.replace, early=True)
    features = {}  # runs that differ only in optimizer extract features once
    reused = folders.claim_runs(configs, FLAGS.retrain, extra=options)
    for config, stem, reuse in zip(configs, stems, reused):
        if reuse:
            metrics = folders.load_run(config.run_dir)[1]
            print(folders.reused_line(config.run_dir))
        else:
            _, metrics, _ = task.run_transfer(
                config, options, feature_cache=features, retrain=FLAGS.retrain
            )
            if not distribute.is_chief():  # other workers of a cluster write nothing final
                continue
        path = os.path.join(config.run_dir, saving.model_path(stem, config.formats[0]))
        row = report.result_row(config, options, metrics, path)
        rows = report.record(dest, row, runs_dir=out)
        print(f"wrote {os.path.join(dest, 'results', 'question3.md')} and .json")
        print(f"Test accuracy: {metrics['test_accuracy']:.4f} ({stem})")
    if distribute.is_chief():
        path = report.plot_results(rows, out, options.base, dataset, metrics["train_images"], dest)
        print(f"wrote {path}")
        _publish(out, dest, trained)


def _publish(out, dest, trained):
    """With --publish: the runs' models, then the report."""
    if FLAGS.publish:
        publish.publish_study(out, dest, trained, FLAGS.replace, key=report.RESULT_KEY)


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "question3", DEFAULTS, configs=[TrainConfig], help_text=HELP, argv=argv)


if __name__ == "__main__":
    cli()
