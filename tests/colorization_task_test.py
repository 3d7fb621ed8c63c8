"""resnet_keras.colorization.task: the run's configuration checks, the
examples figure's images, and `eval` / `probe` with their results
table, on an image folder the tests write and on real CIFAR-10 images (slow).

Training through the script is in colorize_test.py.
"""

import dataclasses
import json
import os

import keras
import numpy as np
import tensorflow as tf

from resnet_keras import files, stats
from resnet_keras.colorization import color, models, probe, report, task
from resnet_keras.colorization import metrics as colorizer_metrics
from resnet_keras.colorization.config import ColorizeConfig
from resnet_keras.data import cifar, pipeline
from resnet_keras.run import saving
from tests import fixtures


class ConfigTest(tf.test.TestCase):
    def test_config_checks(self):
        config = ColorizeConfig()
        config.validate()
        for change, message in [
            (dict(epochs=0), "--epochs must be at least 1"),
            (dict(lr=0.0), "--lr must be positive"),
            (dict(formats=("onnx",)), "Unknown format 'onnx'"),
            (dict(model="gan"), "Unknown model 'gan'"),
            (dict(color_space="hsv"), "Unknown color space 'hsv'"),
            (dict(image_size=30), "--image_size must be a multiple of 8"),
            (dict(patience=-1), "--patience must be at least 0"),
            (dict(patience=3, val_size=0), "--val_size 0 holds out no validation images"),
        ]:
            with self.assertRaisesRegex(ValueError, message):
                dataclasses.replace(config, **change).validate()


class RunOfTest(tf.test.TestCase):
    def test_only_a_model_in_saved_models_has_the_run_beside_it(self):
        out = self.create_tempdir().full_path
        os.makedirs(os.path.join(out, "runs", "m"))
        with open(os.path.join(out, "runs", "m", "metrics.json"), "w") as f:
            json.dump({"epochs": 40, "best_epoch": 30, "train_time_s": 90, "hardware": "h"}, f)
        run = report.run_of(os.path.join(out, "saved_models", "m.h5"))
        self.assertEqual((run["epochs"], run["best_epoch"], run["max_epochs"]), (40, 30, None))
        self.assertEqual(
            report.run_line("m.h5", run),
            "- m.h5: 40 epochs (best validation MSE at epoch 30), 1.5 min of training, h",
        )
        # A copy elsewhere (say ./m.h5 beside runs/) is not the run's model.
        self.assertIsNone(report.run_of(os.path.join(out, "m.h5")))
        self.assertIsNone(report.run_of(os.path.join(out, "saved_models", "n.h5")))
        # A model in its own run folder: that run.
        self.assertEqual(report.run_of(os.path.join(out, "runs", "m", "m.h5")), run)
        # A shipped model: the record the repository ships, not a user's run of that name
        # (on a fresh clone, runs/ is empty and the record is all there is).
        shipped = os.path.join(out, "results", "runs", "m")
        os.makedirs(shipped)
        with open(os.path.join(shipped, "metrics.json"), "w") as f:
            json.dump({"epochs": 57, "hardware": "the shipped one's"}, f)
        published = report.run_of(os.path.join(out, "saved_models", "m.h5"))
        self.assertEqual(published["epochs"], 57)
        # A published model: the run published.json names.
        files.write_json(
            os.path.join(out, "published.json"),
            {"saved_models/m.h5": {"owner": "runs/m", "source": "runs/m/m.h5"}},
        )
        self.assertEqual(report.run_of(os.path.join(out, "saved_models", "m.h5")), run)


class ExampleIndicesTest(tf.test.TestCase):
    def test_one_image_of_each_of_eight_classes_spread_over_all(self):
        labels = np.repeat(np.arange(10), 5)[::-1].copy()  # sorted by class, backwards
        idx = task.example_indices(labels)
        self.assertAllEqual(labels[idx], [0, 1, 3, 4, 5, 6, 8, 9])
        self.assertAllEqual(idx, [45, 40, 30, 25, 20, 15, 5, 0])  # each class's first image

    def test_fewer_classes_than_examples_fill_up_in_order(self):
        self.assertAllEqual(task.example_indices(np.array([0, 0, 1, 1, 1])), [0, 2, 1, 3, 4])


class LinearProbeTest(tf.test.TestCase):
    def test_beats_chance_where_the_class_shows_in_gray(self):
        # Ten classes of fixtures.easy_images: their lightness tells them apart.
        def split(n, offset):
            x = np.concatenate([fixtures.easy_images(k, n, offset + k, 16) for k in range(10)])
            return x, np.repeat(np.arange(10), n).reshape(-1, 1)

        model = fixtures.small_colorizer("unet", "lab")
        before = [w.copy() for w in model.get_weights()]
        result = probe.linear_probe(
            model, "lab", split(20, 0), split(10, 100), 10, epochs=20, batch_size=16, lr=1e-2
        )
        self.assertEqual(result["feature_dim"], model.get_layer("bottleneck").output.shape[-1])
        # Chance is 0.1; the random encoder's features show lightness too.
        self.assertGreater(result["trained_accuracy"], 0.3)
        self.assertGreater(result["random_accuracy"], 0.3)
        for a, b in zip(before, model.get_weights()):
            self.assertAllEqual(a, b)  # the probed model is left as it was
        # Each probe's predicted classes, for a paired test: they give its accuracy.
        y_test = split(10, 100)[1].reshape(-1)
        for e in ("trained", "random"):
            got = np.mean(result[f"{e}_predictions"] == y_test)
            self.assertAlmostEqual(got, result[f"{e}_accuracy"], places=6)


class _ResultsTable:
    """`evaluate_file` and `probe_file` on `data_dir`, with a default-width
    U-Net (untrained: what is tested is which images they score, how, and
    the table they write)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        model = models.build_colorizer("unet", color_space="lab")
        folder = fixtures.class_tempdir(cls)
        cls.model_path = saving.save_model(model, os.path.join(folder, "colorizer_unet_lab.h5"))

    def config(self):
        return ColorizeConfig(data_dir=self.data_dir, train_limit=200, test_limit=100, val_size=0)

    def split(self, name, n):
        """The first `n` class-balanced images of a split, as the runs choose them."""
        train, test = cifar.load_cifar("cifar10", self.data_dir)
        return pipeline.limit(*(train if name == "train" else test), n, seed=0)

    def test_eval_beside_the_gray_baseline_keeps_other_rows(self):
        results = self.create_tempdir().full_path
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
        row = task.evaluate_file(self.model_path, self.config(), results, log=lambda s: None)
        # The scores of the 100 test images, computed here from the model's output.
        xt, _ = self.split("test", 100)
        truth = xt.astype("float32") / 255.0
        gray = color.to_gray(truth, "lab") * 255.0
        model = keras.models.load_model(self.model_path, compile=False)
        rgb = color.to_rgb(model.predict(gray, verbose=0), gray, "lab").numpy()
        mse = np.mean(np.square(rgb - truth), axis=(1, 2, 3))
        self.assertAllClose(row["mse"], np.mean(mse), rtol=1e-4)
        self.assertAllClose(row["psnr"], np.mean(10 * np.log10(1 / mse)), rtol=1e-4)
        capped = np.minimum(10 * np.log10(1 / mse), 20 * np.log10(255))
        self.assertAllClose(row["psnr_capped"], np.mean(capped), rtol=1e-4)
        self.assertAllClose(row["psnr_of_mean_mse"], 10 * np.log10(1 / np.mean(mse)), rtol=1e-4)
        ssim = colorizer_metrics.image_metrics(rgb, truth)["ssim"]
        self.assertAllClose(row["ssim"], np.mean(ssim), rtol=1e-4)
        self.assertEqual((row["test_images"], row["image_size"]), (100, 32))
        with open(os.path.join(results, "colorization.json")) as f:
            saved = json.load(f)
        self.assertEqual(saved["colorizers"]["older.h5"], other)
        self.assertEqual(saved["colorizers"]["colorizer_unet_lab.h5"], row)
        (baseline,) = saved["baselines"].values()
        self.assertEqual((baseline["test_images"], baseline["color_space"]), (100, "lab"))
        gray_mse = np.mean(np.square(np.repeat(gray / 255.0, 3, axis=-1) - truth), axis=(1, 2, 3))
        self.assertAllClose(baseline["mse"], np.mean(gray_mse), rtol=1e-3)
        with open(os.path.join(results, "colorization.md")) as f:
            md = f.read()
        self.assertIn("| older.h5 | autoencoder | rgb |", md)
        self.assertIn(
            f"| colorizer_unet_lab.h5 | unet | lab | 100 cifar10 | {row['mse']:.5f} | "
            f"{row['psnr_capped']:.2f} | {row['psnr_of_mean_mse']:.2f} | {row['psnr']:.2f} |",
            md,
        )
        self.assertIn("| (baseline) | gray input as colour (luminance gray) | lab |", md)
        # The model's capped PSNR against the gray input's, all images then by colourfulness.
        cap = 20 * np.log10(255)
        psnr, gray_psnr = (np.minimum(10 * np.log10(1 / m), cap) for m in (mse, gray_mse))
        everything, *groups = row["against_gray"]
        self.assertAllClose(everything["psnr"], row["psnr_capped"], rtol=1e-4)
        self.assertAllClose(everything["gray_psnr"], baseline["psnr_capped"], rtol=1e-4)
        self.assertAllClose(everything["above_gray"], np.mean(psnr > gray_psnr))
        self.assertEqual([g["images"] for g in groups], [25] * 4)
        chroma = colorizer_metrics.colorfulness(xt)
        least = np.argsort(chroma, kind="stable")[:25]
        self.assertAllClose(groups[0]["chroma"], [chroma[least].min(), chroma[least].max()])
        self.assertAllClose(groups[0]["median_psnr"], np.median(psnr[least]), rtol=1e-4)
        self.assertIn(
            f"| colorizer_unet_lab.h5 | all 100 | any | {row['psnr_capped']:.2f} / "
            f"{baseline['psnr_capped']:.2f} |",
            md,
        )
        self.assertEqual(md.count("| older.h5 |"), 1)  # a row without the comparison: none
        # The paired sign test over the same images, and the evaluation's own record.
        sign = stats.sign_test(psnr, gray_psnr)
        self.assertAllClose(everything["sign_p"], sign["p_value"])
        self.assertAllClose(everything["below_gray"], sign["below"] / 100)
        self.assertEqual(row["evaluation"]["cores"], os.cpu_count())
        self.assertIn("- colorizer_unet_lab.h5: `python ", md)
        self.assertIn("- older.h5: command, commit and machine not recorded", md)

    def test_unreadable_results_file_is_refused_not_replaced(self):
        results = self.create_tempdir().full_path
        path = os.path.join(results, "colorization.json")
        with open(path, "w") as f:
            f.write("{ half a table")
        with self.assertRaisesRegex(ValueError, "colorization.json: not a results table"):
            task.evaluate_file(self.model_path, self.config(), results, log=lambda s: None)
        with open(path) as f:
            self.assertEqual(f.read(), "{ half a table")
        self.assertEqual(os.listdir(results), ["colorization.json"])

    def test_probe_row_is_the_probe_of_the_configs_splits(self):
        results = self.create_tempdir().full_path
        row = task.probe_file(self.model_path, self.config(), results, epochs=2, log=lambda s: None)
        self.assertEqual((row["feature_dim"], row["classes"], row["train_images"]), (128, 10, 200))
        # The same probe on the 200 training and 100 test images chosen here.
        model = keras.models.load_model(self.model_path, compile=False)
        want = probe.linear_probe(
            model, "lab", self.split("train", 200), self.split("test", 100), 10, epochs=2
        )
        for k in ("trained_accuracy", "random_accuracy"):
            self.assertAlmostEqual(row[k], want[k], places=6, msg=k)
        # The paired test of the two probes, from their predictions.
        y_test = self.split("test", 100)[1]
        test = stats.mcnemar(y_test, want["trained_predictions"], want["random_predictions"])
        self.assertEqual(row["paired"], {k: test[k] for k in row["paired"]})
        self.assertEqual(row["invocation"]["cores"], os.cpu_count())  # its record
        with open(os.path.join(results, "colorization.md")) as f:
            text = f.read()
        right = [round(row[f"{e}_accuracy"] * 100) for e in ("trained", "random")]
        self.assertIn(
            "| colorizer_unet_lab.h5 | 10 (cifar10) | 200 / 100 | 2 | "
            f"{row['trained_accuracy']:.4f} ({stats.interval_text(right[0], 100)}) | "
            f"{row['random_accuracy']:.4f} ({stats.interval_text(right[1], 100)}) |",
            text,
        )
        self.assertIn(
            "- colorizer_unet_lab.h5: "
            + stats.comparison_text("trained encoder", "random encoder", test),
            text,
        )
        self.assertIn("- colorizer_unet_lab.h5: `python ", text)


class ResultsTableTest(_ResultsTable, fixtures.FixtureImagesTestCase):
    pass


class ResultsTableRealDataTest(_ResultsTable, fixtures.RealImagesTestCase):
    pass


if __name__ == "__main__":
    tf.test.main()
