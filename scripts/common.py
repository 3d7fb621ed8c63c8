"""Flags shared by every training script, and the one-line error wrapper.

Each flag means the same in question1, question2, question3, resnet_vs_plain
and colorize. A flag left unset (None) takes the script's own default from its
DEFAULTS dict, the one visible place for an experiment's settings.
"""

import difflib
import math
import os
import sys

from resnet_keras import cpu  # imports no TensorFlow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
cpu.default_onednn()  # oneDNN on AVX2 CPUs too; TensorFlow reads it once, at import


def _import_tensorflow_quietly():
    """TF 2.2x prints start-up notices from C++ (oneDNN, missing CUDA) that
    TF_CPP_MIN_LOG_LEVEL no longer silences; they would bury the one-line
    answers the scripts give. RESNET_KERAS_TF_LOGS=1 shows them."""
    if os.environ.get("RESNET_KERAS_TF_LOGS"):
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs once, here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

from absl import app, flags  # noqa: E402

flags.DEFINE_string(
    "model",
    None,
    "Network: resnet or plain (classifiers); the colorize and "
    "benchmark scripts list their own choices.",
)
flags.DEFINE_integer(
    "image_size",
    None,
    "colorize: the side images are resized to (a multiple "
    "of 8); question3: the size the base sees (resized inside the model).",
)
flags.DEFINE_integer("n", None, "Blocks per stage: depth 6n+2 (3 -> ResNet-20).")
flags.DEFINE_string("dataset", None, "cifar10 or cifar100.")
flags.DEFINE_string("label_mode", None, "CIFAR-100 labels: fine (100) or coarse (20).")
flags.DEFINE_string(
    "data_dir",
    None,
    "Offline data: CIFAR python-format folder/tarball, or image "
    "folder with train/<class>/ and test/<class>/. Unset: keras.datasets download.",
)
flags.DEFINE_integer("epochs", None, "Training epochs.")
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_string("opt", None, "Optimizer: adam, rmsprop or sgd (momentum 0.9).")
flags.DEFINE_float("lr", None, "Base learning rate (unset: adam/rmsprop 1e-3, sgd 0.1).")
flags.DEFINE_string(
    "schedule",
    None,
    "Learning-rate schedule: constant, step (/10 at 50% and "
    "75% of epochs), paper (/10 at 32k and 48k iterations), onecycle, or "
    "fast (one-cycle plus the CPU time-to-accuracy preset).",
)
flags.DEFINE_float("weight_decay", None, "Paper-style L2 weight decay (gradient wd * w).")
flags.DEFINE_string("shortcut", None, "projection (1x1 conv) or identity (paper's option A).")
flags.DEFINE_string("normalization", None, "per_channel (mean/std) or per_pixel (mean image).")
flags.DEFINE_integer("seed", None, "Random seed (weights, split, shuffling, augmentation).")
flags.DEFINE_integer("train_limit", None, "Use a class-balanced subset of N training images.")
flags.DEFINE_integer("test_limit", None, "Use a class-balanced subset of N test images.")
flags.DEFINE_integer("val_size", None, "Validation images held out of the training split.")
flags.DEFINE_string("output_dir", None, "Where saved_models/, plots/, results/ and runs/ go.")
flags.DEFINE_string("run_name", None, "Folder name under runs/ (default: from the experiment).")
flags.DEFINE_integer(
    "verbose", None, "Keras fit verbosity: 0 silent, 1 progress bar, 2 one line/epoch."
)
flags.DEFINE_bool("tensorboard", None, "Also write TensorBoard logs under runs/<run_name>/.")
flags.DEFINE_bool(
    "jit_compile",
    None,
    "Compile the training step with XLA (off by default: "
    "2-3x slower on CPU here, docs/performance.md).",
)
flags.DEFINE_bool(
    "fused_bn",
    None,
    "Run BatchNorm through TensorFlow's fused kernel (default "
    "on: the same arithmetic, 1.2-1.4x faster training here).",
)
flags.DEFINE_bool(
    "recompute",
    None,
    "Keep only each residual block's input for the backward "
    "pass and compute the rest again: less memory, slower steps.",
)
flags.DEFINE_bool(
    "mixed_precision",
    None,
    "Mixed precision: float16 compute on a GPU, bfloat16 "
    "on a CPU with AVX512_BF16 or AMX-BF16 (float32 on other CPUs); float32 "
    "variables, softmax and losses. Default: on with a GPU.",
)
flags.DEFINE_float(
    "label_smoothing",
    None,
    "Label smoothing e: targets (1 - e) one-hot + e / "
    "classes (0: none; the fast schedule uses 0.1).",
)
flags.DEFINE_bool("nesterov", None, "Nesterov momentum for --opt sgd (the fast schedule's).")
flags.DEFINE_bool(
    "tta",
    None,
    "Also report test accuracy averaged over each test image and "
    "its mirror image (test_accuracy_tta); the saved model is unchanged.",
)
flags.DEFINE_bool(
    "tta_shifts",
    None,
    "Also report test accuracy over six views: each test image "
    "and its mirror, as they are and moved one pixel up-left and down-right "
    "(test_accuracy_tta_shifts).",
)
flags.DEFINE_bool("augment", None, "Random crop (4-pixel padding) + horizontal flip.")
flags.DEFINE_bool("skip_bad_images", None, "Skip unreadable images in an image folder.")
flags.DEFINE_string(
    "strategy",
    None,
    "tf.distribute strategy: auto, one_device, mirrored, "
    "multi_worker (TF_CONFIG) or tpu. --batch_size is the global batch.",
)
flags.DEFINE_bool("deterministic", None, "TensorFlow op determinism: same --seed, same weights.")
flags.DEFINE_list("formats", None, "Model formats to write: h5, keras, savedmodel.")
# Study scripts (question2, question3, resnet_vs_plain) share these.
flags.DEFINE_bool("all", False, "Run every configuration of the original study.")
flags.DEFINE_bool("retrain", False, "Train again even if runs/ holds a finished run.")
flags.DEFINE_bool("report_only", False, "Only redraw the table and figures from saved runs.")

FLAGS = flags.FLAGS
SHARED = [
    "n",
    "dataset",
    "label_mode",
    "data_dir",
    "epochs",
    "batch_size",
    "opt",
    "lr",
    "schedule",
    "weight_decay",
    "shortcut",
    "normalization",
    "seed",
    "train_limit",
    "test_limit",
    "val_size",
    "output_dir",
    "run_name",
    "verbose",
    "tensorboard",
    "jit_compile",
    "mixed_precision",
    "fused_bn",
    "augment",
    "skip_bad_images",
    "strategy",
    "deterministic",
    "formats",
    "label_smoothing",
    "nesterov",
    "tta",
    "tta_shifts",
    "recompute",
]
STUDY = ["all", "retrain", "report_only"]
# Which script takes which flag defined here: the one place that says it. A
# flag a script does not use is refused, naming the scripts that take it,
# rather than silently ignored (e.g. --model plain to question1, which always
# trains a ResNet; resnet_vs_plain takes --models instead).
USES = {
    "question1": SHARED + ["retrain"],
    "question2": SHARED + STUDY,
    "resnet_vs_plain": [f for f in SHARED if f not in ("n", "run_name")]
    + ["retrain", "report_only"],
    # The base network comes from --base: the CIFAR ResNet's settings do not apply.
    "question3": [
        f
        for f in SHARED
        if f not in ("n", "shortcut", "normalization", "weight_decay", "fused_bn", "recompute")
    ]
    + ["image_size"]
    + STUDY,
    "colorize": [
        "dataset",
        "label_mode",
        "data_dir",
        "epochs",
        "batch_size",
        "lr",
        "seed",
        "train_limit",
        "test_limit",
        "val_size",
        "output_dir",
        "run_name",
        "verbose",
        "tensorboard",
        "jit_compile",
        "mixed_precision",
        "strategy",
        "deterministic",
        "skip_bad_images",
        "formats",
        "model",
        "image_size",
        "retrain",
    ],
    "evaluate": [
        "dataset",
        "label_mode",
        "data_dir",
        "test_limit",
        "seed",
        "batch_size",
        "skip_bad_images",
        "tta",
        "tta_shifts",
    ],
    "benchmark": [
        "model",
        "n",
        "batch_size",
        "opt",
        "lr",
        "seed",
        "jit_compile",
        "mixed_precision",
        "fused_bn",
        "recompute",
        "data_dir",
        "dataset",
    ],
}
_script = [None]  # the running script's key in USES, set by `run`


def check_used(script):
    """Refuses any flag defined here that `script` does not use, naming the
    scripts that take it."""
    for name in SHARED + STUDY + ["model", "image_size"]:
        if FLAGS[name].present and name not in USES[script]:
            takers = ", ".join(f"scripts.{s}" for s, used in USES.items() if name in used)
            raise ValueError(f"--{name} is not used by scripts.{script}; it is taken by {takers}")


def explicit_flags():
    """The shared flags the user set on the command line."""
    return {name for name in SHARED if getattr(FLAGS, name) is not None}


def resolve(defaults, extra=()):
    """The script's defaults, overridden by every flag the user set.

    Resolves the flags defined here that the running script uses (USES, less
    the study switches, which scripts read from FLAGS) and the script's own
    flags named in `extra`.
    `--schedule fast` brings the CPU time-to-accuracy preset
    (training.FAST_PRESET) in between: above the defaults, below the flags.
    Model formats are checked here, before any data is read.
    """
    names = [n for n in USES[_script[0]] if n not in STUDY] + list(extra)
    out = dict(defaults)
    if FLAGS.schedule == "fast" and "schedule" in names:
        from resnet_keras.training import FAST_PRESET

        out.update({k: v for k, v in FAST_PRESET.items() if k in names})
    for name in names:
        value = getattr(FLAGS, name)
        if value is not None:
            out[name] = value
    if "formats" in out:
        from resnet_keras.saving import model_path

        for fmt in out["formats"]:
            model_path("check", fmt)  # refuses unknown formats
    return out


def fail(message):
    """One line on stderr, exit status 2: the answer to every bad input."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse(argv):
    """absl's flag parsing, with its errors answered in one line, exit 2."""
    try:
        return FLAGS(argv)
    except flags.UnrecognizedFlagError as e:
        close = difflib.get_close_matches(e.flagname, list(FLAGS), n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        fail(f"unknown flag --{e.flagname}{hint}; see --helpshort")
    except flags.Error as e:
        fail(f"{str(e).splitlines()[0]}; see --helpshort")


def check_finite():
    """NaN or infinite numbers are refused before they could train."""
    for name in FLAGS:
        value = FLAGS[name].value
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name} must be a finite number; got {value}")


def run(main, script, positional=False):
    """absl's app.run, with bad input answered by one line instead of a traceback.

    Args:
        main: called with argv (argv[0] is the program).
        script: the script's key in USES (which flags it takes).
        positional: whether the script takes positional arguments (model files).

    RESNET_KERAS_TRACEBACK=1 shows the traceback, for debugging the project.
    """
    _script[0] = script

    def wrapped(argv):
        if len(argv) > 1 and not positional:
            fail(f"unexpected arguments {' '.join(argv[1:])!r}; see --helpshort")
        try:
            check_used(script)
            check_finite()
            return main(argv)
        except (ValueError, OSError, FloatingPointError) as e:
            if os.environ.get("RESNET_KERAS_TRACEBACK"):
                raise
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except KeyboardInterrupt:
            print(
                "interrupted: run the same command again to resume from the last finished " "epoch",
                file=sys.stderr,
            )
            sys.exit(130)

    app.run(wrapped, flags_parser=_parse)
