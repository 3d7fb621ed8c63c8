"""The fit every training run goes through (`fit_with_resume`) and the Keras
callbacks that make a run resumable: a killed run goes on from its last
finished epoch with the same command, logs every epoch once, keeps its best
weights on validation and stops on a NaN loss.

Classification, transfer (head and fine-tuning phases) and colorization all
train here; optimizers and schedules are `optim`'s.
"""

import csv
import json
import math
import os
import re
import shutil
import sys
import time

import keras
import numpy as np

from resnet_keras import files
from resnet_keras.run import saving


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


class TestMonitor(keras.callbacks.Callback):
    """Scores the test images after every epoch as `test_accuracy` and
    `test_loss` (the loss as Keras' validation loss counts it, L2 term
    included), for the curves of a run that holds no images out. The run
    still tests its last epoch's weights once at the end: these values are
    watched, never used to choose weights or stop. Placed after EpochTimer,
    so an epoch's time is its training alone."""

    def __init__(self, test_data):
        super().__init__()
        self.test_data = test_data

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        scores = self.model.evaluate(self.test_data, verbose=0, return_dict=True)
        logs["test_accuracy"] = scores["accuracy"]
        logs["test_loss"] = scores["loss"]


def _csv_columns(path):
    """The header of a run's log.csv ([] if there is none)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


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


class SpaceCheck(keras.callbacks.Callback):
    """Stops the run with one line before an epoch's weights are written to a
    disk without room for them (h5py crashes the process when the disk fills
    while it writes): the previous epoch's resume state stays, and the same
    command resumes once there is space."""

    def __init__(self, run_dir, copies):
        super().__init__()
        self.run_dir, self.copies = run_dir, copies

    def on_epoch_end(self, epoch, logs=None):
        need = self.copies * saving.size_estimate(self.model)
        files.ensure_space(os.path.join(self.run_dir, "backup", "weights.h5"), need)


# What a run folder holds besides its configuration; a fresh run removes them.
RUN_OUTPUTS = (
    "log.csv",
    "history.json",
    "metrics.json",
    "test_predictions.npz",
    "head_test_predictions.npz",  # a fine-tuned transfer run's head phase (transfer.task)
    "best.weights.h5",
)


def resume_epoch(run_dir):
    """Epochs an interrupted run finished (BackupAndRestore's own record), or 0."""
    path = os.path.join(run_dir, "backup", "training_metadata.json")
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _logged_epochs(path):
    """Rows of epochs in a CSVLogger file (0 if absent)."""
    if not os.path.isfile(path):
        return 0
    with open(path, newline="") as f:
        return sum(1 for row in list(csv.reader(f))[1:] if row)


def _readable_hdf5(path):
    import h5py

    try:
        with h5py.File(path, "r"):
            return True
    except OSError:
        return False


# A cluster worker other than the chief keeps its resume state in a folder of
# its own inside the run's (`lifecycle.setup_run`): not a phase of the run.
WORKER_DIR = "worker{}"


def phase_dirs(run_dir):
    """The folders a run trained in: `run_dir`, then each folder in it where a
    later phase trained (its own log.csv or backup/; a config declares its
    phases, e.g. `transfer.config.TransferOptions.PHASES`)."""
    out = [run_dir]
    names = sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []
    for name in names:
        path = os.path.join(run_dir, name)
        if name == "backup" or re.fullmatch(WORKER_DIR.format(r"\d+"), name):
            continue
        if os.path.isfile(os.path.join(path, "log.csv")) or os.path.isdir(
            os.path.join(path, "backup")
        ):
            out.append(path)
    return out


def check_resume_state(run_dir):
    """Refuses resume state that cannot be what this run left, before any
    work: weights that are no HDF5 file (and no earlier copy that is), or an
    epoch count above the epochs the run's own log.csv holds (a forged or
    foreign `"epoch": 99` would make a 5-epoch run "finish" after 2).
    Covers each phase of the run (`phase_dirs`: a transfer run's fine_tune/ too).

    Raises:
        ValueError: naming the file and the way out.
    """
    for phase in phase_dirs(run_dir):
        backup = os.path.join(phase, "backup")
        done = resume_epoch(phase)
        if not done:
            continue
        logged = _logged_epochs(os.path.join(phase, "log.csv"))
        redo = f"start the run over with --retrain, or remove {backup}"
        if done > logged:
            raise ValueError(
                f"{os.path.join(backup, 'training_metadata.json')} records {done} finished "
                f"epochs but {os.path.join(phase, 'log.csv')} holds {logged}: the resume "
                f"state is not this run's; {redo}"
            )
        weights = os.path.join(backup, "latest.weights.h5")
        # BackupAndRestore falls back on the previous epoch's copy by itself.
        copies = [p for p in (weights, weights + ".bkp") if os.path.exists(p)]
        if copies and not any(_readable_hdf5(p) for p in copies):
            raise ValueError(f"{weights}: {_UNREADABLE}; {redo}")


_UNREADABLE = "the resume weights (and their earlier copy) are no readable HDF5 file"


class ResumeFromBackup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, whose failure to read damaged resume weights
    names the file and the way out instead of HDF5's "file signature not
    found" or Keras' "A total of 1 objects could not be loaded"
    (`check_resume_state` finds files that are no HDF5 before any work)."""

    def __init__(self, backup_dir, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.backup_dir = backup_dir

    def on_train_begin(self, logs=None):
        try:
            super().on_train_begin(logs)
        except (OSError, ValueError) as e:  # not HDF5; HDF5 without these weights
            weights = os.path.join(self.backup_dir, "latest.weights.h5")
            raise ValueError(
                f"{weights}: {_UNREADABLE} ({str(e).splitlines()[0]}); start the run over "
                f"with --retrain, or remove {self.backup_dir}"
            ) from None


class TensorBoardTags(keras.callbacks.TensorBoard):
    """Keras' TensorBoard, with EpochTimer's `epoch_time_s` under that tag:
    TensorBoard prefixes every epoch metric with "epoch_", which would make
    it `epoch_epoch_time_s`. log.csv keeps the column's own name."""

    def on_epoch_end(self, epoch, logs=None):
        if logs and "epoch_time_s" in logs:
            logs = {("time_s" if k == "epoch_time_s" else k): v for k, v in logs.items()}
        super().on_epoch_end(epoch, logs)


def progress_verbosity(verbose, stream=None):
    """Keras' fit verbosity for `verbose` on `stream` (stdout): its progress
    bar (1) redraws itself with ANSI colour codes and backspaces, which fill
    a log file; written anywhere but a terminal it becomes one line per epoch
    (2), as Keras' own documentation advises for non-interactive runs."""
    stream = sys.stdout if stream is None else stream
    interactive = hasattr(stream, "isatty") and stream.isatty()
    return 2 if verbose == 1 and not interactive else verbose


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


def plateaued(values, mode, patience, min_epochs=0):
    """True once the last `patience` of `values` (one per epoch) brought no new
    best and at least `min_epochs` epochs are done; never with `patience` 0."""
    best = best_index(values, mode)
    if patience <= 0 or len(values) < max(min_epochs, patience + 1) or best is None:
        return False  # a run whose every value is NaN has no best to keep: it runs on
    return len(values) - 1 - best >= patience


def best_index(values, mode):
    """Index of the best of `values` ("max" or "min"), the first of equal
    bests; NaN is never the best. None if every value is NaN."""
    v = np.asarray(values, float)
    if not len(v) or np.isnan(v).all():
        return None
    return int(np.nanargmax(v) if mode == "max" else np.nanargmin(v))


def best_epoch(history, monitor, mode):
    """The 1-based epoch of `history`'s best `monitor` value; None without one."""
    index = best_index(history.get(monitor, []), mode)
    return None if index is None else index + 1


class StopOnPlateau(keras.callbacks.Callback):
    """Stops after the first epoch, `min_epochs` or later, that ends
    `patience` epochs in a row without a new best (the best counted from
    epoch 1; `plateaued`). Unlike Keras' EarlyStopping it starts from the
    values the run's log already holds, so a resumed run stops at the same
    epoch as one never interrupted (EarlyStopping counts afresh in every
    process)."""

    def __init__(self, monitor, mode, patience, min_epochs, logged):
        super().__init__()
        self.monitor, self.mode = monitor, mode
        self.patience, self.min_epochs = patience, min_epochs
        self.values = list(logged)

    @property
    def done(self):
        return plateaued(self.values, self.mode, self.patience, self.min_epochs)

    def on_epoch_end(self, epoch, logs=None):
        self.values.append(float((logs or {}).get(self.monitor, math.nan)))
        if self.done:
            self.model.stop_training = True


def callbacks_for_run(
    run_dir,
    num_train_images,
    has_validation,
    tensorboard=False,
    monitor="val_accuracy",
    mode="max",
    patience=0,
    min_epochs=0,
    test_data=None,
):
    """Keras' own callbacks, set up so that a killed run resumes cleanly.

    BackupAndRestore saves after every epoch and the same command picks it up.
    It comes last, after CSVLogger: a kill between the two leaves a logged
    epoch that the backup does not hold yet, and the log is cut back to the
    backup's epoch before training goes on, so every epoch is logged once.
    Best-model selection (on `monitor`, "max" or "min" by `mode`) resumes
    from the best value already logged; so does the stop once `patience`
    epochs in a row bring no new best of `monitor`, `min_epochs` or more in
    (`StopOnPlateau`; patience 0: no such stop). `test_data`: batches scored
    after every epoch for the curves (`TestMonitor`), unless the run resumes
    a log.csv begun without them (CSVLogger appends under the file's header).
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
    # Before the checkpoints: the best weights and two copies of the resume state.
    cbs = [EpochTimer(num_train_images), StopOnNaN(), SpaceCheck(run_dir, 3)]
    if test_data is not None and (start == 0 or "test_accuracy" in _csv_columns(log_path)):
        cbs.insert(1, TestMonitor(test_data))
    if has_validation:
        logged = read_csv_history(log_path).get(monitor, [])
        at = best_index(logged, mode)
        cbs.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(run_dir, "best.weights.h5"),
                monitor=monitor,
                mode=mode,
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=None if at is None else logged[at],
            )
        )
        if patience:
            cbs.append(StopOnPlateau(monitor, mode, patience, min_epochs, logged))
    if tensorboard:
        cbs.append(TensorBoardTags(os.path.join(run_dir, "tensorboard")))
    cbs.append(keras.callbacks.CSVLogger(log_path, append=True))
    # double_checkpoint: a kill while the weights are written falls back to the
    # previous epoch's copy instead of failing to resume.
    cbs.append(
        # delete_checkpoint=False: Keras would remove the state when the last
        # epoch ends, before the run is tested and its metrics.json written,
        # and a kill in between would then start the run over (or let other
        # settings overwrite it). `publish.finish` removes it, after metrics.json.
        ResumeFromBackup(
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
    patience=0,
    min_epochs=0,
    log=print,
    test_data=None,
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
        verbose: Keras' fit verbosity (the progress bar, 1, only on a
            terminal: `progress_verbosity`).
        tensorboard: also write TensorBoard logs under `run_dir`.
        monitor, mode: the best weights' metric, and "max" or "min".
        patience, min_epochs: stop before `epochs` after the first epoch,
            `min_epochs` or later, that ends `patience` epochs in a row without
            a new best of `monitor` (0: no such stop; it needs `val_data`).
        log: where the warning about an unreadable best-weights file goes.
        test_data: test batches to score after every epoch for the curves
            (`TestMonitor`: watched, never used to choose weights).

    Returns:
        `(history, train_time_s)`: {metric: [value per epoch]}, and the
        summed epoch times (this process's fit time where none are logged).

    Raises:
        FloatingPointError: the loss became NaN.
    """
    os.makedirs(run_dir, exist_ok=True)
    has_val = val_data is not None
    if patience and not has_val:
        raise ValueError("a stop on a plateau needs validation data")
    callbacks = callbacks_for_run(
        run_dir,
        num_train_images,
        has_val,
        tensorboard,
        monitor,
        mode,
        patience,
        min_epochs,
        test_data=test_data,
    )
    plateau = next((c for c in callbacks if isinstance(c, StopOnPlateau)), None)
    stopped_before = plateau is not None and plateau.done
    t0 = time.perf_counter()
    if stopped_before:  # a resumed run that had stopped already
        # fit would have built the optimizer; the best weights' file holds its state
        model.optimizer.build(model.trainable_variables)
    else:
        model.fit(
            train_data,
            epochs=epochs,
            validation_data=val_data,
            callbacks=callbacks,
            verbose=progress_verbosity(verbose),
            shuffle=False,  # the pipeline shuffles; Keras cannot shuffle a tf.data.Dataset
        )
    train_time = time.perf_counter() - t0
    raise_if_nan(callbacks)
    history = read_csv_history(os.path.join(run_dir, "log.csv"))
    if plateau is not None and plateau.done:
        values = history[monitor]
        at = best_index(values, mode)
        log(
            f"stopped after epoch {len(values)} of {epochs}: {monitor} has not improved for "
            f"{patience} epochs (best {values[at]:.6g}, epoch {at + 1})"
        )
    best = os.path.join(run_dir, "best.weights.h5")
    if stopped_before and not os.path.isfile(best):
        # no fit ran in this process: the model holds no trained weights at all
        raise RuntimeError(f"{run_dir} stopped training but has no {best}; train it with --retrain")
    if has_val and os.path.isfile(best):
        try:
            model.load_weights(best)
        except OSError as e:  # killed while ModelCheckpoint wrote it
            if stopped_before:
                raise RuntimeError(
                    f"{best} is unreadable ({e}) and no fit ran in this process; "
                    "train the run again with --retrain"
                ) from None
            log(f"warning: {best} is unreadable ({e}); testing the last weights instead")
    # Summed per-epoch times survive a resume; this process's time does not.
    epoch_times = history.get("epoch_time_s", [])
    return history, float(sum(epoch_times)) if epoch_times else train_time
