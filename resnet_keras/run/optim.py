"""Optimizers, learning-rate schedules and compiling a classifier; the fit
itself is `fit.fit_with_resume`.

Schedules are pure functions of the step (`learning_rate`), and the optimizer
gets the same numbers as a built-in `PiecewiseConstantDecay`, so a saved
model needs no project code; tests check the two agree at every boundary.
"""

import math

import keras

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
# How reports and file names spell each optimizer (question2's resnet_n7_RMSprop).
DISPLAY_NAMES = {"rmsprop": "RMSprop", "adam": "Adam", "sgd": "SGD"}


def base_learning_rate(opt, lr=None, defaults=DEFAULT_LR):
    """`lr`, or where it is None the optimizer's default in `defaults`
    (`DEFAULT_LR`; the original's studies pass `KERAS_DEFAULT_LR`); None for an
    optimizer `defaults` lacks, which the config's check then refuses."""
    return defaults.get(opt) if lr is None else lr


def check_nesterov(opt, nesterov):
    """Nesterov momentum is SGD's; refused with any other optimizer."""
    if nesterov and opt != "sgd":
        raise ValueError(f"--nesterov is SGD's momentum; a run with {opt} cannot use it")


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
    check_nesterov(name, nesterov)
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
