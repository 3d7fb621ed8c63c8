"""scripts.question2 and scripts.evaluate end to end, CIFAR-100 included."""

import json
import os
import re

import keras
import numpy as np
import tensorflow as tf
from absl import flags

from resnet_keras import files, stats
from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.classification import report
from resnet_keras.configs import question2 as experiment
from resnet_keras.data import cifar, pipeline
from tests import fixtures
from tests.fixtures import run_script


def printed_scores(stdout, name):
    """(accuracy, loss) that scripts.evaluate printed for `name`."""
    m = re.search(
        re.escape(name) + r": test accuracy ([\d.]+) \(95 % interval [\d.]+-[\d.]+ %\), "
        r"test loss ([\d.]+)",
        stdout,
    )
    assert m, f"no line for {name} in {stdout!r}"
    return float(m.group(1)), float(m.group(2))


class ConfigTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["prog"])

    def test_original_three_bring_their_batch_sizes_and_names(self):
        settings = dict(experiment.DEFAULTS)
        settings.pop("formats")
        got = [experiment.make_config(n, o, settings, set()) for n, o in experiment.ALL]
        self.assertEqual(
            [(c.n, c.opt, c.batch_size) for c in got],
            [(7, "rmsprop", 128), (7, "adam", 64), (5, "sgd", 256)],
        )
        self.assertEqual(
            [experiment.config_name(c.n, c.opt, "cifar10") for c in got],
            ["resnet_n7_RMSprop", "resnet_n7_Adam", "resnet_n5_SGD"],
        )
        self.assertEqual(experiment.config_name(5, "sgd", "cifar100"), "resnet_n5_SGD_cifar100")
        c = experiment.make_config(7, "adam", dict(settings, batch_size=32), {"batch_size"})
        self.assertEqual(c.batch_size, 32)

    def test_the_config_files_table_is_what_all_trains(self):
        # configs/question2.py shows a reader every run --all trains: its table
        # must stay the configurations make_config gives.
        lines = [
            line.split()
            for line in experiment.__doc__.splitlines()
            if line.strip().startswith("question2_resnet")
        ]
        settings = dict(experiment.DEFAULTS)
        got = [experiment.make_config(n, o, settings, set()) for n, o in experiment.ALL]
        self.assertEqual(
            [(w[0], int(w[1]), int(w[-3]), float(w[-2]), int(w[-1])) for w in lines],
            [(c.run_name, c.n, c.batch_size, c.learning_rate, c.epochs) for c in got],
        )


class Cifar100Test(tf.test.TestCase):
    """No CIFAR-100 exists here: a python-format copy written by the test."""

    def assertPrinted(self, stdout, name, probs, y):
        """scripts.evaluate's line for `name` gives the scores of `probs`."""
        want = classifier_metrics.evaluate_predictions(probs, y)
        accuracy, loss = printed_scores(stdout, name)
        self.assertEqual(accuracy, round(want["accuracy"], 4), name)
        self.assertAlmostEqual(loss, want["loss"], places=3, msg=name)

    def test_question1_question2_and_evaluate_on_cifar100(self):
        root = self.create_tempdir().full_path
        written = fixtures.write_cifar100_python(root, train=240, test=100)
        _, (xt, yt) = written["fine"]
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
        q1 = os.path.join(out, "runs", "question1_resnet8_cifar100", "resnet8_cifar100.h5")
        r = run_script(
            "scripts.question2", *common, "--opt=sgd", "--label_mode=coarse", "--publish"
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        q2 = os.path.join(out, "saved_models", "resnet_n1_SGD_cifar100.h5")
        self.assertEqual(keras.models.load_model(q2).output_shape, (None, 20))
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
        model = keras.models.load_model(q1)
        self.assertEqual(model.output_shape, (None, 100))
        probs = model.predict(xt, verbose=0)
        self.assertPrinted(r.stdout, q1, probs, yt)
        top5 = classifier_metrics.evaluate_predictions(probs, yt)["top5_accuracy"]
        self.assertIn(f", top-5 accuracy {top5:.4f}", r.stdout)
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
        views = classifier_metrics.predict_tta(model, xt, probs, tta=True, tta_shifts=True)
        self.assertPrinted(r.stdout, f"{q1} with flips", views["tta"], yt)
        self.assertPrinted(r.stdout, f"{q1} with flips and shifts", views["tta_shifts"], yt)
        # --record: the printed scores and paired test in a JSON file, with its record.
        record = os.path.join(root, "evaluation.json")
        both = [q1, q1, f"--data_dir={root}", "--dataset=cifar100", f"--record={record}"]
        r = run_script("scripts.evaluate", *both)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        with open(record) as f:
            saved = json.load(f)
        self.assertEqual(saved["test_images"], len(yt))
        self.assertIn("scripts.evaluate", " ".join(saved["invocation"]["argv"]))
        accuracy, loss = printed_scores(r.stdout, q1)
        row = saved["models"][q1]
        self.assertEqual(
            (round(row["test_accuracy"], 4), round(row["test_loss"], 4)), (accuracy, loss)
        )
        self.assertEqual(row["sha256"], files.sha256(q1))
        (paired,) = saved["paired"]
        self.assertEqual((paired["a_only"], paired["b_only"], paired["p_value"]), (0, 0, 1.0))
        # An existing record is never overwritten: one line, exit 2, before any work.
        r = run_script("scripts.evaluate", *both)
        self.assertEqual(r.returncode, 2)
        self.assertIn("evaluation.json: exists; move it aside", r.stderr)
        self.assertLen(r.stderr.strip().splitlines(), 1)
        # A 20-class model on the 100-class labels: one line, exit 2.
        r = run_script("scripts.evaluate", q2, f"--data_dir={root}", "--dataset=cifar100")
        self.assertEqual(r.returncode, 2)
        self.assertIn("predicts 20 classes but the data set has 100", r.stderr)
        self.assertLen(r.stderr.strip().splitlines(), 1)


class EnsembleRowTest(tf.test.TestCase):
    def test_mean_softmax_of_two_or_more_runs_on_the_same_images(self):
        y = np.array([0, 1, 2])
        a = np.array([[0.6, 0.4, 0.0], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])
        b = np.array([[0.2, 0.8, 0.0], [0.2, 0.8, 0.0], [0.0, 0.4, 0.6]])
        row = report.ensemble_row([(a, y, 10), (b, y, 5)], "cifar10")
        # mean: [.4 .6 0], [.4 .6 0], [0 .2 .8] -> wrong, right, right
        self.assertEqual(row["test_accuracy_pct"], round(200 / 3, 2))
        self.assertAlmostEqual(row["test_loss"], round(-np.mean(np.log([0.4, 0.6, 0.8])), 4))
        self.assertEqual(
            (row["params"], row["run"], row["test_top5_accuracy_pct"]), (15, "ensemble", None)
        )
        self.assertIsNone(report.ensemble_row([(a, y, 10)], "cifar10"))  # one run: none
        self.assertIsNone(report.ensemble_row([], "cifar10"))
        other = np.array([0, 1, 1])  # other test images
        self.assertIsNone(report.ensemble_row([(a, y, 10), (b, other, 5)], "cifar10"))
        self.assertIsNone(report.ensemble_row([(a, y, 10), (b[:2], y[:2], 5)], "cifar10"))
        wide = np.full((3, 100), 0.01)  # more than 10 classes: top-5 too
        self.assertEqual(
            report.ensemble_row([(wide, y, 1)] * 2, "cifar100")["test_top5_accuracy_pct"], 100
        )


class _AllConfigurations:
    """question2 --all on a few hundred images of `data_dir`, then the ensemble."""

    def test_all_three_then_ensemble(self):
        out = self.create_tempdir().full_path
        r = run_script(
            "scripts.question2",
            "--all",
            f"--data_dir={self.data_dir}",
            "--epochs=1",
            "--train_limit=300",
            "--val_size=100",
            "--test_limit=200",
            f"--output_dir={out}",
            "--verbose=0",
            "--publish",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        names = ["resnet_n7_RMSprop", "resnet_n7_Adam", "resnet_n5_SGD"]
        models = [os.path.join(out, "saved_models", f"{n}.h5") for n in names]
        self.assertTrue(
            os.path.isfile(os.path.join(out, "plots", "question2_multi_config_comparison.png"))
        )
        with open(os.path.join(out, "results", "question2.json")) as f:
            rows = json.load(f)["rows"]
        *rows, ensemble_row = rows
        self.assertEqual([r["batch_size"] for r in rows], [128, 64, 256])
        self.assertEqual([r["run"] for r in rows], [f"question2_{n}" for n in names])
        self.assertEqual(ensemble_row["run"], "ensemble")
        with open(os.path.join(out, "results", "question2.md")) as f:
            md = f.read()
        for n, row in zip(names, rows):  # a line per run: epochs, time, hardware
            self.assertIn(
                f"- question2_{n} (cifar10): 1 epochs, {row['train_time_min']} min of training, "
                f"{row['wall_time_min']} min from first start to finish, {row['hardware']}, commit {row['commit']}",
                md,
            )
        self.assertIn("TensorFlow", rows[0]["hardware"])
        r = run_script(
            "scripts.evaluate",
            *models[:2],
            f"--data_dir={self.data_dir}",
            "--test_limit=200",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("airplane ", r.stdout)
        # Each model's line is its run's own test (the same 200 images), and
        # the ensemble's is the mean of their softmax outputs.
        (_, _), (xt, yt) = cifar.load_cifar("cifar10", self.data_dir)
        xt, yt = pipeline.limit(xt, yt, 200, seed=0)
        probs = []
        for k, (name, path, row) in enumerate(zip(names, models, rows)):
            with open(os.path.join(out, "runs", f"question2_{name}", "metrics.json")) as f:
                metrics = json.load(f)
            self.assertEqual(row["test_accuracy_pct"], round(100 * metrics["test_accuracy"], 2))
            probs.append(keras.models.load_model(path).predict(xt, verbose=0))
            if k < 2:
                accuracy, _ = printed_scores(r.stdout, path)
                self.assertEqual(accuracy, round(metrics["test_accuracy"], 4), name)
        ensemble = classifier_metrics.evaluate_predictions(np.mean(probs[:2], 0), yt)
        self.assertEqual(
            printed_scores(r.stdout, "ensemble of 2")[0], round(ensemble["accuracy"], 4)
        )
        # The paired test of the two models, from their predictions on the same images.
        paired = stats.mcnemar(yt, probs[0].argmax(-1), probs[1].argmax(-1))
        self.assertIn(stats.comparison_text(models[0], models[1], paired), r.stdout)
        self.assertIn(
            stats.comparison_text(
                f"question2_{names[0]}",
                f"question2_{names[1]}",
                stats.mcnemar(yt, probs[0].argmax(-1), probs[1].argmax(-1)),
            ),
            md,
        )
        # The table's ensemble row is the three saved models' mean softmax.
        ensemble = classifier_metrics.evaluate_predictions(np.mean(probs, 0), yt)
        self.assertAllClose(
            [ensemble_row["test_accuracy_pct"], ensemble_row["test_loss"]],
            [round(100 * ensemble["accuracy"], 2), round(ensemble["loss"], 4)],
            atol=1e-3,
        )
        self.assertEqual(ensemble_row["params"], sum(r["params"] for r in rows))
        self.assertIn(
            f"| ensemble of these 3 (mean softmax) | cifar10 | {ensemble_row['params']} |", md
        )
        self.assertNotIn("- ensemble", md)  # no run line: it is no run


class AllConfigurationsTest(_AllConfigurations, fixtures.FixtureImagesTestCase):
    pass


class AllConfigurationsRealDataTest(_AllConfigurations, fixtures.RealImagesTestCase):
    pass


class BadInputTest(tf.test.TestCase):
    def test_one_line_exit_2(self):
        out = self.create_tempdir().full_path
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
        self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)


if __name__ == "__main__":
    tf.test.main()
