"""Named presets: each is switched on by one flag value and sits between an
experiment's `DEFAULTS` and the flags given (a flag given wins)."""

# `--paper`: He et al. 2015's CIFAR recipe in place of the original write-up's
# (resnet_vs_plain; with schedule paper it also stops at 64k iterations and
# warms ResNet-110 up, `configs.resnet_vs_plain.pair_config`).
PAPER = dict(shortcut="identity", normalization="per_pixel", schedule="paper", val_size=5000)

# `--schedule fast`: the CPU time-to-accuracy preset (docs/performance.md).
# All 50k images train: with a one-cycle schedule the last weights are the ones
# tested, so nothing is picked on validation (and never on the test split).
# Plain SGD one-cycle plateaued below 90 %, so the preset adds what the PyTorch
# time-to-accuracy yardstick (docs/performance.md) uses, label smoothing and
# Nesterov momentum, trains in bfloat16 (faster at equal accuracy, only on CPUs that
# compute bfloat16 natively, float32 elsewhere: distribute.precision_decision)
# for more epochs in the time, and reports flip and six-view TTA. 180 epochs is
# the first length whose run passed 90 % (with TTA); the measurements are in
# docs/performance.md, "Time to accuracy".
FAST = dict(
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

PRESETS = {"paper": PAPER, "fast": FAST}

# FAST is an SGD recipe: its learning rate and Nesterov momentum are SGD's. A run
# of another optimizer under it (--opt adam, or a run of question2's and
# question3's --all) keeps the rest of the preset, but not these unless given as
# flags: plain momentum, and the optimizer's own default learning rate (None).
SGD_ONLY = {"lr": None, "nesterov": False}


def for_optimizer(settings, opt, explicit):
    """`settings` (defaults, presets, flags resolved) for a run of `opt`; under
    `--schedule fast` a run of another optimizer than SGD takes `SGD_ONLY` for
    the keys no flag in `explicit` gave (whether the preset or the script's
    defaults set them)."""
    if settings.get("schedule") != "fast" or opt == "sgd":
        return settings
    return settings | {k: v for k, v in SGD_ONLY.items() if k in settings and k not in explicit}
