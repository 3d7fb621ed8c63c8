"""Question 3's results: one row per transfer run in results/question3.{json,md},
merged as runs come in, and the figures drawn from the runs' saved histories.

    python -m scripts.question3 --report_only --data_dir path/to/cifar10
"""

import json
import os

import numpy as np

from resnet_keras import stats
from resnet_keras.run import folders, plots, publish, tables
from resnet_keras.transfer.models import base_label

RESULT_KEY = ("base", "weights", "mode", "dataset", "opt", "train_images", "cache_features")
RESULT_COLUMNS = [
    ("base", "base"),
    ("weights", "weights"),
    ("mode", "mode"),
    ("dataset", "data set"),
    ("opt", "optimizer"),
    ("train_images", "training images"),
    ("cache_features", "cached features"),
    ("params", "parameters"),
    ("trainable_params", "trainable"),
    ("test_accuracy", "test accuracy"),
    ("interval_pct", "95 % interval (%)"),
    ("test_loss", "test loss"),
    ("epochs", "epochs"),
    ("feature_time_s", "features (s)"),
    ("train_time_s", "training (s)"),
    ("wall_time_s", "wall (s)"),
]
RESULT_NOTES = """
mode: transfer (frozen base, head only), transfer_ft<K> (then K epochs with the
top of the base unfrozen), scratch (random weights, every layer trained), full
(pre-trained weights, every layer trained). Test accuracy is measured once, on
the test split, with the weights that did best on the validation split; its
exact 95 % interval is over the test images.
features (s): one pass of the base over training, validation and test images
(0 where an earlier run of the same invocation had extracted them); training
(s): the summed epoch times; wall (s): from the run's first start to its test,
resumes and pauses included.
Each row's settings are in its run's flags.json, its machine in the JSON rows.
"""


def result_row(config, options, metrics, model_path=None):
    """One row of results/question3: what ran, on what, and how well; paths relative."""
    out = config.output_dir
    row = {
        "base": base_label(options.base),
        "weights": options.weights_label,
        "mode": options.mode,
        "dataset": config.dataset,
        "opt": config.opt,
        "run": os.path.relpath(config.run_dir, out),
        "model": os.path.relpath(model_path, out) if model_path else None,
    }
    keep = (
        "train_images",
        "cache_features",
        "params",
        "trainable_params",
        "test_accuracy",
        "test_loss",
        "epochs",
        "feature_time_s",
        "train_time_s",
        "wall_time_s",
        "fine_tune_start_epoch",
        "fine_tune_trainable_params",
        "head_test_accuracy",
        "hardware",
    )
    return row | {k: metrics[k] for k in keep if k in metrics}


def record(output_dir, row=None, runs_dir=None):
    """Merges `row` (None: no new row) into results/question3.{json,md} under
    `output_dir` (a report folder, `publish.report_dir`) and redraws the table:
    each row's interval and the paired tests come from the test predictions of
    its run, found under `runs_dir` (default `output_dir`: its runs/, else the
    records the repository ships in results/runs/). Returns all rows."""
    stem = os.path.join(output_dir, "results", "question3")
    title = "Question 3: transfer learning"
    rows = tables.merge_rows(tables.load_rows(f"{stem}.json"), [row] if row else [], RESULT_KEY)
    predictions = [_predictions(runs_dir or output_dir, r) for r in rows]
    rows = [_with_interval(r, p) for r, p in zip(rows, predictions)]
    notes = RESULT_NOTES + paired_tests(rows, predictions)
    return tables.write_results(stem, rows, RESULT_COLUMNS, RESULT_KEY, title, notes)


def _predictions(runs_dir, row):
    """The test predictions of a row's finished run, or None where they are not
    kept or are not the row's: runs/<name> may since hold another run of that
    name (another --train_limit), or a fine-tuned run made before its
    test_predictions.npz was the fine-tuned model's (it held the head's)."""
    run = folders.load_run(publish.find_run(runs_dir, os.path.basename(row["run"]), shipped=True))
    if run is None or run[3] is None:
        return None
    metrics, predictions = run[1], run[3]
    accuracy = float(np.mean(predictions["y_pred"] == predictions["y_true"]))
    same_run = metrics.get("train_images") == row.get("train_images")
    if not same_run or abs(accuracy - row["test_accuracy"]) > 5e-5:
        return None
    return predictions


def _with_interval(row, predictions):
    if predictions is None:  # the interval stored with the row stays
        return row
    return row | {"interval_pct": stats.interval_of(predictions["y_true"], predictions["y_pred"])}


def comparison_label(row, full=False):
    """resnet_cifar10/own/transfer_ft5/adam: the row's table cells, in order
    (`full`: with its data set and training images, where the table has more
    than one of those)."""
    keys = ("base", "weights", "mode", "opt") + (("dataset", "train_images") if full else ())
    return "/".join(str(row.get(k)) for k in keys)


def paired_tests(rows, predictions):
    """Exact McNemar tests between every two rows tested on the same images
    (same data set, training-set size and test labels), as Markdown lines.
    Rows that differ only in whether features were cached trained the same
    way: the first of them stands for all."""
    training = [k for k in RESULT_KEY if k != "cache_features"]
    kept, seen = [], set()
    for row, p in zip(rows, predictions):
        if p is not None and tuple(row.get(k) for k in training) not in seen:
            seen.add(tuple(row.get(k) for k in training))
            kept.append((row, p))
    full = len({(r.get("dataset"), r.get("train_images")) for r, _ in kept}) > 1
    lines = []
    for i, (a, pa) in enumerate(kept):
        for b, pb in kept[i + 1 :]:
            same_data = all(a.get(k) == b.get(k) for k in ("dataset", "train_images"))
            if not same_data or not np.array_equal(pa["y_true"], pb["y_true"]):
                continue
            test = stats.mcnemar(pa["y_true"], pa["y_pred"], pb["y_pred"])
            names = comparison_label(a, full), comparison_label(b, full)
            lines.append("- " + stats.comparison_text(*names, test))
    if not lines:
        return ""
    named = "base/weights/mode/optimizer" + ("/data set/training images" if full else "")
    return f"\n{stats.mcnemar_header()}, rows named {named}:\n\n" + "\n".join(lines) + "\n"


def run_label(row):
    """How a run is named in a figure: "adam, frozen base", "adam, from scratch", ..."""
    kind = {"scratch": "from scratch", "full": "all layers trained"}.get(row["mode"])
    if kind is None:
        kind = "frozen random base" if row["weights"] == "random" else "frozen base"
        if row.get("fine_tune_start_epoch"):
            kind += " + fine-tuning"
    return f"{row['opt']}, {kind}"


def plot_rows(rows, output_dir, path, title):
    """Curves of the given result rows, drawn from their saved history.json files.

    Rows that differ only in how they ran (cached features or not) share a
    label; the last one drawn wins. Rows whose history is gone are left out.
    A fine-tuned run is drawn from its fine-tuning on: its head epochs are
    those of the frozen-base run, which they would hide.
    """
    histories, marks, starts = {}, {}, {}
    for row in rows:
        # The run's folder, else the record the repository ships of it (results/runs/).
        run = publish.find_run(output_dir, os.path.basename(row["run"]), shipped=True)
        history_path = os.path.join(run, "history.json")
        if not os.path.isfile(history_path):
            continue
        label = run_label(row)
        with open(history_path) as f:
            histories[label] = json.load(f)
        start = row.get("fine_tune_start_epoch")
        if start:
            marks[f"fine-tuning starts (epoch {start + 1})"] = start
            starts[label] = start + 1
    return plots.plot_histories(
        histories,
        path,
        title,
        marks=marks,
        starts=starts,
        loss_label=plots.LOSS_WITH_L2,
        legend_below=True,
    )


def plot_results(rows, output_dir, base, dataset, train_images, dest=None):
    """Draws every recorded run of one base, data set and training-set size
    into plots/question3_<base>_<dataset>_<images>.png under `dest` (default
    `output_dir`, whose runs the rows name); returns its path."""
    label = base_label(base)
    key = (label, dataset, train_images)
    group = [r for r in rows if (r["base"], r["dataset"], r.get("train_images")) == key]
    epochs = max((r.get("epochs") or 0 for r in group), default=0)
    title = (
        f"Question 3: {label} on {dataset} ({train_images:,} training images, "
        f"up to {epochs} epochs)"
    )
    name = f"question3_{label}_{dataset}_{train_images}.png"
    return plot_rows(group, output_dir, os.path.join(dest or output_dir, "plots", name), title)
