"""Figures drawn from saved histories (`history.json`), never from live runs,
so that any figure can be redrawn without retraining."""

import os
import tempfile

import matplotlib
import numpy as np

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
    right.hist(gray_mse, bins, alpha=0.5, color="C7",
               label=f"gray input as colour (mean {gray_mse.mean():.4f})")  # fmt: skip
    right.hist(model_mse, bins, alpha=0.7, color="C0",
               label=f"model (mean {model_mse.mean():.4f})")  # fmt: skip
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
