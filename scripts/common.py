"""The flags every script shares, the table of who takes which, the named
presets, and `run`: the entry every script goes through.

A setting's value is, from lowest to highest: the script's default (its
DEFAULTS dict, then the config dataclass's field default), a named preset
(PRESETS: `--schedule fast`, `--paper`), the flag as given. `run` makes the
first the flag's own default, so `python -m scripts.X --help` lists exactly
the flags X takes (USES, and those X defines itself) with X's real defaults.
Bad input of any kind is answered in one line on stderr, exit status 2.
"""

import dataclasses
import difflib
import math
import os
import signal
import sys
import threading

from resnet_keras import cpu, files  # import no TensorFlow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
cpu.default_onednn()  # oneDNN on AVX2 CPUs too; TensorFlow reads it once, at import


def _import_tensorflow_quietly():
    """TF 2.2x prints start-up notices from C++ (oneDNN, missing CUDA) that
    TF_CPP_MIN_LOG_LEVEL no longer silences; they would bury the one-line
    answers the scripts give. RESNET_KERAS_TF_LOGS=1 shows them."""
    with files.stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs once, here


_import_tensorflow_quietly()

from absl import app, flags  # noqa: E402

from resnet_keras.checks import check_bounds, check_choice  # noqa: E402
from resnet_keras.classification import models
from resnet_keras.data import cifar
from resnet_keras.run import distribute, optim

FLAGS = flags.FLAGS

# Named presets: each is switched on by one flag value and sits between the
# script's defaults and the flags given.
PRESETS = {
    # He et al. 2015's CIFAR recipe in place of the original write-up's
    # (resnet_vs_plain; with schedule paper it also stops at 64k iterations
    # and warms ResNet-110 up, see resnet_vs_plain.pair_config).
    "paper": dict(shortcut="identity", normalization="per_pixel", schedule="paper", val_size=5000),
    # The CPU time-to-accuracy recipe; its measurements are noted at optim.FAST_PRESET.
    "fast": optim.FAST_PRESET,
}
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
flags.DEFINE_enum(
    "schedule",
    None,
    optim.SCHEDULES,
    "Learning-rate schedule: constant; step (/10 at 50% and 75% of the epochs); paper (/10 "
    "at 32k and 48k iterations); onecycle; fast (one-cycle with the fast preset: "
    f"{as_flags(PRESETS['fast'])}, those the script takes, unless given).",
)
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
_running = {}  # the running script's key in USES and its DEFAULTS, set by `run`


def own_flags(defaults):
    """The flags a script defines itself and names in its DEFAULTS: `resolve`
    treats them as the shared ones."""
    return [k for k in defaults if k in FLAGS and k not in DEFINED_HERE]


def _prepare_flags(script, module, defaults, configs, help_text):
    """Makes the script's defaults the flags' own, so --help shows them and
    FLAGS[name].present alone tells a flag given from a default; and makes
    the flags --help lists (the main module's key flags, filed by absl under
    sys.argv[0]) exactly the shared ones it uses and those `module` defines."""
    fields = {}
    for config in reversed(configs):  # the first config named wins
        fields.update(
            (f.name, f.default)
            for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING
        )
    fields.pop("run_name", None)  # unset, each script names its runs after the experiment
    for name in USES[script] + own_flags(defaults):
        if name in defaults:
            FLAGS.set_default(name, defaults[name])
        elif name in fields:
            FLAGS.set_default(name, fields[name])
        if name in SHARED_HELP:
            FLAGS[name].help = help_text.get(name, SHARED_HELP[name])
    shown = [FLAGS[name] for name in USES[script]] + FLAGS.get_flags_for_module(module)
    FLAGS.key_flags_by_module_dict()[sys.argv[0]] = shown  # set, not added to: tests run many


def check_used(script):
    """Refuses any flag defined here that `script` does not use, naming the
    scripts that take it."""
    for name in DEFINED_HERE:
        if FLAGS[name].present and name not in USES[script]:
            takers = ", ".join(f"scripts.{s}" for s, used in USES.items() if name in used)
            raise ValueError(f"--{name} is not used by scripts.{script}; it is taken by {takers}")
    if FLAGS["replace"].present and not FLAGS.publish:
        raise ValueError("--replace names files --publish may replace; add --publish")


def explicit_flags():
    """The shared flags the user set on the command line."""
    return {name for name in SHARED if FLAGS[name].present}


def file_name(run_name, default):
    """The name a run's model and plot are published under: the run's own
    when --run_name was given, so a trial run never replaces the default
    run's files; else the experiment's `default`."""
    return run_name if FLAGS["run_name"].present else default


def resolve():
    """The run's settings: the script's defaults, the active presets over
    them, the flags given over both.

    Covers the flags defined here that the running script uses (USES, less
    the SWITCHES, which scripts read from FLAGS), the script's own flags that
    its DEFAULTS names, and the keys of its DEFAULTS that are no flag (the
    configs check them all, model formats included, before any data is read).
    """
    script, defaults = _running["script"], _running["defaults"]
    names = [n for n in USES[script] if n not in SWITCHES] + own_flags(defaults)
    out = dict(defaults)
    out.update((name, FLAGS[name].value) for name in names)
    for preset, (flag, value) in PRESET_FLAGS.items():
        if flag in USES[script] and FLAGS[flag].value == value:
            out.update(
                (k, v) for k, v in PRESETS[preset].items() if k in names and not FLAGS[k].present
            )
    if "formats" in out:
        out["formats"] = tuple(out["formats"])
    return out


def fail(message):
    """One line on stderr, exit status 2: the answer to every bad input."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _in_words(error):
    """An enum or bounds refusal from absl ("flag --n=0: 0 is not a positive
    integer") in the words of the library's own checks ("--n must be at least
    1; got 0"); None for any other error."""
    text, cause = str(error), error.__context__
    name = text[len("flag --") : text.find("=")] if text.startswith("flag --") else None
    if name not in FLAGS or cause is None or not text.endswith(f": {cause}"):
        return None
    raw, parser = text[len(f"flag --{name}=") : -len(f": {cause}")], FLAGS[name].parser
    try:
        if isinstance(parser, flags.EnumParser):
            check_choice(NOUNS.get(name, name), raw, parser.enum_values)
        elif hasattr(parser, "is_outside_bounds"):
            try:
                value = parser.convert(raw)
            except (TypeError, ValueError, OverflowError):
                return None  # not a number: absl's words say so
            check_bounds(name, value, parser.lower_bound, parser.upper_bound)
    except ValueError as e:
        return str(e)
    return None


def _parse(argv):
    """absl's flag parsing, with its errors answered in one line, exit 2, and
    a help request (--help, --helpshort, --helpfull) answered with status 0:
    absl's help flags print the help and exit with 1, as for an error."""
    try:
        return FLAGS(argv)
    except SystemExit as e:  # only the help flags exit while the flags are parsed
        sys.exit(0 if e.code == 1 else e.code)
    except flags.UnrecognizedFlagError as e:
        close = difflib.get_close_matches(e.flagname, list(FLAGS), n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        fail(f"unknown flag --{e.flagname}{hint}; see --helpshort")
    except flags.Error as e:
        fail(_in_words(e) or f"{str(e).splitlines()[0]}; see --helpshort")


def check_finite():
    """NaN or infinite numbers are refused before they could train."""
    for name in FLAGS:
        value = FLAGS[name].value
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name} must be a finite number; got {value}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a cluster's time limit), stopping a run as Ctrl-C does."""


def _on_sigterm(signum, frame):
    raise Terminated()


STOPPED = "stopped: run the same command again to resume from the last finished epoch"


def run(main, script, defaults, configs=(), help_text=None, positional=False, argv=None):
    """absl's app.run for one script, with bad input answered by one line
    instead of a traceback.

    Args:
        main: called with argv (argv[0] is the program).
        script: the script's key in USES (which shared flags it takes).
        defaults: the script's DEFAULTS. Each key that names a flag becomes
            that flag's default (shown by --help); the others pass through
            `resolve` as they are.
        configs: dataclasses whose field defaults are the defaults of the
            shared flags `defaults` leaves out (e.g. classification.config.TrainConfig).
        help_text: {flag: help} where the script's meaning of a shared flag
            differs from the shared help (e.g. question2's per-optimizer lr).
        positional: whether the script takes positional arguments (model files).
        argv: the command line, program first; None: sys.argv. Tests pass
            theirs and call this again in the same process.

    RESNET_KERAS_TRACEBACK=1 shows the traceback, for debugging the project.
    Ctrl-C and SIGTERM stop a script with one line saying how to resume, and
    exit status 130 and 143 (128 + the signal's number), as the shell reports them.
    """
    _running.update(script=script, defaults=defaults)
    _prepare_flags(script, main.__module__, defaults, configs, help_text or {})

    def wrapped(argv):
        if len(argv) > 1 and not positional:
            fail(f"unexpected arguments {' '.join(argv[1:])!r}; see --helpshort")
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
        try:
            check_used(script)
            check_finite()
            return main(argv)
        except (ValueError, OSError, FloatingPointError) as e:
            if os.environ.get("RESNET_KERAS_TRACEBACK"):
                raise
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except KeyboardInterrupt as e:
            print(STOPPED, file=sys.stderr)
            sys.exit(128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT))
        finally:
            if main_thread:  # Python lets only the main thread set handlers
                signal.signal(signal.SIGTERM, previous)

    app.run(wrapped, argv=argv, flags_parser=_parse)
