"""One classification run, start to finish: data, model, fit, test, files.

`run_classification` trains and tests one ResNet or plain network as a
`classification.config.TrainConfig` describes it, in the steps every run shares
(`run.lifecycle`); `train_study` does so for each run of a study, reusing the
finished ones. `fit_and_test` is also the fit and test of both phases of a
transfer run (`transfer.task`).

    python -m scripts.question1 --epochs 1 --train_limit 500 --data_dir path/to/cifar10
"""

import os

import numpy as np

from resnet_keras.classification import conversion, models, pretrained
from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.data import pipeline
from resnet_keras.run import (
    distribute,
    fit,
    folders,
    lifecycle,
    optim,
    plots,
    publish,
    saving,
    speedups,
    tables,
)


def build_model(config, num_classes, x_train, sync_bn=False):
    """The model the config names, normalised with the training images' statistics,
    with the run's speed-ups (`speedups`: fused BatchNorm unless `fused_bn` is off,
    then block recomputation if `recompute`). With `init` a `pretrained` name, the
    model starts from that network: its weights and the normalisation they were
    trained with (not this data's statistics)."""
    if config.normalization == "per_channel":
        mean, std = pipeline.channel_stats(x_train)
    else:
        mean, std = pipeline.pixel_mean(x_train), None
    kwargs = dict(
        num_classes=num_classes,
        input_shape=x_train.shape[1:],
        weight_decay=config.weight_decay,
        normalization=config.normalization,
        mean=mean,
        std=std,
        sync_bn=sync_bn,
    )
    if config.init != "random":
        model = _pretrained_start(config, num_classes, x_train.shape[1:], sync_bn)
    elif config.model == "plain":
        model = models.build_plainnet(config.n, **kwargs)
    else:
        model = models.build_resnet(config.n, shortcut=config.shortcut, **kwargs)
    if config.fused_bn:
        speedups.fuse_batch_norm(model)
    if config.recompute:
        speedups.recompute_blocks(model)
    return model


def _pretrained_start(config, num_classes, image_shape, sync_bn):
    """The `pretrained` network `config.init` names, rebuilt with the run's weight
    decay and BatchNorm kind, holding the shipped file's weights."""
    if num_classes != 10 or tuple(image_shape) != (32, 32, 3):
        raise ValueError(
            f"--init {config.init} classifies 32x32 RGB images into CIFAR-10's 10 classes; "
            f"the data has {num_classes} classes of {tuple(image_shape)} images"
        )
    model = conversion.build_reference_resnet(config.n, config.weight_decay, sync_bn)
    shipped = saving.load_model(pretrained.path(config.init), compile=False)
    model.set_weights(shipped.get_weights())
    return model


def compile_for_run(model, config, num_train, top5):
    """Compiles `model` with the config's optimizer and schedule; returns (lr, steps/epoch)."""
    steps_per_epoch = int(np.ceil(num_train / config.batch_size))
    lr = config.learning_rate
    schedule = optim.keras_schedule(
        config.schedule, lr, steps_per_epoch, config.epochs, config.warmup_steps
    )
    optim.compile_classifier(
        model,
        optim.make_optimizer(config.opt, schedule, config.nesterov),
        jit_compile=distribute.use_xla(config.jit_compile),
        top5=top5,
        label_smoothing=config.label_smoothing,
    )
    return lr, steps_per_epoch


def resolved_settings(ds, lr, steps_per_epoch):
    """What a classifier's flags.json records beyond its config: the learning
    rate in force (`compile_for_run`), steps per epoch and the classes."""
    return dict(
        lr=lr,
        steps_per_epoch=steps_per_epoch,
        num_classes=ds.num_classes,
        class_names=list(ds.class_names),
    )


def run_classification(config, log=print, retrain=False, model_name=None, title=None):
    """Trains and tests one classifier; returns (model, metrics, history).

    The test split is tested once, at the end, with the weights that did
    best on the validation split (the last weights when `val_size` is 0;
    such a run also scores the test split after each epoch for its curves,
    `fit.TestMonitor`, never to choose weights).
    Everything goes into the run folder (`publish.finish`): the model as
    `model_name` (default: the run's name) in each of `config.formats`, its
    curves as history.png (titled `title`), history.json, then metrics.json.
    A finished run made with the same settings is reused: model None, its
    metrics and history read back. `retrain`: replace a finished run of the
    same name once this one has finished (without it, a finished run with
    other settings is refused before any work).
    """
    config.validate()
    done = lifecycle.finished_run(config, retrain, log=log)
    if done is not None:
        return None, done[1], done[0]
    strategy, run_dir = lifecycle.setup_run(config, retrain)
    with publish.discarded_on_failure(config, run_dir):
        data = lifecycle.prepare_data(config)
        ds, (x, y), val, (xt, yt) = data
        with lifecycle.model_scope(config, strategy):
            model = build_model(
                config, ds.num_classes, x, sync_bn=strategy.num_replicas_in_sync > 1
            )
            lr, steps_per_epoch = compile_for_run(
                model, config, len(x), top5=classifier_metrics.reports_top5(ds.num_classes)
            )
        settings = resolved_settings(ds, lr, steps_per_epoch)
        lifecycle.start_run(config, strategy, data, run_dir, log, depth=config.depth, **settings)
        metrics, history = fit_and_test(model, config, (x, y), val, (xt, yt), run_dir, log=log)
        title = title or (
            f"{config.run_name}: {config.model}-{config.depth} ({config.opt}), "
            f"{metrics['epochs']} epochs"
        )
        name = model_name or config.run_name
        publish.finish(
            config,
            run_dir,
            metrics,
            history,
            model,
            name,
            title=title,
            log=log,
            loss_label=plots.classifier_loss_label(config.weight_decay, config.label_smoothing),
        )
    return model, metrics, history


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
        log: where progress lines go.

    Returns:
        `(metrics, history)`; `publish.finish` writes them, after every other output.
    """
    run_dir = run_dir or config.run_dir
    epochs = epochs or config.epochs
    augment = config.augment if augment is None else augment
    (x, y), (xt, yt) = train, test
    one_hot = model.output.shape[-1] if config.label_smoothing else 0
    train_ds = pipeline.train_dataset(x, y, config.batch_size, config.seed, augment, one_hot)
    val_ds = pipeline.eval_dataset(*val, batch_size=1000, one_hot=one_hot) if val else None
    # Without held-out images the curves would show training alone: the test
    # images are scored after each epoch for them (the weights tested are the
    # last epoch's either way, so nothing is chosen by the test set).
    watched = None if val else pipeline.eval_dataset(xt, yt, batch_size=1000, one_hot=one_hot)
    history, train_time = fit.fit_with_resume(
        model,
        train_ds,
        val_ds,
        run_dir,
        epochs,
        len(x),
        verbose=config.verbose,
        tensorboard=config.tensorboard,
        log=log,
        test_data=watched,
    )
    scores, test_metrics = classifier_metrics.test_classifier(
        model, xt, yt, config.tta, config.tta_shifts
    )
    path = os.path.join(run_dir, "test_predictions.npz")
    classifier_metrics.save_test_predictions(
        path, scores, xt if test_images is None else test_images
    )
    metrics = test_metrics | {
        "params": int(model.count_params()),
        "trainable_params": models.count_weights(model.trainable_weights),
        "epochs": len(history.get("loss", [])),
        "train_time_s": train_time,
        "img_per_s": float(np.mean(history["img_per_s"])) if "img_per_s" in history else None,
        "hardware": tables.hardware(),
    }
    if "val_accuracy" in history:
        metrics["best_val_accuracy"] = float(np.nanmax(history["val_accuracy"]))
        metrics["best_epoch"] = fit.best_epoch(history, "val_accuracy", "max")
    tta_note = "".join(
        f", {label} {metrics[f'test_accuracy_{name}']:.4f}"
        for name, label in classifier_metrics.TTA_LABELS.items()
        if f"test_accuracy_{name}" in metrics
    )
    log(
        f"test accuracy {metrics['test_accuracy']:.4f}{tta_note}, test loss "
        f"{metrics['test_loss']:.4f} ({metrics['epochs']} epochs, {metrics['train_time_s']:.0f} s)"
    )
    return metrics, history


def train_study(configs, model_names, retrain=False, log=print):
    """Trains each config's run unless runs/ holds its finished run; the model
    goes into the run folder as its `model_names` entry.

    Study scripts call this with every configuration, so an interrupted study
    picks up where it stopped and a finished one can be re-reported without
    retraining. A finished run made with other settings (say another
    --epochs) stops the study before any training; `retrain` replaces each
    run once its new one has finished.
    """
    for config, name, reuse in zip(configs, model_names, folders.claim_runs(configs, retrain)):
        if reuse:
            log(folders.reused_line(config.run_dir))
            continue
        log(f"{config.run_name}: training ({config.epochs} epochs)")
        run_classification(config, log=log, retrain=retrain, model_name=name)
