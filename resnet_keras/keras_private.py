"""Every use of a private Keras API (or of Keras' internal behaviour) in the package.

The tested versions are TensorFlow 2.21 and Keras 3.15 (2.21.0 and 3.15.1),
which setup.cfg pins (`tensorflow==2.21.*`, `keras==3.15.*`). Each function
below names the Keras version it was written for and the Keras issue (or
missing public API) it works around; a Keras upgrade starts by re-reading
this module. tests/keras_private_test.py checks each function still does what
it says (the multi-worker patch: robustness_test's two-process run).

Not here because it is no Keras API: scripts/common.py silences file
descriptor 2 while TensorFlow is imported, since TensorFlow's C++ start-up
notices ignore TF_CPP_MIN_LOG_LEVEL (see `_import_tensorflow_quietly` there).
"""

import contextlib
import logging
import pickle

import tensorflow as tf
from absl import logging as absl_logging


def all_layers(model):
    """Every layer inside `model`, nested models' and layers' included, the
    model itself excluded.

    Keras 3.15: `Model.layers` lists the top level only and Keras has no public
    recursive walk (asked for in keras-team/keras#4398, closed unresolved), so
    this uses the private `_flatten_layers`.
    """
    return list(model._flatten_layers(include_self=False))


def unpickle_restricted(file, encoding="bytes"):
    """Loads one pickle from the open binary `file`, rebuilding only plain
    data and NumPy arrays: a hostile file raises `pickle.UnpicklingError`
    instead of running code.

    Keras 3.15: CIFAR's python-format batches are pickles, and neither Python
    nor NumPy offers a restricted unpickler; Keras reads CIFAR with the private
    `keras.src.datasets.npz_utils.RestrictedUnpickler` (keras-team/keras#23252),
    which this reuses, so the project refuses what Keras refuses, with one
    addition: a protocol-2 pickle written by Python 3 (`pickle.dump(d,
    protocol=2)`, a user re-saving CIFAR) stores bytes as
    `_codecs.encode(text, "latin1")` and empty bytes as `bytes()`. Those two
    calls are allowed in the one harmless form that protocol writes
    (`_PROTOCOL2_BYTES`); every other use, like every other name, is refused.
    """
    from keras.src.datasets.npz_utils import RestrictedUnpickler

    class Unpickler(RestrictedUnpickler):
        def find_class(self, module, name):
            if (module, name) in _PROTOCOL2_BYTES:
                return _PROTOCOL2_BYTES[module, name]
            return super().find_class(module, name)

    return Unpickler(file, encoding=encoding).load()


def _latin1_encode(text, encoding="utf-8", errors="strict"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"Refusing _codecs.encode of {type(text).__name__} as {encoding!r}: "
            "protocol-2 pickles only encode text as latin1"
        )
    return text.encode("latin1")


def _empty_bytes(*args):
    if args:
        raise pickle.UnpicklingError("Refusing bytes() with arguments: only b'' is rebuilt")
    return b""


# (module, name) -> the restricted stand-in `unpickle_restricted` rebuilds with.
_PROTOCOL2_BYTES = {
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,  # as Python 3 writes it (fix_imports)
    ("builtins", "bytes"): _empty_bytes,
}


@contextlib.contextmanager
def compile_config_kept(model):
    """Puts the model's compile config back after a save inside.

    Keras 3.15's HDF5 writer pops "optimizer" from the live model's private
    `_compile_config` (keras-team/keras#23475, fixed upstream after 3.15): a
    .keras file saved after an .h5 then loads with a default RMSprop and
    drops the saved optimizer state.
    """
    config = getattr(model, "_compile_config", None)
    saved = dict(config.config) if config is not None else None  # the pop is on this dict
    try:
        yield
    finally:
        if saved is not None:
            config.config.update(saved)


class _HDF5LegacyFilter(logging.Filter):
    def filter(self, record):
        return "saving your model as an HDF5 file" not in record.getMessage()


@contextlib.contextmanager
def hdf5_legacy_warning_dropped():
    """Drops, inside, the absl warning Keras logs on every `model.save` to .h5.

    Keras 3.15 (`keras.src.saving.saving_api.save_model`) warns that HDF5 is a
    legacy format, with no switch to turn it off; the project chooses .h5
    deliberately (the original write-ups ship .h5) and `--formats keras`
    writes the new one. The filter matches the warning's text, so only that
    line goes, and only while inside.
    """
    logger = absl_logging.get_absl_logger()
    dropped = _HDF5LegacyFilter()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


def patch_fit_for_multi_worker():
    """Lets Keras' `fit` run under MultiWorkerMirroredStrategy.

    Works around keras-team/keras#20585 (Keras 3.15, TensorFlow 2.21) by
    replacing two steps of the private `keras.src.backend.tensorflow.trainer`;
    a no-op for every other strategy, so it is safe to install once per
    process (a second call does nothing).

    1. Before the first step, `fit` builds its metrics from one batch, which
       it first averages across workers with a collective `reduce`: that
       fails on a batch of per-replica tensors. The batch is only used for
       its shapes, so this worker's own part of it does as well.
    2. After each step, the (already synchronised) scalar logs are averaged
       with `reduce(axis=0)`, which fails on scalars: average them whole.
    """
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer, "_resnet_keras_multi_worker", False):
        return
    trainer._resnet_keras_multi_worker = True
    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    original_reduce = trainer.reduce_per_replica

    def local_part(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not _is_multi_worker(self._distribute_strategy) or iterator is None:
            return original_build(self, iterator=iterator, data_batch=data_batch)
        strategy = self.distribute_strategy
        for _, _, it in iterator:
            data_batch = tf.nest.map_structure(lambda v: local_part(strategy, v), next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if _is_multi_worker(strategy) and reduction in ("auto", "mean"):
            return tf.nest.map_structure(
                lambda v: (
                    strategy.reduce("MEAN", v, axis=None)
                    if isinstance(v, tf.distribute.DistributedValues)
                    else v
                ),
                values,
            )
        return original_reduce(values, strategy, reduction)

    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    trainer.reduce_per_replica = reduce_per_replica


def _is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
