"""One classification run, start to finish: data, model, fit, test, files.

Every run writes `runs/<run_name>/` under the output folder:
  flags.json    the resolved configuration
  log.csv       Keras' CSVLogger, one row per finished epoch (survives resumes)
  history.json  the per-epoch metrics that plots are drawn from
  metrics.json  test loss/accuracy, parameters, training time, images/second
  best.weights.h5, backup/   best-on-validation weights, resume state

    python -m scripts.question1 --epochs 1 --train_limit 500 --data_dir ../shared/datasets/cifar10
"""

import contextlib
import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from resnet_keras import data as data_lib
from resnet_keras import distribute, models, plotting, results, runs, saving, speedups, training
from resnet_keras.checks import check_choice, check_minimums

MODELS = ("resnet", "plain")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What every experiment's config holds: the data (the fields
    `prepare_data` reads), the run's length and where its outputs go."""

    dataset: str = "cifar10"
    data_dir: str | None = None
    label_mode: str = "fine"
    skip_bad_images: bool = False
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0
    val_size: int = 5000
    epochs: int = 20
    batch_size: int = 128
    output_dir: str = "."
    verbose: int = 1
    tensorboard: bool = False
    # None: on where a GPU is present, off on the CPU, where XLA measured 2-3x
    # slower and float32 is what the README's numbers were made with
    # (docs/performance.md; distribute.use_xla and precision_policy).
    jit_compile: bool | None = None
    mixed_precision: bool | None = None
    strategy: str = "auto"
    deterministic: bool = False

    def validate(self):
        """Refuses bad values before any data is read or any file written."""
        check_choice("dataset", self.dataset, data_lib.DATASETS)
        check_choice("strategy", self.strategy, distribute.STRATEGIES)
        check_choice("label_mode", self.label_mode, data_lib.LABEL_MODES)
        check_minimums(
            self,
            [
                ("epochs", 1),
                ("batch_size", 1),
                ("train_limit", 0),
                ("test_limit", 0),
                ("val_size", 0),
            ],
        )
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ValueError(
                    "--tensorboard needs the tensorboard package " "(pip install tensorboard)"
                ) from None


@dataclasses.dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Everything a classification run depends on; scripts fill it from flags."""

    model: str = "resnet"
    n: int = 3
    opt: str = "adam"
    lr: float | None = None  # None: the optimizer's default (training.DEFAULT_LR)
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = models.PAPER_WEIGHT_DECAY
    shortcut: str = "projection"
    normalization: str = "per_channel"
    fused_bn: bool = True  # TensorFlow's fused BatchNorm kernel (speedups.fuse_batch_norm)
    recompute: bool = False  # less memory, slower steps (speedups.recompute_blocks)
    augment: bool = True
    label_smoothing: float = 0.0  # > 0: one-hot targets (1 - e) + e / classes
    nesterov: bool = False  # SGD only
    # Also test on the mirrored test images, averaging the two softmaxes
    # (metrics test_accuracy_tta); test_accuracy stays the saved model's own.
    tta: bool = False
    # Six views: that pair plus the pair moved one pixel up-left and one
    # down-right (metrics test_accuracy_tta_shifts; predict_with_shifts).
    tta_shifts: bool = False
    run_name: str = "run"

    def validate(self):
        super().validate()
        check_choice("model", self.model, MODELS)
        check_choice("optimizer", self.opt, training.OPTIMIZERS)
        check_choice("schedule", self.schedule, training.SCHEDULES)
        check_choice("shortcut", self.shortcut, models.SHORTCUTS)
        check_choice("normalization", self.normalization, models.NORMALIZATIONS)
        check_minimums(self, [("n", 1), ("weight_decay", 0), ("label_smoothing", 0)])
        if self.n > models.MAX_N:
            raise ValueError(
                f"--n must be at most {models.MAX_N} (ResNet-{6 * models.MAX_N + 2}): "
                "Keras cannot build or load deeper networks at Python's default "
                f"recursion limit; got {self.n}"
            )
        if self.label_smoothing >= 1:
            raise ValueError(f"--label_smoothing must be below 1; got {self.label_smoothing}")
        if self.recompute and not self.fused_bn:
            raise ValueError(
                "--recompute needs --fused_bn (its BatchNorm skips the second "
                "moving-average update)"
            )
        if self.nesterov and self.opt != "sgd":
            raise ValueError(f"--nesterov is SGD's momentum; --opt is {self.opt}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--lr must be positive; got {self.lr}")
        runs.check_name(self.run_name)

    @property
    def depth(self):
        return 6 * self.n + 2

    @property
    def run_dir(self):
        return os.path.join(self.output_dir, "runs", self.run_name)


def check_writable(folder, flag="output_dir"):
    """Fails before training, not after hours of it, if outputs cannot be written.

    `flag` names the option the folder came from, for the error message.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--{flag} {folder}: not writable ({e.strerror})") from None


def prepare_data(config, image_size=32):
    """Loads, limits and splits the data as the config says.

    `image_size` is the side an image folder's pictures are resized to; CIFAR
    arrays come at 32 whatever it says.
    """
    ds = data_lib.load_dataset(
        config.dataset,
        config.data_dir,
        config.label_mode,
        image_size=image_size,
        skip_bad_images=config.skip_bad_images,
    )
    x, y = ds.x_train, ds.y_train
    xt, yt = ds.x_test, ds.y_test
    if config.train_limit:
        if config.train_limit > len(x):
            raise ValueError(
                f"--train_limit {config.train_limit} is larger than the training split ({len(x)})"
            )
        x, y = data_lib.limit(x, y, config.train_limit, config.seed)
    if config.test_limit:
        if config.test_limit > len(xt):
            raise ValueError(
                f"--test_limit {config.test_limit} is larger than the test split ({len(xt)})"
            )
        xt, yt = data_lib.limit(xt, yt, config.test_limit, config.seed)
    val_size = config.val_size
    if config.train_limit and val_size >= len(x):
        raise ValueError(f"--val_size {val_size} leaves no training images out of {len(x)}")
    (x, y), val = data_lib.split_validation(x, y, val_size, config.seed)
    return ds, (x, y), val, (xt, yt)


def build_model(config, num_classes, x_train, sync_bn=False):
    """The model the config names, normalised with the training images' statistics,
    with the run's speed-ups (`speedups`: fused BatchNorm unless `fused_bn` is off,
    then block recomputation if `recompute`)."""
    if config.normalization == "per_channel":
        mean, std = data_lib.channel_stats(x_train)
    else:
        mean, std = data_lib.pixel_mean(x_train), None
    kwargs = dict(
        num_classes=num_classes,
        input_shape=x_train.shape[1:],
        weight_decay=config.weight_decay,
        normalization=config.normalization,
        mean=mean,
        std=std,
        sync_bn=sync_bn,
    )
    if config.model == "plain":
        model = models.build_plainnet(config.n, **kwargs)
    else:
        model = models.build_resnet(config.n, shortcut=config.shortcut, **kwargs)
    if config.fused_bn:
        speedups.fuse_batch_norm(model)
    if config.recompute:
        speedups.recompute_blocks(model)
    return model


def start_run(config, ds, x, val, xt, log=print, run_dir=None, **extra):
    """Logs the data and the resolved configuration, and saves the latter as
    <run_dir>/flags.json; returns it. `extra`: values resolved at run time."""
    for note in ds.notes:
        log(f"data: {note}")
    log(
        f"data: {ds.source}: {len(x)} train, {len(val[0]) if val else 0} validation, "
        f"{len(xt)} test images of {x.shape[1]}x{x.shape[2]}, {ds.num_classes} classes"
    )
    precision, reason = distribute.precision_decision(config.mixed_precision)
    note = distribute.precision_note(config.mixed_precision, precision, reason)
    if note:
        log(note)
    resolved = (
        dataclasses.asdict(config)
        | extra
        | {
            "precision": precision,
            "precision_reason": reason,
            "train_images": len(x),
            "val_images": len(val[0]) if val else 0,
            "test_images": len(xt),
            "data_source": ds.source,
        }
    )
    log(f"config: {resolved}")
    training.write_json(os.path.join(run_dir or config.run_dir, "flags.json"), resolved)
    return resolved


def run_settings(config, **extra):
    """What a run depends on, as its flags.json records it: the config's
    fields and `extra`, with the optimizer's default learning rate filled in."""
    settings = dataclasses.asdict(config) | extra
    if settings.get("lr") is None and "opt" in settings:
        settings["lr"] = training.DEFAULT_LR[settings["opt"]]
    return settings


def _settings_and_defaults(config, extra=None):
    """`run_settings` with `extra`'s fields, and each setting's default (for
    runs whose flags.json predates it)."""
    parts = [config] + ([extra] if extra is not None else [])
    defaults = {f.name: f.default for c in parts for f in dataclasses.fields(c)}
    return run_settings(config, **(dataclasses.asdict(extra) if extra else {})), defaults


def setup_run(config, retrain=False, extra=None):
    """The first steps of every training run; returns (strategy, folder to write in).

    The strategy comes first, before any TensorFlow op: a multi-worker
    strategy must configure the collective ops at program start-up. The run
    folder is then claimed (`runs.claim`: locked, and never one holding a
    finished run or another run's resume state) before any data is read.
    With `retrain` the run writes to a staging folder that `finish_run` puts
    in place. Workers other than the chief keep their resume state in a
    folder of their own and write nothing under the final names.

    Args:
        config: the run's config.
        retrain: replace a finished run once this one has finished.
        extra: a dataclass of further settings the run depends on (question3's options).
    """
    strategy = distribute.make_strategy(config.strategy)
    run_dir = config.run_dir
    # The runs/ folder, not the run's: creating runs/<name> here would hide a
    # --retrain swap cut off between its renames from `runs.claim`'s repair.
    check_writable(os.path.dirname(run_dir))
    if distribute.is_chief():
        settings, defaults = _settings_and_defaults(config, extra)
        run_dir, _ = runs.claim(run_dir, settings, defaults, retrain)
        os.makedirs(run_dir, exist_ok=True)
    else:
        run_dir = os.path.join(run_dir, f"worker{distribute.task()[1]}")
        check_writable(run_dir)
        runs.lock(run_dir, inside=True)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    return strategy, run_dir


def finish_run(config, run_dir):
    """Ends a run whose metrics.json is written: its resume state goes (every
    phase's; Keras keeps it past the last epoch, `training.callbacks_for_run`,
    so a run killed before its test resumes there instead of starting over),
    and a finished run in a --retrain staging folder replaces the old one."""
    for phase in ((), ("fine_tune",)):
        shutil.rmtree(os.path.join(run_dir, *phase, "backup"), ignore_errors=True)
    if distribute.is_chief():
        runs.promote(run_dir, config.run_dir)


@contextlib.contextmanager
def model_scope(config, strategy):
    """Build and compile inside: variables placed by the strategy, layers
    computing in the run's precision (float32 variables and outputs)."""
    with strategy.scope(), distribute.dtype_policy(
        distribute.precision_policy(config.mixed_precision)
    ):
        yield


def run_classification(config, log=print, retrain=False):
    """Trains and tests one classifier; returns (model, metrics, history).

    The test split is evaluated once, at the end, with the weights that did
    best on the validation split (the last weights when `val_size` is 0).
    `retrain`: replace a finished run of the same name once this one has
    finished (without it, such a run is refused before any work).
    """
    config.validate()
    strategy, run_dir = setup_run(config, retrain)
    ds, (x, y), val, (xt, yt) = prepare_data(config)
    with model_scope(config, strategy):
        model = build_model(config, ds.num_classes, x, sync_bn=strategy.num_replicas_in_sync > 1)
        lr, steps_per_epoch = compile_for_run(model, config, len(x), top5=ds.num_classes > 10)
    start_run(
        config,
        ds,
        x,
        val,
        xt,
        log,
        run_dir,
        lr=lr,
        depth=config.depth,
        steps_per_epoch=steps_per_epoch,
        num_classes=ds.num_classes,
        class_names=list(ds.class_names),
        replicas=strategy.num_replicas_in_sync,
    )
    metrics, history = fit_and_test(model, config, (x, y), val, (xt, yt), run_dir=run_dir, log=log)
    finish_run(config, run_dir)
    return model, metrics, history


def compile_for_run(model, config, num_train, top5):
    """Compiles `model` with the config's optimizer and schedule; returns (lr, steps/epoch)."""
    steps_per_epoch = int(np.ceil(num_train / config.batch_size))
    lr = config.lr if config.lr is not None else training.DEFAULT_LR[config.opt]
    schedule = training.keras_schedule(
        config.schedule, lr, steps_per_epoch, config.epochs, config.warmup_steps
    )
    training.compile_classifier(
        model,
        training.make_optimizer(config.opt, schedule, config.nesterov),
        jit_compile=distribute.use_xla(config.jit_compile),
        top5=top5,
        label_smoothing=config.label_smoothing,
    )
    return lr, steps_per_epoch


def fit_and_test(
    model,
    config,
    train,
    val,
    test,
    run_dir=None,
    epochs=None,
    augment=None,
    test_images=None,
    log=print,
    final=True,
):
    """Fits a compiled model with the run's callbacks, then tests its best weights.

    Args:
        model: a compiled classifier.
        config: the run's `TrainConfig` (batch size, seed, verbosity, ...).
        train, val, test: `(x, y)` arrays; `val` may be None. `x` may be images
            or anything else the model takes (e.g. cached features).
        run_dir, epochs, augment: override the config's (e.g. for a second
            training phase in a folder of its own).
        test_images: the test images, where `test`'s inputs are not images
            (test_predictions.npz keeps the misclassified ones).
        final: whether this ends the run. metrics.json marks a finished run
            (`runs.state`), so a first phase that more training follows
            (question3's head before fine-tuning) does not write it.

    Returns:
        `(metrics, history)`, both also written to `run_dir` as JSON.
    """
    run_dir = run_dir or config.run_dir
    epochs = epochs or config.epochs
    augment = config.augment if augment is None else augment
    (x, y), (xt, yt) = train, test
    os.makedirs(run_dir, exist_ok=True)
    one_hot = model.output.shape[-1] if config.label_smoothing else 0
    train_ds = data_lib.train_dataset(x, y, config.batch_size, config.seed, augment, one_hot)
    val_ds = data_lib.eval_dataset(*val, batch_size=1000, one_hot=one_hot) if val else None
    callbacks = training.callbacks_for_run(run_dir, len(x), val is not None, config.tensorboard)
    t0 = time.perf_counter()
    model.fit(
        train_ds,
        epochs=epochs,
        validation_data=val_ds,
        callbacks=callbacks,
        verbose=config.verbose,
        shuffle=False,  # the pipeline shuffles; Keras cannot shuffle a tf.data.Dataset
    )
    train_time = time.perf_counter() - t0
    training.raise_if_nan(callbacks)
    history = training.read_csv_history(os.path.join(run_dir, "log.csv"))
    best = os.path.join(run_dir, "best.weights.h5")
    if val is not None and os.path.isfile(best):
        try:
            model.load_weights(best)
        except OSError as e:  # killed while ModelCheckpoint wrote it
            log(f"warning: {best} is unreadable ({e}); testing the last weights instead")
    probs = model.predict(xt, batch_size=1000, verbose=0)
    scores = evaluate_predictions(probs, yt)
    path = os.path.join(run_dir, "test_predictions.npz")
    save_test_predictions(path, scores, xt if test_images is None else test_images)
    epoch_times = history.get("epoch_time_s", [])
    metrics = {
        "test_loss": scores["loss"],
        "test_accuracy": scores["accuracy"],
        "params": int(model.count_params()),
        "trainable_params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "epochs": len(history.get("loss", [])),
        # Summed per-epoch times survive a resume; this process's time does not.
        "train_time_s": float(sum(epoch_times)) if epoch_times else train_time,
        "img_per_s": float(np.mean(history["img_per_s"])) if "img_per_s" in history else None,
        "hardware": results.hardware(),
    }
    if model.output.shape[-1] > 10:
        metrics["test_top5_accuracy"] = scores["top5_accuracy"]
    if np.ndim(xt) == 4:  # images, not cached features: the views exist
        for name, views in predict_tta(model, xt, probs, config.tta, config.tta_shifts).items():
            tta = evaluate_predictions(views, yt)
            metrics |= {f"test_accuracy_{name}": tta["accuracy"], f"test_loss_{name}": tta["loss"]}
    if "val_accuracy" in history:
        metrics["best_val_accuracy"] = float(np.nanmax(history["val_accuracy"]))
        metrics["best_epoch"] = int(np.nanargmax(history["val_accuracy"])) + 1
    training.write_json(os.path.join(run_dir, "history.json"), history)
    if final:
        training.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    tta_note = "".join(
        f", {label} {metrics[f'test_accuracy_{name}']:.4f}"
        for name, label in TTA_LABELS.items()
        if f"test_accuracy_{name}" in metrics
    )
    log(
        f"test accuracy {metrics['test_accuracy']:.4f}{tta_note}, test loss "
        f"{metrics['test_loss']:.4f} ({metrics['epochs']} epochs, {metrics['train_time_s']:.0f} s)"
    )
    return metrics, history


# The test-time augmentations by option name, as reports label them.
TTA_LABELS = {"tta": "with flips", "tta_shifts": "with flips and shifts"}


def predict_tta(model, x, probs, tta=False, tta_shifts=False, batch_size=1000):
    """The augmented predictions asked for, keyed by option name ("tta": two
    views, "tta_shifts": six); the mirror pair is predicted once for both.
    `probs`: the plain predictions."""
    if not (tta or tta_shifts):
        return {}
    flips = predict_with_flips(model, x, probs, batch_size)
    out = {"tta": flips} if tta else {}
    if tta_shifts:
        out["tta_shifts"] = predict_with_shifts(model, x, flips, batch_size)
    return out


def predict_with_flips(model, x, probs=None, batch_size=1000):
    """Test-time augmentation: the mean softmax of each image and its mirror
    image (the training flips make both equally valid views). `probs`: the
    plain predictions, where already made."""
    if probs is None:
        probs = model.predict(x, batch_size=batch_size, verbose=0)
    mirrored = model.predict(np.ascontiguousarray(x[:, :, ::-1]), batch_size=batch_size, verbose=0)
    return (np.asarray(probs, "float64") + mirrored) / 2


def predict_with_shifts(model, x, flips=None, batch_size=1000):
    """Six-view test-time augmentation (airbench's level 2): half the weight on
    the mirror pair (`predict_with_flips`, passed as `flips` where already
    made), a quarter each on that pair moved one pixel up-left and one
    down-right. The border pixels it uncovers are zeros, as the training
    crops' padding is, so every view is one the model trained on."""
    if flips is None:
        flips = predict_with_flips(model, x, batch_size=batch_size)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    h, w = x.shape[1:3]
    shifted = [
        predict_with_flips(model, padded[:, dy : dy + h, dx : dx + w], batch_size=batch_size)
        for dy, dx in [(0, 0), (2, 2)]
    ]
    return flips / 2 + (shifted[0] + shifted[1]) / 4


def evaluate_predictions(probs, y):
    """Test metrics from softmax outputs (B, K) and labels (B,) or (B, 1).

    The loss is the plain cross-entropy: `model.evaluate` would add the L2
    weight-decay term, which is not a property of the predictions.
    """
    y = np.asarray(y).reshape(-1).astype("int64")
    probs = np.asarray(probs, "float64")
    pred = probs.argmax(axis=1)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return {
        "loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)))),
        "accuracy": float(np.mean(pred == y)),
        "top5_accuracy": float(np.mean((top5 == y[:, None]).any(axis=1))),
        "y_true": y,
        "y_pred": pred,
        "confidence": probs.max(axis=1),
    }


def confusion_matrix(y_true, y_pred, num_classes):
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((num_classes, num_classes), "int64")
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def save_test_predictions(path, test, x_test, keep_wrong=64):
    """Labels, predictions and the first misclassified images, so that confusion
    matrices and misclassified grids can be redrawn without the model or data."""
    # A fixed random sample, not the first ones: test sets often come sorted
    # by class (image folders do), and a grid of airplanes says little.
    wrong = np.flatnonzero(test["y_pred"] != test["y_true"])
    wrong = np.random.default_rng(0).permutation(wrong)[:keep_wrong]
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez_compressed(
        tmp,
        y_true=test["y_true"],
        y_pred=test["y_pred"],
        confidence=test["confidence"],
        wrong_index=wrong,
        wrong_images=x_test[wrong],
    )
    os.replace(tmp, path)


def save_outputs(model, history, stem, plot_path, title, formats=("h5",)):
    """Writes the model in each format and the history plot; returns the paths.

    Only the chief writes; other workers of a multi-worker run return [].
    """
    if not distribute.is_chief():
        return []
    paths = [saving.save_model(model, saving.model_path(stem, f)) for f in formats]
    paths.append(plotting.plot_history(history, plot_path, title))
    return paths


def load_run(run_dir):
    """(history, metrics, flags, test predictions) of a finished run, or None."""
    try:
        loaded = []
        for name in ("history.json", "metrics.json", "flags.json"):
            with open(os.path.join(run_dir, name)) as f:
                loaded.append(json.load(f))
    except (OSError, ValueError):
        return None
    preds_path = os.path.join(run_dir, "test_predictions.npz")
    preds = dict(np.load(preds_path)) if os.path.isfile(preds_path) else None
    return (*loaded, preds)


def claim_runs(configs, retrain=False, extra=None):
    """Checks every run of a study before any is trained, so that a conflict
    (`runs.RunConflict`) stops the study before hours of work, not after.

    Returns one bool per config: whether its finished run, made with the same
    settings (`extra`: a dataclass of further ones), is reused. Other workers of a cluster decide the same from the
    files, without locking the chief's folders.
    """
    reused = []
    for c in configs:
        wanted, defaults = _settings_and_defaults(c, extra)
        if distribute.is_chief():
            action = runs.claim(c.run_dir, wanted, defaults, retrain, reuse=True)[1]
            reused.append(action == "reuse")
        else:
            finished = runs.state(c.run_dir) == "finished"
            reused.append(
                finished
                and not retrain
                and not runs.differences(wanted, runs.read_flags(c.run_dir), defaults)
            )
    return reused


def train_study(configs, stems, formats=("h5",), retrain=False, log=print):
    """Trains and saves each config's model unless runs/ holds its finished run.

    Study scripts call this with every configuration, so an interrupted study
    picks up where it stopped and a finished one can be re-reported without
    retraining. A finished run made with other settings (say another
    --epochs) stops the study before any training; `retrain` replaces each
    run once its new one has finished.
    """
    for config, stem, reuse in zip(configs, stems, claim_runs(configs, retrain)):
        if reuse:
            log(
                f"{config.run_name}: finished run in {config.run_dir} reused (--retrain to train again)"
            )
            continue
        log(f"{config.run_name}: training ({config.epochs} epochs)")
        model, _, _ = run_classification(config, log=log, retrain=retrain)
        for fmt in formats if distribute.is_chief() else ():
            log(f"wrote {saving.save_model(model, saving.model_path(stem, fmt))}")
