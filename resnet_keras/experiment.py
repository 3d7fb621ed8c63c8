"""One classification run, start to finish: data, model, fit, test, files.

Every run writes `runs/<run_name>/` under the output folder:
  flags.json    the resolved configuration
  log.csv       Keras' CSVLogger, one row per finished epoch (survives resumes)
  history.json  the per-epoch metrics that plots are drawn from
  metrics.json  test loss/accuracy, parameters, training time, images/second
  best.weights.h5, backup/   best-on-validation weights, resume state

    python -m scripts.question1 --epochs 1 --train_limit 500 --data_dir ../shared/datasets/cifar10
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np

from resnet_keras import data as data_lib
from resnet_keras import models, plotting, saving, training
from resnet_keras.checks import check_choice

MODELS = ("resnet", "plain")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a classification run depends on; scripts fill it from flags."""

    model: str = "resnet"
    n: int = 3
    dataset: str = "cifar10"
    data_dir: str | None = None
    label_mode: str = "fine"
    epochs: int = 20
    batch_size: int = 128
    opt: str = "adam"
    lr: float | None = None  # None: the optimizer's default (training.DEFAULT_LR)
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = models.PAPER_WEIGHT_DECAY
    shortcut: str = "projection"
    normalization: str = "per_channel"
    augment: bool = True
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0
    val_size: int = 5000
    output_dir: str = "."
    run_name: str = "run"
    verbose: int = 1
    tensorboard: bool = False
    jit_compile: bool = False
    skip_bad_images: bool = False

    def validate(self):
        """Refuses bad values before any data is read or any file written."""
        check_choice("model", self.model, MODELS)
        check_choice("dataset", self.dataset, data_lib.DATASETS)
        check_choice("label_mode", self.label_mode, data_lib.LABEL_MODES)
        check_choice("optimizer", self.opt, training.OPTIMIZERS)
        check_choice("schedule", self.schedule, training.SCHEDULES)
        check_choice("shortcut", self.shortcut, models.SHORTCUTS)
        check_choice("normalization", self.normalization, models.NORMALIZATIONS)
        minimums = [("n", 1), ("epochs", 1), ("batch_size", 1), ("weight_decay", 0),
                    ("train_limit", 0), ("test_limit", 0), ("val_size", 0)]  # fmt: skip
        for name, low in minimums:
            if getattr(self, name) < low:
                raise ValueError(f"--{name} must be at least {low}; got {getattr(self, name)}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--lr must be positive; got {self.lr}")

    @property
    def depth(self):
        return 6 * self.n + 2

    @property
    def run_dir(self):
        return os.path.join(self.output_dir, "runs", self.run_name)


def check_writable(folder):
    """Fails before training, not after hours of it, if outputs cannot be written."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--output_dir {folder}: not writable ({e.strerror})") from None


def prepare_data(config):
    """Loads, limits and splits the data as the config says."""
    ds = data_lib.load_dataset(
        config.dataset, config.data_dir, config.label_mode,
        skip_bad_images=config.skip_bad_images,
    )  # fmt: skip
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
            raise ValueError(f"--test_limit {config.test_limit} is larger than the test split ({len(xt)})")
        xt, yt = data_lib.limit(xt, yt, config.test_limit, config.seed)
    val_size = config.val_size
    if config.train_limit and val_size >= len(x):
        raise ValueError(f"--val_size {val_size} leaves no training images out of {len(x)}")
    (x, y), val = data_lib.split_validation(x, y, val_size, config.seed)
    return ds, (x, y), val, (xt, yt)


def build_model(config, num_classes, x_train):
    """The model the config names, normalised with the training images' statistics."""
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
    )
    if config.model == "plain":
        return models.build_plainnet(config.n, **kwargs)
    return models.build_resnet(config.n, shortcut=config.shortcut, **kwargs)


def start_run(config, log=print):
    """Checks, seeds and loads what every run starts with; returns (ds, train, val, test)."""
    config.validate()
    check_writable(config.run_dir)
    keras.utils.set_random_seed(config.seed)
    ds, (x, y), val, (xt, yt) = prepare_data(config)
    for note in ds.notes:
        log(f"data: {note}")
    log(
        f"data: {ds.source}: {len(x)} train, {len(val[0]) if val else 0} validation, "
        f"{len(xt)} test images, {ds.num_classes} classes"
    )
    return ds, (x, y), val, (xt, yt)


def data_facts(ds, x, val, xt):
    """What a run's flags.json records about its data."""
    return {
        "num_classes": ds.num_classes,
        "class_names": list(ds.class_names),
        "train_images": len(x),
        "val_images": len(val[0]) if val else 0,
        "test_images": len(xt),
        "data_source": ds.source,
    }


def compile_for_run(model, config, num_train, top5):
    """Compiles `model` with the config's optimizer and schedule; returns (lr, steps/epoch)."""
    steps_per_epoch = int(np.ceil(num_train / config.batch_size))
    lr = config.lr if config.lr is not None else training.DEFAULT_LR[config.opt]
    schedule = training.keras_schedule(
        config.schedule, lr, steps_per_epoch, config.epochs, config.warmup_steps
    )
    training.compile_classifier(
        model,
        training.make_optimizer(config.opt, schedule),
        jit_compile=config.jit_compile,
        top5=top5,
    )
    return lr, steps_per_epoch


def run_classification(config, log=print):
    """Trains and tests one classifier; returns (model, metrics, history).

    The test split is evaluated once, at the end, with the weights that did
    best on the validation split (the last weights when `val_size` is 0).
    """
    ds, (x, y), val, (xt, yt) = start_run(config, log)
    model = build_model(config, ds.num_classes, x)
    lr, steps_per_epoch = compile_for_run(model, config, len(x), top5=ds.num_classes > 10)
    resolved = dataclasses.asdict(config) | {
        "lr": lr,
        "depth": config.depth,
        "steps_per_epoch": steps_per_epoch,
    } | data_facts(ds, x, val, xt)
    log(f"config: {resolved}")
    training.write_json(os.path.join(config.run_dir, "flags.json"), resolved)
    metrics, history = fit_and_test(model, config, (x, y), val, (xt, yt), lr=lr, log=log)
    return model, metrics, history


def fit_and_test(model, config, train, val, test, lr, run_dir=None, epochs=None, augment=None,
                 log=print):  # fmt: skip
    """Fits a compiled model with the run's callbacks, then tests its best weights.

    Args:
        model: a compiled classifier.
        config: the run's `TrainConfig` (batch size, seed, verbosity, ...).
        train, val, test: `(x, y)` arrays; `val` may be None. `x` may be images
            or anything else the model takes (e.g. cached features).
        lr: the base learning rate, for the message if the loss turns NaN.
        run_dir, epochs, augment: override the config's (e.g. for a second
            training phase in its own folder).

    Returns:
        `(metrics, history)`, both also written to `run_dir` as JSON.
    """
    run_dir = run_dir or config.run_dir
    epochs = epochs or config.epochs
    augment = config.augment if augment is None else augment
    (x, y), (xt, yt) = train, test
    os.makedirs(run_dir, exist_ok=True)
    train_ds = data_lib.train_dataset(x, y, config.batch_size, config.seed, augment)
    val_ds = data_lib.eval_dataset(*val, batch_size=1000) if val else None
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
    history = training.read_csv_history(os.path.join(run_dir, "log.csv"))
    if any(np.isnan(v) for v in history.get("loss", [])) or len(history.get("loss", [])) < epochs:
        raise FloatingPointError(
            f"training stopped early at epoch {len(history.get('loss', []))}: the loss became NaN "
            f"(learning rate {lr}); try a smaller --lr"
        )
    best = os.path.join(run_dir, "best.weights.h5")
    if val is not None and os.path.isfile(best):
        model.load_weights(best)
    results = model.evaluate(data_lib.eval_dataset(xt, yt, 1000), verbose=0, return_dict=True)
    epoch_times = history.get("epoch_time_s", [])
    metrics = {
        "test_loss": float(results["loss"]),
        "test_accuracy": float(results["accuracy"]),
        "params": int(model.count_params()),
        "trainable_params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "epochs": len(history.get("loss", [])),
        # Summed per-epoch times survive a resume; this process's time does not.
        "train_time_s": float(sum(epoch_times)) if epoch_times else train_time,
        "img_per_s": float(np.mean(history["img_per_s"])) if "img_per_s" in history else None,
    }
    if "top5_accuracy" in results:
        metrics["test_top5_accuracy"] = float(results["top5_accuracy"])
    if "val_accuracy" in history:
        metrics["best_val_accuracy"] = float(np.nanmax(history["val_accuracy"]))
        metrics["best_epoch"] = int(np.nanargmax(history["val_accuracy"])) + 1
    training.write_json(os.path.join(run_dir, "history.json"), history)
    training.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    log(
        f"test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f} "
        f"({metrics['epochs']} epochs, {metrics['train_time_s']:.0f} s)"
    )
    return metrics, history


def save_outputs(model, history, stem, plot_path, title, formats=("h5",)):
    """Writes the model in each format and the history plot; returns the paths."""
    paths = [saving.save_model(model, saving.model_path(stem, f)) for f in formats]
    paths.append(plotting.plot_history(history, plot_path, title))
    return paths


def merge_results(stem, row, key, columns):
    """Adds one run's row to a results table kept as `<stem>.json` and `<stem>.md`.

    A row whose `key` fields equal the new row's is replaced in place; every
    other row is kept, so runs made one at a time build up one table. Both
    files are written atomically.

    Args:
        stem: e.g. `results/question3`.
        row: {field: value}; JSON-serialisable.
        key: the fields that identify a run (e.g. base, dataset, optimizer).
        columns: `(field, title, format)` triples for the Markdown table, with
            `format` a str.format spec such as "{:.4f}" (missing values: "").

    Returns:
        All rows, in table order.
    """
    json_path = f"{stem}.json"
    rows = []
    if os.path.isfile(json_path):
        try:
            with open(json_path) as f:
                rows = json.load(f)
            if not isinstance(rows, list):
                raise ValueError(f"a list of rows, found {type(rows).__name__}")
        except ValueError as e:
            raise ValueError(f"{json_path}: not a results table ({e}); move it aside") from None
    same = [i for i, r in enumerate(rows) if all(r.get(k) == row.get(k) for k in key)]
    if same:
        rows = [r for i, r in enumerate(rows) if i not in same[1:]]
        rows[same[0]] = row
    else:
        rows.append(row)
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    training.write_json(json_path, rows)
    lines = [
        "| " + " | ".join(title for _, title, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ] + ["| " + " | ".join(_cell(r.get(f), spec) for f, _, spec in columns) + " |" for r in rows]
    training.write_text(f"{stem}.md", "\n".join(lines) + "\n")
    return rows


def _cell(value, spec):
    return "" if value is None else spec.format(value)
