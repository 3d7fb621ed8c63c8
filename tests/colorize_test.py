"""scripts.colorize end to end, as a user runs it: train and eval on a few
hundred images (an image folder the tests write, and real CIFAR-10 images,
slow), apply to pictures of every kind, and bad input."""

import json
import os
import shutil
from unittest import mock

import numpy as np
import tensorflow as tf
from PIL import Image

from resnet_keras.classification import models
from resnet_keras.colorization import task
from resnet_keras.configs import colorize as experiment
from resnet_keras.run import folders, saving
from tests import fixtures
from tests.fixtures import run_in_process, run_script


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
        folder = self.create_tempdir().full_path
        sizes = write_pictures(folder)
        model_path = saving.save_model(
            fixtures.small_colorizer("unet", "lab"), os.path.join(folder, "c.h5")
        )
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


class ApplyFolderTest(tf.test.TestCase):
    def test_a_folder_gives_its_pictures_and_outputs_are_replaced_only_on_request(self):
        folder = self.create_tempdir().full_path
        pictures = os.path.join(folder, "pictures")
        os.makedirs(os.path.join(pictures, "sub"))
        for name in ("a.png", "b.jpg", "sub/c.png"):
            Image.fromarray(fixtures.random_images(1, size=16)[0]).save(
                os.path.join(pictures, name)
            )
        with open(os.path.join(pictures, "._a.png"), "wb") as f:  # macOS resource fork
            f.write(b"\x00\x05\x16\x07")
        model = saving.save_model(fixtures.small_colorizer(), os.path.join(folder, "c.h5"))
        out = os.path.join(folder, "out")
        r = run_in_process("scripts.colorize", "apply", model, pictures, f"--out={out}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertCountEqual(os.listdir(out), ["a_colorized.png", "b_colorized.png"])
        # Again: refused, the earlier output untouched; --overwrite replaces it.
        target = os.path.join(out, "a_colorized.png")
        os.utime(target, (0, 0))
        r = run_in_process("scripts.colorize", "apply", model, pictures, f"--out={out}")
        self.assertEqual(r.returncode, 2)
        self.assertIn("a_colorized.png: already exists; pass --overwrite", r.stderr)
        self.assertEqual(os.stat(target).st_mtime, 0)
        r = run_in_process(
            "scripts.colorize", "apply", model, pictures, f"--out={out}", "--overwrite"
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreater(os.stat(target).st_mtime, 0)
        r = run_in_process("scripts.colorize", "eval", model, "--overwrite")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--overwrite is for apply", r.stderr)


class TooLargeTest(tf.test.TestCase):
    def test_pictures_past_pillows_own_limit_are_refused_up_front_too(self):
        folder = self.create_tempdir().full_path
        picture = os.path.join(folder, "p.png")
        Image.new("L", (16, 16)).save(picture)
        # Pillow refuses to open pictures of over twice its limit (179 megapixels).
        with mock.patch.object(Image, "MAX_IMAGE_PIXELS", 100):
            with self.assertRaisesRegex(ValueError, "p.png: Image size .* shrink it first"):
                task.check_pictures([picture], [], overwrite=False)


class _Train:
    """One short training run through the script on `data_dir`, shared by the tests below."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.out = fixtures.class_tempdir(cls)
        cls.result = run_script(
            "scripts.colorize",
            "train",
            "--model=unet",
            "--color_space=lab",
            "--epochs=2",
            f"--data_dir={cls.data_dir}",
            "--train_limit=300",
            "--val_size=60",
            "--test_limit=100",
            "--batch_size=32",
            f"--output_dir={cls.out}",
            "--verbose=0",
            "--formats=h5,keras",
            "--publish",
        )
        cls.model_path = os.path.join(cls.out, "saved_models", "colorizer_unet_lab.h5")
        cls.run_dir = os.path.join(cls.out, "runs", "colorizer_unet_lab")

    def metrics(self):
        with open(os.path.join(self.run_dir, "metrics.json")) as f:
            return json.load(f)

    def test_train_writes_everything_and_lowers_the_loss(self):
        r = self.result
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        metrics = self.metrics()
        t, g = metrics["test"], metrics["gray_baseline"]
        self.assertIn(
            f"test MSE {t['mse']:.5f}, PSNR {t['psnr']:.2f} dB, SSIM {t['ssim']:.4f} "
            f"(gray input: MSE {g['mse']:.5f}, PSNR {g['psnr']:.2f} dB",
            r.stdout,
        )
        for part in (
            "saved_models/colorizer_unet_lab.keras",
            "plots/colorization/colorizer_unet_lab_eval.png",
            "plots/colorization/colorizer_unet_lab_examples.png",
        ):
            self.assertTrue(os.path.isfile(os.path.join(self.out, part)), part)
        with open(os.path.join(self.run_dir, "history.json")) as f:
            history = json.load(f)
        self.assertLen(history["val_loss"], 2)
        self.assertLess(history["loss"][1], history["loss"][0])
        self.assertEqual(metrics["epochs"], 2)
        with open(os.path.join(self.run_dir, "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual((flags["train_images"], flags["val_images"]), (240, 60))
        # The script's defaults train to the validation plateau; --epochs caps it.
        self.assertEqual((flags["patience"], flags["min_epochs"], flags["epochs"]), (10, 30, 2))
        # The per-image errors the figure is drawn from are the test's.
        with open(os.path.join(self.run_dir, "test_mse.json")) as f:
            per_image = json.load(f)
        self.assertLen(per_image["model_mse"], 100)
        self.assertAllClose(np.mean(per_image["model_mse"]), t["mse"], rtol=1e-5)
        self.assertAllClose(np.mean(per_image["gray_mse"]), g["mse"], rtol=1e-5)

    def test_a_named_run_names_its_files_and_leaves_the_default_ones_alone(self):
        before = {
            p: open(os.path.join(self.out, p), "rb").read()
            for p in ("saved_models/colorizer_unet_lab.h5",)
        }
        args = [
            "train",
            "--model=unet",
            "--color_space=lab",
            "--epochs=1",
            f"--data_dir={self.data_dir}",
            "--train_limit=100",
            "--val_size=20",
            "--test_limit=20",
            "--batch_size=32",
            f"--output_dir={self.out}",
            "--verbose=0",
            "--run_name=trial",
        ]
        r = run_script("scripts.colorize", *args)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        # Unpublished, everything stays in the run's own folder.
        for part in ("trial.h5", "trial_eval.png", "trial_examples.png"):
            self.assertTrue(os.path.isfile(os.path.join(self.out, "runs", "trial", part)), part)
        self.assertFalse(os.path.exists(os.path.join(self.out, "saved_models", "trial.h5")))
        for p, content in before.items():
            self.assertEqual(open(os.path.join(self.out, p), "rb").read(), content, p)
        # The same command again reuses the run, in the words every run function uses.
        trial = os.path.join(self.out, "runs", "trial")
        kept = fixtures.tree_hashes(trial)
        r = run_script("scripts.colorize", *args)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn(folders.reused_line(trial), r.stdout)
        self.assertEqual(fixtures.tree_hashes(trial), kept)

    def evaluate(self, test_limit, *extra):
        return run_script(
            "scripts.colorize",
            "eval",
            self.model_path,
            f"--output_dir={self.out}",
            f"--data_dir={self.data_dir}",
            f"--test_limit={test_limit}",
            *extra,
        )

    def test_eval_through_the_script_scores_the_test_of_the_run(self):
        r = self.evaluate(100, "--figures")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("gray input as colour: MSE", r.stdout)
        # The saved model on the run's 100 test images: the run's own figures.
        report = os.path.join(self.out, "reports", "colorize", "results")
        with open(os.path.join(report, "colorization.json")) as f:
            saved = json.load(f)
        row = saved["colorizers"]["colorizer_unet_lab.h5"]
        (baseline,) = saved["baselines"].values()
        metrics = self.metrics()
        for k in ("mse", "psnr", "ssim"):
            self.assertAllClose(row[k], metrics["test"][k], rtol=1e-4, msg=k)
            self.assertAllClose(baseline[k], metrics["gray_baseline"][k], rtol=1e-4, msg=k)
        # The run that trained it, read from its folder beside the model.
        self.assertEqual(
            {k: row["run"][k] for k in ("epochs", "max_epochs", "hardware")},
            {"epochs": 2, "max_epochs": 2, "hardware": metrics["hardware"]},
        )
        self.assertBetween(row["run"]["best_epoch"], 1, 2)
        with open(os.path.join(report, "colorization.md")) as f:
            text = f.read()
        self.assertIn("| colorizer_unet_lab.h5 | unet | lab | 100 cifar10 |", text)
        self.assertRegex(
            text,
            r"- colorizer_unet_lab.h5: 2 epochs of at most 2 \(best validation MSE at epoch "
            r"[12]\), \d+\.\d min of training, .*TensorFlow",
        )
        # --figures: the run's figures drawn again beside the table, from its
        # record and the same 100 test images.
        plots = os.path.join(self.out, "reports", "colorize", "plots", "colorization")
        self.assertCountEqual(
            os.listdir(plots), ["colorizer_unet_lab_eval.png", "colorizer_unet_lab_examples.png"]
        )
        shutil.rmtree(plots)
        # Other test images than the run's: one line, status 2, no figure, the
        # table as it was; without --figures none are drawn.
        with open(os.path.join(report, "colorization.json")) as f:
            before = f.read()
        r = self.evaluate(50, "--figures")
        self.assertEqual(r.returncode, 2)
        self.assertRegex(
            r.stderr, r"--figures: the run that trained .*\(test_images 100 against 50\)"
        )
        self.assertFalse(os.path.exists(plots))
        with open(os.path.join(report, "colorization.json")) as f:
            self.assertEqual(f.read(), before)
        r = self.evaluate(50)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertFalse(os.path.exists(plots))


class TrainTest(_Train, fixtures.FixtureImagesTestCase):
    pass


class TrainRealDataTest(_Train, fixtures.RealImagesTestCase):
    pass


class PatienceSettingsTest(fixtures.FixtureImagesTestCase):
    def test_without_a_stop_min_epochs_is_no_setting_and_eval_needs_no_validation(self):
        out = self.create_tempdir().full_path
        r = fixtures.run_in_process(
            "scripts.colorize", "train", "--patience=0", "--epochs=1", "--train_limit=60",
            "--val_size=0", "--test_limit=20", f"--data_dir={self.data_dir}",
            f"--output_dir={out}", "--verbose=0",
        )  # fmt: skip
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        with open(os.path.join(out, "runs", "colorizer_autoencoder_rgb", "flags.json")) as f:
            flags = json.load(f)
        # min_epochs 30 (the default) would mean nothing here; a run from before
        # the flags (which counts as patience 0, min_epochs 0) resumes as it is.
        self.assertEqual((flags["patience"], flags["min_epochs"]), (0, 0))
        with open(os.path.join(out, "runs", "colorizer_autoencoder_rgb", "metrics.json")) as f:
            self.assertIsNone(json.load(f)["best_epoch"])  # no validation split
        r = fixtures.run_in_process(
            "scripts.colorize", "eval",
            os.path.join(out, "runs", "colorizer_autoencoder_rgb", "colorizer_autoencoder_rgb.h5"),
            "--val_size=0", "--test_limit=20", f"--data_dir={self.data_dir}",
            f"--output_dir={out}",
        )  # fmt: skip
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        # The model in its run folder: the run is the folder it is in.
        with open(os.path.join(out, "reports", "colorize", "results", "colorization.md")) as f:
            self.assertIn("- colorizer_autoencoder_rgb.h5: 1 epochs of at most 1, ", f.read())


class MakeConfigTest(tf.test.TestCase):
    """configs/colorize.py: each command's config from the resolved settings (no flags read)."""

    def test_each_command_gets_its_settings(self):
        settings = dict(experiment.DEFAULTS, run_name=None, epochs=3)
        config, probe_epochs, pictures = experiment.make_config(settings, "train", {"epochs"})
        self.assertEqual((config.epochs, config.patience, config.min_epochs), (3, 10, 30))
        self.assertEqual(
            (probe_epochs, pictures), (experiment.DEFAULTS["probe_epochs"], "colorized")
        )
        self.assertIn("out", settings)  # the caller's settings are left as they were
        # eval and probe train no colorizer: no stop, so no --min_epochs either;
        # probe's --epochs is its classifier's, and only when given.
        for command in ("eval", "probe"):
            config, _, _ = experiment.make_config(settings, command, set())
            self.assertEqual((config.patience, config.min_epochs), (0, 0), command)
        self.assertEqual(experiment.make_config(settings, "probe", {"epochs"})[1], 3)
        self.assertEqual(
            experiment.make_config(settings, "probe", set())[1], experiment.DEFAULTS["probe_epochs"]
        )
        no_stop = experiment.make_config(dict(settings, patience=0), "train", set())[0]
        self.assertEqual(no_stop.min_epochs, 0)
        with self.assertRaisesRegex(ValueError, "multiple of 8"):
            experiment.make_config(dict(settings, image_size=12), "train", set())


class BadInputTest(tf.test.TestCase):
    def test_one_line_and_exit_2(self):
        folder = self.create_tempdir().full_path
        resnet = saving.save_model(models.build_resnet(1), os.path.join(folder, "resnet.h5"))
        # Each case costs a TensorFlow start-up; the config checks
        # (colorization_task_test.ConfigTest) cover the rest.
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

    def test_patience_without_validation_in_process(self):
        folder = self.create_tempdir().full_path
        for args, message in [
            (["--val_size=0"], "--patience 10 stops when the validation MSE stops improving"),
            (["--patience=-1"], "--patience must be at least 0; got -1"),
        ]:
            r = fixtures.run_in_process(
                "scripts.colorize", "train", *args, f"--output_dir={folder}"
            )
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        self.assertEqual(os.listdir(folder), [])


if __name__ == "__main__":
    tf.test.main()
