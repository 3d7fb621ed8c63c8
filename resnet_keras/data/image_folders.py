"""Image folders `train/<class>/*` + `test/<class>/*` as uint8 arrays: listing,
decoding (16-bit images, names that are not UTF-8) and the decoded-array cache.

Class order is the sorted folder names; images of another size are resized.
`cifar.load_dataset` reads a `--data_dir` holding `train/` through here:

    python -c "from resnet_keras.data import image_folders; print(image_folders.load_image_folder('path/to/cifar10')[2])"
"""

import concurrent.futures
import hashlib
import os

import numpy as np

from resnet_keras.checks import DataError
from resnet_keras.files import atomic_path, cache_dir

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
# The largest picture decoded, in pixels (16.8 megapixels, a 12-megapixel
# phone photo with room to spare). A PNG of a few hundred KB can hold
# 12000x12000 pixels: 1.4 GB decoded in an image folder, and tens of GB in
# `colorize apply`, which works on the full-resolution Lab arrays. Pillow's
# own bomb check starts at 89 megapixels and only warns below 179.
MAX_PIXELS = 4096 * 4096


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
    """(class names, {class: image paths}, files skipped).

    A name that is not valid UTF-8 cannot be written to logs, JSON or the
    cache key, and a link to nothing (or to itself) cannot be read: either
    is named and refused, or skipped with `skip_bad`. Hidden files are
    passed over as hidden folders are: `._0001.jpg` is macOS's resource
    fork of 0001.jpg, not an image.
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
            if f.startswith(".") or not f.lower().endswith(IMAGE_EXTENSIONS):
                continue
            if not _is_utf8(f):
                problem = "file name is not valid UTF-8; rename it"
            elif not os.path.isfile(path):  # follows links: dangling or looping ones fail
                problem = "not a readable file (a broken or looping link?); fix or remove it"
            else:
                found.append(path)
                continue
            if not skip_bad:
                raise DataError(
                    f"{printable(path)}: {problem}, or pass --skip_bad_images to leave it out"
                )
            skipped += 1
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


def check_pixels(im, path, fix):
    """DataError naming `path` if the opened image `im` (only its header read
    yet) has more than MAX_PIXELS pixels; `fix` says what the user can do."""
    w, h = im.size
    if w * h > MAX_PIXELS:
        side = int(MAX_PIXELS**0.5)
        raise DataError(
            f"{printable(path)}: {w}x{h} pixels, more than the {MAX_PIXELS / 1e6:.1f} "
            f"megapixels ({side}x{side}) read; {fix}"
        )


def quiet_bomb_warning():
    """Pillow warns on stderr about pictures of 89 to 179 megapixels; MAX_PIXELS,
    far lower, refuses them first in one line, so the warning is only noise."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def _read_image(path, size):
    """(H, W, 3) uint8 and whether it had to be resized; DataError if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            check_pixels(im, path, "shrink it, or pass --skip_bad_images to leave it out")
            im = to_8bit(im).convert("RGB")
            resized = im.size != (size, size)
            if resized:
                im = im.resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype="uint8"), resized
    except DataError:
        raise
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

    quiet_bomb_warning()  # here, not in the threads: warning filters are process-wide
    # PIL releases the GIL while decoding, so threads give a real speed-up.
    with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as ex:
        for r in ex.map(work, range(len(paths))):
            resized += int(r)
    labels[:, 0] = [i for _, i in paths]
    return out[keep], labels[keep], resized, int((~keep).sum())


def load_image_folder(root, size=32, skip_bad=False):
    """Reads (or takes from the cache) the images under `root`/train and `root`/test.

    Args:
        root: a folder with train/<class>/ and test/<class>/ of the same classes.
        size: the side images are resized to when they differ.
        skip_bad: leave out unreadable images, broken links, images over
            MAX_PIXELS and names that are not UTF-8 (`--skip_bad_images`)
            instead of raising.

    Returns:
        `(train, test, class_names, source, notes)`, `cifar.Dataset`'s arguments:
        `(x, y)` pairs of uint8 (N, size, size, 3) images and (N, 1) labels,
        the sorted class folder names, a description for the run log and what
        was resized or skipped.

    Raises:
        DataError: a missing split or class, an empty class, an unreadable
            image, a broken link, an image over MAX_PIXELS or an undecodable
            name (unless `skip_bad`).
    """
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
        notes.append(
            f"skipped {bad_names} files whose names are not UTF-8 or that cannot be opened "
            "(--skip_bad_images)"
        )
    cache = _cache_path(root, size, train_files, test_files)
    if cache and os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as z:
            train, test = (z["x_train"], z["y_train"]), (z["x_test"], z["y_test"])
        return train, test, classes, f"image folder {root} (cached)", notes
    x, y, r1, s1 = _read_split(train_dir, classes, train_files, size, skip_bad)
    xt, yt, r2, s2 = _read_split(test_dir, classes, test_files, size, skip_bad)
    if r1 + r2:
        notes.append(f"resized {r1 + r2} images to {size}x{size}")
    if s1 + s2:
        notes.append(f"skipped {s1 + s2} unreadable images (--skip_bad_images)")
    if cache and not (s1 + s2):
        _save_cache(cache, x_train=x, y_train=y, x_test=xt, y_test=yt)
    return (x, y), (xt, yt), classes, f"image folder {root}", notes


def _cache_path(root, size, *file_maps):
    """Decoded arrays are cached per folder state, so a folder is decoded once
    (docs/data.md, "The cache").
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
