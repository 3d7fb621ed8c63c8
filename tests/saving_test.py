"""Every kind of model the scripts save loads with plain `keras.models.load_model`.

Each model is built, compiled and trained one step as its script does it, and
saved as the scripts save (`saving.save_model`, .h5 first, then .keras). A
Python that never imports this project then loads every file with plain
`keras.models.load_model(path)` (compile included), feeds it raw 0-255 images
and must give the same predictions; both files must hold the same complete
optimizer state. (The .keras file restores it on load. Keras 3.15's HDF5
loader builds the optimizer from the loaded model's own `_trainable_variables`,
which a functional model leaves empty, so it cannot put the .h5 file's state
back; the state is read from the file with h5py instead.)
"""

import json
import os
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras.classification import models as classification_models
from resnet_keras.classification import task as classification_task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.colorization import color
from resnet_keras.colorization import models as colorization_models
from resnet_keras.colorization import task as colorization_task
from resnet_keras.run import saving
from resnet_keras.transfer import task as transfer_task
from resnet_keras.transfer.config import TransferOptions
from tests import fixtures
from tests.fixtures import run_script

# Runs with no project module importable: PYTHONPATH empty, cwd the temp folder.
LOADER = """
import json, sys
import keras, numpy as np
folder, names = sys.argv[1], json.loads(sys.argv[2])
import h5py
out = {}
for name in names:
    x = np.load(f"{folder}/{name}.x.npy")
    for fmt in ("h5", "keras"):
        m = keras.models.load_model(f"{folder}/{name}.{fmt}")
        np.save(f"{folder}/{name}.{fmt}.pred.npy", m.predict(x, verbose=0))
        bns = [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
        out[f"{name}.{fmt}"] = {"optimizer": m.optimizer.__class__.__name__,
                                "plain_bn": [type(l) is keras.layers.BatchNormalization
                                             and "call" not in vars(l) for l in bns],
                                "state": {v.path: np.asarray(v).ravel()[:4].tolist()
                                          for v in m.optimizer.variables}}
    state = {}
    with h5py.File(f"{folder}/{name}.h5", "r") as f:
        f["optimizer_weights"].visititems(lambda k, v: state.update(
            {k: np.asarray(v).ravel()[:4].tolist()}) if isinstance(v, h5py.Dataset) else None)
    out[f"{name}.h5"]["state"] = state
assert not any(k.startswith(("resnet_keras", "scripts")) for k in sys.modules)
print(json.dumps(out))
"""


def _train_one_step(model, x, y):
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    return model


def _classifier(kind):
    config = TrainConfig(model=kind, n=1, opt="adam")
    x = fixtures.random_images(8)
    model = classification_task.build_model(config, 10, x)
    classification_task.compile_for_run(model, config, len(x), top5=False)
    return _train_one_step(model, x, np.arange(8) % 10), x


def _colorizer(kind, space):
    x = fixtures.random_images(4, size=16)
    model = colorization_models.build_colorizer(kind, (16, 16, 1), space, filters=(4, 8))
    colorization_task.compile_colorizer(model, 1e-3)
    gray, target = color.training_pair(x, space)
    return _train_one_step(model, gray, target), gray.numpy()


def _transfer(base_kind, folder):
    """question3's model on a saved project ResNet (the offline base), or on
    ResNet-50 with random weights (ImageNet weights cannot be fetched here)."""
    x = fixtures.random_images(4)
    if base_kind == "project":
        base, _ = _classifier("resnet")
        base_path = saving.save_model(base, os.path.join(folder, "base.h5"))
        options = TransferOptions(base=base_path)
    else:
        options = TransferOptions(weights="none")
    model = transfer_task.build_model(options, 10, x.shape[1:])
    classification_task.compile_for_run(model, TrainConfig(opt="adam"), len(x), top5=False)
    return _train_one_step(model, x, np.arange(4)), x


class PlainKerasLoadsEveryKindTest(tf.test.TestCase):
    def test_every_model_kind_in_both_formats(self):
        folder = self.create_tempdir().full_path
        keras.utils.set_random_seed(0)
        kinds = {
            "resnet": lambda: _classifier("resnet"),
            "plainnet": lambda: _classifier("plain"),
            "colorizer_autoencoder_rgb": lambda: _colorizer("autoencoder", "rgb"),
            "colorizer_unet_lab": lambda: _colorizer("unet", "lab"),
            "transfer_project_base": lambda: _transfer("project", folder),
            "transfer_resnet50": lambda: _transfer("resnet50", folder),
        }
        expected = {}
        for name, make in kinds.items():
            model, x = make()
            for fmt in ("h5", "keras"):  # the scripts' order: .h5 first (keras#23475)
                saving.save_model(model, os.path.join(folder, f"{name}.{fmt}"))
            np.save(os.path.join(folder, f"{name}.x.npy"), x)
            expected[name] = (model.predict(x, verbose=0), len(model.optimizer.variables))
        r, loaded = fixtures.run_plain_keras(
            self, LOADER, folder, json.dumps(list(kinds)), cwd=folder
        )
        self.assertNotIn("Skipping variable loading", r.stderr)
        for name, (predictions, num_state) in expected.items():
            h5, k = loaded[f"{name}.h5"], loaded[f"{name}.keras"]
            if name in ("resnet", "plainnet"):  # trained on the fused kernel, saved plain
                for fmt, got in (("h5", h5), ("keras", k)):
                    want = [True] * (9 if name == "resnet" else 7)
                    self.assertEqual(got["plain_bn"], want, f"{name}.{fmt}")
            # The same complete optimizer state in both files: Adam's step,
            # learning rate and two moments per weight.
            self.assertEqual((h5["optimizer"], k["optimizer"]), ("Adam", "Adam"), name)
            self.assertLen(k["state"], num_state, name)
            self.assertEqual(h5["state"], k["state"], name)
            steps = [v for path, v in k["state"].items() if path.endswith("iteration")]
            self.assertEqual(steps, [[1]], f"{name}: the step count is not the one step taken")
            for fmt in ("h5", "keras"):
                got = np.load(os.path.join(folder, f"{name}.{fmt}.pred.npy"))
                self.assertAllClose(got, predictions, atol=1e-5, msg=f"{name}.{fmt}")


class SavingTest(tf.test.TestCase, parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.create_tempdir().full_path
        self.model = classification_models.build_resnet(1, num_classes=5, shortcut="identity")
        self.model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        self.x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("float32")
        self.expected = self.model.predict(self.x, verbose=0)

    @parameterized.parameters(("h5",), ("keras",))
    def test_save_and_reload_gives_equal_predictions(self, fmt):
        path = saving.save_model(self.model, saving.model_path(os.path.join(self.dir, "m"), fmt))
        self.assertEqual(sorted(os.listdir(self.dir)), [os.path.basename(path)])  # no temp left
        loaded = saving.load_model(path)
        self.assertAllClose(loaded.predict(self.x, verbose=0), self.expected, atol=1e-5)
        self.assertEqual([w.path for w in loaded.weights], [w.path for w in self.model.weights])

    def test_a_keras_file_written_after_an_h5_keeps_the_optimizer(self):
        # Keras 3.15's .h5 writer drops the optimizer from the model's compile
        # config; saving.save_model puts it back (--formats h5,keras).
        saving.save_model(self.model, os.path.join(self.dir, "m.h5"))
        self.assertIn("optimizer", self.model.get_compile_config())
        path = saving.save_model(self.model, os.path.join(self.dir, "m.keras"))
        self.assertIsInstance(keras.models.load_model(path).optimizer, keras.optimizers.Adam)

    def test_savedmodel_export_serves_equal_predictions(self):
        path = saving.save_model(
            self.model, saving.model_path(os.path.join(self.dir, "m"), "savedmodel")
        )
        served = tf.saved_model.load(path)
        self.assertAllClose(served.serve(tf.constant(self.x)).numpy(), self.expected, atol=1e-5)
        # Overwriting replaces the folder atomically and leaves nothing beside it.
        saving.save_model(self.model, path)
        self.assertEqual(os.listdir(self.dir), ["m_savedmodel"])

    def test_h5_loads_in_plain_keras_without_project_code(self):
        path = saving.save_model(self.model, os.path.join(self.dir, "m.h5"))
        np.save(os.path.join(self.dir, "x.npy"), self.x)
        code = (
            "import sys, numpy as np, keras;"
            f"m = keras.models.load_model({path!r});"
            f"p = m.predict(np.load({os.path.join(self.dir, 'x.npy')!r}), verbose=0);"
            "assert 'resnet_keras' not in sys.modules;"
            f"np.save({os.path.join(self.dir, 'p.npy')!r}, p)"
        )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run(
            [sys.executable, "-c", code], check=True, cwd=self.dir, env=env, capture_output=True
        )
        self.assertAllClose(np.load(os.path.join(self.dir, "p.npy")), self.expected, atol=1e-5)

    @parameterized.parameters(("h5",), ("keras",))
    def test_class_names_travel_in_the_file_and_leave_the_model_alone(self, fmt):
        names = ["cat", "dog", "ship", "frog", "bird"]
        path = saving.save_model(self.model, os.path.join(self.dir, f"m.{fmt}"), names)
        self.assertEqual(saving.class_names_of(path), names)
        if fmt == "h5":  # plain h5py reads them
            with h5py.File(path, "r") as f:
                self.assertEqual(json.loads(f.attrs["class_names"]), names)
        else:
            with zipfile.ZipFile(path) as z:
                self.assertEqual(json.loads(z.read("class_names.json")), names)
        loaded = keras.models.load_model(path)
        self.assertAllClose(loaded.predict(self.x, verbose=0), self.expected, atol=1e-5)
        self.assertIsNotNone(loaded.optimizer)
        unnamed = saving.save_model(self.model, os.path.join(self.dir, f"u.{fmt}"))
        self.assertIsNone(saving.class_names_of(unnamed))

    def test_bad_model_files_get_one_clear_error(self):
        bad = os.path.join(self.dir, "bad.h5")
        with open(bad, "w") as f:
            f.write("not hdf5")
        with self.assertRaisesRegex(saving.ModelFileError, "bad.h5: cannot load model"):
            saving.load_model(bad)
        with self.assertRaisesRegex(saving.ModelFileError, "no such model file"):
            saving.load_model(os.path.join(self.dir, "missing.h5"))


class UntrustedModelTest(tf.test.TestCase):
    def test_lambda_models_are_refused_in_both_formats(self):
        d = self.create_tempdir().full_path
        inp = keras.Input((32, 32, 3))
        out = keras.layers.Lambda(lambda t: t * 0 + 1.0)(inp)
        out = keras.layers.GlobalAveragePooling2D()(out)
        out = keras.layers.Dense(10, activation="softmax")(out)
        model = keras.Model(inp, out)
        for ext in ("keras", "h5"):
            path = os.path.join(d, f"lambda.{ext}")
            model.save(path)
            with self.assertRaisesRegex(saving.ModelFileError, "carries code .* safe mode refuses"):
                saving.load_model(path)
            r = run_script("scripts.evaluate", path, "--data_dir=/nonexistent")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("safe mode refuses", r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1)

    def test_truncated_h5_is_one_clear_error(self):
        d = self.create_tempdir().full_path
        good = os.path.join(d, "m.h5")
        inp = keras.Input((4,))
        keras.Model(inp, keras.layers.Dense(2)(inp)).save(good)
        with open(good, "rb") as f:
            head = f.read(2000)
        bad = os.path.join(d, "truncated.h5")
        with open(bad, "wb") as f:
            f.write(head)
        with self.assertRaisesRegex(saving.ModelFileError, "truncated.h5: cannot load model"):
            saving.load_model(bad)
        self.assertEqual(
            np.asarray(saving.load_model(good).predict(np.zeros((1, 4)), verbose=0)).shape, (1, 2)
        )


if __name__ == "__main__":
    tf.test.main()
