"""The committed models in saved_models/ hold their own graphs: they load and
predict exactly what they did when they were trained, whatever the builder
does today (resnet_keras/models.py changed its stride-2 padding after all of
them were trained: docs/results.md).

tests/data/saved_model_predictions.npz holds four fixed 0-255 images and each
file's predictions on them, recorded with the builder of before that change
(commit 893e6c9) as:

    x = np.random.default_rng(31).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    y = keras.models.load_model(path, compile=False).predict(x_or_its_first_channel)
"""

import os

import keras
import numpy as np
import tensorflow as tf

from tests import fixtures

RECORDED = os.path.join(fixtures.ROOT, "tests", "data", "saved_model_predictions.npz")


class SavedModelsTest(tf.test.TestCase):
    def test_every_committed_model_predicts_as_recorded(self):
        recorded = np.load(RECORDED)
        x = recorded["images_uint8"]
        names = [k for k in recorded.files if k != "images_uint8"]
        # Every model committed at the change (models added since then are trained after it).
        self.assertLen(names, 13)
        for name in names:
            model = keras.models.load_model(
                os.path.join(fixtures.ROOT, "saved_models", name), compile=False
            )
            xi = x if model.input_shape[-1] == 3 else x[..., :1]  # the colorizers take one channel
            y = model.predict(xi.astype("float32"), verbose=0)
            # Same machine, same kernels: equal to float32 rounding of a reordered sum.
            self.assertAllClose(y, recorded[name], atol=1e-6, rtol=0, msg=name)
