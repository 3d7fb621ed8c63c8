"""Reads legacy (non-zip) PyTorch checkpoints into NumPy, without PyTorch and
without running code from the file.

`torch.save(..., _use_new_zipfile_serialization=False)` (and every PyTorch
before 1.6) writes five pickles one after another, then the raw bytes of each
tensor storage:

    magic number, protocol version (1001), system info (endianness, sizes),
    the object (tensors refer to storages by persistent id), storage keys,
    then per key: int64 element count, the elements (little-endian)

The object pickle is read by an unpickler that rebuilds only what a state
dict holds (an OrderedDict, tensors of a few numeric types, plain Python
values): every other global a file names is refused, so a hostile file
cannot run code here (plain `pickle.load` would). Tensors come back as NumPy
arrays of their shape and dtype (`torch.load(path, map_location="cpu")`
gives the same numbers; tests/conversion_test.py checks it where torch is
installed).

    from resnet_keras.classification import torch_checkpoint
    ckpt = torch_checkpoint.load("resnet20-12fca82f.th")  # {"state_dict": {...}, ...}
"""

import collections
import pickle
import struct

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# The storage classes a state dict may name, and their element types.
STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """A storage named by the object pickle; its bytes come after it."""

    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = np.dtype(dtype), numel, None


class _Tensor:
    """A tensor whose storage is not read yet: (storage, offset, shape, strides)."""

    def __init__(self, storage, offset, shape, strides):
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides

    def array(self):
        flat = self.storage.data
        if self.offset + _extent(self.shape, self.strides) > flat.size:
            raise pickle.UnpicklingError("a tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=tuple(self.shape),
            strides=tuple(s * flat.itemsize for s in self.strides),
            writeable=False,
        )
        return np.array(view)  # its own contiguous copy


def _extent(shape, strides):
    """Elements from a tensor's first to one past its last, in its storage."""
    if any(n == 0 for n in shape):
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(shape, strides))


def _rebuild_tensor(storage, offset, shape, strides):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    if any(not isinstance(v, int) or v < 0 for v in (offset, *shape, *strides)):
        raise pickle.UnpicklingError("a tensor with a bad offset, shape or stride")
    return _Tensor(storage, offset, shape, strides)


def _rebuild_tensor_v2(storage, offset, shape, strides, requires_grad, hooks, metadata=None):
    # PyTorch 1.0+; older files name _rebuild_tensor (no autograd fields).
    return _rebuild_tensor(storage, offset, shape, strides)


REBUILDERS = {"_rebuild_tensor": _rebuild_tensor, "_rebuild_tensor_v2": _rebuild_tensor_v2}


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self._storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in REBUILDERS:
            return REBUILDERS[name]
        if module == "torch" and name in STORAGE_DTYPES:
            return name  # a marker: persistent_load turns it into an element type
        raise pickle.UnpicklingError(
            f"refused {module}.{name}: not part of a PyTorch state dict (nothing is run "
            "from a checkpoint)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] in ("storage", b"storage")):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, kind, key, _location, numel, view = pid
        if kind not in STORAGE_DTYPES or not isinstance(numel, int) or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage {kind!r} (views are not read)")
        if key not in self._storages:
            self._storages[key] = _Storage(STORAGE_DTYPES[kind], numel)
        return self._storages[key]


def _resolve(obj):
    """The object with every `_Tensor` replaced by its NumPy array."""
    if isinstance(obj, _Tensor):
        return obj.array()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def load(path):
    """A legacy PyTorch checkpoint as Python objects with NumPy arrays for tensors.

    Args:
        path: a file written by `torch.save` in the legacy (non-zip) format.

    Returns:
        What `torch.load` returns, tensors as NumPy arrays (e.g. a dict with
        an OrderedDict "state_dict").

    Raises:
        ValueError: naming the file, for anything but a legacy checkpoint of
            plain tensors (a zip checkpoint, a refused class, truncated data).
    """
    try:
        with open(path, "rb") as f:
            return _load(f)
    except (pickle.UnpicklingError, EOFError, struct.error, TypeError, ValueError) as e:
        raise ValueError(f"{path}: not a readable legacy PyTorch checkpoint ({e})") from None


def _load(f):
    if f.read(2) == b"PK":
        raise ValueError("a zip checkpoint (PyTorch 1.6+ default); this reads the legacy format")
    f.seek(0)
    plain = _Unpickler(f, {})  # the header pickles hold ints and a dict, no classes
    if plain.load() != MAGIC_NUMBER:
        raise ValueError("no PyTorch magic number")
    if plain.load() != PROTOCOL_VERSION:
        raise ValueError("unknown PyTorch protocol version")
    info = plain.load()
    if not isinstance(info, dict) or not info.get("little_endian", False):
        raise ValueError("a big-endian checkpoint")
    storages = {}
    obj = _Unpickler(f, storages).load()
    keys = _Unpickler(f, {}).load()
    if not isinstance(keys, list) or set(keys) != set(storages):
        raise ValueError("the storage keys do not match the tensors")
    for key in keys:
        storage = storages[key]
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != storage.numel:
            raise ValueError(f"storage {key}: {numel} elements, expected {storage.numel}")
        raw = f.read(numel * storage.dtype.itemsize)
        if len(raw) != numel * storage.dtype.itemsize:
            raise ValueError(f"storage {key}: truncated")
        storage.data = np.frombuffer(raw, storage.dtype.newbyteorder("<"))
    return _resolve(obj)
