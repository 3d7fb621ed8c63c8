"""He et al. 2015, section 4.2: ResNet against PlainNet on CIFAR-10 at several depths.

    python -m scripts.resnet_vs_plain --depths 20,32 --models resnet,plain
    python -m scripts.resnet_vs_plain --depths 20,32,44,56,110 --paper      # the paper's recipe
    python -m scripts.resnet_vs_plain --depths 20,32 --report_only          # redraw only

Defaults are the original write-up's (deep-learning-lab.md): SGD momentum 0.9,
weight decay 1e-4, lr 0.1 /10 at epochs 50 and 75 of 100, batch 128, crop +
flip, per-channel normalisation, projection shortcuts. `--paper` switches to
option A shortcuts, per-pixel mean, 45k/5k split, /10 at 32k and 48k
iterations, stop at 64k, and ResNet-110's warm-up at lr 0.01 for 400 steps.

Each network trains in runs/<model>-<depth>/ (its model <model>-<depth>.h5
there); the report is drawn into reports/resnet_vs_plain/: plots/resnet/*.png,
plots/resnet_architecture.png and results/resnet_vs_plain.{md,json}. --publish
copies the models to saved_models/ and the report to plots/ and results/
(never over the repository's files or another run's unless --replace names
them). --report_only draws the report from the finished runs in runs/, or,
where there is none, from the records the repository ships in results/runs/.
"""

import math
import os

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import classification, distribute, evaluation, experiment, files, models
from resnet_keras import outputs, plotting, results, runs, training

flags.DEFINE_list("depths", ["20", "32"], "Depths to train, each 6n+2 (20, 32, 44, 56, 110).")
flags.DEFINE_list("models", ["resnet", "plain"], "Networks to train: resnet, plain.")
flags.DEFINE_list(
    "seeds",
    ["0"],
    "Seeds to train each network with (weights, validation split, shuffling, "
    "augmentation); a seed other than 0 is in the run's name: resnet-20-seed1.",
)
FLAGS = flags.FLAGS

DEFAULT_VAL_SIZE = 5000  # the write-up's held-out images; another size is in the run's name
DEFAULTS = dict(
    dataset="cifar10",
    opt="sgd",
    lr=0.1,
    schedule="step",
    epochs=100,
    batch_size=128,
    weight_decay=1e-4,
    shortcut="projection",
    normalization="per_channel",
    val_size=DEFAULT_VAL_SIZE,
    output_dir=".",
    formats=["h5"],
)
PAPER = common.PRESETS["paper"]  # what --paper changes (scripts/common.py)
# Test error (%) of the paper's Table 6, and the original write-up's results.
PAPER_RESNET_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
ORIGINAL = {
    ("resnet", 20): (90.07, 0.3781),
    ("plain", 20): (89.13, 0.4137),
    ("resnet", 32): (91.39, 0.3668),
    ("plain", 32): (87.90, 0.4122),
}
FILE_STEM = {"resnet": "resnet", "plain": "plainnet"}
COLUMNS = [
    ("model", "model"),
    ("depth", "depth"),
    ("params", "parameters"),
    ("test_accuracy_pct", "test accuracy %"),
    ("test_loss", "test loss"),
    ("epochs", "epochs"),
    ("train_time_min", "training time (min)"),
    ("paper_error_pct", "paper error %"),
    ("original_accuracy_pct", "original write-up accuracy %"),
]


def parse_pairs(depths, model_names):
    pairs = []
    for m in model_names:
        if m not in FILE_STEM:
            raise ValueError(f"Unknown model {m!r} in --models; expected resnet, plain")
        for d in depths:
            try:
                depth = int(d)
            except ValueError:
                raise ValueError(
                    f"--depths: {d!r} is not a number; expected e.g. 20,32,44,56,110"
                ) from None
            models.depth_to_n(depth)  # refuses depths that are not 6n+2
            pairs.append((m, depth))
    return pairs


def parse_seeds(seeds):
    out = []
    for s in seeds:
        try:
            seed = int(s)
        except ValueError:
            raise ValueError(f"--seeds: {s!r} is not a whole number; expected e.g. 0,1,2") from None
        if not 0 <= seed < 2**32:
            raise ValueError(f"--seeds: {seed} is not between 0 and 2**32 - 1")
        out.append(seed)
    if len(set(out)) != len(out):
        raise ValueError(f"--seeds: {','.join(seeds)} names a seed twice")
    return out


def run_name(model, depth, seed=0, val_size=DEFAULT_VAL_SIZE):
    """resnet-20; resnet-20-seed1 at another seed; resnet-20-val0 trained on
    every training image (no held-out set, last-epoch weights): runs meant to
    differ never claim each other's folder. Other held-out sizes keep the
    name (a trial run), and a finished run with other settings is refused."""
    name = f"{FILE_STEM[model]}-{depth}"
    if seed:
        name += f"-seed{seed}"
    if val_size == 0:
        name += "-val0"
    return name


def pair_config(model, depth, settings, paper, seed=0):
    """The TrainConfig of one (model, depth) pair at one seed."""
    n = models.depth_to_n(depth)
    name = run_name(model, depth, seed, settings.get("val_size", DEFAULT_VAL_SIZE))
    s = dict(settings, model=model, n=n, seed=seed, run_name=name)
    if paper and s.get("schedule") == "paper":
        if "epochs" not in common.explicit_flags():
            # Stop at 64k iterations: e.g. 45k images at batch 128 -> 352 steps, 182 epochs.
            train_images = (s.get("train_limit") or 50_000) - s.get("val_size", 0)
            steps = math.ceil(train_images / s["batch_size"])
            s["epochs"] = math.ceil(training.PAPER_STEPS / steps)
        if n == 18:  # ResNet-110: lr/10 until training error < 80% (~400 steps)
            s["warmup_steps"] = training.PAPER_WARMUP_STEPS
    return experiment.TrainConfig(**s)


def report(pairs, output_dir, dest, settings, shipped=False):
    """Redraws every figure and the table into `dest` from the finished runs
    alone (no training, no data); `shipped`: where runs/ has no finished run,
    the record in results/runs/ (`outputs.find_run`)."""
    plots = os.path.join(dest, "plots", "resnet")
    outputs.start_table(dest, output_dir, os.path.join("results", "resnet_vs_plain.json"))
    histories, rows = {}, []
    for model, depth in pairs:
        name = f"{FILE_STEM[model]}-{depth}"
        run = runs.load_run(outputs.find_run(output_dir, name, shipped))
        if run is None:
            print(f"{name}: no finished run in runs/{name}; left out of the report")
            continue
        history, metrics, config, preds = run
        histories[(model, depth)] = history
        label = f"{'ResNet' if model == 'resnet' else 'PlainNet'}-{depth}"
        plotting.plot_history(history, os.path.join(plots, f"{name}.png"), label)
        names = config["class_names"]
        if preds is not None:
            cm = evaluation.confusion_matrix(preds["y_true"], preds["y_pred"], len(names))
            plotting.plot_confusion(
                cm,
                names,
                os.path.join(plots, f"confusion-{name}.png"),
                f"{label}: test confusion matrix",
            )
            if model == "resnet":
                w = preds["wrong_index"]
                plotting.plot_misclassified(
                    preds["wrong_images"],
                    preds["y_true"][w],
                    preds["y_pred"][w],
                    names,
                    os.path.join(plots, f"misclassified-{depth}.png"),
                    f"{label}: misclassified test images (true -> predicted)",
                )
        original = ORIGINAL.get((model, depth))
        rows.append(
            {
                "model": model,
                "depth": depth,
                "params": metrics["params"],
                "test_accuracy_pct": round(100 * metrics["test_accuracy"], 2),
                "test_loss": round(metrics["test_loss"], 4),
                "epochs": metrics["epochs"],
                "train_time_min": round(metrics["train_time_s"] / 60, 1),
                "train_images": config["train_images"],
                "schedule": config["schedule"],
                "shortcut": config["shortcut"] if model == "resnet" else None,
                "paper_error_pct": PAPER_RESNET_ERROR.get(depth) if model == "resnet" else None,
                "original_accuracy_pct": original[0] if original else None,
                "hardware": metrics.get("hardware"),
            }
        )
    if histories:
        plotting.plot_error_vs_depth(histories, os.path.join(plots, "error_vs_depth.png"))
    skipped = plotting.plot_architecture(
        models.build_resnet(3, shortcut=settings["shortcut"]),
        os.path.join(dest, "plots", "resnet_architecture.png"),
    )
    if skipped:
        print(skipped)
    if rows:
        results.write_results(
            os.path.join(dest, "results", "resnet_vs_plain"),
            rows,
            COLUMNS,
            key=("model", "depth"),
            title="ResNet against PlainNet on CIFAR-10",
            notes=NOTES,
            run_name=lambda r: f"{FILE_STEM[r['model']]}-{r['depth']}",
        )
        print(f"wrote {os.path.join(dest, 'results', 'resnet_vs_plain.md')}")


NOTES = """
Made by `python -m scripts.resnet_vs_plain --depths 20,32 --models resnet,plain
--data_dir DATA`, whose defaults are the original write-up's 100-epoch recipe.
Test accuracy is measured once, on the test split, with the weights that did
best on the validation split. "paper error %" is He et al. 2015, Table 6
(ResNet, option A, 64k iterations); "original write-up accuracy %" is
deep-learning-lab.md (100 epochs). Each row's epochs and schedule are in
results/resnet_vs_plain.json and runs/<model>-<depth>/flags.json; a short run
is not the paper's setting.
"""


def main(argv):
    pairs = parse_pairs(FLAGS.depths, FLAGS.models)
    settings = common.resolve()
    seeds = parse_seeds(FLAGS.seeds)
    configs = [pair_config(m, d, settings, FLAGS.paper, s) for m, d in pairs for s in seeds]
    for c in configs:
        c.validate()
    out = settings["output_dir"]
    trained = [(c.run_dir, outputs.run_files(c, c.run_name, c.run_name)) for c in configs]
    trained = trained if FLAGS.publish and not FLAGS.report_only else []
    outputs.publish_runs(trained, out, FLAGS.replace, early=True)
    if not FLAGS.report_only:
        files.check_writable(out)
        classification.train_study(configs, [c.run_name for c in configs], FLAGS.retrain)
    if distribute.is_chief():  # other workers of a cluster write nothing final
        dest = outputs.report_dir(out, "resnet_vs_plain")
        report(pairs, out, dest, settings, shipped=FLAGS.report_only)
        if FLAGS.publish:
            outputs.publish_study(out, dest, trained, FLAGS.replace, key=("model", "depth"))


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "resnet_vs_plain", DEFAULTS, configs=[experiment.TrainConfig], argv=argv)


if __name__ == "__main__":
    cli()
