"""scripts.question1 end to end, as a user runs it (a subprocess)."""

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import tensorflow as tf
from absl import app, flags
from absl.testing import flagsaver

from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(module, *args, cwd=None, env=None):
    """Runs `python -m module args`; `env` adds variables (e.g. fixtures.AVX2_CPU)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_in_process(module, *args):
    """`run_script` without a new process: the script's command line (its
    `cli`, through scripts/common.py `run`, the entry a user's run takes)
    called here, its exit status and what it printed returned alike.

    Every flag is put back as it was afterwards, so cases do not see each
    other's values or defaults. Output that bypasses Python's sys.stderr (C++
    logging) is not caught: a few cases of each table run in a subprocess.
    """
    script = importlib.import_module(module)
    app.define_help_flags()  # before the flags are saved: --help, as `run` would define it
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with flagsaver.flagsaver(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        flags.FLAGS.unparse_flags()
        try:
            script.cli([module, *args])
        except SystemExit as e:
            code = 0 if e.code is None else e.code
        finally:
            if not flags.FLAGS.is_parsed():  # a refused command line leaves them unparsed
                flags.FLAGS.mark_as_parsed()  # as conftest.py has them
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


@unittest.skipUnless(
    os.path.isdir(fixtures.REAL_CIFAR10),
    "needs the real CIFAR-10 image folder at ../shared/datasets/cifar10",
)
class Question1EndToEndTest(tf.test.TestCase):
    def test_few_hundred_real_images(self):
        out = tempfile.mkdtemp()
        r = run_script(
            "scripts.question1",
            f"--data_dir={fixtures.REAL_CIFAR10}",
            "--epochs=2",
            "--train_limit=400",
            "--val_size=100",
            "--test_limit=200",
            "--n=1",
            f"--output_dir={out}",
            "--verbose=0",
            "--formats=h5,keras",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertRegex(r.stdout, r"Test accuracy: 0\.\d{4}")
        h5 = os.path.join(out, "saved_models", "resnet_cifar10.h5")
        self.assertTrue(os.path.isfile(h5))
        self.assertTrue(os.path.isfile(os.path.join(out, "saved_models", "resnet_cifar10.keras")))
        self.assertTrue(os.path.isfile(os.path.join(out, "plots", "question1_resnet8_cifar10.png")))
        run = os.path.join(out, "runs", "question1_resnet8_cifar10")
        with open(os.path.join(run, "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual((flags["opt"], flags["epochs"], flags["train_images"]), ("adam", 2, 300))
        with open(os.path.join(run, "history.json")) as f:
            history = json.load(f)
        self.assertLen(history["loss"], 2)
        self.assertLen(history["val_accuracy"], 2)
        with open(os.path.join(run, "metrics.json")) as f:
            metrics = json.load(f)
        printed = float(r.stdout.split("Test accuracy: ")[1].split()[0])
        self.assertAlmostEqual(metrics["test_accuracy"], printed, places=4)
        self.assertGreater(metrics["img_per_s"], 0)
        # The saved model takes raw 0-255 images and gives the logged accuracy.
        import keras

        from resnet_keras import data, pipeline

        model = keras.models.load_model(h5)
        (_, _), (xt, yt) = data.load_cifar("cifar10", fixtures.REAL_CIFAR10)
        xt, yt = pipeline.limit(xt, yt, 200, seed=0)
        acc = np.mean(model.predict(xt, verbose=0).argmax(1) == yt[:, 0])
        self.assertAlmostEqual(acc, metrics["test_accuracy"], places=4)


class BadInputTest(tf.test.TestCase):
    def test_bad_flags_get_one_line_and_exit_2(self):
        # In this process; robustness_test's table runs some in a subprocess.
        out = tempfile.mkdtemp()
        keep = os.path.join(out, "saved_models", "resnet_cifar10.h5")
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
            (["--nesterov"], "--nesterov is SGD's momentum; --opt is adam"),
            (["--recompute", "--nofused_bn"], "--recompute needs --fused_bn"),
        ]
        for args, message in cases:
            r = run_in_process("scripts.question1", *args, f"--output_dir={out}")
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr)
            self.assertNotIn("Traceback", r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        with open(keep) as f:
            self.assertEqual(f.read(), "an earlier result")

    def test_python_format_data_through_the_script(self):
        root = tempfile.mkdtemp()
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


class FastScheduleTest(tf.test.TestCase):
    def test_preset_brings_its_settings_and_flags_still_win(self):
        root = tempfile.mkdtemp()
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
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
        self.assertBetween(metrics["test_accuracy_tta"], 0.0, 1.0)
        self.assertBetween(metrics["test_accuracy_tta_shifts"], 0.0, 1.0)
        self.assertIn("with flips 0.", r.stdout)
        import keras

        model = keras.models.load_model(
            os.path.join(root, "a", "saved_models", "resnet_cifar10.h5")
        )
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
        self.assertNotIn("test_accuracy_tta", metrics)  # --notta; the preset's six views stay
        self.assertBetween(metrics["test_accuracy_tta_shifts"], 0.0, 1.0)
        self.assertIn("with flips and shifts", r.stdout)
        self.assertNotIn("with flips 0.", r.stdout)


if __name__ == "__main__":
    tf.test.main()
