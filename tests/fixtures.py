"""Small CIFAR-shaped data sets that tests write themselves.

No CIFAR-100 (and no python-format CIFAR-10) exists on the development and CI
machines, so tests build files in the exact layout of the originals.
"""

import os
import pickle
import tarfile

import numpy as np

REAL_CIFAR10 = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "cifar10")

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
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
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


def write_image_folder(
    root, classes=("cat", "dog", "bird"), per_class=4, test_per_class=2, size=32, seed=0
):
    """train/<class>/*.png and test/<class>/*.png; returns the arrays as loaded."""
    from PIL import Image

    out = {}
    for split, k in (("train", per_class), ("test", test_per_class)):
        xs, ys = [], []
        for label, c in enumerate(sorted(classes)):
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
            imgs = random_images(k, seed + label + (100 if split == "test" else 0), size)
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
