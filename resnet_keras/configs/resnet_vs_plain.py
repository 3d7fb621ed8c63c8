"""He et al. 2015, section 4.2: ResNet against PlainNet on CIFAR-10 at several depths.

`python -m scripts.resnet_vs_plain` trains one run per network of `MODELS`,
depth of `DEPTHS` and seed of `SEEDS` (`--models`, `--depths`, `--seeds`
replace them; `pair_config`), each with `DEFAULTS`, the
original write-up's 100-epoch recipe (SGD momentum 0.9, lr 0.1 /10 at epochs
50 and 75, weight decay 1e-4, batch 128, crop + flip, per-channel
normalisation, projection shortcuts), over
`classification.config.TrainConfig`'s field defaults for the rest. `--paper`
puts `presets.PAPER` over them and, with schedule paper, stops at 64k
iterations and warms ResNet-110 up.
"""

import math

from resnet_keras.classification import models
from resnet_keras.classification.config import TrainConfig
from resnet_keras.classification.report import DEFAULT_VAL_SIZE, run_name
from resnet_keras.run import optim

DEFAULTS = dict(
    dataset="cifar10",
    opt="sgd",
    lr=None,  # unset: the optimizer's (optim.DEFAULT_LR; SGD 0.1, the recipe's)
    schedule="step",
    epochs=100,
    batch_size=128,
    weight_decay=1e-4,
    shortcut="projection",
    normalization="per_channel",
    val_size=DEFAULT_VAL_SIZE,
    output_dir=".",
    formats=["h5"],
)
# What trains unless --depths, --models and --seeds say otherwise: two depths,
# both networks, one seed.
DEPTHS = [20, 32]
MODELS = ["resnet", "plain"]
SEEDS = [0]


def pair_config(model, depth, settings, paper, seed=0, explicit=()):
    """The TrainConfig of one (model, depth) pair at one seed; `explicit`: the flags given."""
    n = models.depth_to_n(depth)
    name = run_name(model, depth, seed, settings.get("val_size", DEFAULT_VAL_SIZE))
    s = dict(settings, model=model, n=n, seed=seed, run_name=name)
    if paper and s.get("schedule") == "paper":
        if "epochs" not in explicit:
            # Stop at 64k iterations: e.g. 45k images at batch 128 -> 352 steps, 182 epochs.
            train_images = (s.get("train_limit") or 50_000) - s.get("val_size", 0)
            steps = math.ceil(train_images / s["batch_size"])
            s["epochs"] = math.ceil(optim.PAPER_STEPS / steps)
        if n == 18:  # ResNet-110: lr/10 until training error < 80% (~400 steps)
            s["warmup_steps"] = optim.PAPER_WARMUP_STEPS
    return TrainConfig(**s)
