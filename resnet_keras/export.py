"""Takes a saved classifier or colorizer to where it is served: SavedModel, TFLite or ONNX.

    python -m scripts.export saved_models/resnet_cifar10.h5 --to tflite
    python -m scripts.export saved_models/colorizer_unet_lab.h5 --to onnx --out unet.onnx

Every export takes what a user has, images of the model's size as they come
from a file, and returns what a user wants:

  classifier  in:  `images` uint8 (N, H, W, 3), raw 0-255 RGB
              out: `probabilities` float32 (N, classes), softmax
                   `class_names` string (classes,), in output order
  colorizer   in:  `gray` uint8 (N, H, W, 1), raw 0-255
              out: `rgb` uint8 (N, H, W, 3), the colour image
                   `rgb_float` float32 (N, H, W, 3), the same in [0, 1] before rounding

A Lab colorizer's a*b* / 128 become an sRGB image inside the exported graph
(`colorization.color.to_rgb`: the input's L* with the predicted a*b*), so neither a
TFLite nor an ONNX user needs the project's colour code.

The SavedModel and the TFLite file carry two signatures: `serving_default`
(uint8 in) and `serve_float32` (the same with float32 0-255 in); the class
names are a signature output. An ONNX graph has one input, uint8; its class
names are also in the file's metadata (`metadata_props` "class_names", a
JSON list, read as `InferenceSession(p).get_modelmeta().custom_metadata_map`).

Each export is written under a temporary name, run through its own runtime
(`tf.saved_model.load`, `tf.lite.Interpreter`, onnxruntime) on a few
deterministic images with both input types, compared with Keras' output,
and renamed into place only if the largest difference is within `TOLERANCE`.
ONNX needs the optional extra: `pip install -e ".[onnx]"` (tf2onnx, onnxruntime).
"""

import json
import os
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from resnet_keras import files
from resnet_keras.colorization import color, models
from resnet_keras.run import saving

TARGETS = ("savedmodel", "tflite", "onnx")
# The largest difference allowed between an export's float output and Keras'
# (probabilities, or RGB in [0, 1]). Measured differences are about 1e-6
# (docs/deploy.md); 1e-4 is still 100 times below a visible change.
TOLERANCE = 1e-4
ONNX_OPSET = 17
ONNX_INSTALL = 'ONNX export needs tf2onnx and onnxruntime: pip install -e ".[onnx]"'
UINT8, FLOAT32 = "serving_default", "serve_float32"
VERIFY_IMAGES = 6


class Served:
    """What an exported graph takes and returns for one saved model."""

    def __init__(self, model, path):
        self.model = model
        self.color_space = None
        self.class_names = None
        self.unnamed = False
        out = model.output_shape
        shape = tuple(model.input_shape)
        if model.name.startswith("colorizer_"):
            try:
                self.color_space = models.describe(model)[1]
            except ValueError as e:
                raise ValueError(f"{path}: {e}") from None
            self.input_name = "gray"
        elif (
            isinstance(out, tuple)
            and len(out) == 2
            and len(shape) == 4
            and shape[-1] == 3
            and None not in shape[1:]
        ):
            self.input_name = "images"
            stored = saving.class_names_of(path)
            self.unnamed = stored is None  # older files: the classes are named by index
            self.class_names = stored or [str(i) for i in range(out[1])]
            if len(self.class_names) != out[1]:
                raise ValueError(
                    f"{path}: {len(self.class_names)} class names for {out[1]} outputs"
                )
        else:
            raise ValueError(
                f"{path}: not a classifier or colorizer of this project (input {shape}, "
                f"output {out}); export takes the .h5 / .keras files its scripts write"
            )
        if None in shape[1:]:
            raise ValueError(
                f"{path}: the model takes images of any size {shape}; need a fixed one"
            )
        self.input_shape = shape[1:]

    @property
    def kind(self):
        return f"{self.color_space} colorizer" if self.color_space else "classifier"

    def spec(self, dtype):
        return tf.TensorSpec((None,) + self.input_shape, dtype, name=self.input_name)

    def outputs_of(self, x):
        """The exported graph's outputs for images `x` (uint8 or float32 0-255)."""
        x = tf.cast(x, tf.float32)
        y = self.model(x, training=False)
        if self.color_space is None:
            names = tf.constant(self.class_names, tf.string)
            return {"probabilities": tf.cast(y, tf.float32), "class_names": names}
        rgb = color.to_rgb(y, x, self.color_space)
        as_uint8 = tf.cast(tf.round(tf.clip_by_value(rgb, 0.0, 1.0) * 255.0), tf.uint8)
        return {"rgb": as_uint8, "rgb_float": rgb}

    def images(self, n=VERIFY_IMAGES, seed=0):
        """uint8 images to verify on: random pixels, and among them black, white
        and a smooth ramp (closer to a photo than noise)."""
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 256, (n,) + self.input_shape).astype("uint8")
        h, w = self.input_shape[:2]
        ramp = np.add.outer(np.arange(h) / max(h - 1, 1), np.arange(w) / max(w - 1, 1)) / 2
        x[0] = 0
        x[1] = 255
        x[2] = np.round(ramp * 255)[..., None]
        return x


def default_path(model_path, target):
    """`saved_models/resnet_cifar10.h5` -> `..._serving/` (savedmodel), `.tflite`, `.onnx`.

    The SavedModel folder is not `..._savedmodel`, the name `--formats savedmodel`
    gives `model.export`'s float-only folder while training.
    """
    check_target(target)
    stem = os.path.splitext(model_path)[0]
    return {"savedmodel": f"{stem}_serving", "tflite": f"{stem}.tflite", "onnx": f"{stem}.onnx"}[
        target
    ]


def check_target(target):
    if target not in TARGETS:
        raise ValueError(f"Unknown target {target!r}; expected one of {', '.join(TARGETS)}")


def check_onnx_installed():
    """One line naming what to install when the optional extra is missing."""
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise ValueError(ONNX_INSTALL) from None


# --- writers: each writes the export of `served` to the path it is given -----


def write_savedmodel(served, path):
    archive = keras.export.ExportArchive()
    archive.track(served.model)
    for name, dtype in ((UINT8, tf.uint8), (FLOAT32, tf.float32)):
        archive.add_endpoint(name, served.outputs_of, input_signature=[served.spec(dtype)])
    archive.write_out(path, verbose=False)


def write_tflite(served, path):
    with tempfile.TemporaryDirectory(prefix=".export-", dir=os.path.dirname(path)) as sm:
        write_savedmodel(served, sm)
        converter = tf.lite.TFLiteConverter.from_saved_model(sm, signature_keys=[UINT8, FLOAT32])
        flat = converter.convert()
    with open(path, "wb") as f:
        f.write(flat)


def write_onnx(served, path):
    import onnx
    import tf2onnx

    spec = served.spec(tf.uint8)
    fn = tf.function(served.outputs_of, input_signature=[spec])
    concrete = fn.get_concrete_function()  # the trace tf2onnx converts (cached)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=[spec], opset=ONNX_OPSET)
    # tf2onnx 1.17 makes every tensor the graph captures (not variables, which
    # it freezes) an input of the ONNX graph: a Keras Normalization layer's
    # mean and variance would have to be fed with every image. They become
    # constants (initializers) of the graph here.
    captured = {
        inner.name: outer.numpy()
        for outer, inner in zip(concrete.captured_inputs, concrete.graph.internal_captures)
        if outer.dtype != tf.resource
    }
    used = {name for node in proto.graph.node for name in node.input}
    for node in list(proto.graph.input):
        if node.name in captured:
            proto.graph.input.remove(node)
            if node.name in used:
                value = onnx.numpy_helper.from_array(captured[node.name], node.name)
                proto.graph.initializer.append(value)
    if served.class_names is not None:
        onnx.helper.set_model_props(proto, {"class_names": json.dumps(served.class_names)})
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


WRITERS = {"savedmodel": write_savedmodel, "tflite": write_tflite, "onnx": write_onnx}


# --- runners: each runs an export through its own runtime --------------------


def run_savedmodel(path, x):
    """{output: array} of the SavedModel at `path` for `x` (uint8 or float32)."""
    loaded = tf.saved_model.load(path)
    fn = loaded.signatures[UINT8 if x.dtype == np.uint8 else FLOAT32]
    return {k: v.numpy() for k, v in fn(tf.constant(x)).items()}


def run_tflite(path, x):
    with warnings.catch_warnings():
        # TF 2.21 warns that tf.lite.Interpreter moves to the ai_edge_litert
        # package; it runs the same flatbuffer (docs/deploy.md).
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner(UINT8 if x.dtype == np.uint8 else FLOAT32)
    name = next(iter(runner.get_input_details()))
    return dict(runner(**{name: x}))


def run_onnx(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {session.get_inputs()[0].name: x})))
    meta = session.get_modelmeta().custom_metadata_map
    if "class_names" in meta:
        out["class_names_metadata"] = np.array(json.loads(meta["class_names"]))
    return out


RUNNERS = {"savedmodel": run_savedmodel, "tflite": run_tflite, "onnx": run_onnx}


def input_types(target):
    """The input dtypes each target's graph takes: ONNX has one input, uint8."""
    return (np.uint8,) if target == "onnx" else (np.uint8, np.float32)


def compare(served, got, want):
    """The largest difference of `got` (an export's outputs) from `want` (Keras');
    raises ValueError where the two disagree in anything but float rounding."""
    key = "probabilities" if served.color_space is None else "rgb_float"
    if key not in got:
        raise ValueError(f"the export returns {sorted(got)}, not {key!r}")
    diff = float(np.max(np.abs(got[key].astype("float64") - want[key].astype("float64"))))
    if served.color_space is None:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in got["class_names"]]
        if names != served.class_names:
            raise ValueError(f"the export names the classes {names}, not {served.class_names}")
    else:
        if got["rgb"].dtype != np.uint8:
            raise ValueError(f"the export's rgb is {got['rgb'].dtype}, not uint8")
        # A float differing by 1e-6 may round to the next level; more is an error.
        levels = int(np.max(np.abs(got["rgb"].astype(int) - want["rgb"].astype(int))))
        if levels > 1:
            raise ValueError(f"the export's uint8 rgb differs by {levels} levels")
    return diff


def verify(served, target, path, tolerance=TOLERANCE):
    """Runs the export at `path` through its runtime on `served.images()`,
    as uint8 and as float32 where the target takes both; returns the largest
    difference from Keras. Raises ValueError above `tolerance`."""
    x = served.images()
    want = {k: np.asarray(v) for k, v in served.outputs_of(tf.constant(x)).items()}
    worst = 0.0
    for dtype in input_types(target):
        got = RUNNERS[target](path, x.astype(dtype))
        worst = max(worst, compare(served, got, want))
    if not worst <= tolerance:  # NaN fails too
        raise ValueError(
            f"the {target} export differs from Keras by {worst:.3g}, above the tolerance "
            f"{tolerance:g}; nothing was written"
        )
    return worst


def export(model_path, target, out=None, tolerance=TOLERANCE):
    """Exports the project's model file `model_path` to `target`, verified.

    Args:
        model_path: a classifier or colorizer `.h5` / `.keras` file.
        target: "savedmodel", "tflite" or "onnx".
        out: where to write; None: `default_path(model_path, target)`.
        tolerance: the largest difference from Keras allowed.

    Returns:
        `(out, served, largest difference)`. Nothing is left at `out` (or
        beside it) when the export fails or disagrees with Keras.
    """
    check_target(target)
    if target == "onnx":
        check_onnx_installed()
    if not tolerance >= 0:
        raise ValueError(f"--tolerance must be at least 0; got {tolerance}")
    out = os.path.abspath(out or default_path(model_path, target))
    if target != "savedmodel" and os.path.isdir(out):
        raise ValueError(f"--out {out}: a folder; give a file name")
    served = Served(saving.load_model(model_path, compile=False), model_path)
    files.check_writable(os.path.dirname(out), flag="out")  # may make the folder: last
    atomic = saving.atomic_folder if target == "savedmodel" else files.atomic_path
    # The writers and runtimes log pages of notices (SavedModel, TFLite, tf2onnx).
    with atomic(out) as tmp, files.stderr_silenced():
        WRITERS[target](served, tmp)
        diff = verify(served, target, tmp, tolerance)
    return out, served, diff
