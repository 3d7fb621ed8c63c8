"""resnet_keras.classification.pretrained: the converted reference ResNets in one call, with
features (`include_top=False`, `pooling=`), and the same call converting the
original checkpoint fetched through `keras.utils.get_file` (offline here: a
file:// URL to the local copy, its sha256 checked)."""

import os
import shutil
import unittest
import unittest.mock

import keras
import tensorflow as tf

import resnet_keras
from resnet_keras.classification import pretrained
from tests import fixtures
from tests.conversion_test import HAS_REFERENCE, REFERENCE


class PretrainedTest(tf.test.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.x = fixtures.random_images(4)  # raw uint8 pixels
        cls.model = resnet_keras.pretrained("resnet20_cifar10")

    def test_the_classifier_is_the_shipped_file(self):
        self.assertEqual(self.model.name, "resnet20")
        self.assertEqual(self.model.output_shape, (None, 10))
        shipped = keras.models.load_model(pretrained.path("resnet20_cifar10"))
        self.assertAllClose(
            self.model.predict(self.x, verbose=0), shipped.predict(self.x, verbose=0)
        )

    def test_features_with_each_pooling(self):
        logits_in = keras.Model(self.model.inputs, self.model.get_layer("pool").output)
        want = logits_in.predict(self.x, verbose=0)
        avg = resnet_keras.pretrained("resnet20_cifar10", include_top=False, pooling="avg")
        self.assertAllClose(avg.predict(self.x, verbose=0), want)  # the classifier's own input
        grid = resnet_keras.pretrained("resnet20_cifar10", include_top=False)
        maps = grid.predict(self.x, verbose=0)
        self.assertEqual(maps.shape, (4, 8, 8, 64))
        self.assertAllClose(maps.mean(axis=(1, 2)), want, atol=1e-5)
        top = resnet_keras.pretrained("resnet20_cifar10", include_top=False, pooling="max")
        self.assertAllClose(top.predict(self.x, verbose=0), maps.max(axis=(1, 2)))
        self.assertNotIn("predictions", [l.name for l in top.layers])

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "Unknown pretrained model 'resnet50'; expected"):
            resnet_keras.pretrained("resnet50")
        with self.assertRaisesRegex(ValueError, "Unknown pooling 'mean'; expected one of avg, max"):
            resnet_keras.pretrained("resnet20_cifar10", include_top=False, pooling="mean")
        with self.assertRaisesRegex(ValueError, "include_top=False"):
            resnet_keras.pretrained("resnet20_cifar10", pooling="avg")

    @unittest.skipUnless(HAS_REFERENCE, "needs the reference checkpoints")
    def test_from_checkpoint_downloads_checks_and_converts(self):
        # The public URL, pointed at the local copy: the same get_file path
        # (download, sha256 check, cache), without a network.
        cache = self.create_tempdir().full_path
        url = "file://" + os.path.abspath(REFERENCE) + "/{}"
        with unittest.mock.patch.object(pretrained, "SOURCE_URL", url):
            model = resnet_keras.pretrained(
                "resnet20_cifar10", from_checkpoint=True, cache_dir=cache
            )
        self.assertTrue(os.path.isfile(os.path.join(cache, "models", "resnet20-12fca82f.th")))
        for a, b in zip(model.weights, self.model.weights):
            self.assertAllEqual(a.numpy(), b.numpy())
        # A file whose sha256 is not the checkpoint's is refused.
        other = self.create_tempdir().full_path
        shutil.copy(
            os.path.join(REFERENCE, "resnet32-d509ac18.th"),
            os.path.join(other, "resnet20-12fca82f.th"),
        )
        url = "file://" + other + "/{}"
        with unittest.mock.patch.object(pretrained, "SOURCE_URL", url):
            with self.assertRaisesRegex(ValueError, "hash does not match"):
                resnet_keras.pretrained(
                    "resnet20_cifar10",
                    from_checkpoint=True,
                    cache_dir=self.create_tempdir().full_path,
                )


class PresetsTableTest(tf.test.TestCase):
    def test_every_preset_is_shipped(self):
        for name, preset in pretrained.PRESETS.items():
            self.assertTrue(os.path.isfile(pretrained.path(name)), name)
            self.assertTrue(preset.url.endswith(f"/pretrained_models/{preset.checkpoint}"))
            self.assertTrue(preset.checkpoint.split("-")[1].startswith(preset.sha256[:8]))
            self.assertEqual(name, f"resnet{6 * preset.n + 2}_cifar10")


if __name__ == "__main__":
    tf.test.main()
