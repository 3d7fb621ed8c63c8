"""Each private-Keras workaround still does what it says in the pinned Keras
(3.15). The multi-worker `fit` patch is tested by robustness_test's
two-process run: it only acts under MultiWorkerMirroredStrategy."""

import io
import logging
import os
import pickle

import keras
import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from resnet_keras import keras_private
from resnet_keras.run import saving


def small_model():
    inputs = keras.Input((4,))
    inner = keras.Sequential([keras.layers.Dense(3, name="inner_dense")], name="inner")
    outputs = keras.layers.Dense(2, name="head")(inner(inputs))
    return keras.Model(inputs, outputs, name="outer")


class _Gadget:
    def __reduce__(self):
        return (os.system, ("true",))


class KerasPrivateTest(tf.test.TestCase):
    def test_all_layers_walks_into_nested_models(self):
        names = [l.name for l in keras_private.all_layers(small_model())]
        self.assertIn("inner", names)
        self.assertIn("inner_dense", names)  # not in Model.layers: the nested model's own
        self.assertIn("head", names)
        self.assertNotIn("outer", names)

    def test_unpickle_restricted_rebuilds_arrays_and_refuses_code(self):
        data = {b"data": np.arange(6, dtype="uint8").reshape(2, 3), b"labels": [1, 2]}
        got = keras_private.unpickle_restricted(io.BytesIO(pickle.dumps(data, protocol=4)))
        self.assertAllEqual(got[b"data"], data[b"data"])
        self.assertEqual(got[b"labels"], [1, 2])
        with self.assertRaisesRegex(pickle.UnpicklingError, "Refusing to deserialize"):
            keras_private.unpickle_restricted(io.BytesIO(pickle.dumps(_Gadget())))

    def test_compile_config_survives_an_h5_save(self):
        folder = self.create_tempdir().full_path
        model = small_model()
        model.compile("adam", "mse")
        # The Keras bug this works around: while it still drops the optimizer,
        # the workaround is needed.
        model.save(os.path.join(folder, "bare.h5"))
        self.assertNotIn("optimizer", model._compile_config.config)
        model.compile("adam", "mse")
        with keras_private.compile_config_kept(model):
            model.save(os.path.join(folder, "kept.h5"))
        self.assertIn("optimizer", model.get_compile_config())

    def test_hdf5_warning_dropped_inside_only_and_not_at_import(self):
        # Importing saving (done above) installs nothing on the absl logger.
        filters = absl_logging.get_absl_logger().filters
        self.assertFalse([f for f in filters if type(f).__name__ == "_HDF5LegacyFilter"])
        folder = self.create_tempdir().full_path
        model = small_model()
        with self.assertLogs("absl", logging.WARNING) as logs:
            model.save(os.path.join(folder, "a.h5"))
        self.assertTrue(any("saving your model as an HDF5 file" in m for m in logs.output))
        with self.assertNoLogs("absl", logging.WARNING):
            with keras_private.hdf5_legacy_warning_dropped():
                model.save(os.path.join(folder, "b.h5"))
            saving.save_model(model, os.path.join(folder, "c.h5"))
        self.assertEqual(absl_logging.get_absl_logger().filters, filters)


if __name__ == "__main__":
    tf.test.main()
