"""Optimizers, learning-rate schedules, the Keras callbacks of a run, and
`fit_with_resume`, the fit every training run goes through.

Schedules are pure functions of the step (`learning_rate`), and the optimizer
gets the same numbers as a built-in `PiecewiseConstantDecay`, so a saved
model needs no project code; tests check the two agree at every boundary.
"""

import csv
import json
import math
import os
import shutil
import time

import keras
import numpy as np

from resnet_keras import files
from resnet_keras.checks import check_choice

OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("constant", "step", "paper", "onecycle", "fast")
DEFAULT_LR = {"adam": 1e-3, "rmsprop": 1e-3, "sgd": 0.1}
# Keras' own defaults, which the original assignment's optimizers were built
# with (Questions 2 and 3): SGD 0.01.
KERAS_DEFAULT_LR = {"adam": 1e-3, "rmsprop": 1e-3, "sgd": 1e-2}
# The paper's CIFAR schedule, in iterations at batch 128 (He et al. 2015, 4.2).
PAPER_BOUNDARIES = (32_000, 48_000)
PAPER_STEPS = 64_000
# ResNet-110: lr 0.01 until training error < 80% (the paper: ~400 iterations).
PAPER_WARMUP_STEPS = 400
# One-cycle: a linear ramp from lr/10 to lr over this share of the steps, then
# a cosine down to 0 (Smith & Topin 2017, as fast CIFAR trainers use it).
ONECYCLE_WARMUP = 0.2
# `--schedule fast`: the CPU time-to-accuracy preset (docs/performance.md).
# Each value yields to a flag the user sets. All 50k images train: with a
# one-cycle schedule the last weights are the ones tested, so nothing is picked
# on validation (and never on the test split). Plain SGD one-cycle plateaued
# below 90 %, so the preset adds what the PyTorch yardstick
# (../shared/bench/torch_time_to_accuracy.py) uses, label smoothing and
# Nesterov momentum, trains in bfloat16 (faster at equal accuracy, only on
# CPUs that compute bfloat16 natively, float32 elsewhere:
# distribute.precision_decision) for more epochs in the time, and reports
# flip and six-view TTA. 180 epochs is the first length whose run passed 90 %
# (with TTA); the measurements are in docs/performance.md, "Time to accuracy".
FAST_PRESET = dict(
    opt="sgd",
    lr=0.2,
    batch_size=128,
    epochs=180,
    weight_decay=5e-4,
    val_size=0,
    label_smoothing=0.1,
    nesterov=True,
    mixed_precision=True,
    tta=True,
    tta_shifts=True,
)


def base_learning_rate(opt, lr=None):
    """`lr`, or where it is None the optimizer's default (`DEFAULT_LR`)."""
    return DEFAULT_LR[opt] if lr is None else lr


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
    if schedule in ("onecycle", "fast"):
        raise ValueError(f"{schedule} is not piecewise constant; see onecycle_rate")
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


def _onecycle_steps(steps_per_epoch, epochs):
    total = steps_per_epoch * epochs
    warm = max(1, int(total * ONECYCLE_WARMUP))
    return warm, max(1, total - warm)


def onecycle_rate(step, lr, steps_per_epoch, epochs):
    """lr/10 rising linearly to lr over the first 20% of steps, then cosine to 0."""
    warm, decay = _onecycle_steps(steps_per_epoch, epochs)
    if step < warm:
        return lr / 10 + (lr - lr / 10) * step / warm
    done = min(step - warm, decay) / decay
    return lr * 0.5 * (1 + math.cos(math.pi * done))


def learning_rate(step, schedule, lr, steps_per_epoch, epochs, warmup_steps=0):
    """The learning rate in force at optimizer step `step` (0-based)."""
    if schedule in ("onecycle", "fast"):
        return onecycle_rate(step, lr, steps_per_epoch, epochs)
    bounds, values = schedule_boundaries(schedule, lr, steps_per_epoch, epochs, warmup_steps)
    return values[sum(step >= b for b in bounds)]


def keras_schedule(schedule, lr, steps_per_epoch, epochs, warmup_steps=0):
    """The same schedule as a serialisable Keras object (or a float)."""
    if schedule in ("onecycle", "fast"):
        warm, decay = _onecycle_steps(steps_per_epoch, epochs)
        return keras.optimizers.schedules.CosineDecay(
            lr / 10, decay, alpha=0.0, warmup_target=lr, warmup_steps=warm
        )
    bounds, values = schedule_boundaries(schedule, lr, steps_per_epoch, epochs, warmup_steps)
    if not bounds:
        return float(lr)
    # PiecewiseConstantDecay switches after a boundary (step > b); ours at it.
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [int(b) - 1 for b in bounds], [float(v) for v in values]
    )


def make_optimizer(name, learning_rate, nesterov=False):
    """`sgd` (momentum 0.9, as the paper), `adam` or `rmsprop` by name.

    `nesterov` switches SGD to Nesterov momentum (the fast preset's); the
    other optimizers refuse it rather than ignore it.

    Weight decay is not here: the models carry the paper's L2 term on their
    kernels (coupled, as in the paper), rather than Keras' decoupled
    `weight_decay`, which would mean AdamW for adam.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    if nesterov and name != "sgd":
        raise ValueError(f"--nesterov is SGD's momentum; --opt is {name}")
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=nesterov)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.RMSprop(learning_rate)


def compile_classifier(
    model, optimizer, jit_compile=False, top5=False, steps_per_execution=1, label_smoothing=0.0
):
    """Cross-entropy on integer labels; with `label_smoothing`, on one-hot
    labels (Keras smooths only those: the pipeline then yields one-hot, see
    `pipeline.train_dataset`). Both losses are Keras' own, so a saved model
    loads without project code."""
    metrics = ["accuracy"]  # Keras picks sparse or categorical accuracy from the labels
    if label_smoothing:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
        top_k = keras.metrics.TopKCategoricalAccuracy
    else:
        loss, top_k = "sparse_categorical_crossentropy", keras.metrics.SparseTopKCategoricalAccuracy
    if top5:
        metrics.append(top_k(5, name="top5_accuracy"))
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
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
    """The CSVLogger file as {metric: [values per epoch]}; {} if absent.

    CSVLogger writes "NA" for metrics an epoch lacks (every val_ column of a
    run without validation): those read as NaN, and all-NA columns are dropped.
    """
    if not os.path.isfile(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    history = {}
    for row in rows:
        for k, v in row.items():
            if k == "epoch":
                continue
            missing = v in ("", "NA", None)
            history.setdefault(k, []).append(math.nan if missing else float(v))
    return {k: v for k, v in history.items() if not all(math.isnan(x) for x in v)}


class StopOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN, remembering where it stopped for the error message."""

    def __init__(self):
        super().__init__()
        self.epoch, self.stopped_at = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)) and self.stopped_at is None:
            lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            self.stopped_at = (self.epoch + 1, batch + 1, lr)
        super().on_batch_end(batch, logs)


# What a run folder holds besides its configuration; a fresh run removes them.
RUN_OUTPUTS = ("log.csv", "history.json", "metrics.json", "test_predictions.npz", "best.weights.h5")


def resume_epoch(run_dir):
    """Epochs an interrupted run finished (BackupAndRestore's own record), or 0."""
    path = os.path.join(run_dir, "backup", "training_metadata.json")
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _truncate_csv(path, epochs):
    """Keeps the header and the rows of the first `epochs` epochs."""
    if not os.path.isfile(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) < epochs]
    with files.atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)


def callbacks_for_run(
    run_dir, num_train_images, has_validation, tensorboard=False, monitor="val_accuracy", mode="max"
):
    """Keras' own callbacks, set up so that a killed run resumes cleanly.

    BackupAndRestore saves after every epoch and the same command picks it up.
    It comes last, after CSVLogger: a kill between the two leaves a logged
    epoch that the backup does not hold yet, and the log is cut back to the
    backup's epoch before training goes on, so every epoch is logged once.
    Best-model selection (on `monitor`, "max" or "min" by `mode`) resumes
    from the best value already logged.
    """
    start = resume_epoch(run_dir)
    log_path = os.path.join(run_dir, "log.csv")
    if start == 0:
        for name in RUN_OUTPUTS:  # a fresh run: nothing stale may survive it
            if os.path.exists(os.path.join(run_dir, name)):
                os.remove(os.path.join(run_dir, name))
        # A backup without its epoch record was cut off while the first epoch's
        # weights were written: half an HDF5 file, and no earlier copy to fall
        # back on (BackupAndRestore's double_checkpoint keeps one from the
        # second epoch on). Nothing in it can be resumed.
        shutil.rmtree(os.path.join(run_dir, "backup"), ignore_errors=True)
    else:
        _truncate_csv(log_path, start)
    cbs = [EpochTimer(num_train_images), StopOnNaN()]
    if has_validation:
        logged = read_csv_history(log_path).get(monitor, [])
        best = max if mode == "max" else min
        cbs.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(run_dir, "best.weights.h5"),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=best(logged) if logged else None,
            )
        )
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard")))
    cbs.append(keras.callbacks.CSVLogger(log_path, append=True))
    # double_checkpoint: a kill while the weights are written falls back to the
    # previous epoch's copy instead of failing to resume.
    cbs.append(
        # delete_checkpoint=False: Keras would remove the state when the last
        # epoch ends, before the run is tested and its metrics.json written,
        # and a kill in between would then start the run over (or let other
        # settings overwrite it). `experiment.finish_run` removes it instead.
        keras.callbacks.BackupAndRestore(
            os.path.join(run_dir, "backup"), double_checkpoint=True, delete_checkpoint=False
        )
    )
    return cbs


def raise_if_nan(callbacks):
    """FloatingPointError naming epoch, batch and learning rate if the run's
    StopOnNaN ended it: a NaN run must never save a model."""
    for c in callbacks:
        if isinstance(c, StopOnNaN) and c.stopped_at:
            epoch, batch, rate = c.stopped_at
            raise FloatingPointError(
                f"the loss became NaN at epoch {epoch}, batch {batch} (learning rate {rate:g}); "
                "no model was saved: try a smaller --lr"
            )


def fit_with_resume(
    model,
    train_data,
    val_data,
    run_dir,
    epochs,
    num_train_images,
    verbose=1,
    tensorboard=False,
    monitor="val_accuracy",
    mode="max",
    log=print,
):
    """Fits a compiled model in `run_dir` so that the same command resumes a
    killed run, and leaves it with its best weights on validation.

    Every training run goes through here (classification, transfer's head
    and fine-tuning phases, colorization). The callbacks are
    `callbacks_for_run`'s; a loss that becomes NaN ends the fit and raises
    (`raise_if_nan`). The history is read back from log.csv, which holds
    every epoch of every process that worked on the run.

    Args:
        model: a compiled Keras model.
        train_data: a `tf.data.Dataset` of training batches; it shuffles
            (Keras cannot shuffle a dataset).
        val_data: validation batches, or None.
        run_dir: the run's folder (made if missing).
        epochs: the run's total epochs (a resumed run trains the rest).
        num_train_images: for the images/second of each epoch.
        verbose: Keras' fit verbosity.
        tensorboard: also write TensorBoard logs under `run_dir`.
        monitor, mode: the best weights' metric, and "max" or "min".
        log: where the warning about an unreadable best-weights file goes.

    Returns:
        `(history, train_time_s)`: {metric: [value per epoch]}, and the
        summed epoch times (this process's fit time where none are logged).

    Raises:
        FloatingPointError: the loss became NaN.
    """
    os.makedirs(run_dir, exist_ok=True)
    has_val = val_data is not None
    callbacks = callbacks_for_run(
        run_dir, num_train_images, has_val, tensorboard, monitor=monitor, mode=mode
    )
    t0 = time.perf_counter()
    model.fit(
        train_data,
        epochs=epochs,
        validation_data=val_data,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the pipeline shuffles; Keras cannot shuffle a tf.data.Dataset
    )
    train_time = time.perf_counter() - t0
    raise_if_nan(callbacks)
    history = read_csv_history(os.path.join(run_dir, "log.csv"))
    best = os.path.join(run_dir, "best.weights.h5")
    if has_val and os.path.isfile(best):
        try:
            model.load_weights(best)
        except OSError as e:  # killed while ModelCheckpoint wrote it
            log(f"warning: {best} is unreadable ({e}); testing the last weights instead")
    # Summed per-epoch times survive a resume; this process's time does not.
    epoch_times = history.get("epoch_time_s", [])
    return history, float(sum(epoch_times)) if epoch_times else train_time
