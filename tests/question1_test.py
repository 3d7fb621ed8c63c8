"""scripts.question1 end to end, as a user runs it (a subprocess)."""

import json
import os

import h5py
import keras
import numpy as np
import tensorflow as tf

from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.classification import pretrained
from resnet_keras.configs import question1 as experiment
from resnet_keras.data import cifar, pipeline
from resnet_keras.run import publish, saving
from tests import fixtures
from tests.fixtures import ROOT, run_in_process, run_script  # noqa: F401 (imported from here)


class ModelNameTest(tf.test.TestCase):
    def test_the_assignments_name_for_resnet20_and_the_depth_otherwise(self):
        # Each depth has its own run folder; its model file must be its own too.
        self.assertEqual(experiment.model_name_for(3, "cifar10"), "resnet_cifar10")
        self.assertEqual(experiment.model_name_for(5, "cifar100"), "resnet32_cifar100")


class _EndToEnd:
    """question1 on a few hundred images of `data_dir` (an image folder)."""

    def test_few_hundred_images(self):
        out = self.create_tempdir().full_path
        r = run_script(
            "scripts.question1",
            f"--data_dir={self.data_dir}",
            "--epochs=2",
            "--train_limit=400",
            "--val_size=100",
            "--test_limit=200",
            "--n=1",
            f"--output_dir={out}",
            "--verbose=0",
            "--formats=h5,keras",
            "--publish",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertRegex(r.stdout, r"Test accuracy: [01]\.\d{4}")
        run = os.path.join(out, "runs", "question1_resnet8_cifar10")
        # The run folder holds every output; --publish copied them to the shared places.
        h5 = os.path.join(out, "saved_models", "resnet8_cifar10.h5")
        published = {
            "saved_models/resnet8_cifar10.h5": "resnet8_cifar10.h5",
            "saved_models/resnet8_cifar10.keras": "resnet8_cifar10.keras",
            "plots/question1_resnet8_cifar10.png": "history.png",
        }
        record = publish.read_record(out)
        for rel, name in published.items():
            with open(os.path.join(out, rel), "rb") as a, open(os.path.join(run, name), "rb") as b:
                self.assertEqual(a.read(), b.read(), rel)
            self.assertEqual(record[rel]["owner"], "runs/question1_resnet8_cifar10")
        with open(os.path.join(run, "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual((flags["opt"], flags["epochs"], flags["train_images"]), ("adam", 2, 300))
        self.assertEqual((flags["val_images"], flags["test_images"]), (100, 200))
        with open(os.path.join(run, "history.json")) as f:
            history = json.load(f)
        self.assertLen(history["loss"], 2)
        self.assertLen(history["val_accuracy"], 2)
        # With held-out images nothing watches the test set during training.
        self.assertEmpty([k for k in history if k.startswith("test_")])
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        printed = float(r.stdout.split("Test accuracy: ")[1].split()[0])
        self.assertAlmostEqual(metrics["test_accuracy"], printed, places=4)
        self.assertEqual(metrics["epochs"], 2)
        self.assertAlmostEqual(metrics["img_per_s"], np.mean(history["img_per_s"]))
        self.assertGreater(min(history["img_per_s"]), 0)
        self.assertEqual(metrics["best_val_accuracy"], max(history["val_accuracy"]))
        # The saved model takes raw 0-255 images and gives the logged accuracy;
        # the .keras file holds the same network.
        model = keras.models.load_model(h5)
        (_, _), (xt, yt) = cifar.load_cifar("cifar10", self.data_dir)
        xt, yt = pipeline.limit(xt, yt, 200, seed=0)
        probs = model.predict(xt, verbose=0)
        acc = np.mean(probs.argmax(1) == yt[:, 0])
        self.assertAlmostEqual(acc, metrics["test_accuracy"], places=4)
        self.assertAlmostEqual(
            classifier_metrics.evaluate_predictions(probs, yt)["loss"],
            metrics["test_loss"],
            places=4,
        )
        other = keras.models.load_model(os.path.join(out, "saved_models", "resnet8_cifar10.keras"))
        self.assertAllClose(other.predict(xt[:8], verbose=0), probs[:8], atol=1e-5)
        # Both files carry the run's class names.
        keras_file = os.path.join(out, "saved_models", "resnet8_cifar10.keras")
        for path in (h5, keras_file):
            self.assertEqual(saving.class_names_of(path), flags["class_names"], path)
        with h5py.File(h5, "r") as f:  # plain h5py reads them
            self.assertEqual(json.loads(f.attrs["class_names"]), list(cifar.CIFAR10_CLASSES))


class Question1EndToEndTest(_EndToEnd, fixtures.FixtureImagesTestCase):
    pass


class Question1RealDataTest(_EndToEnd, fixtures.RealImagesTestCase):
    pass


class PretrainedStartTest(fixtures.FixtureImagesTestCase):
    def test_init_starts_from_the_shipped_network_and_trains_on(self):
        out = self.create_tempdir().full_path
        common = [
            f"--data_dir={self.data_dir}",
            "--init=resnet20_cifar10",
            "--shortcut=identity",
            "--opt=sgd",
            "--train_limit=200",
            "--val_size=50",
            "--test_limit=100",
            "--batch_size=50",
            f"--output_dir={out}",
            "--verbose=0",
            "--run_name=ft",
        ]
        r = run_in_process("scripts.question1", *common, "--lr=1e-9", "--epochs=1")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        tuned = keras.models.load_model(os.path.join(out, "runs", "ft", "resnet_cifar10.h5"))
        shipped = keras.models.load_model(pretrained.path("resnet20_cifar10"))
        # At lr 1e-9 the kernels are the shipped ones; BatchNorm's moving
        # statistics follow this data whatever the rate, so they are left out.
        for layer in ("stem_conv", "stage3_block3_conv2", "predictions"):
            for a, b in zip(tuned.get_layer(layer).weights, shipped.get_layer(layer).weights):
                self.assertAllClose(a, b, atol=1e-6, msg=a.path)
        # Its input layer is the reference's normalisation, not this data's.
        x = fixtures.random_images(2).astype("float32")
        self.assertAllClose(
            tuned.get_layer("normalization")(x), shipped.get_layer("normalization")(x)
        )
        with open(os.path.join(out, "runs", "ft", "flags.json")) as f:
            self.assertEqual(json.load(f)["init"], "resnet20_cifar10")


class BadInputTest(tf.test.TestCase):
    def test_bad_flags_get_one_line_and_exit_2(self):
        # In this process; robustness_test's table runs some in a subprocess.
        out = self.create_tempdir().full_path
        keep = os.path.join(out, "runs", "question1_resnet8_cifar10", "resnet8_cifar10.h5")
        os.makedirs(os.path.dirname(keep))
        with open(keep, "w") as f:
            f.write("an earlier result")
        cases = [
            (["--opt=adagrad"], "Unknown optimizer 'adagrad'; expected one of adam, rmsprop, sgd"),
            (["--n=0"], "--n must be at least 1"),
            (["--epochs=0"], "--epochs must be at least 1"),
            (["--dataset=mnist"], "Unknown dataset 'mnist'"),
            ([f"--data_dir={os.path.join(out, 'missing')}"], "no such file or folder"),
            (["--label_smoothing=1"], "--label_smoothing must be below 1; got 1.0"),
            (["--label_smoothing=-0.1"], "--label_smoothing must be at least 0"),
            (["--nesterov"], "--nesterov is SGD's momentum; a run with adam cannot use it"),
            (["--recompute", "--nofused_bn"], "--recompute needs --fused_bn"),
            (["--init=resnet18"], "Unknown init 'resnet18'; expected one of random, resnet20_"),
            (
                ["--init=resnet20_cifar10"],
                "--init resnet20_cifar10 is ResNet-20 with option-A shortcuts on CIFAR-10: it "
                "needs --model resnet, --n 3, --shortcut identity, --dataset cifar10, "
                "--normalization per_channel; got --model resnet, --n 3, --shortcut projection, "
                "--dataset cifar10, --normalization per_channel",
            ),
            (["--formats="], "--formats is empty: name at least one of h5, keras, savedmodel"),
            (
                ["--init=resnet20_cifar10", "--shortcut=identity", "--normalization=per_pixel"],
                "--init resnet20_cifar10 is ResNet-20 with option-A shortcuts",
            ),
            (["--replace=saved_models/x.h5"], "--replace names files --publish may replace"),
        ]
        for args, message in cases:
            r = run_in_process("scripts.question1", *args, f"--output_dir={out}")
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr)
            self.assertNotIn("Traceback", r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        with open(keep) as f:
            self.assertEqual(f.read(), "an earlier result")
        # Every option was checked before any folder or lock was made.
        self.assertEqual(os.listdir(os.path.join(out, "runs")), ["question1_resnet8_cifar10"])

    def test_python_format_data_through_the_script(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
        r = run_script(
            "scripts.question1",
            f"--data_dir={root}",
            "--n=1",
            "--epochs=1",
            "--val_size=0",
            "--batch_size=16",
            f"--output_dir={root}/out",
            "--verbose=0",
            "--tensorboard",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("python format", r.stdout)
        # tensorboard is a dependency: the flag writes event files.
        logs = os.path.join(root, "out", "runs", "question1_resnet8_cifar10", "tensorboard")
        events = [f for _, _, files in os.walk(logs) for f in files if "tfevents" in f]
        self.assertNotEmpty(events)
        # --val_size 0 (no validation, as --schedule fast): the last weights are tested.
        self.assertRegex(r.stdout, r"Test accuracy: 0\.\d{4}")
        # ... and the test images are scored after each epoch for the curves,
        # the last entry being the tested weights' accuracy.
        run = os.path.join(root, "out", "runs", "question1_resnet8_cifar10")
        with open(os.path.join(run, "history.json")) as f:
            history = json.load(f)
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        self.assertNotIn("val_accuracy", history)
        self.assertAllClose(history["test_accuracy"][-1], metrics["test_accuracy"])


class FastScheduleTest(tf.test.TestCase):
    def assertTtaAccuracies(self, model_path, xt, yt, metrics, names):
        """The run's test-time-augmentation figures, computed again from its saved model."""
        model = keras.models.load_model(model_path)
        probs = model.predict(xt, verbose=0)
        views = classifier_metrics.predict_tta(
            model, xt, probs, "tta" in names, "tta_shifts" in names
        )
        self.assertCountEqual(views, names)
        for name, p in views.items():
            got = classifier_metrics.evaluate_predictions(p, yt)
            self.assertAlmostEqual(metrics[f"test_loss_{name}"], got["loss"], places=3, msg=name)
            self.assertAlmostEqual(metrics[f"test_accuracy_{name}"], got["accuracy"], msg=name)
        return model

    def test_preset_brings_its_settings_and_flags_still_win(self):
        root = self.create_tempdir().full_path
        _, (xt, yt) = fixtures.write_cifar10_python(root, per_batch=20, test=20)
        common = [
            f"--data_dir={root}",
            "--n=1",
            "--epochs=1",
            "--batch_size=16",
            "--verbose=0",
            "--schedule=fast",
        ]
        # A CPU with native bfloat16, faked, so the preset's bfloat16 shows on any host.
        r = run_script(
            "scripts.question1", *common, f"--output_dir={root}/a", env=fixtures.BF16_CPU
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        run = os.path.join(root, "a", "runs", "question1_resnet8_cifar10")
        with open(os.path.join(run, "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual(
            {
                k: flags[k]
                for k in (
                    "opt",
                    "lr",
                    "label_smoothing",
                    "nesterov",
                    "tta",
                    "tta_shifts",
                    "precision",
                    "val_size",
                )
            },
            {
                "opt": "sgd",
                "lr": 0.2,
                "label_smoothing": 0.1,
                "nesterov": True,
                "tta": True,
                "tta_shifts": True,
                "precision": "mixed_bfloat16",
                "val_size": 0,
            },
        )
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        # --val_size 0: the last weights are tested, and saved.
        model_path = os.path.join(run, "resnet8_cifar10.h5")
        model = self.assertTtaAccuracies(model_path, xt, yt, metrics, ["tta", "tta_shifts"])
        self.assertIn(f"with flips {metrics['test_accuracy_tta']:.4f}", r.stdout)
        self.assertEqual(model.output.dtype, "float32")
        # Flags the user sets override the preset.
        r = run_script(
            "scripts.question1",
            *common,
            "--label_smoothing=0",
            "--nonesterov",
            "--nomixed_precision",
            "--notta",
            f"--output_dir={root}/b",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        run = os.path.join(root, "b", "runs", "question1_resnet8_cifar10")
        with open(os.path.join(run, "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual(
            (flags["label_smoothing"], flags["nesterov"], flags["precision"]),
            (0.0, False, "float32"),
        )
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        # --notta; the preset's six views stay.
        model_path = os.path.join(run, "resnet8_cifar10.h5")
        self.assertTtaAccuracies(model_path, xt, yt, metrics, ["tta_shifts"])
        self.assertNotIn("test_accuracy_tta", metrics)
        self.assertIn(f"with flips and shifts {metrics['test_accuracy_tta_shifts']:.4f}", r.stdout)
        self.assertNotIn("with flips 0.", r.stdout)


if __name__ == "__main__":
    tf.test.main()
