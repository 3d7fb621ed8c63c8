"""He et al. 2015, section 4.2: ResNet against PlainNet on CIFAR-10 at several depths.

    python -m scripts.resnet_vs_plain --depths 20,32 --models resnet,plain
    python -m scripts.resnet_vs_plain --depths 20,32,44,56,110 --paper      # the paper's recipe
    python -m scripts.resnet_vs_plain --depths 20,32 --report_only          # redraw only

Defaults are the original write-up's (deep-learning-lab.md): SGD momentum 0.9,
weight decay 1e-4, lr 0.1 /10 at epochs 50 and 75 of 100, batch 128, crop +
flip, per-channel normalisation, projection shortcuts. `--paper` switches to
option A shortcuts, per-pixel mean, 45k/5k split, /10 at 32k and 48k
iterations, stop at 64k, and ResNet-110's warm-up at lr 0.01 for 400 steps.

Each network trains in runs/<run>/ (resnet-20, resnet-20-seed1, resnet-20-val0;
its model <run>.h5 there); the report is drawn into reports/resnet_vs_plain/:
plots/resnet/*.png, results/resnet_architecture.md and
results/resnet_vs_plain.{md,json}. --publish copies the models to
saved_models/ and the report to plots/ and results/ (never over the
repository's files or another run's unless --replace names them).
--report_only draws the report from the finished runs in runs/, or, where
there is none, from the records the repository ships in results/runs/.
"""

import math
import os
import re

import numpy as np

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import files, stats
from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.classification import models, task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.run import distribute, folders, optim, plots, publish, tables

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
    ("seed", "seed"),
    ("train_images", "training images"),
    ("params", "parameters"),
    ("test_accuracy_pct", "test accuracy %"),
    ("interval_pct", "95 % interval"),
    ("test_loss", "test loss"),
    ("epochs", "epochs"),
    ("weights", "weights tested"),
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
            s["epochs"] = math.ceil(optim.PAPER_STEPS / steps)
        if n == 18:  # ResNet-110: lr/10 until training error < 80% (~400 steps)
            s["warmup_steps"] = optim.PAPER_WARMUP_STEPS
    return TrainConfig(**s)


def found_runs(pairs, output_dir, shipped=False):
    """{(model, depth): {(seed, val0): run folder}} of the finished runs for
    the pairs asked, every seed, with and without a held-out set: in runs/,
    and with `shipped`, where runs/ has none of that name, the records the
    repository ships in results/runs/ (`publish.find_run`)."""
    names = set()
    for folder in ("runs",) + (("results/runs",) if shipped else ()):
        path = os.path.join(output_dir, folder)
        names |= set(os.listdir(path)) if os.path.isdir(path) else set()
    found = {}
    for model, depth in pairs:
        pattern = re.compile(rf"{FILE_STEM[model]}-{depth}(?:-seed(\d+))?(-val0)?")
        for name in sorted(names):
            m = pattern.fullmatch(name)
            path = publish.find_run(output_dir, name, shipped) if m else None
            if path and folders.state(path) == "finished":
                key = (int(m.group(1) or 0), bool(m.group(2)))
                found.setdefault((model, depth), {})[key] = path
    return found


def _label(model, depth, seed=0, val0=False):
    name = f"{'ResNet' if model == 'resnet' else 'PlainNet'}-{depth}"
    extras = ([f"seed {seed}"] if seed else []) + (["all 50k images"] if val0 else [])
    return f"{name} ({', '.join(extras)})" if extras else name


def report(pairs, output_dir, dest, settings, shipped=False):
    """Redraws every figure and the table into `dest` from the finished runs
    alone (no training, no data): a row per finished run (every seed), its
    accuracy's exact 95 % interval, each network's mean and sd over its
    seeds, and paired tests (McNemar on the test images) between the
    networks the README compares. `shipped`: where runs/ has no finished
    run, the record in results/runs/ (`publish.find_run`)."""
    plot_dir = os.path.join(dest, "plots", "resnet")
    publish.start_table(dest, output_dir, os.path.join("results", "resnet_vs_plain.json"))
    found = found_runs(pairs, output_dir, shipped)
    histories, rows, preds_of, steps = {}, [], {}, None
    for model, depth in pairs:
        if (0, False) not in found.get((model, depth), {}):
            name = run_name(model, depth)
            print(f"{name}: no finished run in runs/{name}; left out of the report")
        for (seed, val0), folder in sorted(found.get((model, depth), {}).items()):
            name = os.path.basename(folder)
            history, metrics, config, preds = folders.load_run(folder)
            label = _label(model, depth, seed, val0)
            title = f"{label}: {metrics['epochs']} epochs"
            plots.plot_history(
                history, os.path.join(plot_dir, f"{name}.png"), title, plots.LOSS_WITH_L2
            )
            correct = None
            if preds is not None:
                preds_of[name] = preds
                correct = int(np.sum(preds["y_true"] == preds["y_pred"]))
            if seed == 0 and not val0:
                histories[(model, depth)] = history
                steps = steps or config.get("steps_per_epoch")
                _draw_test_figures(model, depth, name, label, config, preds, plot_dir)
            original = ORIGINAL.get((model, depth))
            rows.append(
                {
                    "model": model,
                    "depth": depth,
                    "seed": seed,
                    "train_images": config["train_images"],
                    "params": metrics["params"],
                    "test_accuracy_pct": round(100 * metrics["test_accuracy"], 2),
                    "interval_pct": (
                        stats.interval_text(correct, len(preds["y_true"]))
                        if correct is not None
                        else None
                    ),
                    "test_loss": round(metrics["test_loss"], 4),
                    "epochs": metrics["epochs"],
                    "weights": "best validation" if config.get("val_images") else "last epoch",
                    "train_time_min": round(metrics["train_time_s"] / 60, 1),
                    "schedule": config["schedule"],
                    "shortcut": config["shortcut"] if model == "resnet" else None,
                    "paper_error_pct": (
                        PAPER_RESNET_ERROR.get(depth) if model == "resnet" else None
                    ),
                    "original_accuracy_pct": original[0] if original else None,
                    "hardware": metrics.get("hardware"),
                    "run": name,
                }
                | tables.record_fields(config, metrics)
            )
    if histories:
        plots.plot_error_vs_depth(
            histories,
            os.path.join(plot_dir, "error_vs_depth.png"),
            "Training (thin) and validation (bold) error, seed 0, "
            f"{max(len(h['accuracy']) for h in histories.values())} epochs",
            steps_per_epoch=steps,
        )
    # The network as a table (a diagram of 70 layers is unreadable at page width).
    arch = models.build_resnet(3, shortcut=settings["shortcut"])
    path = os.path.join(dest, "results", "resnet_architecture.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.write_text(path, "# ResNet-20 as built\n\n" + tables.architecture_table(arch))
    if rows:
        tables.write_results(
            os.path.join(dest, "results", "resnet_vs_plain"),
            rows,
            COLUMNS,
            key=("model", "depth", "seed", "train_images"),
            title="ResNet against PlainNet on CIFAR-10",
            notes=NOTES.strip() + summary(rows) + comparisons(rows, preds_of),
            run_name=lambda r: r.get("run") or run_name(r["model"], r["depth"]),
        )
        print(f"wrote {os.path.join(dest, 'results', 'resnet_vs_plain.md')}")


def _draw_test_figures(model, depth, name, label, config, preds, plot_dir):
    """The confusion matrix and (ResNets) the misclassified grid of a seed-0 run."""
    if preds is None:
        return
    names = config["class_names"]
    cm = classifier_metrics.confusion_matrix(preds["y_true"], preds["y_pred"], len(names))
    plots.plot_confusion(
        cm,
        names,
        os.path.join(plot_dir, f"confusion-{name}.png"),
        f"{label}: test confusion matrix",
    )
    if model == "resnet":
        w = preds["wrong_index"]
        plots.plot_misclassified(
            preds["wrong_images"],
            preds["y_true"][w],
            preds["y_pred"][w],
            names,
            os.path.join(plot_dir, f"misclassified-{depth}.png"),
            f"{label}: misclassified test images (true -> predicted)",
        )


def summary(rows):
    """Mean and sd of each network's test accuracy over its seeds (two or more)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["depth"], r["train_images"]), []).append(r)
    lines = []
    for (model, depth, images), group in groups.items():
        if len(group) < 2:
            continue
        mean, sd = stats.mean_sd([r["test_accuracy_pct"] for r in group])
        seeds = ", ".join(str(r["seed"]) for r in group)
        lines.append(
            f"- {_label(model, depth)}, {images} training images: {mean:.2f} +- {sd:.2f} % "
            f"(mean +- sd over seeds {seeds})"
        )
    return "\n\nOver seeds:\n\n" + "\n".join(lines) if lines else ""


def comparisons(rows, preds_of):
    """Paired tests on the test images: ResNet against PlainNet at each depth
    and seed, and each network against the next depth at each seed."""
    by = {(r["model"], r["depth"], r["seed"], r["train_images"]): r["run"] for r in rows}
    pairs = []
    for (model, depth, seed, images), run in sorted(by.items()):
        if model == "resnet" and ("plain", depth, seed, images) in by:
            pairs.append((run, by[("plain", depth, seed, images)]))
    for (model, depth, seed, images), run in sorted(by.items()):
        deeper = sorted(d for m, d, s, i in by if (m, s, i) == (model, seed, images) and d > depth)
        if deeper:
            pairs.append((by[(model, deeper[0], seed, images)], run))
    lines = [
        "- "
        + stats.comparison_text(
            a, b, stats.mcnemar(preds_of[a]["y_true"], preds_of[a]["y_pred"], preds_of[b]["y_pred"])
        )
        for a, b in pairs
        if a in preds_of and b in preds_of
    ]
    if not lines:
        return ""
    return (
        "\n\nPaired tests on the 10,000 test images (exact McNemar: of the images exactly "
        "one of the two networks gets right, how many each gets; p is two-sided):\n\n"
        + "\n".join(lines)
    )


NOTES = """
Made by `python -m scripts.resnet_vs_plain --depths 20,32 --models resnet,plain
--data_dir DATA` (`--seeds 1,2` for more seeds, `--val_size 0` to train on all
training images), whose defaults are the original write-up's 100-epoch recipe.
Test accuracy is measured once, on the test split, with the weights that did
best on the validation split ("last epoch" where no images were held out).
"95 % interval" is the exact binomial (Clopper-Pearson) interval of the test
accuracy over the test images. "paper error %" is He et al. 2015, Table 6
(ResNet, option A, 64k iterations); "original write-up accuracy %" is
deep-learning-lab.md (100 epochs). Each row's run record (command line,
commit, versions, CPU flags, settings, history) is in runs/<run>/; a short
run is not the paper's setting.
"""


def main(argv):
    pairs = parse_pairs(FLAGS.depths, FLAGS.models)
    settings = common.resolve()
    seeds = parse_seeds(FLAGS.seeds)
    configs = [pair_config(m, d, settings, FLAGS.paper, s) for m, d in pairs for s in seeds]
    for c in configs:
        c.validate()
    out = settings["output_dir"]
    trained = [(c.run_dir, publish.run_files(c, c.run_name, c.run_name)) for c in configs]
    trained = trained if FLAGS.publish and not FLAGS.report_only else []
    publish.publish_runs(trained, out, FLAGS.replace, early=True)
    if not FLAGS.report_only:
        files.check_writable(out)
        try:
            task.train_study(configs, [c.run_name for c in configs], FLAGS.retrain)
        except folders.RunConflict as e:  # this script names its runs: no --run_name to offer
            raise folders.RunConflict(
                str(e).replace(folders.OTHER_FOLDER, "use another --output_dir")
            ) from None
    if distribute.is_chief():  # other workers of a cluster write nothing final
        dest = publish.report_dir(out, "resnet_vs_plain")
        report(pairs, out, dest, settings, shipped=FLAGS.report_only)
        if FLAGS.publish:
            publish.publish_study(
                out, dest, trained, FLAGS.replace, key=("model", "depth", "seed", "train_images")
            )


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "resnet_vs_plain", DEFAULTS, configs=[TrainConfig], argv=argv)


if __name__ == "__main__":
    cli()
