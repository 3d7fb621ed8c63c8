"""Figures drawn from saved histories (`history.json`), never from live runs,
so that any figure can be redrawn without retraining."""

import os
import tempfile

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path):
    """Atomic PNG write: a temporary name in the same folder, then a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".plot-", suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def plot_history(history, path, title=""):
    """Training/validation accuracy (left) and loss (right) per epoch.

    Args:
        history: {"accuracy": [...], "val_accuracy": [...], "loss": [...], ...}.
        path: the PNG to write.
        title: figure title.
    """
    return plot_histories({"train": history}, path, title, single=True)


def plot_histories(histories, path, title="", single=False):
    """Overlays several runs: {label: history}. Solid = training, dashed = validation."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for i, (label, h) in enumerate(histories.items()):
            color = f"C{i}"
            epochs = range(1, len(h.get(metric, [])) + 1)
            name = "" if single else f"{label} "
            if metric in h:
                ax.plot(epochs, h[metric], "-", color=color, label=f"{name}training")
            if f"val_{metric}" in h:
                ax.plot(epochs, h[f"val_{metric}"], "--", color=color if not single else "C1",
                        label=f"{name}validation")  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_error_vs_depth(histories, path, title="Training (thin) and validation (bold) error"):
    """He et al. Figure 6: per-epoch error of every (model, depth) pair.

    Args:
        histories: {(model, depth): history}; model "plain" on the left panel,
            "resnet" on the right, one colour per depth.
        path: the PNG to write.
    """
    kinds = [k for k in ("plain", "resnet") if any(m == k for m, _ in histories)]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(6.5 * max(1, len(kinds)), 4.5),
                             sharey=True, squeeze=False)  # fmt: skip
    depths = sorted({d for _, d in histories})
    for ax, kind in zip(axes[0], kinds):
        for (model, depth), h in sorted(histories.items()):
            if model != kind:
                continue
            color = f"C{depths.index(depth)}"
            epochs = range(1, len(h["accuracy"]) + 1)
            name = "ResNet" if kind == "resnet" else "plain"
            marker = "o" if len(epochs) < 15 else None  # short runs: show the points
            ax.plot(epochs, [100 * (1 - a) for a in h["accuracy"]], "-", lw=0.8, color=color,
                    marker=marker, ms=2)  # fmt: skip
            if "val_accuracy" in h:
                ax.plot(epochs, [100 * (1 - a) for a in h["val_accuracy"]], "-", lw=2.2,
                        color=color, label=f"{name}-{depth}", marker=marker, ms=4)  # fmt: skip
        ax.set_title("plain networks" if kind == "plain" else "residual networks")
        ax.set_xlabel("epoch")
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
    import numpy as np

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
                ax.text(j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if pct[i, j] > 50 else "black")  # fmt: skip
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, label="% of the true class")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_architecture(model, path):
    """keras.utils.plot_model; returns None with a reason if pydot/graphviz is missing."""
    import shutil

    import keras

    if shutil.which("dot") is None:
        return "skipped plots/resnet_architecture.png: graphviz is missing (apt-get install graphviz, or brew install graphviz)"
    try:
        import pydot  # noqa: F401
    except ImportError:
        return "skipped the architecture diagram: pydot is missing (pip install pydot)"
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".arch-", suffix=".png", dir=folder)
    os.close(fd)
    try:
        keras.utils.plot_model(model, to_file=tmp, show_shapes=True, dpi=60)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return None
