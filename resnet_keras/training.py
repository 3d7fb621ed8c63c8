"""Optimizers, learning-rate schedules and the Keras callbacks of a run.

Schedules are pure functions of the step (`learning_rate`), and the optimizer
gets the same numbers as a built-in `PiecewiseConstantDecay`, so a saved
model needs no project code; tests check the two agree at every boundary.
"""

import csv
import json
import math
import os
import time

import keras
import numpy as np

from resnet_keras.checks import check_choice

OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "step", "paper")
DEFAULT_LR = {"adam": 1e-3, "rmsprop": 1e-3, "sgd": 0.1}
# The paper's CIFAR schedule, in iterations at batch 128 (He et al. 2015, 4.2).
PAPER_BOUNDARIES = (32_000, 48_000)
PAPER_STEPS = 64_000
# ResNet-110: lr 0.01 until training error < 80% (the paper: ~400 iterations).
PAPER_WARMUP_STEPS = 400



def schedule_boundaries(schedule, lr, steps_per_epoch, epochs, warmup_steps=0):
    """Step boundaries and learning rates of a piecewise-constant schedule.

    Args:
        schedule: "constant"; "step" (/10 at 50% and 75% of the epochs, the
            original's 100-epoch recipe: epochs 50 and 75); or "paper" (/10 at
            iterations 32k and 48k).
        lr: the base learning rate.
        steps_per_epoch, epochs: the run's length.
        warmup_steps: steps at lr/10 before the base rate (ResNet-110's warm-up).

    Returns:
        `(boundaries, values)`: step `s` uses `values[k]` where `k` is the
        number of boundaries <= s; `len(values) == len(boundaries) + 1`.
    """
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "constant":
        bounds, values = [], [lr]
    elif schedule == "step":
        bounds = [int(epochs * 0.5) * steps_per_epoch, int(epochs * 0.75) * steps_per_epoch]
        values = [lr, lr / 10, lr / 100]
    else:
        bounds, values = list(PAPER_BOUNDARIES), [lr, lr / 10, lr / 100]
    if warmup_steps:
        bounds, values = [warmup_steps] + bounds, [lr / 10] + values
    return bounds, values


def learning_rate(step, schedule, lr, steps_per_epoch, epochs, warmup_steps=0):
    """The learning rate in force at optimizer step `step` (0-based)."""
    bounds, values = schedule_boundaries(schedule, lr, steps_per_epoch, epochs, warmup_steps)
    return values[sum(step >= b for b in bounds)]


def keras_schedule(schedule, lr, steps_per_epoch, epochs, warmup_steps=0):
    """The same schedule as a serialisable Keras object (or a float)."""
    bounds, values = schedule_boundaries(schedule, lr, steps_per_epoch, epochs, warmup_steps)
    if not bounds:
        return float(lr)
    # PiecewiseConstantDecay switches after a boundary (step > b); ours at it.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(b) - 1 for b in bounds], [float(v) for v in values]
    )


def make_optimizer(name, learning_rate):
    """`sgd` (momentum 0.9, as the paper), `adam` or `rmsprop` by name.

    Weight decay is not here: the models carry the paper's L2 term on their
    kernels (coupled, as in the paper), rather than Keras' decoupled
    `weight_decay`, which would mean AdamW for adam.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.RMSprop(learning_rate)


def compile_classifier(model, optimizer, jit_compile=False, top5=False):
    metrics = ["accuracy"]
    if top5:
        metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=metrics,
        jit_compile=jit_compile,
    )
    return model


class EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall time and training images/second to the logs."""

    def __init__(self, num_images):
        super().__init__()
        self.num_images = num_images

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        dt = time.perf_counter() - self._t0
        if logs is not None:
            logs["epoch_time_s"] = dt
            logs["img_per_s"] = self.num_images / dt


def read_csv_history(path):
    """The CSVLogger file as {metric: [values per epoch]}; {} if absent."""
    if not os.path.isfile(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history = {}
    for row in rows:
        for k, v in row.items():
            if k == "epoch":
                continue
            history.setdefault(k, []).append(float(v) if v not in ("", None) else math.nan)
    return history


def callbacks_for_run(run_dir, num_train_images, has_validation, tensorboard=False):
    """Keras' own callbacks, set up so that a killed run resumes cleanly.

    BackupAndRestore saves after every epoch and is picked up by the same
    command; the CSV log then appends, and best-model selection starts from the
    best validation accuracy already logged rather than from scratch.
    """
    backup_dir = os.path.join(run_dir, "backup")
    log_path = os.path.join(run_dir, "log.csv")
    resuming = os.path.isdir(backup_dir) and os.listdir(backup_dir)
    if not resuming and os.path.exists(log_path):
        os.remove(log_path)  # a fresh run: do not append to an old log
    cbs = [
        keras.callbacks.BackupAndRestore(backup_dir),
        EpochTimer(num_train_images),
        keras.callbacks.TerminateOnNaN(),
    ]
    if has_validation:
        logged = read_csv_history(log_path).get("val_accuracy", [])
        cbs.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(run_dir, "best.weights.h5"),
                monitor="val_accuracy",
                mode="max",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=max(logged) if logged else None,
            )
        )
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")))
    # Last, so that it sees the timing keys the callbacks above add.
    cbs.append(keras.callbacks.CSVLogger(log_path, append=True))
    return cbs


def write_json(path, obj):
    """Atomic JSON write: a temporary name, then a rename."""
    write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def write_text(path, text):
    """Atomic text write: a temporary name in the same folder, then a rename."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
