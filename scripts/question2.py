"""Question 2: the multi-configuration study on CIFAR-10 and CIFAR-100.

    python -m scripts.question2 --n 7 --opt rmsprop                 # one configuration
    python -m scripts.question2 --all --dataset cifar100            # the original three
    python -m scripts.question2 --all --report_only                 # redraw plot and table

The original three: n=7 + RMSprop (batch 128), n=7 + Adam (batch 64), n=5 + SGD
(momentum 0.9, batch 256), 20 epochs each. Each optimizer brings its batch size
unless --batch_size is given. Each configuration trains in
runs/question2_resnet_n<n>_<Opt>[_cifar100]/ (or runs/<run_name>/), its model
resnet_n<n>_<Opt>[_cifar100].h5 there; the report is drawn into
reports/question2/: plots/question2_multi_config_comparison[_cifar100].png and
results/question2.{md,json}, whose table ends with the ensemble of the
finished configurations (`ensemble_row`). --publish copies the models to
saved_models/ (<run_name>.h5 for a named run) and the report to plots/ and
results/; --report_only draws from runs/, or from the records the repository
ships in results/runs/ where runs/ has none.
"""

import os

import numpy as np

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import files, stats
from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.classification import task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.run import distribute, folders, optim, plots, publish, tables

FLAGS = flags.FLAGS

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
HELP = {
    "batch_size": "Global batch size. Unset: the optimizer's, as in the original "
    f"({common.per_optimizer(BATCH_SIZE)}); --schedule fast keeps these.",
    "lr": "Base learning rate. Unset: the optimizer's Keras default, as in the original "
    f"({common.per_optimizer(LR)}); --schedule fast keeps these.",
    "all": "Run the original three configurations, each with its own --n and --opt: "
    + ", ".join(f"--n={n} --opt={opt}" for n, opt in ALL)
    + ".",
}
OPT_NAME = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}
COLUMNS = [
    ("configuration", "configuration"),
    ("dataset", "data set"),
    ("params", "parameters"),
    ("batch_size", "batch"),
    ("epochs", "epochs"),
    ("test_accuracy_pct", "test accuracy %"),
    ("interval_pct", "95 % interval"),
    ("test_loss", "test loss"),
    ("train_time_min", "training time (min)"),
    ("img_per_s", "images/s per epoch"),
]


def config_name(n, opt, dataset):
    """resnet_n7_RMSprop, resnet_n5_SGD_cifar100: the original's file names."""
    suffix = "" if dataset == "cifar10" else f"_{dataset}"
    return f"resnet_n{n}_{OPT_NAME.get(opt, opt)}{suffix}"


def make_config(n, opt, settings, explicit):
    s = dict(settings, n=n, opt=opt)
    if "batch_size" not in explicit:
        s["batch_size"] = BATCH_SIZE.get(opt, 128)
    if "lr" not in explicit:
        s["lr"] = LR.get(opt)
    if s.get("run_name") is None:
        s["run_name"] = f"question2_{config_name(n, opt, s['dataset'])}"
    return TrainConfig(**s)


def ensemble_row(members, dataset):
    """The ensemble of runs' test predictions (the mean of their softmax
    outputs, as `scripts.evaluate` makes it from the models) as a table row;
    None unless two or more runs kept them for the same test images.

    members: [(softmax outputs (N, K), labels (N,), parameters)] per run.
    """
    labels = members[0][1] if members else None
    if len(members) < 2 or any(not np.array_equal(y, labels) for _, y, _ in members):
        return None
    test = classifier_metrics.evaluate_predictions(np.mean([p for p, _, _ in members], 0), labels)
    right = int(np.sum(test["y_pred"] == labels))
    return {
        "configuration": f"ensemble of these {len(members)} (mean softmax)",
        "dataset": dataset,
        "run": "ensemble",
        "params": sum(params for _, _, params in members),
        "test_accuracy_pct": round(100 * test["accuracy"], 2),
        "interval_pct": stats.interval_text(right, len(labels)),
        "test_top5_accuracy_pct": (
            round(100 * test["top5_accuracy"], 2) if members[0][0].shape[-1] > 10 else None
        ),
        "test_loss": round(test["loss"], 4),
        "y_pred": test["y_pred"],
    }


def comparisons(predicted, labels):
    """Exact McNemar tests between every two of the rows' predictions on the
    same test images ({row label: predicted classes}), as Markdown lines."""
    names = list(predicted)
    lines = [
        "- " + stats.comparison_text(a, b, stats.mcnemar(labels, predicted[a], predicted[b]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
    ]
    if not lines:
        return ""
    return (
        "\n\nPaired tests on the test images (exact McNemar: of the images exactly one "
        "of the two gets right, how many each gets; p is two-sided):\n\n" + "\n".join(lines)
    )


def report(configs, output_dir, dataset, dest, shipped=False):
    """Draws the figure and table into `dest` from the configurations'
    finished runs; `shipped`: the repository's records where runs/ has none."""
    publish.start_table(dest, output_dir, os.path.join("results", "question2.json"))
    histories, rows, members, predicted, labels = {}, [], [], {}, None
    for c in configs:
        run = folders.load_run(publish.find_run(c.output_dir, c.run_name, shipped))
        if run is None:
            print(f"{c.run_name}: no finished run; left out of the report")
            continue
        history, metrics, flags_json, preds = run
        if preds is not None and "probs" in preds:  # runs made before probs were kept: none
            members.append((preds["probs"], preds["y_true"], metrics["params"]))
        label = f"n={c.n} {OPT_NAME[c.opt]} (batch {flags_json['batch_size']})"
        histories[label] = history
        interval = None
        if preds is not None:
            right = int(np.sum(preds["y_pred"] == preds["y_true"]))
            interval = stats.interval_text(right, len(preds["y_true"]))
            if labels is None or np.array_equal(labels, preds["y_true"]):
                labels, predicted[c.run_name] = preds["y_true"], preds["y_pred"]
        rows.append(
            {
                "configuration": label,
                "dataset": dataset,
                "run": c.run_name,
                "params": metrics["params"],
                "batch_size": flags_json["batch_size"],
                "epochs": metrics["epochs"],
                "train_images": flags_json["train_images"],
                "test_accuracy_pct": round(100 * metrics["test_accuracy"], 2),
                "interval_pct": interval,
                "test_top5_accuracy_pct": (
                    round(100 * metrics["test_top5_accuracy"], 2)
                    if "test_top5_accuracy" in metrics
                    else None
                ),
                "test_loss": round(metrics["test_loss"], 4),
                "train_time_min": round(metrics["train_time_s"] / 60, 1),
                "img_per_s": round(metrics["img_per_s"] or 0, 1),
                "hardware": metrics.get("hardware"),
            }
            | tables.record_fields(flags_json, metrics)
        )
    if not histories:
        return
    ensemble = ensemble_row(members, dataset)
    if ensemble is not None:
        predicted["ensemble"] = ensemble.pop("y_pred")
        rows.append(ensemble)
    suffix = "" if dataset == "cifar10" else f"_{dataset}"
    plot = os.path.join(dest, "plots", f"question2_multi_config_comparison{suffix}.png")
    longest = max(len(h.get("loss", [])) for h in histories.values())
    plots.plot_histories(
        histories,
        plot,
        f"Question 2 on {dataset}, {longest} epochs: solid training, dashed validation",
        loss_label=plots.LOSS_WITH_L2,
    )
    print(f"wrote {plot}")
    tables.write_results(
        os.path.join(dest, "results", "question2"),
        rows,
        COLUMNS,
        key=("run", "dataset"),
        title="Question 2: configurations compared",
        notes=NOTES.strip() + comparisons(predicted, labels),
        run_name=lambda r: None if r["run"] == "ensemble" else f"{r['run']} ({r['dataset']})",
    )


NOTES = """
Made by `python -m scripts.question2 --all --data_dir DATA` (add `--dataset
cifar100` for CIFAR-100), whose defaults are the original's: 20 epochs, each
optimizer at Keras' default learning rate and its original batch size, no
schedule. Test accuracy is measured once, on the test split, with the weights
that did best on the validation split (5,000 images held out of the training
split); "95 % interval" is its exact binomial (Clopper-Pearson) interval over
the test images, and "training time" the sum of the epoch times. The original write-up (resnet-assignment.md) shows these three
configurations' curves only, with no test accuracy to set beside these; its
finding is that Adam converges best. The ensemble row averages the
configurations' softmax outputs on the same test images (as `python -m
scripts.evaluate MODEL...` does from the saved models). Each row's settings are in
runs/question2_<configuration>/flags.json; a run shorter than the original's
20 epochs is labelled by its epochs column.
"""


def main(argv):
    settings = common.resolve()
    explicit = common.explicit_flags()
    if FLAGS.all and "run_name" in explicit:
        raise ValueError("--run_name names one run; it cannot be combined with --all")
    if FLAGS.all and explicit & {"n", "opt"}:
        raise ValueError(
            "--all runs the original three configurations, each with its own "
            "--n and --opt; drop them"
        )
    pairs = ALL if FLAGS.all else [(settings["n"], settings["opt"])]
    configs = [make_config(n, opt, settings, explicit) for n, opt in pairs]
    for c in configs:
        c.validate()
    out = settings["output_dir"]
    names = [common.file_name(c.run_name, config_name(c.n, c.opt, c.dataset)) for c in configs]
    trained = [
        (c.run_dir, publish.run_files(c, config_name(c.n, c.opt, c.dataset), name))
        for c, name in zip(configs, names)
    ]
    trained = trained if FLAGS.publish and not FLAGS.report_only else []
    publish.publish_runs(trained, out, FLAGS.replace, early=True)
    if not FLAGS.report_only:
        files.check_writable(out)
        model_names = [config_name(c.n, c.opt, c.dataset) for c in configs]
        task.train_study(configs, model_names, FLAGS.retrain)
    # The figure and table cover every configuration with a finished run.
    others = [
        make_config(n, opt, settings, explicit - {"run_name"})
        for n, opt in ALL
        if (n, opt) not in pairs and "run_name" not in explicit
    ]
    if distribute.is_chief():  # other workers of a cluster write nothing final
        dest = publish.report_dir(out, "question2")
        report(configs + others, out, settings["dataset"], dest, FLAGS.report_only)
        if FLAGS.publish:
            publish.publish_study(out, dest, trained, FLAGS.replace, key=("run", "dataset"))


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "question2", DEFAULTS, configs=[TrainConfig], help_text=HELP, argv=argv)


if __name__ == "__main__":
    cli()
