"""scripts.question3 end to end, as a user runs it (a subprocess): transfer
from a saved project model on a few hundred images (an image folder the tests
write, and real CIFAR-10 images, slow), a failed download, and bad flags."""

import json
import os
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from resnet_keras.classification import models
from resnet_keras.configs import question3 as experiment
from resnet_keras.data import cifar, pipeline
from resnet_keras.run import saving
from tests import fixtures
from tests.fixtures import run_script


class _FromAProjectBase:
    """question3 on a few hundred images of `data_dir`, from a saved project ResNet."""

    def test_few_hundred_images_from_a_project_base(self):
        out = self.create_tempdir().full_path
        keras.utils.set_random_seed(0)
        base = saving.save_model(models.build_resnet(1), os.path.join(out, "resnet_cifar10.h5"))
        common = [
            f"--data_dir={self.data_dir}",
            f"--base={base}",
            "--train_limit=400",
            "--val_size=100",
            "--test_limit=200",
            f"--output_dir={out}",
            "--verbose=0",
        ]
        r = run_script("scripts.question3", *common, "--epochs=2", "--fine_tune_epochs=1")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        stem = "resnet_cifar10_transfer_ft1_cifar10_adam"
        self.assertRegex(r.stdout, rf"Test accuracy: 0\.\d{{4}} \({stem}\)")
        h5 = os.path.join(out, "runs", f"question3_{stem}", f"{stem}.h5")
        with open(os.path.join(out, "runs", f"question3_{stem}", "metrics.json")) as f:
            metrics = json.load(f)
        self.assertTrue(metrics["cache_features"])
        self.assertEqual((metrics["epochs"], metrics["fine_tune_start_epoch"]), (3, 2))
        # The run's kept predictions are the fine-tuned model's, the head's beside them.
        run = os.path.dirname(h5)
        for name, key in (
            ("test_predictions.npz", "test_accuracy"),
            ("head_test_predictions.npz", "head_test_accuracy"),
        ):
            with np.load(os.path.join(run, name)) as p:
                self.assertAlmostEqual(np.mean(p["y_pred"] == p["y_true"]), metrics[key], places=4)
        with np.load(os.path.join(run, "test_predictions.npz")) as p:
            final = p["y_pred"]
        with np.load(os.path.join(run, "fine_tune", "test_predictions.npz")) as p:
            self.assertAllEqual(final, p["y_pred"])
        # The saved model takes raw 32x32 images and gives the logged accuracy.
        (_, _), (xt, yt) = cifar.load_cifar("cifar10", self.data_dir)
        xt, yt = pipeline.limit(xt, yt, 200, seed=0)
        model = keras.models.load_model(h5)
        predicted = model.predict(xt, verbose=0).argmax(1)
        self.assertAlmostEqual(np.mean(predicted == yt[:, 0]), metrics["test_accuracy"], places=4)
        self.assertAllEqual(predicted, final)  # the saved (fine-tuned) model's predictions
        self.assertEqual(saving.class_names_of(h5), list(cifar.CIFAR10_CLASSES))
        # The same network from scratch: a second row, a second curve in the same figure.
        scratch = ["--epochs=1", "--weights=none", "--train_base"]
        r = run_script("scripts.question3", *common, *scratch, "--publish")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        with open(os.path.join(out, "results", "question3.json")) as f:
            rows = json.load(f)["rows"]
        self.assertEqual(
            [(r["mode"], r["train_images"]) for r in rows],
            [("transfer_ft1", 300), ("scratch", 300)],
        )
        self.assertTrue(all(r["interval_pct"] for r in rows))
        with open(os.path.join(out, "results", "question3.md")) as f:
            self.assertIn("transfer_ft1/adam vs resnet_cifar10/random/scratch/adam", f.read())
        plot = os.path.join(out, "plots", "question3_resnet_cifar10_cifar10_300.png")
        self.assertTrue(os.path.isfile(plot))
        # The same command again reuses the finished run instead of training:
        # its run folder and model stay as they were, and its row is the same.
        kept = [os.path.join(out, d) for d in ("runs", "saved_models")]
        before = [fixtures.tree_hashes(d) for d in kept]
        r = run_script("scripts.question3", *common, *scratch, "--publish")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("finished run in", r.stdout)
        self.assertNotIn("features:", r.stdout)
        self.assertEqual([fixtures.tree_hashes(d) for d in kept], before)
        with open(os.path.join(out, "results", "question3.json")) as f:
            self.assertEqual(json.load(f)["rows"], rows)


class NamedBaseTest(fixtures.FixtureImagesTestCase):
    def test_a_shipped_reference_model_by_name_through_the_script(self):
        # The name maps to the file shipped with the package: the script's own
        # early check of the base must load that file, not look for "resnet20_cifar10".
        out = self.create_tempdir().full_path
        r = run_script(
            "scripts.question3",
            "--base=resnet20_cifar10",
            f"--data_dir={self.data_dir}",
            "--train_limit=100",
            "--val_size=20",
            "--test_limit=40",
            "--epochs=1",
            f"--output_dir={out}",
            "--verbose=0",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("Test accuracy:", r.stdout)


class FromAProjectBaseTest(_FromAProjectBase, fixtures.FixtureImagesTestCase):
    pass


class FromAProjectBaseRealDataTest(_FromAProjectBase, fixtures.RealImagesTestCase):
    pass


class ScriptTest(tf.test.TestCase):
    def test_failed_imagenet_download_is_one_line(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(root, per_batch=4, test=10)
        # A closed local proxy makes the download fail fast even where there is
        # internet; a fresh KERAS_HOME keeps any cached weights out of reach.
        env = {
            "https_proxy": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "KERAS_HOME": os.path.join(root, "keras"),
        }
        with mock.patch.dict(os.environ, env):
            r = run_script(
                "scripts.question3",
                f"--data_dir={root}",
                "--val_size=0",
                "--weights=imagenet",
                f"--output_dir={root}/out",
            )
        self.assertEqual(r.returncode, 2, r.stderr[-3000:])
        self.assertNotIn("Traceback", r.stderr)
        self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        self.assertRegex(r.stderr, r"^error: could not download ImageNet weights for resnet50 \(")
        self.assertIn("pass --weights PATH to a local notop .h5 file or --weights none", r.stderr)

    def test_bad_flags_get_one_line_and_exit_2(self):
        out = self.create_tempdir().full_path
        # The script's own checks; the library's are in ProjectBaseTest.test_options.
        cases = [
            (["--n=3"], "--n is not used by scripts.question3; it is taken by"),
            (["--all", "--opt=sgd"], "--all runs rmsprop, adam and sgd; drop --opt"),
        ]
        for args, message in cases:
            r = run_script("scripts.question3", *args, f"--output_dir={out}")
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        self.assertEqual(os.listdir(out), [])


class MakeConfigsTest(tf.test.TestCase):
    """configs/question3.py builds every run the script trains (no flags read)."""

    def settings(self, **changes):
        return dict(experiment.DEFAULTS, **{"lr": None, "run_name": None, **changes})

    def test_all_trains_each_original_optimizer_at_its_keras_default_rate(self):
        options, configs = experiment.make_configs(self.settings(), set(), run_all=True)
        self.assertEqual(options.base, "resnet50")
        self.assertEqual(
            [(c.opt, c.lr, c.run_name) for c in configs],
            [
                ("rmsprop", 1e-3, "question3_resnet50_transfer_cifar10_rmsprop"),
                ("adam", 1e-3, "question3_resnet50_transfer_cifar10_adam"),
                ("sgd", 1e-2, "question3_resnet50_transfer_cifar10_sgd"),
            ],
        )
        # A given --lr and --run_name hold for every optimizer, the name suffixed.
        _, configs = experiment.make_configs(
            self.settings(lr=0.05, run_name="trial"), {"lr", "run_name"}, run_all=True
        )
        self.assertEqual(
            [(c.lr, c.run_name) for c in configs],
            [(0.05, "trial_rmsprop"), (0.05, "trial_adam"), (0.05, "trial_sgd")],
        )
        (one,) = experiment.make_configs(self.settings(opt="sgd"), {"opt"})[1]
        self.assertEqual((one.opt, one.lr), ("sgd", 1e-2))

    def test_checks_before_any_work(self):
        with self.assertRaisesRegex(ValueError, "^--all runs rmsprop, adam and sgd; drop --opt$"):
            experiment.make_configs(self.settings(), {"opt"}, run_all=True)
        with self.assertRaisesRegex(ValueError, "--unfreeze must be at most 5"):
            experiment.make_configs(self.settings(unfreeze=6), set())


if __name__ == "__main__":
    tf.test.main()
