"""results/colorization.{json,md}: the rows `colorize eval` and `probe` write,
keyed by model file name and merged, so evaluating one model never removes
another's row; with each trained model's run (epochs, wall time, hardware)
when its run folder sits beside it.
"""

import json
import os

from resnet_keras import stats
from resnet_keras.run import publish, tables


def run_folder_of(path):
    """The folder of the run that trained the model at `path`: the run folder
    the model is in (runs/<name>/<name>.h5), or for a published model
    (<out>/saved_models/<name>.h5) the run published.json names, else the
    record the repository ships in <out>/results/runs/<name>/, else
    <out>/runs/<name>/; None for a model without one."""
    folder, file = os.path.split(os.path.abspath(path))
    name = os.path.splitext(file)[0]
    if os.path.isfile(os.path.join(folder, "metrics.json")):
        candidates = [folder]  # a model in its own run folder
    elif os.path.basename(folder) == "saved_models":
        out = os.path.dirname(folder)
        entry = publish.read_record(out).get(f"saved_models/{file}") or {}
        source = entry.get("source")
        candidates = [os.path.join(out, os.path.dirname(source))] if source else []
        candidates += [os.path.join(out, "results", "runs", name), os.path.join(out, "runs", name)]
    else:  # not where train writes: no run of its own
        return None
    for run in candidates:
        try:
            with open(os.path.join(run, "metrics.json")) as f:
                json.load(f)
            return run
        except (OSError, ValueError):
            continue
    return None


def run_of(path):
    """What the run that trained the model at `path` recorded (its epochs,
    best epoch, training time, hardware; `run_folder_of`), or None."""
    folder = run_folder_of(path)
    if folder is None:
        return None
    with open(os.path.join(folder, "metrics.json")) as f:
        metrics = json.load(f)
    keys = ("epochs", "max_epochs", "best_epoch", "train_time_s", "hardware")
    return {k: metrics.get(k) for k in keys}


def run_line(key, run):
    """'- colorizer_unet_lab.h5: 57 epochs of at most 100 (best validation
    MSE at epoch 47), 38.2 min of training, <hardware>'."""
    epochs = f"{run['epochs']} epochs"
    if run.get("max_epochs"):
        epochs += f" of at most {run['max_epochs']}"
    if run.get("best_epoch"):
        epochs += f" (best validation MSE at epoch {run['best_epoch']})"
    seconds = run.get("train_time_s")
    minutes = f"{seconds / 60:.1f} min of training" if seconds is not None else "time not recorded"
    hardware = run.get("hardware") or "hardware not recorded"
    return tables.run_line(key, epochs, minutes, hardware)


def update(results_dir, sections):
    """Merges {section: {key: row}} into colorization.json and rewrites the .md.

    Rows of other models stay; an unreadable JSON file is refused, not replaced.
    """
    stem = os.path.join(results_dir, "colorization")
    table = tables.load_table(f"{stem}.json")
    for section, rows in sections.items():
        table.setdefault(section, {}).update(rows)
    tables.write_table(stem, table, markdown(table))


def against_gray_section(colorizers):
    """Markdown lines: each model's PSNR against the gray input's, for all
    test images and by colourfulness (`colorization.metrics.against_gray`); none for
    rows written before eval recorded it."""
    rows = [(k, r["against_gray"]) for k, r in sorted(colorizers.items()) if r.get("against_gray")]
    if not rows:
        return []
    lines = [
        "",
        "## PSNR against the gray input, by colourfulness",
        "",
        "Per-image PSNR capped at one 8-bit level (48.13 dB), as in the main table. "
        "Each model's test images in equal groups by colourfulness (an image's "
        "mean Lab chroma; the column gives the group's range), least colourful first. "
        "Sign test: the exact two-sided binomial test of the images where the model's "
        "PSNR is higher against those where it is lower (ties dropped), a paired test "
        "on the same images.",
        "",
        "| Model file | Test images | Chroma range | Mean PSNR, model / gray (dB) | "
        "Median PSNR, model / gray (dB) | Model's PSNR higher / lower on | Sign test p |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, groups in rows:
        for g in groups:
            if g["chroma"] is None:
                images, chroma = f"all {g['images']}", "any"
            else:
                images, chroma = str(g["images"]), f"{g['chroma'][0]:.1f}-{g['chroma'][1]:.1f}"
            if "sign_p" in g:
                share = f"{g['above_gray'] * 100:.1f} / {g['below_gray'] * 100:.1f} %"
                sign = stats.p_text(g["sign_p"])
            else:  # evaluated before the sign test was kept
                share, sign = f"{g['above_gray'] * 100:.1f} % / not kept", "not kept"
            lines.append(
                f"| {key} | {images} | {chroma} | {g['psnr']:.2f} / {g['gray_psnr']:.2f} | "
                f"{g['median_psnr']:.2f} / {g['gray_median_psnr']:.2f} | {share} | {sign} |"
            )
    return lines


def markdown(table):
    """The results JSON as Markdown tables (test metrics, PSNR against the gray
    input by colourfulness, then linear probes)."""
    lines = [
        "# Colorization results",
        "",
        "Written by `python -m scripts.colorize eval` and `probe`; means over test "
        "images of per-image MSE, PSNR and SSIM of the sRGB image in [0, 1]. "
        "PSNR capped: each image's PSNR at most 48.13 dB (one 8-bit level), since above "
        "it a nearly gray image's score measures float round-off; PSNR of mean MSE: "
        "10 log10(1 / mean MSE). The uncapped mean is kept for comparison with "
        "earlier tables.",
        "",
        "| Model file | Model | Colour space | Test images | MSE | PSNR capped (dB) | "
        "PSNR of mean MSE (dB) | PSNR uncapped (dB) | SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = sorted(table.get("colorizers", {}).items()) + [
        ("(baseline)", r) for _, r in sorted(table.get("baselines", {}).items())
    ]
    for key, r in rows:
        capped, of_mean = (
            f"{r[k]:.2f}" if k in r else "" for k in ("psnr_capped", "psnr_of_mean_mse")
        )
        lines.append(
            f"| {key} | {r['model']} | {r['color_space']} | {r['test_images']} {r['data']} | "
            f"{r['mse']:.5f} | {capped} | {of_mean} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
        )
    colorizers = sorted(table.get("colorizers", {}).items())
    trained = [(k, r["run"]) for k, r in colorizers if r.get("run")]
    if trained:
        lines += ["", "The runs that trained them:", ""]
        lines += [run_line(k, run) for k, run in trained]
    if colorizers:
        lines += ["", "The evaluations (each model's row and its gray baseline):", ""]
        lines += [f"- {k}: {_invocation_text(r.get('evaluation'))}" for k, r in colorizers]
    lines += against_gray_section(table.get("colorizers", {}))
    probes = table.get("probes", {})
    if probes:
        lines += [
            "",
            "## Linear probe (colorization as a pretext task)",
            "",
            "A linear classifier on the frozen encoder's pooled bottleneck features, "
            "against the same probe on a randomly initialised encoder; test accuracy "
            "with its exact 95 % interval over the test images.",
            "",
            "| Model file | Classes | Train / test images | Epochs | Trained encoder | "
            "Random encoder |",
            "|---|---|---|---|---|---|",
        ]
        paired, made = [], []
        for key, r in sorted(probes.items()):
            cells = [
                f"{r[f'{e}_accuracy']:.4f} ({_interval(r[f'{e}_accuracy'], r['test_images'])})"
                for e in ("trained", "random")
            ]
            lines.append(
                f"| {key} | {r['classes']} ({r['data']}) | {r['train_images']} / "
                f"{r['test_images']} | {r['epochs']} | {cells[0]} | {cells[1]} |"
            )
            if "paired" in r:
                test = stats.comparison_text("trained encoder", "random encoder", r["paired"])
                paired.append(f"- {key}: {test}")
            else:
                paired.append(f"- {key}: no paired test (probed before the predictions were kept)")
            made.append(f"- {key}: {_invocation_text(r.get('invocation'))}")
        lines += [
            "",
            f"{stats.mcnemar_header('probes')}:",
            "",
            *paired,
            "",
            "The probes:",
            "",
            *made,
        ]
    return "\n".join(lines) + "\n"


def _interval(accuracy, images):
    """A probe's 95 % interval from its accuracy: Keras' accuracy is the count
    right over `images` (in float32), so the count is recovered by rounding."""
    return stats.interval_text(round(accuracy * images), images)


def _invocation_text(invocation):
    """What made an eval or probe row, from the record it keeps in the JSON table."""
    if not invocation:
        return "command, commit and machine not recorded (made before rows kept them)"
    commit = tables.record_fields({"invocations": [invocation]}, {}).get("commit", "not recorded")
    when = invocation["started_utc"]
    if invocation.get("finished_utc"):
        when = f"{when} to {invocation['finished_utc']}"
    versions = invocation.get("versions", {})
    return (
        f"`{' '.join(invocation['argv'])}`, {when}, commit {commit}, {invocation.get('cpu')} "
        f"({invocation.get('cpu_flags')}), {invocation.get('cores')} cores, TensorFlow "
        f"{versions.get('tensorflow')}, Keras {versions.get('keras')}"
    )
