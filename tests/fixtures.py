"""Small CIFAR-shaped data sets that tests write themselves, and the helpers
that run the scripts as a user does.

No CIFAR-100 (and no python-format CIFAR-10) exists on the development and CI
machines, so tests build files in the exact layout of the originals. Every
test that needs images runs on such files; the real CIFAR-10 copy beside the
project, where there is one, adds a real-data variant (marked slow).
"""

import contextlib
import json
import hashlib
import importlib
import io
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import unittest
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from absl import app, flags
from absl.testing import flagsaver

from resnet_keras.data.cifar import CIFAR10_CLASSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The real CIFAR-10 image folder (../shared/datasets/cifar10). The variable
# points the tests at another copy, or, set to "none", runs the suite as on a
# clone without one: RESNET_KERAS_REAL_CIFAR10=none python -m pytest -m ""
REAL_CIFAR10 = os.environ.get("RESNET_KERAS_REAL_CIFAR10") or os.path.join(
    ROOT, "..", "shared", "datasets", "cifar10"
)
HAS_REAL_CIFAR10 = REAL_CIFAR10.lower() != "none" and os.path.isdir(REAL_CIFAR10)

# CPU classes for scripts run as subprocesses (resnet_keras.cpu's override
# variable), so a test's expected precision holds on AVX2 and AVX-512 hosts;
# the GPUs are hidden, so it holds on a GPU machine too.
AVX2_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx f16c fma bmi1 bmi2 avx2"
BF16_FLAGS = AVX2_FLAGS + " avx512f avx512bw avx512vl avx512_vnni avx512_bf16"
AVX2_CPU = {"RESNET_KERAS_CPU_FLAGS": AVX2_FLAGS, "CUDA_VISIBLE_DEVICES": "-1"}
BF16_CPU = {"RESNET_KERAS_CPU_FLAGS": BF16_FLAGS, "CUDA_VISIBLE_DEVICES": "-1"}


def random_images(n, seed=0, size=32):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _dump(path, d):
    # Bytes keys as in the originals (Python 2 pickles). Python 3 writes bytes
    # in protocol 2 through _codecs.encode, which no CIFAR file contains (and
    # the restricted unpickler refuses), so these use protocol 4.
    with open(path, "wb") as f:
        pickle.dump({k.encode(): v for k, v in d.items()}, f, protocol=4)


def _planes(x):
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def write_cifar10_python(root, per_batch=20, test=30, seed=0):
    """cifar-10-batches-py/ with 5 data batches, test_batch, batches.meta.

    Returns ((x_train, y_train), (x_test, y_test)) as the loader should give them.
    """
    folder = os.path.join(root, "cifar-10-batches-py")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for i in range(1, 6):
        x = random_images(per_batch, seed + i)
        y = rng.integers(0, 10, per_batch).tolist()
        _dump(
            os.path.join(folder, f"data_batch_{i}"),
            {"data": _planes(x), "labels": y, "batch_label": "training batch"},
        )
        xs.append(x)
        ys.extend(y)
    xt = random_images(test, seed + 9)
    yt = rng.integers(0, 10, test).tolist()
    _dump(os.path.join(folder, "test_batch"), {"data": _planes(xt), "labels": yt})
    names = [c.encode() for c in CIFAR10_CLASSES]
    _dump(os.path.join(folder, "batches.meta"), {"label_names": names, "num_vis": 3072})
    y_train = np.array(ys, "uint8").reshape(-1, 1)
    return (np.concatenate(xs), y_train), (xt, np.array(yt, "uint8").reshape(-1, 1))


def write_cifar100_python(root, train=60, test=40, seed=0):
    """cifar-100-python/ with train, test, meta (fine and coarse labels).

    Returns {"fine": ((x, y), (xt, yt)), "coarse": ...} as the loader should give them.
    """
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {"fine": [], "coarse": []}
    for split, n in (("train", train), ("test", test)):
        x = random_images(n, seed + len(split))
        fine = rng.integers(0, 100, n)
        coarse = fine // 5
        _dump(
            os.path.join(folder, split),
            {"data": _planes(x), "fine_labels": fine.tolist(), "coarse_labels": coarse.tolist()},
        )
        out["fine"].append((x, fine.astype("uint8").reshape(-1, 1)))
        out["coarse"].append((x, coarse.astype("uint8").reshape(-1, 1)))
    _dump(
        os.path.join(folder, "meta"),
        {
            "fine_label_names": [f"fine{i}".encode() for i in range(100)],
            "coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return {k: tuple(v) for k, v in out.items()}


def make_tarball(folder, tar_path):
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(folder, arcname=os.path.basename(folder))
    return tar_path


def easy_images(label, n, seed=0, size=32, classes=10):
    """Images whose class shows, in colour and in gray: class `label` is a flat
    colour whose luma rises with the label (40 to 215), under pixel noise. A
    classifier, a colorizer and a linear probe on gray input all have
    something to learn, as on real images, and beat chance quickly."""
    luma = np.array([0.2989, 0.587, 0.114])  # ITU-R 601, colorization's rgb gray
    u = np.cross(luma, [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(luma, u)
    v /= np.linalg.norm(v)
    angle = 2 * np.pi * label / classes
    level = 40 + 175 * label / max(1, classes - 1)
    colour = level + 40 * (np.cos(angle) * u + np.sin(angle) * v)  # luma exactly `level`
    noise = np.random.default_rng(seed).normal(0, 10, (n, size, size, 3))
    return np.clip(np.round(colour + noise), 0, 255).astype(np.uint8)


def write_image_folder(
    root,
    classes=("cat", "dog", "bird"),
    per_class=4,
    test_per_class=2,
    size=32,
    seed=0,
    easy=False,
):
    """train/<class>/*.png and test/<class>/*.png; returns the arrays as loaded.

    `easy`: `easy_images` (the class shows) instead of uniform noise.
    """
    from PIL import Image

    out = {}
    for split, k in (("train", per_class), ("test", test_per_class)):
        xs, ys = [], []
        for label, c in enumerate(sorted(classes)):
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
            image_seed = seed + label + (100 if split == "test" else 0)
            if easy:
                imgs = easy_images(label, k, image_seed, size, len(classes))
            else:
                imgs = random_images(k, image_seed, size)
            for i, im in enumerate(imgs):
                Image.fromarray(im).save(os.path.join(root, split, c, f"{i:04d}.png"))
            xs.append(imgs)
            ys += [label] * k
        out[split] = (np.concatenate(xs), np.array(ys, "uint8").reshape(-1, 1))
    return out["train"], out["test"]


def write_png16(path, a):
    """A 16-bit PNG (gray (H, W) or RGB (H, W, 3) uint16): Pillow cannot write
    16-bit colour, and users' scans and microscope images come this way."""
    import struct
    import zlib

    h, w = a.shape[:2]
    color_type = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b"")
        )


def small_colorizer(kind="unet", space="lab", size=16):
    """A colorizer of the project at a tenth of the default width, seeded."""
    import keras

    from resnet_keras.colorization import models

    keras.utils.set_random_seed(0)
    return models.build_colorizer(kind, (size, size, 1), space, filters=(4, 8))


def class_tempdir(cls):
    """A folder for what a test class's tests share (written in setUpClass),
    removed after its last test, as `create_tempdir`'s are after each test."""
    path = tempfile.mkdtemp(prefix=f"{cls.__name__}-")
    cls.addClassCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def cifar10_folder(cls, per_class=40, test_per_class=20):
    """A CIFAR-10 image folder as the real copy is laid out (the ten classes,
    train/<class>/ and test/<class>/), of `easy_images`: 400 training and 200
    test images by default, the few hundred the end-to-end tests use. Written
    once per test class; returns (folder, the arrays as loaded).

    The folder is named cifar10, as the real copy, so the results tables
    that name data by folder read the same. The image decode cache
    (files.cache_dir) goes with the folder, for the class's subprocesses too,
    so nothing is left in ~/.cache.
    """
    root = class_tempdir(cls)
    patcher = mock.patch.dict(os.environ, {"RESNET_KERAS_CACHE": os.path.join(root, "cache")})
    patcher.start()
    cls.addClassCleanup(patcher.stop)
    folder = os.path.join(root, "cifar10")
    arrays = write_image_folder(folder, CIFAR10_CLASSES, per_class, test_per_class, easy=True)
    return folder, arrays


class FixtureImagesTestCase(tf.test.TestCase):
    """Tests on `cifar10_folder`: `data_dir` and `arrays` ((x, y), (x_test, y_test))."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data_dir, cls.arrays = cifar10_folder(cls)


@pytest.mark.slow
@unittest.skipUnless(
    HAS_REAL_CIFAR10, "needs the real CIFAR-10 image folder at ../shared/datasets/cifar10"
)
class RealImagesTestCase(tf.test.TestCase):
    """The same tests on the real CIFAR-10 copy (`data_dir`), where there is
    one; slow, as a fixture variant runs them by default."""

    data_dir = REAL_CIFAR10


def run_script(module, *args, cwd=None, env=None):
    """Runs `python -m module args` on this checkout, as a user does; `env`
    adds variables (e.g. AVX2_CPU) or replaces them (PYTHONPATH: another copy)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_in_process(module, *args):
    """`run_script` without a new process: the script's command line (its
    `cli`, through scripts/common.py `run`, the entry a user's run takes)
    called here, its exit status and what it printed returned alike.

    Every flag is put back as it was afterwards, so cases do not see each
    other's values or defaults. Output that bypasses Python's sys.stderr (C++
    logging) is not caught: a few cases of each table run in a subprocess.
    """
    script = importlib.import_module(module)
    app.define_help_flags()  # before the flags are saved: --help, as `run` would define it
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with flagsaver.flagsaver(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        flags.FLAGS.unparse_flags()
        try:
            script.cli([module, *args])
        except SystemExit as e:
            code = 0 if e.code is None else e.code
        finally:
            if not flags.FLAGS.is_parsed():  # a refused command line leaves them unparsed
                flags.FLAGS.mark_as_parsed()  # as conftest.py has them
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def popen_script(module, *args, env=None):
    """`run_script` in the background, for tests that signal the process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, **(env or {}))
    # A shell that starts jobs in the background (CI under nohup) ignores
    # SIGINT, and Python keeps it ignored: give the child the default back,
    # as a terminal would.
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def csv_epochs(path):
    """The epochs a run's log.csv records, [] before the first."""
    import csv

    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def tree_hashes(root):
    """{relative path: sha256} of every file under `root`, lock files aside
    (each process that takes a run's lock writes its pid there)."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".lock"):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def finished_run(root, *extra):
    """Trains question1 for 2 epochs on a python-format fixture; returns (data, out, args)."""
    data = os.path.join(root, "data")
    write_cifar10_python(data, per_batch=20, test=20)
    out = os.path.join(root, "out")
    args = [
        f"--data_dir={data}",
        "--n=1",
        "--val_size=20",
        "--batch_size=16",
        f"--output_dir={out}",
        "--verbose=0",
        *extra,
    ]
    r = run_script("scripts.question1", *args, "--epochs=2")
    assert r.returncode == 0, r.stderr[-3000:]
    return data, out, args


def run_plain_keras(test, code, *args, cwd):
    """Runs `code` (which prints a JSON object last) in a fresh Python that
    cannot import this project, as a user of the saved files has it; returns
    (the completed process, the printed object). `test` checks it succeeded."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    test.assertEqual(r.returncode, 0, r.stderr[-3000:])
    return r, json.loads(r.stdout.strip().splitlines()[-1])
