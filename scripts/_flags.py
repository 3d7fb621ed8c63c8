"""The flags every script shares, and which script takes which (USES).

Each flag's default here is None: `common.run` sets the running script's
own (its `configs` module's DEFAULTS, then the config dataclass's field
default), so `python -m scripts.X --help` lists exactly the flags X takes
(USES, and those X defines itself) with X's real defaults.
"""

from scripts import _env  # noqa: F401, I001 (TensorFlow's environment, first)

from absl import flags

from resnet_keras.classification import models
from resnet_keras.configs.presets import PRESETS
from resnet_keras.data import cifar
from resnet_keras.run import distribute, optim

FLAGS = flags.FLAGS

# Which flag value switches each named preset (`configs.presets.PRESETS`) on.
PRESET_FLAGS = {"paper": ("paper", True), "fast": ("schedule", "fast")}


def as_flags(settings):
    """{"opt": "sgd", "nesterov": True} -> "--opt=sgd --nesterov", for help texts."""
    return " ".join(
        (f"--{k}" if v else f"--no{k}") if isinstance(v, bool) else f"--{k}={v}"
        for k, v in settings.items()
    )


def per_optimizer(table):
    """{"adam": 1e-3, "sgd": 0.01} -> "adam 0.001, sgd 0.01", for help texts."""
    return ", ".join(f"{opt} {value}" for opt, value in sorted(table.items()))


# The shared flags. Their defaults are set per script by `run`; help texts
# that differ per script are given there (e.g. question2's per-optimizer lr).
flags.DEFINE_string("model", None, "Network (--help of the script lists its choices).")
flags.DEFINE_integer("image_size", None, "Side in pixels the images are used at.")
flags.DEFINE_integer("n", None, "Blocks per stage: depth 6n+2 (3 -> ResNet-20).", lower_bound=1)
flags.DEFINE_enum("dataset", None, cifar.DATASETS, "Data set.")
flags.DEFINE_enum("label_mode", None, cifar.LABEL_MODES, "CIFAR-100 labels: 100 fine or 20 coarse.")
flags.DEFINE_string(
    "data_dir",
    None,
    "Offline data: CIFAR python-format folder/tarball, or image folder with "
    "train/<class>/ and test/<class>/. Unset: keras.datasets download.",
)
flags.DEFINE_integer("epochs", None, "Training epochs.", lower_bound=1)
flags.DEFINE_integer("batch_size", None, "Global batch size.", lower_bound=1)
flags.DEFINE_enum("opt", None, optim.OPTIMIZERS, "Optimizer (sgd: momentum 0.9).")
flags.DEFINE_float(
    "lr",
    None,
    "Base learning rate; where no default is shown, the optimizer's "
    f"({per_optimizer(optim.DEFAULT_LR)}).",
)


def schedule_help(kept=()):
    """--schedule's help; `kept`: the preset's keys a script keeps its own value
    of (question2's per-optimizer lr and batch size), left out of the list."""
    fast = {k: v for k, v in PRESETS["fast"].items() if k not in kept}
    sgd_only = (
        "Nesterov momentum is SGD's"
        if "lr" in kept
        else "lr and Nesterov momentum are SGD's: another optimizer keeps its default lr"
    )
    return (
        "Learning-rate schedule: constant; step (/10 at 50% and 75% of the epochs); paper (/10 "
        "at 32k and 48k iterations); onecycle; fast (one-cycle with the fast preset: "
        f"{as_flags(fast)}, those the script takes, unless given; {sgd_only})."
    )


flags.DEFINE_enum("schedule", None, optim.SCHEDULES, schedule_help())
flags.DEFINE_float(
    "weight_decay", None, "Paper-style L2 weight decay (gradient wd * w).", lower_bound=0
)
flags.DEFINE_enum(
    "shortcut", None, models.SHORTCUTS, "projection (1x1 conv) or identity (paper's option A)."
)
flags.DEFINE_enum(
    "normalization", None, models.NORMALIZATIONS, "Per-channel mean/std, or the mean image."
)
flags.DEFINE_integer(
    "seed",
    None,
    "Random seed (weights, split, shuffling, augmentation).",
    lower_bound=0,
    upper_bound=2**32 - 1,  # NumPy's and Keras' seeds are 32-bit
)
flags.DEFINE_integer(
    "train_limit", None, "Train on a class-balanced subset of N images (0: all).", lower_bound=0
)
flags.DEFINE_integer(
    "test_limit", None, "Test on a class-balanced subset of N images (0: all).", lower_bound=0
)
flags.DEFINE_integer(
    "val_size", None, "Validation images held out of the training split.", lower_bound=0
)
flags.DEFINE_string("output_dir", None, "Where saved_models/, plots/, results/ and runs/ go.")
flags.DEFINE_string("run_name", None, "Folder name under runs/. Unset: from the experiment.")
flags.DEFINE_integer(
    "verbose", None, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line/epoch."
)
flags.DEFINE_bool("tensorboard", None, "Also write TensorBoard logs under runs/<run_name>/.")
flags.DEFINE_bool(
    "jit_compile",
    None,
    "Compile the training step with XLA; where no default is shown, on with a GPU (slower "
    "on a CPU: docs/performance.md).",
)
flags.DEFINE_bool(
    "fused_bn",
    None,
    "Run BatchNorm through TensorFlow's fused kernel (the same arithmetic, faster "
    "training: docs/performance.md).",
)
flags.DEFINE_bool(
    "recompute",
    None,
    "Keep only each residual block's input for the backward pass and compute the rest "
    "again: less memory, slower steps.",
)
flags.DEFINE_bool(
    "mixed_precision",
    None,
    "Mixed precision: float16 compute on a GPU, bfloat16 on a CPU with AVX512_BF16 or "
    "AMX-BF16 (float32 on other CPUs); float32 variables, softmax and losses. Where no "
    "default is shown, on with a GPU.",
)
flags.DEFINE_float(
    "label_smoothing",
    None,
    "Label smoothing e, below 1: targets (1 - e) one-hot + e / classes.",
    lower_bound=0,
)
flags.DEFINE_bool("nesterov", None, "Nesterov momentum for --opt sgd.")
flags.DEFINE_bool(
    "tta",
    None,
    "Also report test accuracy averaged over each test image and its mirror image "
    "(test_accuracy_tta); the saved model is unchanged.",
)
flags.DEFINE_bool(
    "tta_shifts",
    None,
    "Also report test accuracy over six views: each test image and its mirror, as they "
    "are and moved one pixel up-left and down-right (test_accuracy_tta_shifts).",
)
flags.DEFINE_bool("augment", None, "Random crop (4-pixel padding) + horizontal flip.")
flags.DEFINE_bool("skip_bad_images", None, "Skip unreadable images in an image folder.")
flags.DEFINE_enum(
    "strategy",
    None,
    distribute.STRATEGIES,
    "tf.distribute strategy (multi_worker reads TF_CONFIG); --batch_size is the global batch.",
)
flags.DEFINE_bool("deterministic", None, "TensorFlow op determinism: same --seed, same weights.")
flags.DEFINE_list("formats", None, "Model formats to write: h5, keras, savedmodel.")
flags.DEFINE_string("out", None, "Where the script writes (its --help says what).")
# Study scripts (question2, question3, resnet_vs_plain) share these.
flags.DEFINE_bool("all", False, "Run every configuration of the original study.")
flags.DEFINE_bool("retrain", False, "Train again even if runs/ holds a finished run.")
flags.DEFINE_bool("report_only", False, "Only redraw the table and figures from saved runs.")
# Runs write into runs/ only; the shared folders change only on request.
flags.DEFINE_bool(
    "publish",
    False,
    "Copy the finished run's model and figures (a study's report and table) into "
    "saved_models/, plots/, results/ under --output_dir, recorded in published.json.",
)
flags.DEFINE_list(
    "replace",
    [],
    "Files --publish may replace although the repository ships them or another run "
    "published them, e.g. saved_models/resnet_cifar10.h5.",
)
flags.DEFINE_bool(
    "paper",
    False,
    f"The paper's recipe instead of the original write-up's: {as_flags(PRESETS['paper'])}, "
    f"unless given; with --schedule paper, --epochs (unless given) to stop at "
    f"{optim.PAPER_STEPS} iterations and ResNet-110 at lr/10 for the first "
    f"{optim.PAPER_WARMUP_STEPS}.",
)

DEFINED_HERE = [f.name for f in FLAGS.get_flags_for_module(__name__)]
SHARED_HELP = {name: FLAGS[name].help for name in DEFINED_HERE}
SHARED = (
    "n dataset label_mode data_dir epochs batch_size opt lr schedule weight_decay shortcut "
    "normalization seed train_limit test_limit val_size output_dir run_name verbose "
    "tensorboard jit_compile mixed_precision fused_bn augment skip_bad_images strategy "
    "deterministic formats label_smoothing nesterov tta tta_shifts recompute"
).split()
STUDY = ["all", "retrain", "report_only"]
PUBLISH = ["publish", "replace"]
# Flags that steer a script rather than set a run's configuration: scripts
# read them from FLAGS; `resolve` leaves them out.
SWITCHES = STUDY + PUBLISH + ["paper"]
# Which script takes which flag defined here: the one place that says it. A
# flag a script does not use is refused, naming the scripts that take it,
# rather than silently ignored (e.g. --model plain to question1, which always
# trains a ResNet; resnet_vs_plain takes --models instead).
USES = {
    "question1": SHARED + ["retrain"] + PUBLISH,
    "question2": SHARED + STUDY + PUBLISH,
    # resnet_vs_plain names its runs itself (model, depth, seed) and takes --seeds.
    "resnet_vs_plain": [f for f in SHARED if f not in ("n", "run_name", "seed")]
    + ["retrain", "report_only", "paper"]
    + PUBLISH,
    # The base network comes from --base: the CIFAR ResNet's settings do not apply.
    "question3": [
        f
        for f in SHARED
        if f not in ("n", "shortcut", "normalization", "weight_decay", "fused_bn", "recompute")
    ]
    + ["image_size"]
    + STUDY
    + PUBLISH,
    "colorize": (
        "dataset label_mode data_dir epochs batch_size lr seed train_limit test_limit "
        "val_size output_dir run_name verbose tensorboard jit_compile mixed_precision "
        "strategy deterministic skip_bad_images formats model image_size retrain out publish "
        "replace"
    ).split(),
    "export": ["out"],
    "evaluate": (
        "dataset label_mode data_dir test_limit seed batch_size skip_bad_images tta tta_shifts"
    ).split(),
    "convert": ["output_dir"],
    "benchmark": (
        "model n batch_size opt lr seed jit_compile mixed_precision fused_bn recompute "
        "data_dir dataset"
    ).split(),
}
# How the library's own checks name a flag's values ("Unknown optimizer 'x'").
NOUNS = {"opt": "optimizer", "color_space": "color space", "to": "target"}
