"""scripts.question2 and scripts.evaluate end to end, CIFAR-100 included."""

import json
import os
import tempfile
import unittest

import tensorflow as tf
from absl import flags

from scripts import question2
from tests import fixtures
from tests.question1_test import run_script


class ConfigTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["prog"])

    def test_original_three_bring_their_batch_sizes_and_names(self):
        settings = dict(question2.DEFAULTS)
        settings.pop("formats")
        got = [question2.make_config(n, o, settings, set()) for n, o in question2.ALL]
        self.assertEqual(
            [(c.n, c.opt, c.batch_size) for c in got],
            [(7, "rmsprop", 128), (7, "adam", 64), (5, "sgd", 256)],
        )
        self.assertEqual(
            [question2.config_name(c.n, c.opt, "cifar10") for c in got],
            ["resnet_n7_RMSprop", "resnet_n7_Adam", "resnet_n5_SGD"],
        )
        self.assertEqual(question2.config_name(5, "sgd", "cifar100"), "resnet_n5_SGD_cifar100")
        c = question2.make_config(7, "adam", dict(settings, batch_size=32), {"batch_size"})
        self.assertEqual(c.batch_size, 32)


class Cifar100Test(tf.test.TestCase):
    """No CIFAR-100 exists here: a python-format copy written by the test."""

    def test_question1_question2_and_evaluate_on_cifar100(self):
        root = tempfile.mkdtemp()
        fixtures.write_cifar100_python(root, train=240, test=100)
        out = os.path.join(root, "out")
        common = [
            f"--data_dir={root}",
            "--dataset=cifar100",
            "--n=1",
            "--epochs=1",
            "--val_size=40",
            f"--output_dir={out}",
            "--verbose=0",
        ]
        r = run_script("scripts.question1", *common)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        q1 = os.path.join(out, "saved_models", "resnet_cifar100.h5")
        self.assertTrue(os.path.isfile(q1))
        r = run_script("scripts.question2", *common, "--opt=sgd", "--label_mode=coarse")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        q2 = os.path.join(out, "saved_models", "resnet_n1_SGD_cifar100.h5")
        self.assertTrue(os.path.isfile(q2))
        self.assertTrue(
            os.path.isfile(
                os.path.join(out, "plots", "question2_multi_config_comparison_cifar100.png")
            )
        )
        with open(os.path.join(out, "runs", "question2_resnet_n1_SGD_cifar100", "flags.json")) as f:
            cfg = json.load(f)
        self.assertEqual(
            (cfg["num_classes"], cfg["batch_size"], cfg["class_names"][2]), (20, 256, "coarse2")
        )

        r = run_script("scripts.evaluate", q1, f"--data_dir={root}", "--dataset=cifar100")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertRegex(r.stdout, r"test accuracy 0\.\d{4}, test loss \d+\.\d{4}, top-5 accuracy")
        self.assertIn("fine0 ", r.stdout)
        r = run_script(
            "scripts.evaluate",
            q1,
            f"--data_dir={root}",
            "--dataset=cifar100",
            "--tta",
            "--tta_shifts",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertRegex(r.stdout, r"resnet_cifar100\.h5 with flips: test accuracy 0\.\d{4}")
        self.assertRegex(
            r.stdout, r"resnet_cifar100\.h5 with flips and shifts: test accuracy 0\.\d{4}"
        )
        # A 20-class model on the 100-class labels: one line, exit 2.
        r = run_script("scripts.evaluate", q2, f"--data_dir={root}", "--dataset=cifar100")
        self.assertEqual(r.returncode, 2)
        self.assertIn("predicts 20 classes but the data set has 100", r.stderr)
        self.assertLen(r.stderr.strip().splitlines(), 1)


@unittest.skipUnless(
    os.path.isdir(fixtures.REAL_CIFAR10),
    "needs the real CIFAR-10 image folder at ../shared/datasets/cifar10",
)
class AllConfigurationsTest(tf.test.TestCase):
    def test_all_three_then_ensemble(self):
        out = tempfile.mkdtemp()
        r = run_script(
            "scripts.question2",
            "--all",
            f"--data_dir={fixtures.REAL_CIFAR10}",
            "--epochs=1",
            "--train_limit=300",
            "--val_size=100",
            "--test_limit=200",
            f"--output_dir={out}",
            "--verbose=0",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        names = ["resnet_n7_RMSprop", "resnet_n7_Adam", "resnet_n5_SGD"]
        models = [os.path.join(out, "saved_models", f"{n}.h5") for n in names]
        for m in models:
            self.assertTrue(os.path.isfile(m), m)
        self.assertTrue(
            os.path.isfile(os.path.join(out, "plots", "question2_multi_config_comparison.png"))
        )
        with open(os.path.join(out, "results", "question2.json")) as f:
            rows = json.load(f)["rows"]
        self.assertEqual([r["batch_size"] for r in rows], [128, 64, 256])
        r = run_script(
            "scripts.evaluate",
            *models[:2],
            f"--data_dir={fixtures.REAL_CIFAR10}",
            "--test_limit=200",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("ensemble of 2: test accuracy", r.stdout)
        self.assertIn("airplane ", r.stdout)


class BadInputTest(tf.test.TestCase):
    def test_one_line_exit_2(self):
        out = tempfile.mkdtemp()
        for args, message in [
            (["--opt=adagrad"], "Unknown optimizer 'adagrad'"),
            (["--n=0"], "--n must be at least 1"),
            (["--all", "--run_name=x"], "cannot be combined with --all"),
        ]:
            r = run_script("scripts.question2", *args, f"--output_dir={out}")
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        r = run_script("scripts.evaluate", os.path.join(out, "missing.h5"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.h5: no such model file", r.stderr)


if __name__ == "__main__":
    tf.test.main()
