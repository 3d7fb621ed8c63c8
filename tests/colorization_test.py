"""resnet_keras.colorization, colorization_tasks and scripts.colorize.

Colour conversions against published sRGB/CIELAB (D65) values, models,
metrics on known images, and the script end to end on a few hundred real
CIFAR-10 images (skipped without ../shared/datasets/cifar10).
"""

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import unittest

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from PIL import Image

from resnet_keras import colorization as col
from resnet_keras import colorization_tasks as tasks
from resnet_keras import evaluation, models, saving
from tests import fixtures
from tests.question1_test import run_script

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
HAS_CIFAR = os.path.isdir(fixtures.REAL_CIFAR10)
NEEDS_CIFAR = "needs the real CIFAR-10 image folder at ../shared/datasets/cifar10"


def small_model(kind="unet", space="lab", size=16):
    keras.utils.set_random_seed(0)
    return col.build_colorizer(kind, (size, size, 1), space, filters=(4, 8))


class ColorConversionTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(*KNOWN_LAB)
    def test_known_values(self, rgb, lab):
        got = col.rgb_to_lab(np.array(rgb, "float32") / 255.0)
        self.assertAllClose(got, lab, atol=0.01)
        # The published values are rounded to 0.01, worth up to 0.2 of a 0-255 level.
        self.assertAllClose(col.lab_to_rgb(lab) * 255.0, rgb, atol=0.2)

    def test_round_trip_on_batches(self):
        rgb = np.random.default_rng(0).random((4, 5, 6, 3)).astype("float32")
        lab = col.rgb_to_lab(rgb)
        self.assertEqual(lab.shape, (4, 5, 6, 3))
        self.assertAllClose(col.lab_to_rgb(lab), rgb, atol=1e-4)
        self.assertAllClose(col.rgb_to_lab(col.lab_to_rgb(lab)), lab, atol=1e-2)

    def test_same_in_tf_data_as_eager(self):
        images = fixtures.random_images(6, size=8)
        eager = col.training_pair(images, "lab")
        graph = next(iter(col.pairs_dataset(images, "lab", batch_size=6)))
        for a, b in zip(eager, graph):
            self.assertAllClose(a, b, atol=1e-5)

    def test_gray_conversions(self):
        red = np.array([[1.0, 0.0, 0.0]], "float32")
        self.assertAllClose(col.to_gray(red, "rgb"), [[0.2989]], atol=1e-4)  # ITU-R 601 luma
        # Equal-luminance gray keeps red's L*; luma gray does not (the reason lab uses it).
        self.assertAllClose(col.gray_lightness(col.to_gray(red, "lab")), [[53.24]], atol=0.01)
        self.assertAllClose(col.gray_lightness(col.to_gray(red, "rgb")), [[32.41]], atol=0.01)
        grays = np.repeat(np.linspace(0, 1, 11, dtype="float32")[:, None], 3, axis=1)
        for space in col.COLOR_SPACES:
            self.assertAllClose(col.to_gray(grays, space), grays[:, :1], atol=1e-4)
        lightness = col.rgb_to_lab(grays)[:, :1]
        self.assertAllClose(col.gray_lightness(grays[:, :1]), lightness, atol=1e-3)

    @parameterized.parameters("rgb", "lab")
    def test_true_target_gives_the_image_back(self, space):
        images = fixtures.random_images(3, size=8)
        gray, target = col.training_pair(images, space)
        self.assertEqual(gray.shape, (3, 8, 8, 1))
        self.assertEqual(target.shape, (3, 8, 8, 3 if space == "rgb" else 2))
        self.assertBetween(float(tf.reduce_min(gray)), 0.0, 255.0)
        self.assertLessEqual(float(tf.reduce_max(tf.abs(target))), 1.0)
        back = col.to_rgb(target, gray, space) * 255.0
        self.assertAllClose(back, images.astype("float32"), atol=0.05)

    def test_gray_baseline_is_lab_with_zero_colour(self):
        gray = col.training_pair(fixtures.random_images(2, size=8), "lab")[0]
        zero_ab = tf.zeros(gray.shape[:-1] + (2,))
        self.assertAllClose(col.to_rgb(zero_ab, gray, "lab"), col.gray_as_color(gray), atol=1e-4)


class ColorizerModelTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.product(kind=col.MODELS, space=col.COLOR_SPACES)
    def test_shapes_ranges_names_and_params(self, kind, space):
        model = col.build_colorizer(kind, color_space=space)
        self.assertEqual(model.count_params(), PARAMS[kind, space])
        self.assertEqual(model.name, f"colorizer_{kind}_{space}")
        self.assertEqual(col.describe(model), (kind, space))
        for layer in model.layers:
            self.assertRegex(layer.name, LAYER_NAMES)
        small = small_model(kind, space)
        gray = fixtures.random_images(2, size=16)[..., :1]
        out = small.predict(gray, verbose=0)
        self.assertEqual(out.shape, (2, 16, 16, 3 if space == "rgb" else 2))
        low = 0.0 if space == "rgb" else -1.0
        self.assertTrue(np.all((out >= low) & (out <= 1.0)))

    def test_unet_is_the_autoencoder_plus_skips(self):
        def count(model, cls):
            return len([l for l in model.layers if isinstance(l, cls)])

        ae, unet = col.build_autoencoder(), col.build_unet()
        self.assertEqual(count(ae, keras.layers.Concatenate), 0)
        self.assertEqual(count(unet, keras.layers.Concatenate), 3)
        for cls in (keras.layers.Conv2D, keras.layers.Conv2DTranspose):
            self.assertEqual(count(ae, cls), count(unet, cls))
        self.assertEqual(unet.get_layer("bottleneck").output.shape, (None, 4, 4, 128))

    def test_every_weight_gets_a_gradient(self):
        model = small_model()
        gray, target = col.training_pair(fixtures.random_images(2, size=16), "lab")
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(gray, training=True) - target))
        grads = tape.gradient(loss, model.trainable_weights)
        for w, g in zip(model.trainable_weights, grads):
            self.assertIsNotNone(g, w.path)
            self.assertGreater(float(tf.reduce_sum(tf.abs(g))), 0.0, w.path)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "multiples of 8"):
            col.build_unet((30, 30, 1))
        with self.assertRaisesRegex(ValueError, r"gray \(H, W, 1\)"):
            col.build_unet((32, 32, 3))
        with self.assertRaisesRegex(ValueError, "Unknown model 'gan'; expected one of auto"):
            col.build_colorizer("gan")
        with self.assertRaisesRegex(ValueError, "Unknown color space 'hsv'"):
            col.build_autoencoder(color_space="hsv")
        with self.assertRaisesRegex(ValueError, "not a colorizer"):
            col.describe(models.build_resnet(1))

    def test_saved_models_reload_in_plain_keras(self):
        model = small_model("unet", "lab")
        folder = tempfile.mkdtemp()
        gray = fixtures.random_images(3, size=16)[..., :1]
        np.save(os.path.join(folder, "gray.npy"), gray)
        for fmt in ("h5", "keras"):
            saving.save_model(model, os.path.join(folder, f"m.{fmt}"))
        # A Python that never imports this project, as a user of the files has.
        code = (
            "import sys, keras, numpy as np; d = sys.argv[1]; g = np.load(d + '/gray.npy')\n"
            "for f in ('h5', 'keras'):\n"
            "    m = keras.models.load_model(f'{d}/m.{f}')\n"
            "    np.save(f'{d}/out_{f}.npy', m.predict(g, verbose=0))\n"
            "    print(m.name)"
        )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
        r = subprocess.run(
            [sys.executable, "-c", code, folder],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(r.stdout.split(), ["colorizer_unet_lab"] * 2)
        expected = model.predict(gray, verbose=0)
        for fmt in ("h5", "keras"):
            got = np.load(os.path.join(folder, f"out_{fmt}.npy"))
            self.assertAllClose(got, expected, atol=1e-5)


class MetricsTest(tf.test.TestCase):
    def test_identical_images(self):
        images = fixtures.random_images(3).astype("float32") / 255.0
        m = evaluation.image_metrics(images, images)
        self.assertAllClose(m["mse"], [0, 0, 0])
        self.assertAllClose(m["ssim"], [1, 1, 1], atol=1e-6)
        self.assertTrue(np.all(np.isinf(m["psnr"])))

    def test_known_difference(self):
        a = np.zeros((2, 32, 32, 3), "float32")
        b = np.full((2, 32, 32, 3), 0.5, "float32")
        m = evaluation.image_metrics(a, b)
        self.assertAllClose(m["mse"], [0.25, 0.25])
        self.assertAllClose(m["psnr"], [10 * np.log10(4)] * 2, atol=1e-4)
        self.assertAllLess(m["ssim"], 0.01)  # no structure or brightness in common

    def test_tiny_images_use_a_smaller_ssim_window(self):
        images = fixtures.random_images(2, size=8).astype("float32") / 255.0
        self.assertAllClose(evaluation.image_metrics(images, images)["ssim"], [1, 1], atol=1e-6)

    def test_evaluate_model_and_gray_baseline(self):
        images = fixtures.random_images(5, size=16)
        model = small_model("autoencoder", "rgb")
        result = evaluation.evaluate_colorizer(model, images, "rgb", batch_size=2, keep=3)
        self.assertEqual(result["predicted"].shape, (3, 16, 16, 3))
        gray = col.training_pair(images, "rgb")[0]
        expected = evaluation.image_metrics(col.gray_as_color(gray), images / 255.0)
        for k in ("mse", "psnr", "ssim"):
            self.assertAllClose(result["gray"][k], expected[k], atol=1e-5)
            self.assertEqual(result["model"][k].shape, (5,))


def write_pictures(folder):
    """Pictures of several sizes, modes and formats, and two broken files."""
    rng = np.random.default_rng(0)
    palette = Image.fromarray(rng.integers(0, 256, (33, 17, 3), dtype=np.uint8)).quantize()
    pics = {
        "photo.jpg": Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)),
        "gray.png": Image.fromarray(rng.integers(0, 256, (9, 13), dtype=np.uint8)),
        "alpha.png": Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)),
        "scan16.png": Image.fromarray(rng.integers(0, 65536, (20, 30), dtype=np.uint16)),
        "palette.gif": palette,
    }
    for name, im in pics.items():
        im.save(os.path.join(folder, name))
    with open(os.path.join(folder, "corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    open(os.path.join(folder, "empty.png"), "wb").close()
    return {name: (im.size[1], im.size[0]) for name, im in pics.items()}


class ApplyTest(tf.test.TestCase):
    def test_several_sizes_and_broken_files_through_the_script(self):
        folder = tempfile.mkdtemp()
        sizes = write_pictures(folder)
        model_path = saving.save_model(small_model("unet", "lab"), os.path.join(folder, "c.h5"))
        out = os.path.join(folder, "out")
        files = [
            os.path.join(folder, n)
            for n in (
                "photo.jpg",
                "corrupt.jpg",
                "gray.png",
                "alpha.png",
                "empty.png",
                "scan16.png",
                "palette.gif",
            )
        ]
        r = run_script("scripts.colorize", "apply", model_path, *files, f"--out={out}")
        self.assertEqual(r.returncode, 1, r.stderr[-3000:])  # 1: some files were skipped
        errors = r.stderr.strip().splitlines()
        self.assertLen(errors, 2, r.stderr)
        self.assertIn("corrupt.jpg: unreadable image", errors[0])
        self.assertIn("empty.png: unreadable image", errors[1])
        for name, (h, w) in sizes.items():
            target = os.path.join(out, os.path.splitext(name)[0] + "_colorized.png")
            with Image.open(target) as im:
                self.assertEqual((im.mode, im.size), ("RGB", (w, h)), name)

    def test_lab_keeps_the_full_resolution_lightness(self):
        model = small_model("unet", "lab")
        last = model.get_layer("ab")
        # A constant a* = b* = 12.8 tint, in gamut for mid grays, so nothing is clipped.
        last.set_weights([np.zeros_like(last.get_weights()[0]), np.arctanh([0.1, 0.1])])
        gray = np.random.default_rng(0).integers(60, 200, (9, 13, 1)).astype("float32")
        out = col.colorize_image(model, gray, "lab")
        self.assertEqual((out.shape, out.dtype), ((9, 13, 3), np.uint8))
        # Pixel noise survives the 16x16 model copy: L* comes from the full image.
        back = col.to_gray(out.astype("float32") / 255.0, "lab").numpy() * 255.0
        self.assertAllClose(back, gray, atol=1.0)
        lab = col.rgb_to_lab(out.astype("float32") / 255.0).numpy()
        self.assertAllClose(lab[..., 1:], np.full((9, 13, 2), 12.8), atol=1.5)

    def test_rgb_model_keeps_the_size(self):
        model = small_model("autoencoder", "rgb")
        out = col.colorize_image(model, np.full((21, 5, 1), 128.0, "float32"), "rgb")
        self.assertEqual((out.shape, out.dtype), ((21, 5, 3), np.uint8))


@unittest.skipUnless(HAS_CIFAR, NEEDS_CIFAR)
class RealDataTest(tf.test.TestCase):
    """One short training run through the script, shared by the tests below."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.out = tempfile.mkdtemp()
        cls.result = run_script(
            "scripts.colorize",
            "train",
            "--model=unet",
            "--color_space=lab",
            "--epochs=2",
            f"--data_dir={fixtures.REAL_CIFAR10}",
            "--train_limit=300",
            "--val_size=60",
            "--test_limit=100",
            "--batch_size=32",
            f"--output_dir={cls.out}",
            "--verbose=0",
            "--formats=h5,keras",
        )
        cls.model_path = os.path.join(cls.out, "saved_models", "colorizer_unet_lab.h5")
        cls.config = tasks.ColorizeConfig(
            data_dir=fixtures.REAL_CIFAR10, train_limit=200, test_limit=100, val_size=0
        )

    def test_train_writes_everything_and_lowers_the_loss(self):
        r = self.result
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertRegex(r.stdout, r"test MSE 0\.\d+, PSNR [\d.]+ dB, SSIM [\d.]+ \(gray input")
        for part in (
            "saved_models/colorizer_unet_lab.keras",
            "plots/colorization/colorizer_unet_lab_eval.png",
            "plots/colorization/colorizer_unet_lab_examples.png",
        ):
            self.assertTrue(os.path.isfile(os.path.join(self.out, part)), part)
        run = os.path.join(self.out, "runs", "colorizer_unet_lab")
        with open(os.path.join(run, "history.json")) as f:
            history = json.load(f)
        self.assertLen(history["val_loss"], 2)
        self.assertLess(history["loss"][1], history["loss"][0])
        with open(os.path.join(run, "flags.json")) as f:
            self.assertEqual(json.load(f)["train_images"], 240)
        with open(os.path.join(run, "test_mse.json")) as f:
            self.assertLen(json.load(f)["model_mse"], 100)

    def test_eval_beside_the_gray_baseline_keeps_other_rows(self):
        results = tempfile.mkdtemp()
        other = {
            "model": "autoencoder",
            "color_space": "rgb",
            "test_images": 7,
            "data": "x",
            "mse": 0.5,
            "psnr": 3.0,
            "ssim": 0.1,
        }
        with open(os.path.join(results, "colorization.json"), "w") as f:
            json.dump({"colorizers": {"older.h5": other}}, f)
        row = tasks.evaluate_file(self.model_path, self.config, results, log=lambda s: None)
        with open(os.path.join(results, "colorization.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["colorizers"]["older.h5"], other)
        self.assertEqual(saved["colorizers"]["colorizer_unet_lab.h5"]["mse"], row["mse"])
        (baseline,) = saved["baselines"].values()
        self.assertEqual((baseline["test_images"], baseline["color_space"]), (100, "lab"))
        self.assertBetween(row["ssim"], 0.0, 1.0)
        with open(os.path.join(results, "colorization.md")) as f:
            md = f.read()
        self.assertIn("| older.h5 | autoencoder | rgb |", md)
        self.assertIn("| colorizer_unet_lab.h5 | unet | lab | 100 cifar10 |", md)
        self.assertIn("| (baseline) | gray input as colour (luminance gray) | lab |", md)

    def test_unreadable_results_file_is_refused_not_replaced(self):
        results = tempfile.mkdtemp()
        path = os.path.join(results, "colorization.json")
        with open(path, "w") as f:
            f.write("{ half a table")
        with self.assertRaisesRegex(ValueError, "colorization.json: not a results table"):
            tasks.evaluate_file(self.model_path, self.config, results, log=lambda s: None)
        with open(path) as f:
            self.assertEqual(f.read(), "{ half a table")

    def test_probe_against_a_random_encoder(self):
        results = tempfile.mkdtemp()
        row = tasks.probe_file(self.model_path, self.config, results, epochs=2, log=lambda s: None)
        self.assertEqual((row["feature_dim"], row["classes"], row["train_images"]), (128, 10, 200))
        for k in ("trained_accuracy", "random_accuracy"):
            self.assertBetween(row[k], 0.0, 1.0)
        with open(os.path.join(results, "colorization.md")) as f:
            self.assertIn("| colorizer_unet_lab.h5 | 10 (cifar10) | 200 / 100 | 2 |", f.read())

    def test_eval_through_the_script(self):
        r = run_script(
            "scripts.colorize",
            "eval",
            self.model_path,
            f"--output_dir={self.out}",
            f"--data_dir={fixtures.REAL_CIFAR10}",
            "--test_limit=50",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("gray input as colour: MSE", r.stdout)
        self.assertTrue(os.path.isfile(os.path.join(self.out, "results", "colorization.md")))


class BadInputTest(tf.test.TestCase):
    def test_one_line_and_exit_2(self):
        folder = tempfile.mkdtemp()
        resnet = saving.save_model(models.build_resnet(1), os.path.join(folder, "resnet.h5"))
        # Each case costs a TensorFlow start-up; the config checks below cover the rest.
        cases = [
            (["colour"], "Unknown command 'colour'; expected one of train, eval, apply, probe"),
            (["train", "--opt=sgd"], "--opt is not used by scripts.colorize; it is taken by"),
            (["eval", resnet], "is not a colorizer"),
        ]
        for args, message in cases:
            r = run_script("scripts.colorize", *args, f"--output_dir={folder}")
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)

    def test_config_checks(self):
        config = tasks.ColorizeConfig()
        config.validate()
        for change, message in [
            (dict(epochs=0), "--epochs must be at least 1"),
            (dict(lr=0.0), "--lr must be positive"),
            (dict(formats=("onnx",)), "Unknown format 'onnx'"),
            (dict(model="gan"), "Unknown model 'gan'"),
            (dict(color_space="hsv"), "Unknown color space 'hsv'"),
            (dict(image_size=30), "--image_size must be a multiple of 8"),
        ]:
            with self.assertRaisesRegex(ValueError, message):
                dataclasses.replace(config, **change).validate()


if __name__ == "__main__":
    tf.test.main()
