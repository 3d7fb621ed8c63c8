"""resnet_keras.transfer.models: bases, heads, freezing and weights files.

No ImageNet weights exist on the test machines: bases use weights=None, or a
notop weights file the test writes itself, or a tiny model of the project.
The runs built on it are in transfer_task_test.py, the script in
question3_test.py.
"""

import os
from unittest import mock

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from keras.src.legacy.saving import legacy_h5_format

from resnet_keras.classification import models as classification_models
from resnet_keras.run import saving
from resnet_keras.transfer import models as transfer_models
from tests import fixtures

RESNET50_NOTOP_PARAMS = 23_587_712  # keras.applications.ResNet50(include_top=False)


def head_params(features, units, classes):
    return features * units + units + units * classes + classes


def weights_of(layer):
    return [w.numpy().copy() for w in layer.weights]


def unchanged(before, layer):
    return all(np.array_equal(a, b.numpy()) for a, b in zip(before, layer.weights))


def one_step(model, x, y, lr=1e-2):
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    model.train_on_batch(x, y)


class PreprocessTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        ("resnet50", keras.applications.resnet50),
        ("resnet101", keras.applications.resnet),
        ("densenet121", keras.applications.densenet),
        ("efficientnet_b0", keras.applications.efficientnet),
    )
    def test_equals_keras_preprocess_input(self, base, module):
        x = fixtures.random_images(4).astype("float32")
        inputs = keras.Input((32, 32, 3))
        out = transfer_models.preprocess(inputs, transfer_models.APPLICATIONS[base].preprocessing)
        got = keras.Model(inputs, out).predict(x, verbose=0) if out is not inputs else x
        self.assertAllClose(got, module.preprocess_input(x.copy()), atol=1e-4)


class ResNet50Test(tf.test.TestCase):
    """ResNet-50 with random weights at 32x32: built once, ~24M parameters."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        cls.model = transfer_models.build_transfer_model(10, weights=None)
        cls.x = fixtures.random_images(4, seed=1).astype("float32")
        cls.y = np.arange(4)

    def test_layers_and_parameter_counts(self):
        m = self.model
        names = ["image", "preprocess", "base", "pool", "head_dense", "predictions"]
        self.assertEqual([l.name for l in m.layers], names)
        head = head_params(2048, 256, 10)
        self.assertEqual(head, 527_114)
        # The 12 fixed weights of the 1x1 conv that does caffe preprocessing count, frozen.
        self.assertEqual(m.count_params(), RESNET50_NOTOP_PARAMS + 12 + head)
        self.assertEqual(classification_models.count_weights(m.trainable_weights), head)
        self.assertEqual(
            [w.path for w in m.trainable_weights],
            ["head_dense/kernel", "head_dense/bias", "predictions/kernel", "predictions/bias"],
        )

    def test_a_training_step_moves_only_the_head(self):
        m = self.model
        base, pre = weights_of(m.get_layer("base")), weights_of(m.get_layer("preprocess"))
        head = weights_of(m.get_layer("head_dense"))
        one_step(m, self.x, self.y)
        # BatchNorm's moving statistics are among the base's weights: they stay too.
        self.assertTrue(unchanged(base, m.get_layer("base")))
        self.assertTrue(unchanged(pre, m.get_layer("preprocess")))
        self.assertFalse(unchanged(head, m.get_layer("head_dense")))

    def test_cached_features_give_the_full_models_predictions(self):
        features = transfer_models.feature_extractor(self.model).predict(self.x, verbose=0)
        self.assertEqual(features.shape, (4, 2048))
        head = transfer_models.head_model(self.model)
        self.assertAllClose(
            head.predict(features, verbose=0), self.model.predict(self.x, verbose=0), atol=1e-5
        )

    def test_saved_h5_loads_in_plain_keras_with_the_base_frozen(self):
        path = saving.save_model(self.model, os.path.join(self.create_tempdir().full_path, "m.h5"))
        loaded = keras.models.load_model(path)
        self.assertAllClose(
            loaded.predict(self.x, verbose=0), self.model.predict(self.x, verbose=0), atol=1e-5
        )
        self.assertFalse(loaded.get_layer("base").trainable)
        self.assertLen(loaded.trainable_weights, 4)
        base = next(l for l in loaded.get_config()["layers"] if l["name"] == "base")
        self.assertIs(base["inbound_nodes"][0]["kwargs"]["training"], False)


class FineTuneTest(tf.test.TestCase):
    def test_unfreezing_conv5_trains_its_convs_and_nothing_below(self):
        keras.utils.set_random_seed(0)
        m = transfer_models.build_transfer_model(10, weights=None)
        unfrozen = transfer_models.unfreeze_top(m, transfer_models.RESNET_STAGES, 1)
        net = m.get_layer("base")
        convs = [
            l.name
            for l in net.layers
            if l.name.startswith("conv5_")
            and l.weights
            and not isinstance(l, keras.layers.BatchNormalization)
        ]
        self.assertEqual(unfrozen, convs)
        self.assertLen(unfrozen, 10)  # 3 blocks of 3 convs, and block 1's shortcut conv
        conv5 = sum(net.get_layer(n).count_params() for n in unfrozen)
        self.assertEqual(
            classification_models.count_weights(m.trainable_weights),
            conv5 + head_params(2048, 256, 10),
        )
        bns = [l for l in net.layers if isinstance(l, keras.layers.BatchNormalization)]
        top, below = net.get_layer("conv5_block3_3_conv"), net.get_layer("conv4_block6_3_conv")
        before = {l.name: weights_of(l) for l in bns + [top, below]}
        x = fixtures.random_images(4, seed=1).astype("float32")
        one_step(m, x, np.arange(4))
        self.assertFalse(unchanged(before[top.name], top))
        self.assertTrue(unchanged(before[below.name], below))
        for l in bns:  # scale, shift and moving statistics: BatchNorm stays in inference mode
            self.assertTrue(unchanged(before[l.name], l), l.name)
        self.assertIn(
            "conv4_block1_1_conv", transfer_models.unfreeze_top(m, transfer_models.RESNET_STAGES, 2)
        )
        with self.assertRaisesRegex(ValueError, "--unfreeze must be between 1 and 5"):
            transfer_models.unfreeze_top(m, transfer_models.RESNET_STAGES, 6)


class OtherBasesTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters("resnet101", "densenet121", "efficientnet_b0")
    def test_frozen_with_stages_covering_every_weighted_layer(self, base):
        m = transfer_models.build_transfer_model(7, base=base, weights=None, head_units=32)
        self.assertEqual(m.output.shape, (None, 7))
        features = m.get_layer("pool").output.shape[-1]
        self.assertEqual(
            classification_models.count_weights(m.trainable_weights), head_params(features, 32, 7)
        )
        stages = transfer_models.APPLICATIONS[base].stages
        for layer in m.get_layer("base").layers:
            if layer.weights:
                hits = [s for s in stages if layer.name.startswith(s)]
                self.assertLen(hits, 1, layer.name)
        unfrozen = transfer_models.unfreeze_top(m, stages, 1)
        self.assertNotEmpty(unfrozen)
        self.assertTrue(all(n.startswith(stages[0]) for n in unfrozen), unfrozen)

    def test_image_size_resizes_inside_the_model(self):
        m = transfer_models.build_transfer_model(10, weights=None, image_size=64)
        self.assertEqual(m.input.shape, (None, 32, 32, 3))
        self.assertEqual(m.get_layer("resize").output.shape, (None, 64, 64, 3))
        self.assertEqual(m.get_layer("base").input.shape, (None, 64, 64, 3))
        x = fixtures.random_images(2).astype("float32")
        self.assertEqual(m.predict(x, verbose=0).shape, (2, 10))
        with self.assertRaisesRegex(ValueError, "--image_size must be at least 32"):
            transfer_models.build_transfer_model(10, weights=None, image_size=16)


class WeightsTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters("notop.h5", "notop.weights.h5")
    def test_local_notop_weights_file(self, name):
        keras.utils.set_random_seed(1)
        source = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(32, 32, 3)
        )
        path = os.path.join(self.create_tempdir().full_path, name)
        if name == "notop.h5":  # the legacy layout of Keras' own downloaded files
            with h5py.File(path, "w") as f:
                legacy_h5_format.save_weights_to_hdf5_group(f, source)
        else:
            source.save_weights(path)
        keras.utils.set_random_seed(2)
        m = transfer_models.build_transfer_model(10, weights=path)
        loaded = m.get_layer("base").get_weights()
        self.assertTrue(all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded)))

    def test_bad_weights_files(self):
        d = self.create_tempdir().full_path
        with self.assertRaisesRegex(ValueError, "missing.h5: no such file"):
            transfer_models.build_transfer_model(10, weights=os.path.join(d, "missing.h5"))
        other = os.path.join(d, "other.weights.h5")
        classification_models.build_resnet(1).save_weights(other)
        with self.assertRaisesRegex(ValueError, "other.weights.h5: not resnet50 notop weights"):
            transfer_models.build_transfer_model(10, weights=other)

    def test_failed_download_names_the_offline_ways(self):
        error = Exception(
            "URL fetch failure on https://example: None -- [Errno -2] Name or " "service not known"
        )
        with mock.patch("keras.src.utils.file_utils.get_file", side_effect=error):
            with self.assertRaisesRegex(
                ValueError,
                r"^could not download ImageNet weights for resnet50 \(URL fetch failure.*\); "
                r"offline, pass --weights PATH to a local notop .h5 file or --weights none$",
            ):
                transfer_models.build_transfer_model(10, weights="imagenet")


class ProjectBaseTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.create_tempdir().full_path
        keras.utils.set_random_seed(0)
        self.source = classification_models.build_resnet(1, num_classes=10)
        self.path = saving.save_model(self.source, os.path.join(self.dir, "resnet_cifar10.h5"))
        self.x = fixtures.random_images(4, seed=3).astype("float32")

    def test_cut_at_pool_frozen_under_a_new_head(self):
        m = transfer_models.build_from_saved_model(self.path, 100)
        self.assertEqual(
            [l.name for l in m.layers], ["image", "base", "pool", "head_dense", "predictions"]
        )
        self.assertEqual(m.name, "resnet_cifar10_transfer")
        cut = keras.Model(self.source.inputs, self.source.get_layer("pool").output)
        self.assertAllClose(
            transfer_models.feature_extractor(m).predict(self.x, verbose=0),
            cut.predict(self.x, verbose=0),
            atol=1e-5,
        )
        old_head = 64 * 10 + 10
        total = self.source.count_params() - old_head + head_params(64, 256, 100)
        self.assertEqual(m.count_params(), total)
        self.assertEqual(
            classification_models.count_weights(m.trainable_weights), head_params(64, 256, 100)
        )
        base = weights_of(m.get_layer("base"))
        one_step(m, self.x, np.arange(4))
        self.assertTrue(unchanged(base, m.get_layer("base")))
        unfrozen = transfer_models.unfreeze_top(m, transfer_models.stages_of(self.path), 1)
        self.assertEqual(
            unfrozen, ["stage3_block1_conv1", "stage3_block1_conv2", "stage3_block1_proj_conv"]
        )

    def test_reinitialized_and_trained_base_is_the_same_network_from_scratch(self):
        m = transfer_models.build_from_saved_model(
            self.path, 10, reinitialize=True, train_base=True
        )
        net = m.get_layer("base")
        kernel = lambda model: model.get_layer("stem_conv").get_weights()[0]  # noqa: E731
        self.assertFalse(np.array_equal(kernel(net), kernel(self.source)))
        norm = [w.numpy() for w in net.get_layer("normalization").weights]
        for a, b in zip(norm, self.source.get_layer("normalization").weights):
            self.assertAllClose(a, b.numpy())  # the input statistics are data, not weights
        self.assertEqual(
            classification_models.count_weights(m.trainable_weights),
            classification_models.count_weights(self.source.trainable_weights)
            - (64 * 10 + 10)
            + head_params(64, 256, 10),
        )
        moving = weights_of(net.get_layer("stem_bn"))[2]
        one_step(m, self.x, np.arange(4))
        # Trained from scratch, BatchNorm normalises with batch statistics and updates its own.
        self.assertFalse(np.array_equal(moving, net.get_layer("stem_bn").moving_mean.numpy()))

    def test_a_model_without_pooling_is_refused(self):
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(4, 3, name="c")(inputs)
        out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
        path = saving.save_model(keras.Model(inputs, out), os.path.join(self.dir, "flat.h5"))
        with self.assertRaisesRegex(ValueError, "flat.h5: no GlobalAveragePooling2D layer"):
            transfer_models.build_from_saved_model(path, 10)


if __name__ == "__main__":
    tf.test.main()
