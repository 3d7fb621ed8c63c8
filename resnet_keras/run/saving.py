"""Atomic model saving in the three Keras formats, and safe loading.

`.h5` (legacy HDF5, as the original write-ups ship their models), `.keras`
(Keras 3's own zip format) and a SavedModel folder through `model.export`
(for TF Serving / TFLite). Every write goes to a temporary name in the same
folder and is renamed into place, so a crash never leaves a half-written file
under the final name.

A classifier's file carries its class names, so a deployed model can answer
with a name rather than an index (`save_model(..., class_names=...)`,
`class_names_of(path)`): in an `.h5` file a root attribute `class_names`
holding a JSON list of strings, read with plain h5py as
`json.loads(h5py.File(path).attrs["class_names"])`; in a `.keras` file (a zip)
a member `class_names.json` holding the same list, read as
`json.loads(zipfile.ZipFile(path).read("class_names.json"))`. Keras ignores
both when it loads the model. `scripts.export` puts them into the exported
graphs.
"""

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile

import h5py
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


CLASS_NAMES_KEY = "class_names"  # the .h5 root attribute
CLASS_NAMES_MEMBER = "class_names.json"  # the .keras zip member


def size_estimate(model):
    """Bytes a saved copy of `model` takes, about: its weights and its
    optimizer's variables, with room for the file's own structure."""
    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    data = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)
    return int(data * 1.1) + (256 << 10)


def save_model(model, path, class_names=None):
    """Saves `model` to `path` atomically; the format follows the name.

    `*.h5` and `*.keras` are files; any other name is a SavedModel folder
    written by `model.export` (inference only: it has no optimizer).
    `class_names` (a classifier's, in output order) go into the .h5 or .keras
    file as the module docstring says; a SavedModel folder gets none (use
    `scripts.export`, whose signatures return them). The free space is
    checked first: h5py crashes the process (a segmentation fault) when the
    disk fills while it writes.
    Returns `path` as given, as the plots' writers do, so the "wrote" lines
    of a run name every file in one form.
    """
    given, path = path, os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    files.ensure_space(path, size_estimate(model))
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
            if class_names is not None:
                write_class_names(tmp, class_names)
        return given
    with atomic_folder(path) as tmp, _tensorflow_info_dropped():
        model.export(tmp, format="tf_saved_model", verbose=False)
    return given


def write_class_names(path, class_names):
    """Stores `class_names` in the .h5 or .keras file `path`, in place; the
    weights are not touched."""
    names = [str(n) for n in class_names]
    text = json.dumps(names)
    if path.endswith(".h5"):
        with h5py.File(path, "a") as f:
            f.attrs[CLASS_NAMES_KEY] = text
    elif path.endswith(".keras"):
        with zipfile.ZipFile(path, "a") as z:
            if CLASS_NAMES_MEMBER in z.namelist():
                raise ValueError(f"{path}: already holds {CLASS_NAMES_MEMBER}")
            z.writestr(CLASS_NAMES_MEMBER, text)
    else:
        raise ValueError(f"{path}: class names go into .h5 or .keras files")


def class_names_of(path):
    """The class names stored in the .h5 or .keras file `path`, or None."""
    try:
        if path.endswith(".h5"):
            with h5py.File(path, "r") as f:
                text = f.attrs.get(CLASS_NAMES_KEY)
        elif path.endswith(".keras"):
            with zipfile.ZipFile(path) as z:
                members = z.namelist()
                text = z.read(CLASS_NAMES_MEMBER) if CLASS_NAMES_MEMBER in members else None
        else:
            return None
        if text is None:
            return None
        names = json.loads(text)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise ModelFileError(f"{path}: cannot read its class names: {e}") from None
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"{path}: its class_names are not a JSON list of strings")
    return names


@contextlib.contextmanager
def atomic_folder(path):
    """Yields a temporary folder to write `path`'s content to; renamed onto
    `path` (replacing a folder there) when the block ends without an
    exception, removed otherwise."""
    path = os.path.abspath(path)
    folder, base = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=folder)
    try:
        yield tmp
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


class _BelowWarning(logging.Filter):
    def filter(self, record):
        return record.levelno >= logging.WARNING


@contextlib.contextmanager
def _tensorflow_info_dropped():
    """TensorFlow's SavedModel writer logs INFO lines ("Assets written to" a
    temporary name, renamed inputs, fingerprints) between a run's one-line
    messages, even with `verbose=False`, through its own logger and absl's;
    inside, only their warnings show. A filter, not a level: the export sets
    absl's flags again, which puts the absl logger's level back."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    dropped = _BelowWarning()
    for logger in loggers:
        logger.addFilter(dropped)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(dropped)


def _custom_class(error):
    """The class a model file names that Keras does not know, from the
    error Keras raises (`.keras`: "Could not locate class 'X'"; `.h5`:
    "Unknown layer: 'X'"); None for other errors."""
    found = re.search(r"(?:Could not locate (?:class|function)|Unknown \w+:) '([^']+)'", error)
    return found.group(1) if found else None


def load_model(path, compile=True):
    """`keras.models.load_model` with safe mode on, and one-line errors.

    Safe mode refuses models that carry code (a `Lambda` layer's bytecode):
    files from elsewhere must not run anything here. Models of custom
    classes and unbuilt models (no input shape) are refused by name.
    """
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ModelFileError(
            f"{path}: a SavedModel folder is for serving (tf.saved_model.load); "
            "give the .h5 or .keras file"
        )
    try:
        model = keras.models.load_model(path, compile=compile, safe_mode=True)
    except Exception as e:  # h5py, zipfile and Keras raise many types
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        custom = _custom_class(str(e))
        if "safe_mode" in str(e) or "Lambda" in str(e):
            msg = "it carries code (e.g. a Lambda layer) and safe mode refuses to run it"
        elif custom:
            msg = (
                f"it holds the custom class {custom!r}, which is no Keras layer; this project "
                "loads models of built-in Keras layers only"
            )
        raise ModelFileError(f"{path}: cannot load model: {msg}") from None
    if not model.built:  # a Sequential saved before it saw an input: no shape, no weights
        raise ModelFileError(
            f"{path}: the model was saved unbuilt (no input shape, no weights); build it "
            "(keras.Input, or call it on a batch) and train it before saving"
        )
    return model
