"""One transfer-learning run (Question 3), start to finish.

A run trains the head of a `transfer` model on a frozen base, then, with
`fine_tune_epochs`, unfreezes the top of the base and trains on at a smaller
learning rate. With a frozen base and no augmentation the pooled features of
an image never change, so the head trains on features computed once: 20 head
epochs then cost one pass through the base instead of twenty.

Files, under the output folder: runs/<run_name>/ as every run (flags, log,
the model <stem>.h5, history.png, history.json, metrics.json,
test_predictions.npz of the saved model); with fine-tuning also
head_test_predictions.npz there (the head phase's), and the fine-tuning
phase's log, resume state and test predictions in runs/<run_name>/fine_tune/.
`transfer.report` puts each run's row in question3's results table.

    python -m scripts.question3 --base saved_models/resnet_cifar10.h5 \\
        --data_dir path/to/cifar10 --train_limit 5000 --val_size 500
"""

import dataclasses
import os
import shutil
import time

import numpy as np

from resnet_keras import files
from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.classification.models import count_weights
from resnet_keras.classification import task as classification_task
from resnet_keras.run import lifecycle, publish
from resnet_keras.transfer.models import (
    base_label,
    build_from_saved_model,
    build_transfer_model,
    feature_extractor,
    head_model,
    is_saved_model,
    model_file,
    stages_of,
    unfreeze_top,
)

# The head phase's test predictions in a fine-tuned run's folder; its
# test_predictions.npz is the kept (fine-tuned) model's.
HEAD_PREDICTIONS = "head_test_predictions.npz"


def build_model(options, num_classes, input_shape):
    """The transfer model `options` describe (uncompiled)."""
    if is_saved_model(options.base):
        model = build_from_saved_model(
            model_file(options.base),
            num_classes,
            options.head_units,
            reinitialize=options.weights == "none",
            train_base=options.train_base,
        )
        size = tuple(model.input.shape[1:3])
        if size != tuple(input_shape[:2]) or options.image_size != size[0]:
            raise ValueError(
                f"{options.base} takes {size[0]}x{size[1]} images; the data has "
                f"{input_shape[0]}x{input_shape[1]} and --image_size is {options.image_size}"
            )
        return model
    weights = {None: "imagenet", "none": None}.get(options.weights, options.weights)
    return build_transfer_model(
        num_classes,
        options.base,
        weights,
        options.image_size,
        options.head_units,
        input_shape=input_shape,
        train_base=options.train_base,
    )


def _features_key(config, options):
    """What the cached features depend on: runs that differ only in optimizer share them."""
    fields = ("dataset", "data_dir", "label_mode", "seed", "train_limit", "test_limit", "val_size")
    return tuple(getattr(config, f) for f in fields) + (
        options.base,
        options.weights,
        options.image_size,
    )


def _concat(first, second):
    """Two histories one after the other; a metric missing from one phase is NaN there."""
    n1, n2 = len(first.get("loss", [])), len(second.get("loss", []))
    return {
        k: list(first.get(k, [np.nan] * n1)) + list(second.get(k, [np.nan] * n2))
        for k in list(first) + [k for k in second if k not in first]
    }


def run_transfer(config, options, log=print, feature_cache=None, retrain=False):
    """Trains a head on a frozen base, optionally fine-tunes its top, and tests it.

    Args:
        config: a `classification.config.TrainConfig` (dataset, optimizer, epochs of
            the head, batch size, ...); `model`, `n`, `shortcut`,
            `normalization` and `weight_decay` do not apply.
        options: `TransferOptions`.
        log: where progress lines go.
        feature_cache: a dict kept across calls (e.g. one per optimizer) so
            that runs on the same base and data extract features once.
        retrain: replace a finished run of the same name once this one has
            finished (without it, a finished run with other settings, options
            included, is refused before any work).

    Returns:
        `(model, metrics, history)`; the history runs over the head's epochs,
        then the fine-tuning epochs (`metrics["fine_tune_start_epoch"]`). A
        finished run made with the same settings is reused: model None, its
        metrics and history read back.
    """
    config.validate()
    options.validate(config.augment)
    done = lifecycle.finished_run(config, retrain, extra=options, log=log)
    if done is not None:
        return None, done[1], done[0]
    strategy, run_dir = lifecycle.setup_run(config, retrain, extra=options)
    with publish.discarded_on_failure(config, run_dir):
        return _run(config, options, strategy, run_dir, log, feature_cache)


def _run(config, options, strategy, run_dir, log, feature_cache):
    data = lifecycle.prepare_data(config)
    ds, (x, y), val, (xt, yt) = data
    t_start = time.perf_counter()
    top5 = classifier_metrics.reports_top5(ds.num_classes)
    cached = options.caches(config.augment)
    feature_time = 0.0
    with lifecycle.model_scope(config, strategy):
        model = build_model(options, ds.num_classes, x.shape[1:])
        if cached:
            arrays = [x] + ([val[0]] if val else []) + [xt]
            feats, feature_time = _features(model, config, options, arrays, feature_cache, log)
            trained = head_model(model)
            train, test = (feats[0], y), (feats[-1], yt)
            val_in = (feats[1], val[1]) if val else None
        else:
            trained, train, val_in, test = model, (x, y), val, (xt, yt)
        lr, steps_per_epoch = classification_task.compile_for_run(trained, config, len(x), top5)
        if trained is not model:
            # The head trains on its own, so the whole model would be saved
            # uncompiled ("No training configuration found" in plain Keras):
            # it gets the head's loss, metrics and optimizer settings.
            classification_task.compile_for_run(model, config, len(x), top5)
    lifecycle.start_run(
        config,
        strategy,
        data,
        run_dir,
        log,
        **(dataclasses.asdict(options) | {"cache_features": cached}),
        **classification_task.resolved_settings(ds, lr, steps_per_epoch),
        params=model.count_params(),
        trainable_params=count_weights(model.trainable_weights),
    )
    metrics, history = classification_task.fit_and_test(
        trained,
        config,
        train,
        val_in,
        test,
        run_dir=run_dir,
        test_images=xt,
        log=log,
    )
    # The counts of the whole model, not of the head that trained on features.
    metrics |= {
        "params": model.count_params(),
        "trainable_params": count_weights(model.trainable_weights),
    }
    metrics |= {"cache_features": cached, "feature_time_s": feature_time}
    if options.fine_tune_epochs:
        unfrozen = unfreeze_top(model, stages_of(options.base), options.unfreeze)
        ft_lr = options.fine_tune_lr or lr / 10
        log(
            f"fine-tuning {len(unfrozen)} layers ({unfrozen[0]} ... {unfrozen[-1]}) "
            f"at lr {ft_lr} for {options.fine_tune_epochs} epochs"
        )
        # The optimizer of the head's phase at a constant rate.
        constant = dataclasses.replace(config, lr=ft_lr, schedule="constant", warmup_steps=0)
        with lifecycle.model_scope(config, strategy):
            classification_task.compile_for_run(model, constant, len(x), top5)
        ft_metrics, ft_history = classification_task.fit_and_test(
            model,
            config,
            (x, y),
            val,
            (xt, yt),
            log=log,
            run_dir=os.path.join(run_dir, *options.PHASES),
            epochs=options.fine_tune_epochs,
        )
        head = {f"head_{k}": metrics[k] for k in ("test_accuracy", "test_loss")}
        metrics = (
            ft_metrics
            | head
            | {
                "fine_tune_start_epoch": metrics["epochs"],
                # The kept weights are the fine-tuning phase's best; its epochs
                # count after the head's.
                "best_epoch": metrics["epochs"]
                + ft_metrics.get("best_epoch", ft_metrics["epochs"]),
                "epochs": metrics["epochs"] + ft_metrics["epochs"],
                "train_time_s": metrics["train_time_s"] + ft_metrics["train_time_s"],
                "trainable_params": metrics["trainable_params"],
                "fine_tune_trainable_params": ft_metrics["trainable_params"],
                "fine_tune_lr": ft_lr,
                "unfrozen_layers": unfrozen,
                "cache_features": cached,
                "feature_time_s": feature_time,
            }
        )
        history = _concat(history, ft_history)
        _keep_final_predictions(run_dir, options)
    # This process's time from building the model to the test; wall_time_s
    # (provenance) counts from the run's first start, resumes and pauses included.
    metrics["process_time_s"] = time.perf_counter() - t_start
    metrics["train_images"] = len(x)
    title = f"{config.run_name}: {base_label(options.base)} {options.mode} ({config.opt})"
    name = options.stem(config.dataset, config.opt)
    publish.finish(config, run_dir, metrics, history, model, name, title=title, log=log)
    return model, metrics, history


def _keep_final_predictions(run_dir, options):
    """Makes the run's test_predictions.npz the fine-tuned model's, as its
    metrics are (the table's interval and paired tests read it), and keeps the
    head phase's beside it as head_test_predictions.npz. Each copy is atomic;
    a resumed run tests both phases again and comes back here."""
    top = os.path.join(run_dir, "test_predictions.npz")
    for source, target in (
        (top, os.path.join(run_dir, HEAD_PREDICTIONS)),
        (os.path.join(run_dir, *options.PHASES, "test_predictions.npz"), top),
    ):
        with files.atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def _features(model, config, options, arrays, feature_cache, log):
    """(features of each array, seconds spent extracting).

    `feature_cache` (a dict, or None) keeps them across runs that differ only
    in what trains on them (e.g. the optimizer); a cache hit costs 0 s.
    """
    key = _features_key(config, options)
    cache = feature_cache if feature_cache is not None else {}
    if key in cache:
        return cache[key], 0.0
    t0 = time.perf_counter()
    extractor = feature_extractor(model)
    # float32 whatever the precision: the head's input, kept across runs.
    cache[key] = [extractor.predict(a, batch_size=256, verbose=0).astype("float32") for a in arrays]
    seconds = time.perf_counter() - t0
    log(f"features: {cache[key][0].shape[1]} per image, extracted in {seconds:.1f} s")
    return cache[key], seconds
