"""Where the data comes from: CIFAR-10/100 as uint8 arrays from three sources.

Sources for `load_cifar(name, data_dir)`:
  1. `data_dir=None`: `keras.datasets` (downloads once on a machine with internet).
  2. CIFAR's own python-format folder (`cifar-10-batches-py`, `cifar-100-python`)
     or its `.tar.gz`: what an offline cluster keeps on disk.
  3. An image folder `train/<class>/*` + `test/<class>/*` (class order = sorted
     folder names), e.g. a JPEG copy of CIFAR-10, or a user's own data; read
     by data/image_folders.py.

What the model is then fed (subsets, augmentation, tf.data) is data/pipeline.py.

    python -c "from resnet_keras.data import cifar; print(cifar.load_cifar('cifar10', 'path/to/cifar10')[0][0].shape)"
"""

import hashlib
import os
import tarfile
import tempfile

import numpy as np

from resnet_keras import keras_private
from resnet_keras.checks import DataError, check_choice
from resnet_keras.data import image_folders
from resnet_keras.files import cache_dir

DATASETS = ("cifar10", "cifar100")
LABEL_MODES = ("fine", "coarse")

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class Dataset:
    """Arrays in keras.datasets' layout plus the class names that go with them."""

    def __init__(self, train, test, class_names, source, notes=()):
        self.x_train, self.y_train = train
        self.x_test, self.y_test = test
        self.class_names = tuple(class_names)
        self.source = source
        self.notes = tuple(notes)  # e.g. "resized 3 images", for the run log

    @property
    def num_classes(self):
        return len(self.class_names)

    def check_classifiable(self):
        """DataError unless there are two classes or more to tell apart (a
        colorizer trains on one; a classifier cannot)."""
        if self.num_classes < 2:
            raise DataError(
                f"{self.source}: one class ({', '.join(self.class_names)}); a classifier needs "
                "two or more: add a folder for each class under train/ and test/"
            )


def load_cifar(name="cifar10", data_dir=None, label_mode="fine"):
    """Loads CIFAR-10 or CIFAR-100 as uint8 arrays.

    Args:
        name: "cifar10" or "cifar100".
        data_dir: None (keras.datasets download), a python-format folder or
            tarball, or an image folder with train/ and test/.
        label_mode: CIFAR-100's "fine" (100 classes) or "coarse" (20).

    Returns:
        `(x_train, y_train), (x_test, y_test)`: uint8 arrays of shapes
        (N, 32, 32, 3) and (N, 1), as `keras.datasets.cifar10.load_data()`.

    Raises:
        checks.DataError: data that cannot be used as given (the message
            names the path and the fix); ValueError for an unknown name.
    """
    ds = load_dataset(name, data_dir, label_mode)
    return (ds.x_train, ds.y_train), (ds.x_test, ds.y_test)


def load_dataset(
    name="cifar10", data_dir=None, label_mode="fine", image_size=32, skip_bad_images=False
):
    """Like `load_cifar`, returning a `Dataset` that also holds class names."""
    check_choice("dataset", name, DATASETS)
    check_choice("label_mode", label_mode, LABEL_MODES)
    if data_dir is None:
        return _from_keras(name, label_mode)
    path = os.path.abspath(os.path.expanduser(data_dir))
    if not os.path.exists(path):
        raise DataError(f"--data_dir {data_dir}: no such file or folder")
    if os.path.isfile(path):
        if not path.endswith((".tar.gz", ".tgz", ".tar")):
            raise DataError(
                f"--data_dir {data_dir}: a file that is not a .tar.gz; expected a "
                "CIFAR python-format folder or tarball, or an image folder"
            )
        path = extract_tarball(path)
    py_dir = _find_python_format(path)
    if py_dir is not None:
        return _from_python_format(py_dir, name, label_mode)
    if os.path.isdir(os.path.join(path, "train")):
        return Dataset(*image_folders.load_image_folder(path, image_size, skip_bad_images))
    raise DataError(
        f"--data_dir {data_dir}: found neither CIFAR python-format files "
        "(data_batch_1 / test_batch, or train / test / meta) nor an image folder "
        "with train/<class>/ and test/<class>/"
    )


def _from_keras(name, label_mode):
    import keras

    try:
        if name == "cifar10":
            train, test = keras.datasets.cifar10.load_data()
            names = CIFAR10_CLASSES
        else:
            train, test = keras.datasets.cifar100.load_data(label_mode=label_mode)
            names = None
    except Exception as e:  # network errors come in many types
        # Said for library users and script users alike: data_dir is the
        # argument of load_cifar / load_dataset and the scripts' flag.
        raise DataError(
            f"could not download {name} through keras.datasets ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); without internet, give data_dir "
            "(the scripts' --data_dir): a CIFAR python-format folder, tarball or image folder"
        ) from None
    if names is None:
        names = tuple(f"class_{i}" for i in range(100 if label_mode == "fine" else 20))
        meta = _keras_cifar100_meta()
        if meta is not None:
            names = _read_meta(meta, f"{label_mode}_label_names")
    (x, y), (xt, yt) = train, test
    return Dataset((x, y.astype("uint8")), (xt, yt.astype("uint8")), names, "keras.datasets")


def _keras_cifar100_meta():
    root = os.path.join(os.path.expanduser("~"), ".keras", "datasets")
    for sub in ("cifar-100-python", os.path.join("cifar-100-python-target", "cifar-100-python")):
        meta = os.path.join(root, sub, "meta")
        if os.path.isfile(meta):
            return meta
    return None


# --- python format ----------------------------------------------------------


def _find_python_format(path):
    """The folder holding CIFAR batches: `path` itself or one level below."""
    candidates = [path] + [
        os.path.join(path, d)
        for d in sorted(os.listdir(path))
        if os.path.isdir(os.path.join(path, d))
    ]
    for c in candidates:
        if os.path.isfile(os.path.join(c, "data_batch_1")) or (
            os.path.isfile(os.path.join(c, "meta")) and os.path.isfile(os.path.join(c, "train"))
        ):
            return c
    return None


def _unpickle(fpath):
    """A CIFAR pickle through Keras' restricted unpickler: only plain data and
    NumPy arrays are rebuilt, so a hostile file cannot run code here."""
    import pickle

    try:
        with open(fpath, "rb") as f:
            d = keras_private.unpickle_restricted(f)
    except pickle.UnpicklingError as e:
        raise DataError(f"{fpath}: refused or unreadable pickle ({e})") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(
            f"{fpath}: not a CIFAR python-format batch ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(d, dict):
        raise DataError(f"{fpath}: expected a pickled dict, found {type(d).__name__}")
    return {k.decode("utf8") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _load_batch(fpath, label_key, class_names, names_from):
    """(x, y) of one batch file, its labels checked against `class_names`
    (read from the file `names_from`) before any model sees them."""
    if not os.path.isfile(fpath):
        raise DataError(f"{fpath}: missing CIFAR batch file")
    d = _unpickle(fpath)
    if "data" not in d or label_key not in d:
        raise DataError(f"{fpath}: expected keys 'data' and {label_key!r}, found {sorted(d)}")
    data = np.asarray(d["data"], dtype="uint8")
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{fpath}: expected data of shape (N, 3072), found {data.shape}")
    # Stored as (N, 3, 32, 32) planes; keras.datasets returns channels-last.
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    y = _check_labels(fpath, d[label_key], len(x), class_names, names_from)
    return x, y.astype("uint8").reshape(-1, 1)


def _check_labels(fpath, labels, num_images, class_names, names_from):
    """The labels as an integer array, or a DataError naming the file: a wrong
    count, fractions or a label outside the class names would otherwise
    surface as a traceback at load (OverflowError), inside `fit` after the
    run's files are written, or not at all (-1 wrapped to 255, 0.5 cut to 0)."""
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != num_images:
        raise DataError(
            f"{fpath}: {y.size} labels for {num_images} images; the batch file is damaged, "
            "fetch it again"
        )
    if not (np.issubdtype(y.dtype, np.integer) and y.dtype != bool):
        raise DataError(
            f"{fpath}: labels must be whole numbers (class indices); found {y.dtype} values "
            f"such as {y[0]!r}"
        )
    k = len(class_names)
    bad = y[(y < 0) | (y >= k)]
    if len(bad):
        raise DataError(
            f"{fpath}: label {int(bad[0])} is not a class index 0-{k - 1} ({names_from} "
            f"names {k} classes); the files are damaged or from different data sets"
        )
    return y


def _read_meta(fpath, key):
    d = _unpickle(fpath)
    if key not in d:
        raise DataError(f"{fpath}: expected key {key!r} in the metadata, found {sorted(d)}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in d[key])


def _from_python_format(folder, name, label_mode):
    is_cifar10 = os.path.isfile(os.path.join(folder, "data_batch_1"))
    found = "cifar10" if is_cifar10 else "cifar100"
    if found != name:
        raise DataError(f"{folder}: holds {found} python-format files, but --dataset is {name}")
    if is_cifar10:
        meta = os.path.join(folder, "batches.meta")
        if os.path.isfile(meta):
            names, source = _read_meta(meta, "label_names"), meta
        else:
            names, source = CIFAR10_CLASSES, "CIFAR-10"
        parts = [
            _load_batch(os.path.join(folder, f"data_batch_{i}"), "labels", names, source)
            for i in range(1, 6)
        ]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _load_batch(os.path.join(folder, "test_batch"), "labels", names, source)
    else:
        key, meta = f"{label_mode}_labels", os.path.join(folder, "meta")
        names = _read_meta(meta, f"{label_mode}_label_names")
        train = _load_batch(os.path.join(folder, "train"), key, names, meta)
        test = _load_batch(os.path.join(folder, "test"), key, names, meta)
    return Dataset(train, test, names, f"python format {folder}")


def extract_tarball(path, dest=None):
    """Extracts a CIFAR tarball once into the cache and returns the folder.

    Members are checked before anything is written: absolute names, `..`,
    links that point outside and device files stop the load (the standard
    library's "data" filter where Python has it, the same checks otherwise).
    Each process extracts into a private folder and renames it into place;
    when two processes meet the same new tarball, the second to finish
    keeps the first one's folder and removes its own, so no process fails
    and no partial folder stays behind (not even after Ctrl-C).
    """
    st = os.stat(path)
    key = hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = dest or os.path.join(cache_dir(), "extracted", key)
    if os.path.isdir(dest):
        return dest
    parent = os.path.dirname(os.path.abspath(dest))  # a bare name's folder is "" otherwise
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=parent)
    try:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(path, m, tmp)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python without PEP 706: the checks above are the filter
                tar.extractall(tmp, members=members)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not os.path.isdir(dest):
                raise
            # Another process renamed its extraction into place first: use it.
    except tarfile.TarError as e:
        reason = " ".join(str(e).split())  # tarfile's message spans several lines
        if "could not be opened successfully" in reason:
            reason = "neither a tar file nor a gzip, bz2 or xz compressed one"
        raise DataError(f"{path}: not a readable tarball ({reason})") from None
    finally:
        _rmtree(tmp)
    return dest


def _check_member(tar_path, m, dest):
    name = m.name
    target = os.path.realpath(os.path.join(dest, name))
    inside = target == os.path.realpath(dest) or target.startswith(os.path.realpath(dest) + os.sep)
    bad = None
    if os.path.isabs(name) or name.startswith(("/", "\\")):
        bad = "an absolute path"
    elif not inside or ".." in name.replace("\\", "/").split("/"):
        bad = "a path outside the extraction folder"
    elif m.isdev() or m.isfifo():
        bad = "a device or pipe"
    elif m.issym() or m.islnk():
        link = m.linkname
        base = os.path.dirname(target) if m.issym() else os.path.realpath(dest)
        ltarget = os.path.realpath(os.path.join(base, link))
        if os.path.isabs(link) or not ltarget.startswith(os.path.realpath(dest) + os.sep):
            bad = "a link pointing outside the extraction folder"
    if bad:
        raise DataError(f"{tar_path}: refused member {name!r}: {bad}")


def _rmtree(path):
    import shutil

    shutil.rmtree(path, ignore_errors=True)
