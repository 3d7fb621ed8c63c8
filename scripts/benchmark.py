"""Training/evaluation/input-pipeline speed and peak memory of the project's own path.

    python -m scripts.benchmark --model resnet --n 3 --batch_size 128 --steps 60
    python -m scripts.benchmark --model colorizer|transfer|plain [--mixed_precision]

Builds the real model (`classification.task.build_model`; the colorization U-Net; the
question3 ResNet-50 transfer model), the real `tf.data` pipeline (augmenting
`pipeline.train_dataset`, or the colorization pairs) and the real `compile`/`fit` path,
on random uint8 images by default (`--data_dir` for real ones). The first
`--warmup` steps are not counted. The last line holds every figure as
key=value pairs, ending with what decides the speed on a CPU: the CPU's
relevant flags (`cpu=`, as `resnet_keras.cpu` sees them, so
RESNET_KERAS_CPU_FLAGS shows), TensorFlow's oneDNN switch and who set it
(`onednn=`), `onednn_max_isa=` when ONEDNN_MAX_CPU_ISA caps oneDNN's kernels,
and the precision policy used. Speed is measured here, never asserted in tests.
"""

import os
import resource
import time

import numpy as np

from scripts import common  # defines the shared flags  # noqa: I001

import keras
from absl import flags

from resnet_keras import cpu
from resnet_keras.checks import check_choice
from resnet_keras.classification import task
from resnet_keras.classification.config import MODELS, TrainConfig
from resnet_keras.colorization import data as color_data
from resnet_keras.colorization import models as colorization_models
from resnet_keras.data import cifar, pipeline
from resnet_keras.run import distribute, optim
from resnet_keras.transfer import models as transfer_models

flags.DEFINE_integer("steps", 60, "Training steps timed, warm-up included.", lower_bound=1)
flags.DEFINE_integer(
    "warmup",
    None,
    "Steps not counted (tracing, allocator warm-up); unset: 10, or half of --steps when "
    "--steps is below 20.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "eval_batch_size", 1000, "Batch size of the evaluation measurement.", lower_bound=1
)
flags.DEFINE_integer(
    "steps_per_execution",
    1,
    "Training steps per call into the compiled function (a lever measured here; the "
    "training scripts use 1).",
    lower_bound=1,
)
FLAGS = flags.FLAGS

DEFAULTS = dict(
    model="resnet",
    dataset="cifar10",
    n=3,
    batch_size=128,
    opt="sgd",
    lr=optim.base_learning_rate("sgd"),
    seed=0,
    jit_compile=False,
    mixed_precision=False,
    fused_bn=True,
    recompute=False,
)
BENCH_MODELS = ("resnet", "plain", "colorizer", "transfer")
HELP = {"model": f"What to measure: {', '.join(BENCH_MODELS)}."}


class StepTimer(keras.callbacks.Callback):
    """Times the steps from the first batch at or after `warmup` to the end.

    With steps_per_execution k, Keras calls back every k steps only, so the
    timed span starts at the first call at or past the warm-up (`first`)."""

    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.first, self.t0, self.t1 = warmup, None, None, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.t0 is None and batch >= self.warmup:
            self.first, self.t0 = batch, time.perf_counter()

    def on_train_end(self, logs=None):
        self.t1 = time.perf_counter()


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def images(settings, count):
    if settings.get("data_dir"):
        ds = cifar.load_dataset(settings["dataset"], settings["data_dir"])
        idx = np.resize(np.arange(len(ds.x_train)), count)
        return ds.x_train[idx], ds.y_train[idx], ds.num_classes
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    return x, rng.integers(0, 10, (count, 1)).astype("uint8"), 10


def setup(kind, config, x, y, num_classes, settings):
    """(training dataset, compiled model, evaluation inputs) of one model kind,
    each through the project's own builder and pipeline."""
    bs, seed = settings["batch_size"], settings["seed"]
    optimizer = optim.make_optimizer(settings["opt"], settings["lr"])
    if kind == "colorizer":
        # The U-Net on Lab, the colorization study's best model; the pipeline
        # converts uint8 RGB batches to (gray, ab) pairs.
        ds = color_data.pairs_dataset(x, "lab", bs, shuffle=True, seed=seed)
        model = colorization_models.build_colorizer("unet", (32, 32, 1), "lab")
        model.compile(
            optimizer=optimizer,
            loss="mse",
            jit_compile=settings["jit_compile"],
            steps_per_execution=FLAGS.steps_per_execution,
        )
        gray = color_data.pairs_dataset(x[:1000], "lab", 1000)
        return ds, model, next(iter(gray))[0].numpy()
    ds = pipeline.train_dataset(x, y, bs, seed=seed)
    if kind == "transfer":
        # Question 3's uncached path: the frozen ResNet-50 base runs every step
        # (random weights: the ImageNet ones cannot be downloaded here, and the
        # cost is the same).
        model = transfer_models.build_transfer_model(num_classes, weights=None)
    else:
        model = task.build_model(config, num_classes, x)
    optim.compile_classifier(
        model,
        optimizer,
        jit_compile=settings["jit_compile"],
        steps_per_execution=FLAGS.steps_per_execution,
    )
    return ds, model, x


def warmup_steps(steps, warmup=None):
    """The steps not timed: `warmup` as given, else 10 (tracing and the
    allocator settle within them), or half of a short `steps` such as 10, so
    the first short run a user tries times something."""
    return min(10, steps // 2) if warmup is None else warmup


def main(argv):
    s = common.resolve()
    check_choice("model", s["model"], BENCH_MODELS)
    warmup = warmup_steps(FLAGS.steps, FLAGS.warmup)
    if warmup >= FLAGS.steps:
        raise ValueError(f"--steps ({FLAGS.steps}) must exceed --warmup ({warmup})")
    if s["recompute"] and s["model"] not in MODELS:
        raise ValueError(f"--recompute is for the CIFAR networks (resnet, plain); got {s['model']}")
    keras.utils.set_random_seed(s["seed"])
    bs, steps = s["batch_size"], FLAGS.steps
    x, y, num_classes = images(s, bs * steps)
    kind = s["model"]
    config = TrainConfig(
        model=kind if kind in MODELS else "resnet",
        n=s["n"],
        batch_size=bs,
        opt=s["opt"],
        fused_bn=s["fused_bn"],
        recompute=s["recompute"],
    )
    config.validate()
    precision, reason = distribute.precision_decision(s["mixed_precision"])
    note = distribute.precision_note(s["mixed_precision"], precision, reason)
    if note:
        print(note)
    with distribute.dtype_policy(precision):
        ds, model, x_eval = setup(kind, config, x, y, num_classes, s)

    # Input pipeline alone: decode-free uint8 batches through the model's own
    # pipeline (augmentation, or the colour conversions), prefetch.
    it = iter(ds)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps - warmup):
        next(it)
    pipeline_rate = (steps - warmup) * bs / (time.perf_counter() - t0)

    timer = StepTimer(warmup)
    model.fit(ds, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
    if timer.t0 is None:
        raise ValueError(
            f"--steps ({steps}) leaves no step to time after --warmup "
            f"with --steps_per_execution {FLAGS.steps_per_execution}"
        )
    train = (steps - timer.first) * bs / (timer.t1 - timer.t0)
    rss_train = peak_rss_mb()

    eb = FLAGS.eval_batch_size
    xe = np.resize(x_eval, (max(eb * 4, eb),) + x_eval.shape[1:])
    model.predict(xe[:eb], batch_size=eb, verbose=0)  # warm-up
    t0 = time.perf_counter()
    model.predict(xe, batch_size=eb, verbose=0)
    evaluation = len(xe) / (time.perf_counter() - t0)

    print(
        f"model={kind} n={s['n']} params={model.count_params()} batch={bs} "
        f"steps={steps} warmup={warmup} jit={s['jit_compile']} precision={precision} "
        f"fused_bn={s['fused_bn']} recompute={s['recompute']} "
        f"steps_per_execution={FLAGS.steps_per_execution}"
    )
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    print(
        f"train_img_per_s={train:.1f} eval_img_per_s={evaluation:.1f} "
        f"pipeline_img_per_s={pipeline_rate:.1f} peak_rss_mb={rss_train:.0f} "
        f"cpu={cpu.reported_flags(cpu.cpu_flags())} onednn={cpu.onednn_state()}"
        + (f" onednn_max_isa={isa}" if isa else "")
        + f" precision={precision}"
    )


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "benchmark", DEFAULTS, help_text=HELP, argv=argv)


if __name__ == "__main__":
    cli()
