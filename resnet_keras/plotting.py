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


def plot_histories(histories, path, title="", single=False, marks=None):
    """Overlays several runs: {label: history}. Solid = training, dashed = validation.

    `marks` ({label: epoch}) draws a dotted line after that epoch of the run,
    e.g. where fine-tuning began after the head's epochs.
    """
    marks = marks or {}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for i, (label, h) in enumerate(histories.items()):
            color = f"C{i}"
            if label in marks:
                ax.axvline(marks[label] + 0.5, color=color, linestyle=":",
                           label=f"{label} fine-tuning starts")  # fmt: skip
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
