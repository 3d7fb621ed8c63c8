"""Figures drawn from saved histories (`history.json`), never from live runs,
so that any figure can be redrawn without retraining."""

import os

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from resnet_keras import files  # noqa: E402


def save_figure(fig, path):
    """Writes the figure to `path` atomically (`files.atomic_path`) and closes it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with files.atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


# Keras' training and validation losses add the model's regularization losses
# (the L2 weight-decay term) to the cross-entropy; the result tables give the
# plain cross-entropy, so a classifier's loss axis says which it shows.
def classifier_loss_label(weight_decay, label_smoothing):
    """What a classifier's training loss curve holds: the cross-entropy
    (label-smoothed if the run smooths) plus, with weight decay, the L2 term
    Keras adds to it; the test tables give plain cross-entropy."""
    loss = (
        f"label-smoothed ({label_smoothing:g}) cross-entropy"
        if label_smoothing
        else "cross-entropy"
    )
    return f"loss ({loss} + L2 term)" if weight_decay else f"loss ({loss})"


LOSS_WITH_L2 = classifier_loss_label(weight_decay=True, label_smoothing=0)


# Each run's curves: the history's key prefix, line style, colour when one run
# is drawn alone (else the run's), and legend text. "test_": a run without
# held-out images, scored on the test images after each epoch (fit.TestMonitor).
CURVES = (
    ("", "-", None, "training"),
    ("val_", "--", "C1", "validation"),
    ("test_", ":", "C2", "test (watched, not used to choose weights)"),
)


def plot_history(history, path, title="", loss_label="loss"):
    """Training/validation accuracy (left) and loss (right) per epoch.

    Args:
        history: {"accuracy": [...], "val_accuracy": [...], "loss": [...], ...}.
        path: the PNG to write.
        title: figure title.
        loss_label: the loss axis' label (LOSS_WITH_L2 for weight-decayed models).
    """
    return plot_histories({"train": history}, path, title, single=True, loss_label=loss_label)


def plot_histories(
    histories,
    path,
    title="",
    single=False,
    marks=None,
    loss_label="loss",
    starts=None,
    legend_below=False,
):
    """Overlays several runs: {label: history}. Solid = training, dashed =
    validation, dotted = test scored each epoch (runs without held-out images).

    `marks` ({text: epoch}) draws a dotted grey line after each epoch, e.g.
    {"fine-tuning starts": 20} where fine-tuning followed 20 head epochs.
    `starts` ({label: epoch}) draws a run from that epoch on only: a run that
    repeats another's first epochs (fine-tuning after the same head epochs)
    would hide it. `legend_below`: legends under the axes, covering no curve.
    """
    starts = starts or {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 6 if legend_below else 4.5))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for text, epoch in (marks or {}).items():
            ax.axvline(epoch + 0.5, color="0.4", linestyle=":", label=text)
        for i, (label, h) in enumerate(histories.items()):
            color = f"C{i}"
            first = starts.get(label, 1)
            epochs = range(first, len(h.get(metric, [])) + 1)
            name = "" if single else f"{label} "
            if first > 1:
                name += f"(from epoch {first}) "
            for prefix, style, own_color, what in CURVES:
                if prefix + metric in h:
                    ax.plot(
                        epochs,
                        h[prefix + metric][first - 1 :],
                        style,
                        color=own_color if single and own_color else color,
                        label=f"{name}{what}",
                    )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(loss_label if metric == "loss" else metric)
        ax.grid(alpha=0.3)
        if legend_below:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14))
        else:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_error_vs_depth(
    histories, path, title="Training (thin) and validation (bold) error", steps_per_epoch=None
):
    """He et al. Figure 6: per-epoch error of every (model, depth) pair.

    Args:
        histories: {(model, depth): history}; model "plain" on the left panel,
            "resnet" on the right, one colour per depth.
        path: the PNG to write.
        steps_per_epoch: given, the x axis counts iterations in units of 1e4,
            as the paper's Figure 6 does; else epochs.
    """
    kinds = [k for k in ("plain", "resnet") if any(m == k for m, _ in histories)]
    fig, axes = plt.subplots(
        1, max(1, len(kinds)), figsize=(6.5 * max(1, len(kinds)), 4.5), sharey=True, squeeze=False
    )
    depths = sorted({d for _, d in histories})
    for ax, kind in zip(axes[0], kinds):
        for (model, depth), h in sorted(histories.items()):
            if model != kind:
                continue
            color = f"C{depths.index(depth)}"
            epochs = np.arange(1, len(h["accuracy"]) + 1)
            if steps_per_epoch:
                epochs = epochs * steps_per_epoch / 1e4
            name = "ResNet" if kind == "resnet" else "plain"
            marker = "o" if len(epochs) < 15 else None  # short runs: show the points
            ax.plot(
                epochs,
                [100 * (1 - a) for a in h["accuracy"]],
                "-",
                lw=0.8,
                color=color,
                marker=marker,
                ms=2,
            )
            if "val_accuracy" in h:
                ax.plot(
                    epochs,
                    [100 * (1 - a) for a in h["val_accuracy"]],
                    "-",
                    lw=2.2,
                    color=color,
                    label=f"{name}-{depth}",
                    marker=marker,
                    ms=4,
                )
        ax.set_title("plain networks" if kind == "plain" else "residual networks")
        if steps_per_epoch:
            ax.set_xlabel(f"iterations (1e4; {steps_per_epoch} per epoch)")
        else:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel("error (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_misclassified(images, y_true, y_pred, class_names, path, title="", cols=6, rows=4):
    """A grid of misclassified test images labelled 'true -> predicted'."""
    k = min(len(images), cols * rows)
    rows = max(1, -(-k // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.0 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            ax.imshow(images[i])
            ax.set_title(f"{class_names[y_true[i]]}\n-> {class_names[y_pred[i]]}", fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_confusion(cm, class_names, path, title=""):
    """The confusion matrix, rows true and columns predicted, as row percentages."""
    pct = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    k = len(class_names)
    size = max(5, 0.45 * k)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    if k <= 20:
        ax.set_xticks(range(k), class_names, rotation=90, fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{pct[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if pct[i, j] > 50 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, label="% of the true class")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_colorization_eval(history, per_image, path, title=""):
    """The original's autoencoder_eval.png: loss curves and the test MSE spread.

    Args:
        history: {"loss": [...], "val_loss": [...]} per epoch (MSE in the
            model's target space).
        per_image: {"model_mse": [...], "gray_mse": [...]}: each test image's
            MSE of the sRGB image in [0, 1], for the model and the gray baseline.
        path: the PNG to write.
        title: figure title.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    epochs = range(1, len(history.get("loss", [])) + 1)
    left.plot(epochs, history.get("loss", []), "-", label="training")
    if "val_loss" in history:
        left.plot(epochs, history["val_loss"], "--", label="validation")
    left.set_xlabel("epoch")
    left.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    left.set_ylabel("MSE (model target)")
    left.set_yscale("log")
    model_mse = np.asarray(per_image["model_mse"])
    gray_mse = np.asarray(per_image["gray_mse"])
    top = max(np.percentile(model_mse, 99), np.percentile(gray_mse, 99))
    bins = np.linspace(0, top, 50)
    right.hist(
        gray_mse,
        bins,
        alpha=0.5,
        color="C7",
        label=f"gray input as colour (mean {gray_mse.mean():.4f})",
    )
    right.hist(model_mse, bins, alpha=0.7, color="C0", label=f"model (mean {model_mse.mean():.4f})")
    right.set_xlabel("per-image test MSE (sRGB in [0, 1])")
    right.set_ylabel("test images")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_colorization_examples(gray, predicted, truth, path, title=""):
    """Rows: the gray input, the prediction, the ground truth; one column per image.

    Args:
        gray: (N, H, W) gray inputs, 0-255.
        predicted: (N, H, W, 3) sRGB in [0, 1].
        truth: (N, H, W, 3) uint8 sRGB.
        path: the PNG to write.
        title: figure title.
    """
    n = len(gray)
    fig, axes = plt.subplots(3, n, figsize=(1.5 * n, 4.8), squeeze=False)
    rows = (("gray input", gray / 255.0), ("prediction", predicted), ("ground truth", truth))
    for r, (label, images) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(images[c], cmap="gray" if images[c].ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label)
    fig.suptitle(title)
    return save_figure(fig, path)
