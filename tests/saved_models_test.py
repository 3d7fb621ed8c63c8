"""The committed models in saved_models/, as a user meets them: each loads
with plain `keras.models.load_model(path)` in a Python that never imported
this project, compiled, with its class names (classifiers), and predicts
exactly what it did when it was recorded, whatever the builder does today
(resnet_keras/classification/models.py changed its stride-2 padding after all of them were
trained: docs/results.md).

tests/data/saved_model_predictions.npz holds four fixed 0-255 images and each
file's predictions on them, recorded from the files (with the builder of
commit 893e6c9; a model committed since is recorded when it is committed) as:

    x = np.random.default_rng(31).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    y = keras.models.load_model(path, compile=False).predict(x_or_its_first_channel)
"""

import os

import numpy as np
import tensorflow as tf

from resnet_keras.data import cifar
from tests import fixtures

RECORDED = os.path.join(fixtures.ROOT, "tests", "data", "saved_model_predictions.npz")
LOADER = """
import json, os, sys
import h5py, keras, numpy as np
root, recorded, out_dir = sys.argv[1:4]
x = np.load(recorded)["images_uint8"]
out = {}
for name in sorted(os.listdir(root)):
    if not name.endswith(".h5"):
        continue
    m = keras.models.load_model(os.path.join(root, name))
    with h5py.File(os.path.join(root, name), "r") as f:
        names = f.attrs.get("class_names")
    pred = m.predict(x if m.input_shape[-1] == 3 else x[..., :1], verbose=0)
    np.save(os.path.join(out_dir, name + ".npy"), pred)
    out[name] = {"compiled": m.compiled and m.optimizer is not None and m.loss is not None,
                 "class_names": names and json.loads(names)}
assert not any(k.startswith(("resnet_keras", "scripts")) for k in sys.modules)
print(json.dumps(out))
"""


class SavedModelsTest(tf.test.TestCase):
    def test_every_committed_model_loads_in_plain_keras_and_predicts_as_recorded(self):
        root = os.path.join(fixtures.ROOT, "saved_models")
        recorded = np.load(RECORDED)
        folder = self.create_tempdir().full_path
        r, loaded = fixtures.run_plain_keras(self, LOADER, root, RECORDED, folder, cwd=folder)
        self.assertNotIn("No training configuration found", r.stderr)
        names = [k for k in recorded.files if k != "images_uint8"]
        self.assertCountEqual(loaded, names)  # every committed model is recorded, and present
        for name, got in loaded.items():
            self.assertTrue(got["compiled"], name)
            want = None if name.startswith("colorizer_") else list(cifar.CIFAR10_CLASSES)
            self.assertEqual(got["class_names"], want, name)
            pred = np.load(os.path.join(folder, name + ".npy"))
            # Recorded on an AVX-512 CPU with oneDNN; an AVX2 CPU runs other kernels
            # (1.3e-6 apart with ONEDNN_MAX_CPU_ISA=AVX2 TF_ENABLE_ONEDNN_OPTS=0). A
            # changed graph (the old padding on today's builder) moves them by 0.9.
            self.assertAllClose(pred, recorded[name], atol=1e-5, rtol=0, msg=name)


if __name__ == "__main__":
    tf.test.main()
