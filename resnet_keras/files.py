"""Atomic file writes: every file the package writes appears whole or not at all.

A writer fills a temporary file beside the target (same folder, so the same
file system) and renames it into place; a crash or a kill midway leaves the
old file, or none, under the final name, never half a file:

    with files.atomic_path("plots/history.png") as tmp:
        fig.savefig(tmp)
    files.write_json("runs/run/metrics.json", metrics)

`check_writable` tells before any work whether a folder takes files at all;
`ensure_space` whether it has room for a file of known size (h5py crashes
the process when the disk fills under it, so model files are checked before
they are written); a full disk is one line naming the file and the space it
needs (`disk_error`). `cache_dir` is where decoded image folders and
extracted tarballs are kept.
"""

import contextlib
import errno
import hashlib
import json
import os
import sys
import shutil
import signal
import tempfile

import numpy as np

KILL_VAR = "RESNET_KERAS_KILL_AT"  # tests: SIGKILL the process at a named point


def usual_mode(path, mode):
    """chmod to `mode` less the process umask (mkstemp/mkdtemp make 0600/0700,
    which other users could not read)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def cache_dir():
    """Where decoded image folders and extracted tarballs are kept."""
    default = os.path.join(os.path.expanduser("~"), ".cache", "resnet_keras")
    return os.environ.get("RESNET_KERAS_CACHE", default)


def check_writable(folder, flag="output_dir"):
    """Fails before training, not after hours of it, if outputs cannot be written.

    `flag` names the option the folder came from, for the error message.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(f"--{flag} {folder}: not writable ({e.strerror})") from None


def free_bytes(folder):
    """Free space in the file system that holds (or will hold) `folder`."""
    folder = os.path.abspath(folder)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return shutil.disk_usage(folder).free


def _mb(n):
    return f"{n / 1e6:.1f} MB"


def ensure_space(path, needed):
    """Raises a one-line OSError (ENOSPC) unless the folder of `path` has
    `needed` bytes free, with a margin, before `path` is written."""
    folder = os.path.dirname(os.path.abspath(path))
    free = free_bytes(folder)
    if free < needed + (1 << 20):
        raise OSError(
            errno.ENOSPC,
            f"{path}: not written, the disk is full: it needs about {_mb(needed)} and "
            f"{_mb(free)} is free; free some space and run the same command again",
        )


def disk_error(error, path, needed=None, at_least=False):
    """`error` (an OSError) as one line naming `path`; a full disk also says
    how much space the file needs (`needed` bytes; `at_least`: more than that)."""
    if getattr(error, "errno", None) != errno.ENOSPC:
        return OSError(error.errno, f"{path}: {error.strerror or error}")
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    if needed is None:
        need = "it needs more space than is free"
    else:
        need = f"it needs {'more than' if at_least else 'about'} {_mb(needed)}"
    return OSError(
        errno.ENOSPC,
        f"{path}: not written, the disk is full ({need}, {_mb(free)} free); "
        "free some space and run the same command again",
    )


def crash_point(name):
    """Kills this process with SIGKILL if RESNET_KERAS_KILL_AT names `name`
    (a file's name once it is written, or a step such as "backup removed"):
    the tests' way to cut a run off at each boundary between its outputs."""
    if os.environ.get(KILL_VAR) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def size(path):
    """Bytes of a file, or of every file in a folder."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(path) for n in ns)
    return os.path.getsize(path)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary file name to write `path`'s content to.

    When the block ends without an exception the file is renamed onto `path`,
    with the permissions `open` would give it; otherwise it is removed. The
    temporary name ends as `path` does, so writers that pick the format from
    the name (Keras' .h5/.keras, matplotlib's .png, np.savez's .npz) write
    the same format. The folder must exist.
    """
    folder, base = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.tmp-", suffix=os.path.splitext(base)[1], dir=folder)
    os.close(fd)
    try:
        try:
            yield tmp
            _sync(tmp)  # on disk before it has the final name
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            written = os.path.getsize(tmp) if os.path.exists(tmp) else 0
            raise disk_error(e, path, written or None, at_least=True) from None
        usual_mode(tmp, 0o666)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    crash_point(base)


def _sync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def stderr_silenced():
    """Points file descriptor 2 at /dev/null inside.

    TensorFlow's C++ start-up notices, the TFLite converter and tf2onnx write
    pages there that Python cannot filter and TF_CPP_MIN_LOG_LEVEL no longer
    silences; they would bury the scripts' one-line answers.
    RESNET_KERAS_TF_LOGS=1 leaves them shown.
    """
    if os.environ.get("RESNET_KERAS_TF_LOGS"):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def write_text(path, text, newline=None):
    """Writes `text` to `path` atomically; returns `path`."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline=newline) as f:
            f.write(text)
    return path


def write_json(path, obj):
    """Writes `obj` as indented JSON with sorted keys, atomically; NumPy
    numbers and arrays become plain numbers and lists. Returns `path`."""
    return write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=True) + "\n")


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


def sha256(path):
    """The hash of a file, or of a folder's files (a SavedModel) in name order."""
    h = hashlib.sha256()
    if os.path.isdir(path):
        for folder, dirs, names in sorted(os.walk(path)):
            dirs.sort()
            for name in sorted(names):
                h.update(os.path.relpath(os.path.join(folder, name), path).encode())
                h.update(sha256(os.path.join(folder, name)).encode())
        return h.hexdigest()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
