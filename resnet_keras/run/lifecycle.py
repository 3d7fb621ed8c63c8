"""The steps every run takes around its training, whatever it trains.

A run's settings are a config: `run.config.RunConfig` holds what every
experiment's config holds (the data, the run's length, where its outputs go),
each family's config adds its own (`classification.config.TrainConfig`, ...).
Every run, whatever it trains (`classification.task.run_classification`,
`transfer.task.run_transfer`, `colorization.task.train`), takes the
same steps:

    done = finished_run(config)                   # a finished run of these settings: reused
    strategy, run_dir = setup_run(config)         # strategy, run folder claimed, seed
    with publish.discarded_on_failure(config, run_dir):
        data = prepare_data(config)               # (dataset, train, val, test)
        with model_scope(config, strategy): ...   # build and compile
        start_run(config, strategy, data, run_dir)  # logs and writes flags.json
        fit.fit_with_resume(...)                  # resumable fit, best weights
        ...                                       # test
        publish.finish(config, run_dir, ...)      # every output, metrics.json last

and writes everything into `runs/<run_name>/` under the output folder:
  flags.json    the resolved configuration, and the run record of each process
                that trained it (`provenance`: command line, commit, versions, CPU)
  log.csv       Keras' CSVLogger, one row per finished epoch (survives resumes)
  best.weights.h5, backup/   best-on-validation weights, resume state (goes at the end)
  <model>.h5 ...  the model in each of --formats, figures, history.json (`publish.finish`)
  metrics.json  test metrics, training and wall time, the list of outputs;
                written last: the run is finished
The shared saved_models/, plots/ and results/ change only through `publish.publish`.
"""

import contextlib
import dataclasses
import os

import keras
import tensorflow as tf

from resnet_keras import files
from resnet_keras.data import cifar, pipeline
from resnet_keras.run import distribute, fit, folders, provenance


def setup_run(config, retrain=False, extra=None):
    """The first steps of every training run; returns (strategy, folder to write in).

    The strategy comes first, before any TensorFlow op: a multi-worker
    strategy must configure the collective ops at program start-up. The run
    folder is then claimed (`folders.claim`: locked, and never one holding a
    finished run or another run's resume state) before any data is read.
    With `retrain` the run writes to a staging folder that `publish.finish` puts
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
    # --retrain swap cut off between its renames from `folders.claim`'s repair.
    files.check_writable(os.path.dirname(run_dir))
    if distribute.is_chief():
        settings, defaults = folders.settings_and_defaults(config, extra)
        no_effect = folders.no_effect_of(config, extra)
        run_dir, _ = folders.claim(run_dir, settings, defaults, retrain, no_effect=no_effect)
        os.makedirs(run_dir, exist_ok=True)
    else:
        run_dir = os.path.join(run_dir, fit.WORKER_DIR.format(distribute.task()[1]))
        files.check_writable(run_dir)
        folders.lock(run_dir, inside=True)
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
    ds = cifar.load_dataset(
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
    resolved["invocations"] = provenance.add_invocation(folders.read_flags(run_dir))
    files.write_json(os.path.join(run_dir, "flags.json"), resolved)
    return resolved


def finished_run(config, retrain=False, extra=None, log=print):
    """Reuses `config`'s finished run if it was made with the same settings
    (`extra`: a dataclass of further ones): says so to `log`
    (`folders.reused_line`) and returns `folders.load_run`'s (history,
    metrics, flags, predictions). None when there is no finished run, or with
    `retrain`; a finished run with other settings is refused (`folders.RunConflict`)."""
    files.check_writable(os.path.dirname(config.run_dir))  # the runs/ folder, before its lock
    if not folders.claim_runs([config], retrain, extra)[0]:
        return None
    log(folders.reused_line(config.run_dir))
    return folders.load_run(config.run_dir)
