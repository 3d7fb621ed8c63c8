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

    `marks` ({text: epoch}) draws a dotted grey line after each epoch, e.g.
    {"fine-tuning starts": 20} where fine-tuning followed 20 head epochs.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric in zip(axes, ("accuracy", "loss")):
        for text, epoch in (marks or {}).items():
            ax.axvline(epoch + 0.5, color="0.4", linestyle=":", label=text)
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
