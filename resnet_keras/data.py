"""CIFAR-10/100 loading from three sources, and the tf.data pipelines.

Sources for `load_cifar(name, data_dir)`:
  1. `data_dir=None`: `keras.datasets` (downloads once on a machine with internet).
  2. CIFAR's own python-format folder (`cifar-10-batches-py`, `cifar-100-python`)
     or its `.tar.gz`: what an offline cluster keeps on disk.
  3. An image folder `train/<class>/*` + `test/<class>/*` (class order = sorted
     folder names), e.g. ../shared/datasets/cifar10, or a user's own data.

    python -c "from resnet_keras import data; print(data.load_cifar('cifar10', '../shared/datasets/cifar10')[0][0].shape)"
"""

import concurrent.futures
import hashlib
import os
import tarfile
import tempfile

import numpy as np
import tensorflow as tf

from resnet_keras import keras_private
from resnet_keras.checks import check_choice
from resnet_keras.files import atomic_path

DATASETS = ("cifar10", "cifar100")
LABEL_MODES = ("fine", "coarse")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


def cache_dir():
    """Where decoded image folders and extracted tarballs are kept."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "resnet_keras")
    return os.environ.get("RESNET_KERAS_CACHE", default)


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


class DataError(ValueError):
    """A data set that cannot be used as given; the message names path and fix."""


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
        return _from_image_folder(path, image_size, skip_bad_images)
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
        raise DataError(
            f"could not download {name} through keras.datasets ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); without internet, pass "
            "--data_dir pointing at a CIFAR python-format folder, tarball or image folder"
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


def _load_batch(fpath, label_key):
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
    y = np.asarray(d[label_key], dtype="uint8").reshape(-1, 1)
    return x, y


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
        parts = [
            _load_batch(os.path.join(folder, f"data_batch_{i}"), "labels") for i in range(1, 6)
        ]
        train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        test = _load_batch(os.path.join(folder, "test_batch"), "labels")
        meta = os.path.join(folder, "batches.meta")
        names = _read_meta(meta, "label_names") if os.path.isfile(meta) else CIFAR10_CLASSES
    else:
        key = f"{label_mode}_labels"
        train = _load_batch(os.path.join(folder, "train"), key)
        test = _load_batch(os.path.join(folder, "test"), key)
        names = _read_meta(os.path.join(folder, "meta"), f"{label_mode}_label_names")
    return Dataset(train, test, names, f"python format {folder}")


def extract_tarball(path, dest=None):
    """Extracts a CIFAR tarball once into the cache and returns the folder.

    Members are checked before anything is written: absolute names, `..`,
    links that point outside and device files stop the load (the standard
    library's "data" filter where Python has it, the same checks otherwise).
    """
    st = os.stat(path)
    key = hashlib.sha1(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    dest = dest or os.path.join(cache_dir(), "extracted", key)
    if os.path.isdir(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=os.path.dirname(dest))
    try:
        with tarfile.open(path) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(path, m, tmp)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, members=members, filter="data")
            else:  # Python without PEP 706: the checks above are the filter
                tar.extractall(tmp, members=members)
    except tarfile.TarError as e:
        _rmtree(tmp)
        raise DataError(f"{path}: not a readable tarball ({e})") from None
    except DataError:
        _rmtree(tmp)
        raise
    os.replace(tmp, dest)
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


# --- image folders ----------------------------------------------------------


def printable(path):
    """A path as text, with bytes that are not UTF-8 shown as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _is_utf8(name):
    try:
        name.encode("utf-8")  # Python keeps undecodable bytes as lone surrogates
        return True
    except UnicodeEncodeError:
        return False


def _list_images(split_dir, skip_bad=False):
    """(class names, {class: image paths}, file names skipped as not UTF-8).

    A name that is not valid UTF-8 cannot be written to logs, JSON or the
    cache key; it is named and refused, or skipped with `skip_bad`.
    """
    classes = sorted(
        d
        for d in os.listdir(split_dir)
        if os.path.isdir(os.path.join(split_dir, d)) and not d.startswith(".")
    )
    for c in classes:
        if not _is_utf8(c):
            raise DataError(
                f"{printable(os.path.join(split_dir, c))}: a class folder name that "
                "is not valid UTF-8; rename it"
            )
    files, skipped = {}, 0
    for c in classes:
        found = []
        for f in os.listdir(os.path.join(split_dir, c)):
            path = os.path.join(split_dir, c, f)
            if not f.lower().endswith(IMAGE_EXTENSIONS):
                continue
            if not _is_utf8(f):
                if not skip_bad:
                    raise DataError(
                        f"{printable(path)}: file name is not valid UTF-8; rename it, "
                        "or pass --skip_bad_images to leave it out"
                    )
                skipped += 1
                continue
            found.append(path)
        files[c] = sorted(found)
    return classes, files, skipped


def to_8bit(im):
    """16-bit gray images (Pillow modes I;16*, and I or F holding values over
    255) scaled to 8-bit gray: Pillow's own convert() clips them, which turns
    nearly every pixel white. Other images are returned as they are (16-bit
    colour PNGs already open as 8-bit RGB)."""
    from PIL import Image

    if not (im.mode.startswith("I;16") or im.mode in ("I", "F")):
        return im
    a = np.asarray(im, "float64")
    if im.mode.startswith("I;16") or a.max() > 255:
        a = a / 257.0  # 65535 -> 255
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype("uint8"), "L")


def _read_image(path, size):
    """(H, W, 3) uint8 and whether it had to be resized; DataError if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = to_8bit(im).convert("RGB")
            resized = im.size != (size, size)
            if resized:
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype="uint8"), resized
    except Exception as e:  # PIL raises many types for broken files
        raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from None


def _read_split(split_dir, classes, files, size, skip_bad):
    paths = [(p, i) for i, c in enumerate(classes) for p in files[c]]
    out = np.empty((len(paths), size, size, 3), "uint8")
    labels = np.empty((len(paths), 1), "uint8" if len(classes) <= 256 else "int32")
    keep = np.ones(len(paths), bool)
    resized = 0

    def work(k):
        try:
            out[k], r = _read_image(paths[k][0], size)
            return r
        except DataError:
            if not skip_bad:
                raise
            keep[k] = False
            return False

    # PIL releases the GIL while decoding, so threads give a real speed-up.
    with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as ex:
        for r in ex.map(work, range(len(paths))):
            resized += int(r)
    labels[:, 0] = [i for _, i in paths]
    return out[keep], labels[keep], resized, int((~keep).sum())


def _from_image_folder(root, size, skip_bad):
    train_dir, test_dir = os.path.join(root, "train"), os.path.join(root, "test")
    if not os.path.isdir(test_dir):
        raise DataError(
            f"{root}: has train/ but no test/ folder; expected train/<class>/ and test/<class>/"
        )
    classes, train_files, bad_names = _list_images(train_dir, skip_bad)
    if not classes:
        raise DataError(f"{train_dir}: no class folders; expected train/<class>/<image>")
    test_classes, test_files, bad_test_names = _list_images(test_dir, skip_bad)
    bad_names += bad_test_names
    missing = [c for c in classes if c not in test_classes]
    if missing:
        raise DataError(
            f"{test_dir}: class folder(s) {', '.join(missing)} missing (present in train/)"
        )
    extra = [c for c in test_classes if c not in classes]
    if extra:
        raise DataError(f"{test_dir}: class folder(s) {', '.join(extra)} not in train/")
    for split, files in (("train", train_files), ("test", test_files)):
        empty = [c for c in classes if not files[c]]
        if empty:
            raise DataError(
                f"{os.path.join(root, split)}: no images in {', '.join(empty)} "
                f"(looked for {', '.join(IMAGE_EXTENSIONS[:3])}, ...)"
            )
    notes = []
    if bad_names:
        notes.append(f"skipped {bad_names} files whose names are not UTF-8 (--skip_bad_images)")
    cache = _cache_path(root, size, train_files, test_files)
    if cache and os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as z:
            return Dataset(
                (z["x_train"], z["y_train"]),
                (z["x_test"], z["y_test"]),
                classes,
                f"image folder {root} (cached)",
                notes,
            )
    x, y, r1, s1 = _read_split(train_dir, classes, train_files, size, skip_bad)
    xt, yt, r2, s2 = _read_split(test_dir, classes, test_files, size, skip_bad)
    if r1 + r2:
        notes.append(f"resized {r1 + r2} images to {size}x{size}")
    if s1 + s2:
        notes.append(f"skipped {s1 + s2} unreadable images (--skip_bad_images)")
    if cache and not (s1 + s2):
        _save_cache(cache, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return Dataset((x, y), (xt, yt), classes, f"image folder {root}", notes)


def _cache_path(root, size, *file_maps):
    """Decoded arrays are cached per folder state: 60k JPEG decodes cost ~1 min.
    The key's version changes with the decoding (v2: 16-bit images scaled, not
    clipped white), so no stale decode outlives a fix."""
    h = hashlib.sha1(b"v2:" + os.fsencode(root) + f":{size}".encode())
    for files in file_maps:
        for c in sorted(files):
            for p in files[c]:
                st = os.stat(p)
                h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return os.path.join(cache_dir(), "decoded", h.hexdigest()[:20] + ".npz")


def _save_cache(path, **arrays):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
    except OSError:
        pass  # a cache is an optimisation; a read-only home must not stop a run


# --- subsets and splits -----------------------------------------------------


def balanced_indices(y, limit, seed=0):
    """`limit` indices with the classes as equal as possible, in random order."""
    y = np.asarray(y).reshape(-1)
    if limit > len(y):
        raise DataError(f"asked for {limit} images but the split has only {len(y)}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    base, extra = divmod(limit, len(classes))
    picked, short = [], 0
    for k, c in enumerate(classes):
        want = base + (k < extra)
        take = per_class[c][:want]
        short += want - len(take)
        picked.append(take)
    if short:  # a class ran out: fill from the others' leftovers
        used = np.concatenate(picked)
        rest = rng.permutation(np.setdiff1d(np.arange(len(y)), used))
        picked.append(rest[:short])
    return rng.permutation(np.concatenate(picked))


def split_validation(x, y, val_size, seed=0):
    """Holds `val_size` class-balanced images out of the training split."""
    if val_size <= 0:
        return (x, y), None
    if val_size >= len(x):
        raise DataError(f"--val_size {val_size} leaves no training images (the split has {len(x)})")
    val = balanced_indices(y, val_size, seed)
    mask = np.ones(len(x), bool)
    mask[val] = False
    return (x[mask], y[mask]), (x[val], y[val])


def limit(x, y, n, seed=0):
    """A class-balanced subset of `n` images (`--train_limit`/`--test_limit`)."""
    if not n:
        return x, y
    idx = balanced_indices(y, n, seed)
    return x[idx], y[idx]


# --- tf.data ----------------------------------------------------------------


def augment_batch(images, seed, pad=4):
    """Per-image random crop after zero padding, and per-image horizontal flip.

    Works on a batch (B, H, W, C) of any dtype (uint8 in the pipeline, so the
    gathers move a quarter of the bytes). Each image draws its own offsets,
    unlike keras.layers.RandomCrop, which crops a whole batch alike. `seed` is
    a shape-[2] int tensor: stateless ops keep parallel map calls repeatable.
    """
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([b, 2], seed, 0, 2 * pad + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(h)[None, :]  # (B, H)
    cols = offsets[:, 1:] + tf.range(w)[None, :]  # (B, W)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2p, C)
    out = tf.gather(out, cols, axis=2, batch_dims=1)  # (B, H, W, C)
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    flip = tf.random.stateless_uniform([b], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(out, axis=[2]), out)


def _one_hot_labels(ds, one_hot):
    # One-hot float labels for a label-smoothed loss, made per batch.
    return ds.map(lambda x, y: (x, tf.one_hot(y, one_hot))) if one_hot else ds


def train_dataset(x, y, batch_size, seed=0, augment=True, one_hot=0):
    """Shuffled, augmented, batched uint8 images with int32 labels (or, with
    `one_hot` = the number of classes, one-hot float32 labels).

    Augmentation runs here in the pipeline (on whole uint8 batches, in
    parallel with the training step) rather than in the model, so saved
    models carry no augmentation layers and evaluation sees untouched images.
    """
    y = np.asarray(y).reshape(-1).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        # One random seed per batch, new every epoch, independent of map order.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (augment_batch(xy[0], s), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return _one_hot_labels(ds, one_hot).prefetch(tf.data.AUTOTUNE)


def eval_dataset(x, y, batch_size, one_hot=0):
    """Batched, in order, nothing random (labels as in `train_dataset`)."""
    y = np.asarray(y).reshape(-1).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return _one_hot_labels(ds, one_hot).prefetch(tf.data.AUTOTUNE)


def channel_stats(x):
    """Per-channel mean and std of uint8 images, in 0-255 units."""
    x = x.reshape(-1, x.shape[-1])
    mean = np.zeros(x.shape[-1])
    sq = np.zeros(x.shape[-1])
    for i in range(0, len(x), 1 << 20):  # chunks keep float64 copies small
        c = x[i : i + (1 << 20)].astype("float64")
        mean += c.sum(0)
        sq += (c**2).sum(0)
    mean /= len(x)
    return mean.astype("float32"), np.sqrt(sq / len(x) - mean**2).astype("float32")


def pixel_mean(x):
    """The mean image (H, W, C) of uint8 images, 0-255 units (paper's per-pixel mean)."""
    return x.mean(axis=0, dtype="float64").astype("float32")
