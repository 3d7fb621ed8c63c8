"""resnet_keras.colorization: colour conversions against published sRGB/CIELAB
(D65) values, the models, metrics on known images, and colouring pictures
of any size (colorize_image).

The runs built on it are in colorization_task_test.py, the script in
colorize_test.py.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras.classification import models as classification_models
from resnet_keras.colorization import color
from resnet_keras.colorization import data as color_data
from resnet_keras.colorization import metrics as colorizer_metrics
from resnet_keras.colorization import models as colorization_models
from resnet_keras.run import saving
from tests import fixtures

# Published sRGB -> CIELAB (D65) values (e.g. Bruce Lindbloom's calculator).
KNOWN_LAB = [
    ("white", (255, 255, 255), (100.0, 0.0, 0.0)),
    ("black", (0, 0, 0), (0.0, 0.0, 0.0)),
    ("red", (255, 0, 0), (53.24, 80.09, 67.20)),
    ("green", (0, 255, 0), (87.73, -86.18, 83.18)),
    ("blue", (0, 0, 255), (32.30, 79.19, -107.86)),
]
# Weights of the default-width models, as the colorization module docstring says.
PARAMS = {
    ("autoencoder", "rgb"): 342_627,
    ("autoencoder", "lab"): 342_338,
    ("unet", "rgb"): 370_302,
    ("unet", "lab"): 370_004,
}
# Every layer is named from its block, so weight names are stable across formats.
LAYER_NAMES = r"^(gray|rescale|enc\d_conv|bottleneck|dec\d_(up|skip)|rgb|ab)$"


class ColorConversionTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(*KNOWN_LAB)
    def test_known_values(self, rgb, lab):
        got = color.rgb_to_lab(np.array(rgb, "float32") / 255.0)
        self.assertAllClose(got, lab, atol=0.01)
        # The published values are rounded to 0.01, worth up to 0.2 of a 0-255 level.
        self.assertAllClose(color.lab_to_rgb(lab) * 255.0, rgb, atol=0.2)

    def test_round_trip_on_batches(self):
        rgb = np.random.default_rng(0).random((4, 5, 6, 3)).astype("float32")
        lab = color.rgb_to_lab(rgb)
        self.assertEqual(lab.shape, (4, 5, 6, 3))
        self.assertAllClose(color.lab_to_rgb(lab), rgb, atol=1e-4)
        self.assertAllClose(color.rgb_to_lab(color.lab_to_rgb(lab)), lab, atol=1e-2)

    def test_same_in_tf_data_as_eager(self):
        images = fixtures.random_images(6, size=8)
        eager = color.training_pair(images, "lab")
        graph = next(iter(color_data.pairs_dataset(images, "lab", batch_size=6)))
        for a, b in zip(eager, graph):
            self.assertAllClose(a, b, atol=1e-5)

    def test_gray_conversions(self):
        red = np.array([[1.0, 0.0, 0.0]], "float32")
        self.assertAllClose(color.to_gray(red, "rgb"), [[0.2989]], atol=1e-4)  # ITU-R 601 luma
        # Equal-luminance gray keeps red's L*; luma gray does not (the reason lab uses it).
        self.assertAllClose(color.gray_lightness(color.to_gray(red, "lab")), [[53.24]], atol=0.01)
        self.assertAllClose(color.gray_lightness(color.to_gray(red, "rgb")), [[32.41]], atol=0.01)
        grays = np.repeat(np.linspace(0, 1, 11, dtype="float32")[:, None], 3, axis=1)
        for space in color.COLOR_SPACES:
            self.assertAllClose(color.to_gray(grays, space), grays[:, :1], atol=1e-4)
        lightness = color.rgb_to_lab(grays)[:, :1]
        self.assertAllClose(color.gray_lightness(grays[:, :1]), lightness, atol=1e-3)

    @parameterized.parameters("rgb", "lab")
    def test_true_target_gives_the_image_back(self, space):
        images = fixtures.random_images(3, size=8)
        gray, target = color.training_pair(images, space)
        self.assertEqual(gray.shape, (3, 8, 8, 1))
        self.assertEqual(target.shape, (3, 8, 8, 3 if space == "rgb" else 2))
        # The gray input is on the images' 0-255 scale.
        want = color.to_gray(images.astype("float32") / 255.0, space) * 255.0
        self.assertAllClose(gray, want, atol=1e-3)
        self.assertLessEqual(float(tf.reduce_max(tf.abs(target))), 1.0)
        back = color.to_rgb(target, gray, space) * 255.0
        self.assertAllClose(back, images.astype("float32"), atol=0.05)

    def test_gray_baseline_is_lab_with_zero_colour(self):
        gray = color.training_pair(fixtures.random_images(2, size=8), "lab")[0]
        zero_ab = tf.zeros(gray.shape[:-1] + (2,))
        self.assertAllClose(
            color.to_rgb(zero_ab, gray, "lab"), color.gray_as_color(gray), atol=1e-4
        )


class ColorizerModelTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.product(kind=colorization_models.MODELS, space=color.COLOR_SPACES)
    def test_shapes_ranges_names_and_params(self, kind, space):
        model = colorization_models.build_colorizer(kind, color_space=space)
        self.assertEqual(model.count_params(), PARAMS[kind, space])
        self.assertEqual(model.name, f"colorizer_{kind}_{space}")
        self.assertEqual(colorization_models.describe(model), (kind, space))
        for layer in model.layers:
            self.assertRegex(layer.name, LAYER_NAMES)
        small = fixtures.small_colorizer(kind, space)
        gray = fixtures.random_images(2, size=16)[..., :1]
        out = small.predict(gray, verbose=0)
        self.assertEqual(out.shape, (2, 16, 16, 3 if space == "rgb" else 2))
        low = 0.0 if space == "rgb" else -1.0
        self.assertTrue(np.all((out >= low) & (out <= 1.0)))

    def test_unet_is_the_autoencoder_plus_skips(self):
        def count(model, cls):
            return len([l for l in model.layers if isinstance(l, cls)])

        ae, unet = colorization_models.build_autoencoder(), colorization_models.build_unet()
        self.assertEqual(count(ae, keras.layers.Concatenate), 0)
        self.assertEqual(count(unet, keras.layers.Concatenate), 3)
        for cls in (keras.layers.Conv2D, keras.layers.Conv2DTranspose):
            self.assertEqual(count(ae, cls), count(unet, cls))
        self.assertEqual(unet.get_layer("bottleneck").output.shape, (None, 4, 4, 128))

    def test_every_weight_gets_a_gradient(self):
        model = fixtures.small_colorizer()
        gray, target = color.training_pair(fixtures.random_images(2, size=16), "lab")
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(gray, training=True) - target))
        grads = tape.gradient(loss, model.trainable_weights)
        for w, g in zip(model.trainable_weights, grads):
            self.assertIsNotNone(g, w.path)
            self.assertGreater(float(tf.reduce_sum(tf.abs(g))), 0.0, w.path)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "multiples of 8"):
            colorization_models.build_unet((30, 30, 1))
        with self.assertRaisesRegex(ValueError, r"gray \(H, W, 1\)"):
            colorization_models.build_unet((32, 32, 3))
        with self.assertRaisesRegex(ValueError, "Unknown model 'gan'; expected one of auto"):
            colorization_models.build_colorizer("gan")
        with self.assertRaisesRegex(ValueError, "Unknown color space 'hsv'"):
            colorization_models.build_autoencoder(color_space="hsv")
        with self.assertRaisesRegex(ValueError, "not a colorizer"):
            colorization_models.describe(classification_models.build_resnet(1))

    def test_saved_models_reload_in_plain_keras(self):
        model = fixtures.small_colorizer("unet", "lab")
        folder = self.create_tempdir().full_path
        gray = fixtures.random_images(3, size=16)[..., :1]
        np.save(os.path.join(folder, "gray.npy"), gray)
        for fmt in ("h5", "keras"):
            saving.save_model(model, os.path.join(folder, f"m.{fmt}"))
        # A Python that never imports this project, as a user of the files has.
        code = (
            "import json, sys, keras, numpy as np; d = sys.argv[1]; g = np.load(d + '/gray.npy')\n"
            "names = []\n"
            "for f in ('h5', 'keras'):\n"
            "    m = keras.models.load_model(f'{d}/m.{f}')\n"
            "    np.save(f'{d}/out_{f}.npy', m.predict(g, verbose=0))\n"
            "    names.append(m.name)\n"
            "print(json.dumps(names))"
        )
        _, names = fixtures.run_plain_keras(self, code, folder, cwd=folder)
        self.assertEqual(names, ["colorizer_unet_lab"] * 2)
        expected = model.predict(gray, verbose=0)
        for fmt in ("h5", "keras"):
            got = np.load(os.path.join(folder, f"out_{fmt}.npy"))
            self.assertAllClose(got, expected, atol=1e-5)


class MetricsTest(tf.test.TestCase):
    def test_identical_images(self):
        images = fixtures.random_images(3).astype("float32") / 255.0
        m = colorizer_metrics.image_metrics(images, images)
        self.assertAllClose(m["mse"], [0, 0, 0])
        self.assertAllClose(m["ssim"], [1, 1, 1], atol=1e-6)
        self.assertTrue(np.all(np.isinf(m["psnr"])))

    def test_known_difference(self):
        a = np.zeros((2, 32, 32, 3), "float32")
        b = np.full((2, 32, 32, 3), 0.5, "float32")
        m = colorizer_metrics.image_metrics(a, b)
        self.assertAllClose(m["mse"], [0.25, 0.25])
        self.assertAllClose(m["psnr"], [10 * np.log10(4)] * 2, atol=1e-4)
        self.assertAllLess(m["ssim"], 0.01)  # no structure or brightness in common

    def test_tiny_images_use_a_smaller_ssim_window(self):
        images = fixtures.random_images(2, size=8).astype("float32") / 255.0
        self.assertAllClose(
            colorizer_metrics.image_metrics(images, images)["ssim"], [1, 1], atol=1e-6
        )

    def test_colorfulness_is_the_mean_lab_chroma(self):
        images = np.zeros((3, 4, 4, 3), "uint8")
        images[0] = 128  # gray
        images[1] = (255, 0, 0)  # red: a* 80.09, b* 67.20
        images[2, :2] = (255, 0, 0)  # half red, half black
        chroma = colorizer_metrics.colorfulness(images, batch_size=2)
        red = np.hypot(80.09, 67.20)
        self.assertAllClose(chroma, [0, red, red / 2], atol=0.02)

    def test_against_gray_overall_and_by_colourfulness(self):
        chroma = np.array([9.0, 1.0, 5.0, 5.0, 3.0, 7.0, 2.0])
        model = np.array([30.0, 20.0, 26.0, 27.0, 24.0, 29.0, 22.0])
        gray = np.array([20.0, 40.0, 30.0, 20.0, 35.0, 25.0, 38.0])
        rows = colorizer_metrics.against_gray(model, gray, chroma, groups=3)
        self.assertEqual([r["images"] for r in rows], [7, 3, 2, 2])
        everything, least, middle, most = rows
        self.assertIsNone(everything["chroma"])
        self.assertAllClose(
            [everything["psnr"], everything["gray_psnr"], everything["above_gray"]],
            [np.mean(model), np.mean(gray), 3 / 7],
        )
        self.assertAllClose([everything["median_psnr"], everything["gray_median_psnr"]], [26, 30])
        # 3 images above gray, 4 below: sign test p = 2 * P(X <= 3; 7, 1/2) = 2 * 64 / 128
        self.assertAllClose([everything["below_gray"], everything["sign_p"]], [4 / 7, 1.0])
        # least colourful: chroma 1, 2, 3 (images 1, 6, 4), where gray wins
        self.assertEqual(least["chroma"], [1.0, 3.0])
        self.assertAllClose(
            [least["psnr"], least["gray_psnr"], least["above_gray"]], [22, 113 / 3, 0]
        )
        # ties at chroma 5 split by position: images 2, 3, then 5 and 0
        self.assertEqual(middle["chroma"], [5.0, 5.0])
        self.assertAllClose([middle["psnr"], middle["above_gray"]], [26.5, 0.5])
        self.assertEqual(most["chroma"], [7.0, 9.0])
        self.assertAllClose([most["psnr"], most["above_gray"]], [29.5, 1.0])
        # fewer images than groups: one group per image
        rows = colorizer_metrics.against_gray(model[:2], gray[:2], chroma[:2], groups=4)
        self.assertEqual([(r["images"], r["chroma"]) for r in rows[1:]], [(1, [1, 1]), (1, [9, 9])])
        self.assertEqual([r["above_gray"] for r in rows[1:]], [0, 1])
        # a tie across a group boundary is split by position (stable rank)
        tied = colorizer_metrics.against_gray([1, 2, 3, 4], [0, 0, 9, 9], [5, 5, 5, 5], groups=2)
        self.assertEqual([r["psnr"] for r in tied[1:]], [1.5, 3.5])
        self.assertEqual([r["above_gray"] for r in tied[1:]], [1, 0])
        # 2 above, 2 below overall; within each group: 2 against 0, p = 2 * 1/4
        self.assertEqual([r["sign_p"] for r in tied], [1.0, 0.5, 0.5])
        for bad in (([], [], []), ([1], [1, 2], [3])):
            with self.assertRaisesRegex(ValueError, "same number"):
                colorizer_metrics.against_gray(*bad)
        with self.assertRaisesRegex(ValueError, "groups >= 1"):
            colorizer_metrics.against_gray([1], [1], [1], groups=0)

    def test_evaluate_model_and_gray_baseline(self):
        images = fixtures.random_images(5, size=16)
        model = fixtures.small_colorizer("autoencoder", "rgb")
        result = colorizer_metrics.score_colorizer(model, images, "rgb", batch_size=2, keep=3)
        self.assertEqual(result["predicted"].shape, (3, 16, 16, 3))
        gray = color.training_pair(images, "rgb")[0]
        expected = colorizer_metrics.image_metrics(color.gray_as_color(gray), images / 255.0)
        for k in ("mse", "psnr", "ssim"):
            self.assertAllClose(result["gray"][k], expected[k], atol=1e-5)
            self.assertEqual(result["model"][k].shape, (5,))


class ColorizeImageTest(tf.test.TestCase):
    def test_lab_keeps_the_full_resolution_lightness(self):
        model = fixtures.small_colorizer("unet", "lab")
        last = model.get_layer("ab")
        # A constant a* = b* = 12.8 tint, in gamut for mid grays, so nothing is clipped.
        last.set_weights([np.zeros_like(last.get_weights()[0]), np.arctanh([0.1, 0.1])])
        gray = np.random.default_rng(0).integers(60, 200, (9, 13, 1)).astype("float32")
        out = color_data.colorize_image(model, gray, "lab")
        self.assertEqual((out.shape, out.dtype), ((9, 13, 3), np.uint8))
        # Pixel noise survives the 16x16 model copy: L* comes from the full image.
        back = color.to_gray(out.astype("float32") / 255.0, "lab").numpy() * 255.0
        self.assertAllClose(back, gray, atol=1.0)
        lab = color.rgb_to_lab(out.astype("float32") / 255.0).numpy()
        self.assertAllClose(lab[..., 1:], np.full((9, 13, 2), 12.8), atol=1.5)

    def test_rgb_model_keeps_the_size(self):
        model = fixtures.small_colorizer("autoencoder", "rgb")
        out = color_data.colorize_image(model, np.full((21, 5, 1), 128.0, "float32"), "rgb")
        self.assertEqual((out.shape, out.dtype), ((21, 5, 3), np.uint8))


if __name__ == "__main__":
    tf.test.main()
