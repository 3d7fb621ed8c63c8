"""What every run shares: its configuration and the steps around its training.

`RunConfig` holds what every experiment's config holds (the data, the run's
length, where its outputs go); `TrainConfig` adds a classifier's settings.
Every run, whatever it trains (`classification.run_classification`,
`transfer_experiment.run_transfer`, `colorization_tasks.train`), takes the
same steps:

    done = finished_run(config)                   # a finished run of these settings: reused
    strategy, run_dir = setup_run(config)         # strategy, run folder claimed, seed
    with outputs.discarded_on_failure(config, run_dir):
        data = prepare_data(config)               # (dataset, train, val, test)
        with model_scope(config, strategy): ...   # build and compile
        start_run(config, strategy, data, run_dir)  # logs and writes flags.json
        fitting.fit_with_resume(...)             # resumable fit, best weights
        ...                                       # test
        outputs.finish(config, run_dir, ...)      # every output, metrics.json last

and writes everything into `runs/<run_name>/` under the output folder:
  flags.json    the resolved configuration, and the run record of each process
                that trained it (`provenance`: command line, commit, versions, CPU)
  log.csv       Keras' CSVLogger, one row per finished epoch (survives resumes)
  best.weights.h5, backup/   best-on-validation weights, resume state (goes at the end)
  <model>.h5 ...  the model in each of --formats, figures, history.json (`outputs.finish`)
  metrics.json  test metrics, training and wall time, the list of outputs;
                written last: the run is finished
The shared saved_models/, plots/ and results/ change only through `outputs.publish`.
"""

import contextlib
import dataclasses
import os

import keras
import tensorflow as tf

from resnet_keras import data as data_lib
from resnet_keras import distribute, files, models, pipeline, presets, provenance, runs, saving
from resnet_keras import training
from resnet_keras.checks import check_bounds, check_choice, check_minimums

MODELS = ("resnet", "plain")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What every experiment's config holds: the data (the fields
    `prepare_data` reads), the run's length and where its outputs go."""

    dataset: str = "cifar10"
    data_dir: str | None = None
    label_mode: str = "fine"
    skip_bad_images: bool = False
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0
    val_size: int = 5000
    epochs: int = 20
    batch_size: int = 128
    output_dir: str = "."
    verbose: int = 1
    tensorboard: bool = False
    # None: on where a GPU is present, off on the CPU, where XLA is slower and
    # float32 is what the published numbers were made with (docs/performance.md,
    # docs/results.md; distribute.use_xla and precision_policy).
    jit_compile: bool | None = None
    mixed_precision: bool | None = None
    strategy: str = "auto"
    deterministic: bool = False
    formats: tuple = ("h5",)  # the model files the run writes (saving.FORMATS)

    def validate(self):
        """Refuses bad values before any data is read or any file written."""
        check_choice("dataset", self.dataset, data_lib.DATASETS)
        check_choice("strategy", self.strategy, distribute.STRATEGIES)
        check_choice("label_mode", self.label_mode, data_lib.LABEL_MODES)
        check_minimums(
            self,
            [
                ("epochs", 1),
                ("batch_size", 1),
                ("train_limit", 0),
                ("test_limit", 0),
                ("val_size", 0),
                ("seed", 0),
            ],
        )
        check_bounds("seed", self.seed, upper=2**32 - 1)  # NumPy's and Keras' seeds are 32-bit
        if not self.formats:
            raise ValueError(
                f"--formats is empty: name at least one of {', '.join(saving.FORMATS)}"
            )
        for fmt in self.formats:
            check_choice("format", fmt, saving.FORMATS)
        if self.data_dir is not None and not os.path.exists(self.data_dir):
            raise ValueError(
                f"--data_dir {self.data_dir}: no such file or folder; give a CIFAR download "
                "or an image folder (docs/data.md)"
            )
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ValueError(
                    "--tensorboard needs the tensorboard package " "(pip install tensorboard)"
                ) from None


@dataclasses.dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Everything a classification run depends on; scripts fill it from flags."""

    model: str = "resnet"
    n: int = 3
    opt: str = "adam"
    lr: float | None = None  # None: the optimizer's default (training.DEFAULT_LR)
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = models.PAPER_WEIGHT_DECAY
    shortcut: str = "projection"
    normalization: str = "per_channel"
    fused_bn: bool = True  # TensorFlow's fused BatchNorm kernel (speedups.fuse_batch_norm)
    recompute: bool = False  # less memory, slower steps (speedups.recompute_blocks)
    augment: bool = True
    label_smoothing: float = 0.0  # > 0: one-hot targets (1 - e) + e / classes
    nesterov: bool = False  # SGD only
    # Also test on the mirrored test images, averaging the two softmaxes
    # (metrics test_accuracy_tta); test_accuracy stays the saved model's own.
    tta: bool = False
    # Six views: that pair plus the pair moved one pixel up-left and one
    # down-right (metrics test_accuracy_tta_shifts; predict_with_shifts).
    tta_shifts: bool = False
    # "random" (he_normal), or a `presets` name: start from that trained
    # network (its weights and its input normalisation), e.g. to fine-tune it.
    init: str = "random"
    run_name: str = "run"

    def validate(self):
        super().validate()
        check_choice("model", self.model, MODELS)
        check_choice("optimizer", self.opt, training.OPTIMIZERS)
        check_choice("schedule", self.schedule, training.SCHEDULES)
        check_choice("shortcut", self.shortcut, models.SHORTCUTS)
        check_choice("normalization", self.normalization, models.NORMALIZATIONS)
        check_minimums(self, [("n", 1), ("weight_decay", 0), ("label_smoothing", 0)])
        if self.n > models.MAX_N:
            raise ValueError(
                f"--n must be at most {models.MAX_N} (ResNet-{6 * models.MAX_N + 2}): "
                "Keras cannot build or load deeper networks at Python's default "
                f"recursion limit; got {self.n}"
            )
        if self.label_smoothing >= 1:
            raise ValueError(f"--label_smoothing must be below 1; got {self.label_smoothing}")
        if self.recompute and not self.fused_bn:
            raise ValueError(
                "--recompute needs --fused_bn (its BatchNorm skips the second "
                "moving-average update)"
            )
        if self.nesterov and self.opt != "sgd":
            raise ValueError(f"--nesterov is SGD's momentum; --opt is {self.opt}")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--lr must be positive; got {self.lr}")
        runs.check_name(self.run_name)
        self._check_init()

    def _check_init(self):
        check_choice("init", self.init, ("random",) + tuple(presets.PRESETS))
        if self.init == "random":
            return
        n = presets.PRESETS[self.init].n
        # The normalisation too: the network brings the one it was trained with.
        wanted = dict(
            model="resnet", n=n, shortcut="identity", dataset="cifar10", normalization="per_channel"
        )
        got = {k: getattr(self, k) for k in wanted}
        if got != wanted:
            expected = ", ".join(f"--{k} {v}" for k, v in wanted.items())
            raise ValueError(
                f"--init {self.init} is ResNet-{6 * n + 2} with option-A shortcuts on CIFAR-10: "
                f"it needs {expected}; got " + ", ".join(f"--{k} {v}" for k, v in got.items())
            )

    @property
    def depth(self):
        return 6 * self.n + 2

    @property
    def run_dir(self):
        return os.path.join(self.output_dir, "runs", self.run_name)


def setup_run(config, retrain=False, extra=None):
    """The first steps of every training run; returns (strategy, folder to write in).

    The strategy comes first, before any TensorFlow op: a multi-worker
    strategy must configure the collective ops at program start-up. The run
    folder is then claimed (`runs.claim`: locked, and never one holding a
    finished run or another run's resume state) before any data is read.
    With `retrain` the run writes to a staging folder that `outputs.finish` puts
    in place. Workers other than the chief keep their resume state in a
    folder of their own and write nothing under the final names.

    Args:
        config: the run's config.
        retrain: replace a finished run once this one has finished.
        extra: a dataclass of further settings the run depends on (question3's options).
    """
    strategy = distribute.make_strategy(config.strategy)
    run_dir = config.run_dir
    # The runs/ folder, not the run's: creating runs/<name> here would hide a
    # --retrain swap cut off between its renames from `runs.claim`'s repair.
    files.check_writable(os.path.dirname(run_dir))
    if distribute.is_chief():
        settings, defaults = runs.settings_and_defaults(config, extra)
        run_dir, _ = runs.claim(run_dir, settings, defaults, retrain)
        os.makedirs(run_dir, exist_ok=True)
    else:
        run_dir = os.path.join(run_dir, f"worker{distribute.task()[1]}")
        files.check_writable(run_dir)
        runs.lock(run_dir, inside=True)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    return strategy, run_dir


def prepare_data(config, image_size=32, classifier=True):
    """Loads, limits and splits the data as the config says.

    `image_size` is the side an image folder's pictures are resized to; CIFAR
    arrays come at 32 whatever it says. A `classifier` needs two classes or
    more, checked first (a colorizer trains on one).
    """
    ds = data_lib.load_dataset(
        config.dataset,
        config.data_dir,
        config.label_mode,
        image_size=image_size,
        skip_bad_images=config.skip_bad_images,
    )
    if classifier:
        ds.check_classifiable()
    x, y = ds.x_train, ds.y_train
    xt, yt = ds.x_test, ds.y_test
    if config.train_limit:
        if config.train_limit > len(x):
            raise ValueError(
                f"--train_limit {config.train_limit} is larger than the training split ({len(x)})"
            )
        x, y = pipeline.limit(x, y, config.train_limit, config.seed)
    if config.test_limit:
        if config.test_limit > len(xt):
            raise ValueError(
                f"--test_limit {config.test_limit} is larger than the test split ({len(xt)})"
            )
        xt, yt = pipeline.limit(xt, yt, config.test_limit, config.seed)
    val_size = config.val_size
    if config.train_limit and val_size >= len(x):
        raise ValueError(f"--val_size {val_size} leaves no training images out of {len(x)}")
    (x, y), val = pipeline.split_validation(x, y, val_size, config.seed)
    return ds, (x, y), val, (xt, yt)


@contextlib.contextmanager
def model_scope(config, strategy):
    """Build and compile inside: variables placed by the strategy, layers
    computing in the run's precision (float32 variables and outputs)."""
    with strategy.scope(), distribute.dtype_policy(
        distribute.precision_policy(config.mixed_precision)
    ):
        yield


def start_run(config, strategy, data, run_dir, log=print, **extra):
    """Logs the data and the resolved configuration, and saves the latter as
    <run_dir>/flags.json; returns it.

    Args:
        config: the run's config.
        strategy: its `tf.distribute` strategy (flags.json records the replicas).
        data: `(dataset, train, val, test)` as `prepare_data` returns them.
        run_dir: the folder `setup_run` returned.
        log: where the lines go.
        **extra: values resolved at run time (learning rate, steps per epoch, ...).
    """
    ds, (x, _), val, (xt, _) = data
    extra["replicas"] = strategy.num_replicas_in_sync
    for note in ds.notes:
        log(f"data: {note}")
    log(
        f"data: {ds.source}: {len(x)} train, {len(val[0]) if val else 0} validation, "
        f"{len(xt)} test images of {x.shape[1]}x{x.shape[2]}, {ds.num_classes} classes"
    )
    precision, reason = distribute.precision_decision(config.mixed_precision)
    note = distribute.precision_note(config.mixed_precision, precision, reason)
    if note:
        log(note)
    resolved = (
        dataclasses.asdict(config)
        | extra
        | {
            "precision": precision,
            "precision_reason": reason,
            "train_images": len(x),
            "val_images": len(val[0]) if val else 0,
            "test_images": len(xt),
            "data_source": ds.source,
        }
    )
    # The whole configuration (some 1,300 characters) is flags.json's to hold;
    # the log only says where it is.
    log(f"config: {os.path.join(run_dir, 'flags.json')}")
    # The run record: who ran what, with which code, on what (every resume adds one).
    resolved["invocations"] = provenance.add_invocation(runs.read_flags(run_dir))
    files.write_json(os.path.join(run_dir, "flags.json"), resolved)
    return resolved


def finished_run(config, retrain=False, extra=None):
    """The files of `config`'s finished run if it was made with the same
    settings (`runs.load_run`: history, metrics, flags, predictions), which
    is then reused instead of trained again; None otherwise (or with `retrain`)."""
    files.check_writable(os.path.dirname(config.run_dir))  # the runs/ folder, before its lock
    if not runs.claim_runs([config], retrain, extra)[0]:
        return None
    return runs.load_run(config.run_dir)
