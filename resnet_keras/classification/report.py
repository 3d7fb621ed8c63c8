"""The classification experiments' tables and figures, drawn from finished runs alone.

Question 2 (`question2_report`): a row per configuration, the ensemble of
their softmax outputs, paired McNemar tests, the training curves in one
figure. ResNet against PlainNet (`resnet_vs_plain_report`): a row per
network, depth and seed with its exact 95 % interval, the mean and sd over
seeds, paired tests, error against depth, confusion matrices and
misclassified grids, and the network as built (`architecture_table`).
Nothing here trains or reads data: `--report_only` redraws the same files
from runs/ or the records the repository ships in results/runs/.
"""

import os
import re

import numpy as np

from resnet_keras import files, stats
from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.classification import models
from resnet_keras.run import folders, optim, plots, publish, tables


def architecture_table(model):
    """The network as a Markdown table, a row per part (stem, each stage,
    head), as the paper's CIFAR table gives it: output size, weighted layers,
    filters and parameters. Read from the built model's layer names
    (`models`: stem_*, stage<k>_block<j>_*, pool, predictions), so it is the
    model's own account; a shortcut's 1x1 projection counts as parameters but
    not as a layer, as in the paper's 6n+2."""
    parts, order = {}, []
    for layer in model.layers:
        name = layer.name
        if name.startswith("stem"):
            part = "stem"
        elif name.startswith("stage"):
            part = name.split("_")[0]
        elif name in ("pool", "predictions"):
            part = "head"
        else:
            continue
        if part not in parts:
            order.append(part)
            parts[part] = {
                "layers": 0,
                "blocks": set(),
                "params": 0,
                "filters": None,
                "shortcuts": False,
            }
        p = parts[part]
        p["params"] += layer.count_params()
        p["size"] = "x".join(str(d) for d in layer.output.shape[1:-1]) or "1"
        kind = type(layer).__name__
        if kind in ("Conv2D", "Dense") and "proj" not in name:
            p["layers"] += 1
            p["filters"] = layer.output.shape[-1]
        if part.startswith("stage"):
            p["blocks"].add(name.split("_")[1])
        p["shortcuts"] |= kind == "Add"
    lines = [
        f"{model.name}: {model.count_params():,} parameters "
        f"({models.count_weights(model.trainable_weights):,} trainable)",
        "",
        "| part | output size | blocks | weighted layers | filters / units | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for part in order:
        p = parts[part]
        block = f"{part}: blocks of two 3x3 convs" + (" + shortcut" if p["shortcuts"] else "")
        label = {
            "stem": "stem: 3x3 conv, BN, ReLU",
            "head": "head: global average pool, dense softmax",
        }.get(part, block)
        blocks = len(p["blocks"]) if p["blocks"] else ""
        lines.append(
            f"| {label} | "
            f"{p['size']} | {blocks} | {p['layers']} | {p['filters']} | {p['params']:,} |"
        )
    total = sum(p["layers"] for p in parts.values())
    lines.append(f"| total |  |  | {total} |  | {model.count_params():,} |")
    return "\n".join(lines) + "\n"


# --- Question 2 -------------------------------------------------------------


QUESTION2_COLUMNS = [
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
    return {
        "configuration": f"ensemble of these {len(members)} (mean softmax)",
        "dataset": dataset,
        "run": "ensemble",
        "params": sum(params for _, _, params in members),
        "test_accuracy_pct": round(100 * test["accuracy"], 2),
        "interval_pct": stats.interval_of(labels, test["y_pred"]),
        "test_top5_accuracy_pct": (
            round(100 * test["top5_accuracy"], 2)
            if classifier_metrics.reports_top5(members[0][0].shape[-1])
            else None
        ),
        "test_loss": round(test["loss"], 4),
        "y_pred": test["y_pred"],
    }


def question2_comparisons(predicted, labels):
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
    return f"\n\n{stats.mcnemar_header()}:\n\n" + "\n".join(lines)


def question2_report(configs, output_dir, dataset, dest, shipped=False):
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
        label = f"n={c.n} {optim.DISPLAY_NAMES[c.opt]} (batch {flags_json['batch_size']})"
        histories[label] = history
        interval = None
        if preds is not None:
            interval = stats.interval_of(preds["y_true"], preds["y_pred"])
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
        QUESTION2_COLUMNS,
        key=("run", "dataset"),
        title="Question 2: configurations compared",
        notes=QUESTION2_NOTES.strip() + question2_comparisons(predicted, labels),
        run_name=lambda r: None if r["run"] == "ensemble" else f"{r['run']} ({r['dataset']})",
    )


QUESTION2_NOTES = """
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


# --- ResNet against PlainNet -------------------------------------------------


DEFAULT_VAL_SIZE = 5000  # the write-up's held-out images; another size is in the run's name
# Test error (%) of the paper's Table 6, and the original write-up's results.
PAPER_RESNET_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
ORIGINAL = {
    ("resnet", 20): (90.07, 0.3781),
    ("plain", 20): (89.13, 0.4137),
    ("resnet", 32): (91.39, 0.3668),
    ("plain", 32): (87.90, 0.4122),
}
FILE_STEM = {"resnet": "resnet", "plain": "plainnet"}
RESNET_VS_PLAIN_COLUMNS = [
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


def _label(model, depth, seed=None, val0=False):
    """ "ResNet-20", or with a run's seed "ResNet-20 (seed 0, all 50k images)"."""
    name = f"{'ResNet' if model == 'resnet' else 'PlainNet'}-{depth}"
    extras = ([f"seed {seed}"] if seed is not None else []) + (["all 50k images"] if val0 else [])
    return f"{name} ({', '.join(extras)})" if extras else name


def resnet_vs_plain_report(pairs, output_dir, dest, settings, shipped=False):
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
            title = f"{label}, {metrics['epochs']} epochs"
            plots.plot_history(
                history, os.path.join(plot_dir, f"{name}.png"), title, plots.LOSS_WITH_L2
            )
            if preds is not None:
                preds_of[name] = preds
            if seed == 0 and not val0:
                histories[(model, depth)] = history
                steps = steps or config.get("steps_per_epoch")
                _draw_test_figures(model, depth, name, title, config, preds, plot_dir)
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
                        stats.interval_of(preds["y_true"], preds["y_pred"])
                        if preds is not None
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
    files.write_text(path, "# ResNet-20 as built\n\n" + architecture_table(arch))
    if rows:
        tables.write_results(
            os.path.join(dest, "results", "resnet_vs_plain"),
            rows,
            RESNET_VS_PLAIN_COLUMNS,
            key=("model", "depth", "seed", "train_images"),
            title="ResNet against PlainNet on CIFAR-10",
            notes=RESNET_VS_PLAIN_NOTES.strip()
            + seed_summary(rows)
            + seed_differences(rows)
            + depth_comparisons(rows, preds_of),
            run_name=lambda r: r.get("run") or run_name(r["model"], r["depth"]),
        )
        print(f"wrote {os.path.join(dest, 'results', 'resnet_vs_plain.md')}")


def _draw_test_figures(model, depth, name, label, config, preds, plot_dir):
    """The confusion matrix and (ResNets) the misclassified grid of a seed-0
    run; `label` names the run and its length."""
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


def seed_summary(rows):
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


def seed_differences(rows):
    """The paired t-test across seeds of the pairs `depth_comparisons` tests
    image by image (ResNet against PlainNet at a depth, a network against the
    next depth), where two or more seeds have both: the per-image tests say
    whether two trained models differ, this says whether the gap exceeds what
    retraining with another seed moves."""
    acc = {
        (r["model"], r["depth"], r["train_images"], r["seed"]): r["test_accuracy_pct"] for r in rows
    }
    nets = sorted({k[:3] for k in acc})
    pairs = [
        (("resnet", d, i), ("plain", d, i))
        for m, d, i in nets
        if m == "resnet" and ("plain", d, i) in nets
    ]
    for m, d, i in nets:
        deeper = sorted(e for n, e, j in nets if (n, j) == (m, i) and e > d)
        if deeper:
            pairs.append(((m, deeper[0], i), (m, d, i)))
    lines = []
    for a, b in pairs:
        seeds = sorted(s for *k, s in acc if tuple(k) == a and (*b, s) in acc)
        if len(seeds) < 2:
            continue
        t = stats.paired_t([acc[(*a, s)] for s in seeds], [acc[(*b, s)] for s in seeds])
        lines.append(
            f"- {_label(a[0], a[1])} minus {_label(b[0], b[1])}, {a[2]} training images, "
            f"seeds {', '.join(map(str, seeds))}: {t['mean']:+.2f} +- {t['sd']:.2f} points "
            f"(mean +- sd of the per-seed differences; paired t = {t['t']:.2f}, "
            f"{t['df']} df, two-sided p {stats.p_equals(t['p_value'])})"
        )
    if not lines:
        return ""
    return "\n\nAcross seeds (each seed's test accuracies paired):\n\n" + "\n".join(lines)


def depth_comparisons(rows, preds_of):
    """Paired tests on the test images: ResNet against PlainNet at each depth
    and seed, each network against the next depth at each seed, and a network
    trained on more images (no held-out split) against the same seed on fewer."""
    by = {(r["model"], r["depth"], r["seed"], r["train_images"]): r["run"] for r in rows}
    pairs = []
    for (model, depth, seed, images), run in sorted(by.items()):
        if model == "resnet" and ("plain", depth, seed, images) in by:
            pairs.append((run, by[("plain", depth, seed, images)]))
    for (model, depth, seed, images), run in sorted(by.items()):
        deeper = sorted(d for m, d, s, i in by if (m, s, i) == (model, seed, images) and d > depth)
        if deeper:
            pairs.append((by[(model, deeper[0], seed, images)], run))
    for (model, depth, seed, images), run in sorted(by.items()):
        fewer = sorted(i for m, d, s, i in by if (m, d, s) == (model, depth, seed) and i < images)
        if fewer:
            pairs.append((run, by[(model, depth, seed, fewer[-1])]))
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
    return f"\n\n{stats.mcnemar_header('networks', '10,000 test images')}:\n\n" + "\n".join(lines)


RESNET_VS_PLAIN_NOTES = """
Made by `python -m scripts.resnet_vs_plain --depths 20,32 --models resnet,plain
--data_dir DATA` (`--seeds 1,2` for more seeds, `--val_size 0` to train on all
training images), whose defaults are the original write-up's 100-epoch recipe.
Test accuracy is measured once, on the test split, with the weights that did
best on the validation split ("last epoch" where no images were held out).
"95 % interval" is the exact binomial (Clopper-Pearson) interval of the test
accuracy over the test images. "paper error %" is He et al. 2015, Table 6
(ResNet, option A, 64k iterations); "original write-up accuracy %" is
deep-learning-lab.md (100 epochs). Each row's run record (settings,
history, test predictions; the command line, commit, versions and CPU flags
for runs made since records kept them, as the run lines below say) is in
runs/<run>/; a short run is not the paper's setting.
"""
