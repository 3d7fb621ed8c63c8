"""The PyTorch yardstick set against the project's own runs, as a Markdown report.

    python benchmarks/yardstick_compare.py YARDSTICK.log results/runs/resnet-20 \
        [results/runs/resnet-20-seed1 ...] > report.md

YARDSTICK.log is what `benchmarks/torch_recipe.py --align --split F` wrote
(its first line the run record, then a line per epoch, then the `final`
line), with `YARDSTICK.log.best_predictions.npz` beside it. The first project
run is the one that held out the same images (the split exported for it); it
is paired with the yardstick image by image (exact McNemar on the test
images). Further runs, other seeds of the same network, give the seed-to-seed
spread the difference is set against. Both sides read the image folder in
the same order (sorted class folders, sorted file names): the labels are
checked to agree, and where the yardstick kept its test file names, that
they are the project's listing of the same folder; the paired run must have
held out the images of the yardstick's --split (its seed and size). Nothing is trained or written: the report goes to stdout.
"""

import argparse
import csv
import json
import os
import sys
import zipfile

import numpy as np

from resnet_keras import stats
from resnet_keras.data import image_folders

EPOCHS_SHOWN = (1, 10, 20, 30, 40, 50, 51, 60, 75, 76, 90, 100)


def _fields(tokens):
    """{key: value} of a log line's "key=value" tokens."""
    return {key: float(v) for key, v in (t.split("=") for t in tokens)}


def read_log(path):
    """(records, {epoch: {field: value}}, final) of a torch_recipe.py log; an
    epoch run twice (a kill between its line and its checkpoint) keeps its
    last line, the one the run continued from."""
    records, epochs, final = [], {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("# resumed: "):
                records.append(json.loads(line[len("# resumed: ") :]))
            elif line.startswith("# "):
                records.append(json.loads(line[2:]))
            elif line.startswith("epoch "):
                _, count, *tokens = line.split()
                epochs[int(count.split("/")[0])] = _fields(tokens)
            elif line.startswith("final "):
                final = _fields(line.split()[1:])
    if not records or not epochs:
        raise ValueError(f"{path}: not a torch_recipe.py log (no run record or no epoch line)")
    if final is None:
        raise ValueError(
            f"{path}: no final line: the yardstick writes it once its last epoch is done, "
            "and only with --split (held-out images to choose the best weights)"
        )
    return records, epochs, final


def check_same_images(first, npz, run):
    """Refuses a pairing of different test images, or of a run that held out
    other training images than the yardstick's --split."""
    flags = run["flags"]
    if "test_files" in npz:  # the yardstick's test files, in its order
        data_dir = first.get("data_dir", "")
        listed = image_folders._list_images(os.path.join(data_dir, "test"))[1]
        ours = [os.path.relpath(f, data_dir) for c in sorted(listed) for f in listed[c]]
        source = flags.get("data_source", "")  # "image folder /abs/path" in newer records
        other_folder = source.startswith("image folder ") and os.path.realpath(
            source[len("image folder ") :]
        ) != os.path.realpath(data_dir)
        if list(npz["test_files"]) != ours or other_folder:
            raise ValueError(
                f"{run['name']} and the yardstick were not tested on the same image files "
                f"in the same order ({data_dir})"
            )
    argv = first.get("argv", [])
    split = argv[argv.index("--split") + 1] if "--split" in argv else None
    if split and os.path.isfile(split):
        with np.load(split) as z:
            held = (int(z["seed"]), int(z["val_size"]))
        if held != (flags.get("seed"), flags.get("val_images")):
            raise ValueError(
                f"{run['name']} held out other training images than the yardstick's "
                f"{split} (seed {flags.get('seed')}, {flags.get('val_images')} images; the "
                f"split: seed {held[0]}, {held[1]})"
            )


def read_run(path):
    """A finished project run: its settings, metrics, per-epoch log and test predictions."""
    with open(os.path.join(path, "flags.json")) as f:
        flags = json.load(f)
    with open(os.path.join(path, "metrics.json")) as f:
        metrics = json.load(f)
    with open(os.path.join(path, "log.csv")) as f:
        log = {int(r["epoch"]) + 1: r for r in csv.DictReader(f)}
    with np.load(os.path.join(path, "test_predictions.npz")) as z:
        preds = {"y_true": z["y_true"], "y_pred": z["y_pred"]}
    return {
        "name": os.path.basename(os.path.normpath(path)),
        "flags": flags,
        "metrics": metrics,
        "log": log,
        "preds": preds,
    }


def _pct(x):
    return f"{100 * x:.2f}"


def report(log_path, run_paths):
    records, epochs, final = read_log(log_path)
    with np.load(log_path + ".best_predictions.npz") as z:
        npz = {k: z[k] for k in z.files}
    torch_true, torch_pred = npz["y_true"], npz["y_pred"]
    runs = [read_run(p) for p in run_paths]
    paired = runs[0]
    if not np.array_equal(paired["preds"]["y_true"], torch_true):
        raise ValueError(
            f"{paired['name']} and the yardstick were not tested on the same images in the "
            f"same order (their test labels differ)"
        )
    check_same_images(records[0], npz, paired)
    if "best_val_accuracy" not in paired["metrics"]:
        raise ValueError(
            f"{paired['name']} held no images out; the yardstick is paired with the run "
            "whose held-out images it took (--split)"
        )
    n = len(torch_true)
    last_right = round(final["last"] * n)
    test = stats.mcnemar(torch_true, paired["preds"]["y_pred"], torch_pred)
    m = paired["metrics"]
    out = [
        "# The aligned PyTorch yardstick against the project's ResNet-20",
        "",
        f"| | project, {paired['name']} | PyTorch yardstick, best validation | "
        "PyTorch yardstick, last epoch |",
        "|---|---|---|---|",
        f"| test accuracy % (95 % interval) | {_pct(m['test_accuracy'])} "
        f"({stats.interval_of(paired['preds']['y_true'], paired['preds']['y_pred'])}) | "
        f"{_pct(final['best'])} ({stats.interval_of(torch_true, torch_pred)}) | "
        f"{_pct(final['last'])} ({stats.interval_text(last_right, n)}) |",
        f"| weights tested | best validation, epoch {m.get('best_epoch')} "
        f"({_pct(m['best_val_accuracy'])} % on the held-out images) | "
        f"epoch {int(final['best_epoch'])} ({_pct(final['best_val_acc'])} %) | "
        f"epoch {max(epochs)} |",
        "",
        stats.mcnemar_header("runs", f"{n:,} test images") + ":",
        "",
        "- " + stats.comparison_text(paired["name"], "yardstick (best validation)", test),
    ]
    if len(runs) > 1:
        accs = [100 * r["metrics"]["test_accuracy"] for r in runs]
        mean, sd = stats.mean_sd(accs)
        names = ", ".join(r["name"] for r in runs)
        z = (100 * final["best"] - mean) / sd if sd else float("nan")
        out += [
            "",
            f"The project's seeds ({names}): {mean:.2f} +- {sd:.2f} % (mean +- sd); the "
            f"yardstick's best-validation accuracy is {z:+.1f} of their standard deviations "
            f"from their mean (one yardstick run: a position, not a test).",
        ]
    out += [
        "",
        "Matched epochs (train accuracy under augmentation / accuracy on the held-out images):",
        "",
        f"| epoch | project {paired['name']} | PyTorch yardstick (test accuracy) |",
        "|---|---|---|",
    ]
    for k in sorted(set(EPOCHS_SHOWN) | {max(epochs)}):
        if k in epochs and k in paired["log"]:
            p, t = paired["log"][k], epochs[k]
            out.append(
                f"| {k} | {_pct(float(p['accuracy']))} / {_pct(float(p['val_accuracy']))} | "
                f"{_pct(t['train_acc'])} / {_pct(t['val_acc'])} ({_pct(t['test_acc'])}) |"
            )
    first = records[0]
    out += [
        "",
        "The yardstick's record (first start): "
        + " ".join(first["argv"])
        + f"; torch {first['torch']}, CPU flags {first['cpu_flags']}, kernel environment "
        f"{first['kernel_env'] or 'unset'}, options {first['options']}, "
        f"{first['train_images']} training and {first['val_images']} held-out images, "
        f"started {first['started_utc']}, {len(records)} start(s); "
        f"{epochs[max(epochs)]['minutes']:.1f} min of summed epoch times.",
    ]
    for r in runs:
        inv = r["flags"].get("invocations") or []
        said = (
            f"commit {inv[0].get('git_commit', 'not recorded')}, {len(inv)} start(s)"
            if inv
            else "command line and commit not recorded"
        )
        out.append(f"- {r['name']}: {r['metrics'].get('hardware', '')}; {said}.")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log", help="the yardstick's log (torch_recipe.py --log)")
    p.add_argument(
        "runs", nargs="+", help="project run folders; the first held out the same images"
    )
    a = p.parse_args()
    for path in [a.log, a.log + ".best_predictions.npz"] + [
        os.path.join(r, f)
        for r in a.runs
        for f in ("flags.json", "metrics.json", "log.csv", "test_predictions.npz")
    ]:
        if not os.path.isfile(path):
            print(f"error: {path}: no such file (a finished run has it)", file=sys.stderr)
            sys.exit(2)
    try:
        sys.stdout.write(report(a.log, a.runs))
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
