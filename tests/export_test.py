"""resnet_keras.export and scripts.export: a tiny classifier and tiny rgb and
Lab colorizers exported to each target, run through the target's own runtime
on uint8 images and compared with Keras; refusals in one line.

ONNX tests need the optional extra (`pip install -e ".[onnx]"`) and skip
without it, saying so."""

import importlib.util
import json
import os
import sys
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import export
from resnet_keras.classification import models as classification_models
from resnet_keras.colorization import color, task
from resnet_keras.colorization import models as colorization_models
from resnet_keras.run import saving
from tests import fixtures
from tests.fixtures import run_in_process, run_script

HAS_ONNX = all(importlib.util.find_spec(m) for m in ("tf2onnx", "onnxruntime"))
NO_ONNX = 'the onnx extra is not installed (pip install -e ".[onnx]")'
NAMES = ["cat", "dog", "ship"]


def tiny_classifier(folder):
    keras.utils.set_random_seed(0)
    # Statistics not 0 and 1: a Normalization layer's are what tf2onnx mishandles.
    stats = dict(mean=[125.0, 122.0, 113.0], std=[63.0, 62.0, 66.0])
    model = classification_models.build_resnet(1, num_classes=3, shortcut="identity", **stats)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return saving.save_model(model, os.path.join(folder, "tiny.h5"), NAMES)


def tiny_colorizer(folder, space):
    keras.utils.set_random_seed(0)
    model = colorization_models.build_unet((16, 16, 1), space, filters=(4, 8))
    task.compile_colorizer(model, 1e-3)
    return saving.save_model(model, os.path.join(folder, f"colorizer_unet_{space}.h5"))


def texts(names):
    """A string tensor's values as str: TF runtimes give bytes, onnxruntime str."""
    return [n.decode() if isinstance(n, bytes) else n for n in names]


def input_dtype(target, path):
    """The dtype the exported graph's default entry takes, as its runtime reports it."""
    if target == "savedmodel":
        spec = tf.saved_model.load(path).signatures["serving_default"].structured_input_signature
        return next(iter(spec[1].values())).dtype.name
    if target == "tflite":
        runner = tf.lite.Interpreter(model_path=path).get_signature_runner("serving_default")
        return np.dtype(next(iter(runner.get_input_details().values()))["dtype"]).name
    import onnxruntime

    kind = onnxruntime.InferenceSession(path).get_inputs()[0].type  # "tensor(uint8)"
    return kind[len("tensor(") : -1]


class ExportTest(tf.test.TestCase, parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.create_tempdir().full_path

    def skip_without_onnx(self, target):
        if target == "onnx" and not HAS_ONNX:
            self.skipTest(NO_ONNX)

    @parameterized.parameters(*export.TARGETS)
    def test_classifier_serves_probabilities_and_class_names_from_uint8(self, target):
        self.skip_without_onnx(target)
        path = tiny_classifier(self.dir)
        out, served, diff = export.export(path, target)
        self.assertEqual(out, export.default_path(path, target))
        self.assertLessEqual(diff, export.TOLERANCE)
        self.assertEqual(input_dtype(target, out), "uint8")
        x = fixtures.random_images(5, seed=3)
        want = keras.models.load_model(path).predict(x.astype("float32"), verbose=0)
        got = export.RUNNERS[target](out, x)
        self.assertAllClose(got["probabilities"], want, atol=1e-5)
        self.assertEqual(texts(got["class_names"]), NAMES)
        if target == "onnx":  # also in the file's metadata
            self.assertEqual(list(got["class_names_metadata"]), NAMES)
        else:  # the float32 entry gives the same
            floats = export.RUNNERS[target](out, x.astype("float32"))
            self.assertAllClose(floats["probabilities"], want, atol=1e-5)
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(["tiny.h5", os.path.basename(out)]))

    @parameterized.product(target=export.TARGETS, space=color.COLOR_SPACES)
    def test_colorizer_serves_uint8_rgb_from_uint8_gray(self, target, space):
        self.skip_without_onnx(target)
        path = tiny_colorizer(self.dir, space)
        out, served, _ = export.export(path, target, os.path.join(self.dir, f"c.{target}"))
        self.assertEqual(served.kind, f"{space} colorizer")
        self.assertEqual(input_dtype(target, out), "uint8")
        gray = color.training_pair(fixtures.random_images(3, size=16), space)[0]
        gray = np.round(gray.numpy()).astype("uint8")
        model = keras.models.load_model(path)
        # What the project's own `colorize apply` shows: Lab -> RGB by the library.
        rgb = color.to_rgb(model.predict(gray.astype("float32"), verbose=0), gray, space)
        got = export.RUNNERS[target](out, gray)
        self.assertEqual((got["rgb"].dtype, got["rgb"].shape), (np.uint8, (3, 16, 16, 3)))
        self.assertAllClose(got["rgb_float"], rgb, atol=1e-5)
        levels = np.abs(got["rgb"].astype(int) - np.round(rgb.numpy() * 255).astype(int))
        self.assertLessEqual(levels.max(), 1)  # rounding of floats 1e-6 apart

    def test_an_export_that_disagrees_with_keras_is_not_left(self):
        path = tiny_classifier(self.dir)
        run = export.RUNNERS["tflite"]

        def off(p, x):
            got = run(p, x)
            return got | {"probabilities": got["probabilities"] + 1e-3}

        with mock.patch.dict(export.RUNNERS, tflite=off):
            with self.assertRaisesRegex(ValueError, "differs from Keras by 0.001.*nothing was"):
                export.export(path, "tflite")
        self.assertEqual(os.listdir(self.dir), ["tiny.h5"])  # no export, no temporary file

    def test_a_model_without_class_names_is_served_with_indices(self):
        model = keras.models.load_model(tiny_classifier(self.dir))
        path = saving.save_model(model, os.path.join(self.dir, "old.h5"))
        out, served, _ = export.export(path, "savedmodel")
        self.assertTrue(served.unnamed)
        got = export.RUNNERS["savedmodel"](out, fixtures.random_images(1))
        self.assertEqual(texts(got["class_names"]), ["0", "1", "2"])

    def test_a_keras_file_s_class_names_reach_the_export(self):
        model = keras.models.load_model(tiny_classifier(self.dir))
        path = saving.save_model(model, os.path.join(self.dir, "tiny.keras"), NAMES[::-1])
        out, served, _ = export.export(path, "savedmodel")
        self.assertFalse(served.unnamed)
        got = export.RUNNERS["savedmodel"](out, fixtures.random_images(1))
        self.assertEqual(texts(got["class_names"]), NAMES[::-1])

    def test_missing_onnx_extra_is_one_line_naming_what_to_install(self):
        path = tiny_classifier(self.dir)
        with mock.patch.dict(sys.modules, {"tf2onnx": None}):
            with self.assertRaisesRegex(ValueError, r'pip install -e "\.\[onnx\]"'):
                export.export(path, "onnx")
        self.assertEqual(os.listdir(self.dir), ["tiny.h5"])


class ScriptTest(tf.test.TestCase):
    def test_export_prints_the_largest_difference(self):
        d = self.create_tempdir().full_path
        path = tiny_colorizer(d, "lab")
        out = os.path.join(d, "served.tflite")
        r = run_script("scripts.export", path, "--to=tflite", f"--out={out}")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(r.stderr, "")
        self.assertIn(f"wrote {out}: lab colorizer, tflite", r.stdout)
        diff = float(r.stdout.split("largest difference from Keras on 6 images: ")[1].split()[0])
        self.assertLessEqual(diff, export.TOLERANCE)

    def test_bad_input_is_one_line_exit_2_and_nothing_written(self):
        d = self.create_tempdir().full_path
        inp = keras.Input((4,))
        other = keras.Model(inp, keras.layers.Dense(2)(inp))
        other_path = os.path.join(d, "other.h5")
        other.save(other_path)
        text = os.path.join(d, "notes.h5")
        with open(text, "w") as f:
            f.write("not a model")
        colorizer = tiny_colorizer(d, "rgb")
        cases = [
            ((other_path, "--to=tflite"), "other.h5: not a classifier or colorizer"),
            ((text, "--to=tflite"), "notes.h5: cannot load model"),
            ((colorizer, "--to=pdf"), "Unknown target 'pdf'; expected one of savedmodel"),
            ((colorizer,), "--to is required"),
            ((colorizer, colorizer, "--to=tflite"), "give one model file"),
            ((colorizer, "--to=tflite", "--tolerance=-1"), "--tolerance must be at least 0"),
            ((colorizer, "--to=tflite", f"--out={d}"), "a folder; give a file name"),
        ]
        if not HAS_ONNX:
            cases.append(((colorizer, "--to=onnx"), 'pip install -e ".[onnx]"'))
        before = sorted(os.listdir(d))
        for i, (args, message) in enumerate(cases):
            # The first as a user runs it; the others in this process (faster).
            r = (run_script if i == 0 else run_in_process)("scripts.export", *args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr, args)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
            self.assertEqual(sorted(os.listdir(d)), before, args)


class SignatureTest(tf.test.TestCase):
    def test_onnx_metadata_holds_the_class_names_as_json(self):
        if not HAS_ONNX:
            self.skipTest(NO_ONNX)
        import onnx

        d = self.create_tempdir().full_path
        out, _, _ = export.export(tiny_classifier(d), "onnx")
        props = {p.key: p.value for p in onnx.load(out).metadata_props}
        self.assertEqual(json.loads(props["class_names"]), NAMES)
