"""Atomic model saving in the three Keras formats, and safe loading.

`.h5` (legacy HDF5, as the original write-ups ship their models), `.keras`
(Keras 3's own zip format) and a SavedModel folder through `model.export`
(for TF Serving / TFLite). Every write goes to a temporary name in the same
folder and is renamed into place, so a crash never leaves a half-written file
under the final name.
"""

import os
import shutil
import tempfile

import keras
import numpy as np

from resnet_keras import files, keras_private

FORMATS = ("h5", "keras", "savedmodel")


class ModelFileError(ValueError):
    """A model file that cannot be loaded; the message names the file."""


def model_path(stem, fmt):
    """`saved_models/resnet_cifar10` + "h5" -> `saved_models/resnet_cifar10.h5`."""
    if fmt not in FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return f"{stem}_savedmodel" if fmt == "savedmodel" else f"{stem}.{fmt}"


def size_estimate(model):
    """Bytes a saved copy of `model` takes, about: its weights and its
    optimizer's variables, with room for the file's own structure."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    data = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(data * 1.1) + (256 << 10)


def save_model(model, path):
    """Saves `model` to `path` atomically; the format follows the name.

    `*.h5` and `*.keras` are files; any other name is a SavedModel folder
    written by `model.export` (inference only: it has no optimizer). The
    free space is checked first: h5py crashes the process (a segmentation
    fault) when the disk fills while it writes.
    """
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    files.ensure_space(path, size_estimate(model))
    base = os.path.basename(path)
    if path.endswith((".h5", ".keras")):
        # Keras picks the format from the suffix, which the temporary name keeps.
        with files.atomic_path(path) as tmp:
            # .h5 is chosen deliberately (the originals ship .h5): Keras' "HDF5
            # is legacy" warning would only be noise here.
            with (
                keras_private.compile_config_kept(model),
                keras_private.hdf5_legacy_warning_dropped(),
            ):
                model.save(tmp)
        return path
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=folder)
    try:
        model.export(tmp, format="tf_saved_model", verbose=False)
        files.usual_mode(tmp, 0o777)
        old = None
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix=f".{base}.old-", dir=folder)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_model(path, compile=True):
    """`keras.models.load_model` with safe mode on, and one-line errors.

    Safe mode refuses models that carry code (a `Lambda` layer's bytecode):
    files from elsewhere must not run anything here.
    """
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ModelFileError(
            f"{path}: a SavedModel folder is for serving (tf.saved_model.load); "
            "give the .h5 or .keras file"
        )
    try:
        return keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # h5py, zipfile and Keras raise many types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "safe_mode" in str(e) or "Lambda" in str(e):
            msg = "it carries code (e.g. a Lambda layer) and safe mode refuses to run it"
        raise ModelFileError(f"{path}: cannot load model: {msg}") from None
