"""scripts.resnet_vs_plain end to end, and its paper-mode configuration."""

import json
import os
import shutil

import numpy as np
import tensorflow as tf
from absl import flags

from resnet_keras.classification import report
from resnet_keras.configs import presets
from resnet_keras.configs import resnet_vs_plain as experiment
from resnet_keras.data import cifar, pipeline
from resnet_keras.run import saving
from scripts import resnet_vs_plain
from tests import fixtures
from tests.fixtures import run_script


class PairConfigTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["prog"])

    def test_paper_recipe(self):
        settings = dict(experiment.DEFAULTS, **presets.PAPER)
        settings.pop("formats")
        c20 = experiment.pair_config("resnet", 20, settings, paper=True)
        self.assertEqual(
            (c20.shortcut, c20.normalization, c20.schedule), ("identity", "per_pixel", "paper")
        )
        self.assertEqual((c20.n, c20.warmup_steps, c20.val_size), (3, 0, 5000))
        self.assertEqual(c20.epochs, 182)  # 352 steps of 128 from 45k images: 64k steps
        c110 = experiment.pair_config("resnet", 110, settings, paper=True)
        self.assertEqual((c110.n, c110.warmup_steps), (18, 400))
        plain = experiment.pair_config("plain", 56, settings, paper=True)
        self.assertEqual((plain.model, plain.run_name), ("plain", "plainnet-56"))

    def test_runs_meant_to_differ_have_their_own_names(self):
        settings = dict(experiment.DEFAULTS)
        settings.pop("formats")
        names = {
            (seed, val): experiment.pair_config(
                "resnet", 20, dict(settings, val_size=val), paper=False, seed=seed
            ).run_name
            for seed in (0, 2)
            for val in (5000, 1000, 0)
        }
        self.assertEqual(
            names,
            {
                (0, 5000): "resnet-20",
                (0, 1000): "resnet-20",  # a trial size: refused beside a finished run
                (0, 0): "resnet-20-val0",
                (2, 5000): "resnet-20-seed2",
                (2, 1000): "resnet-20-seed2",
                (2, 0): "resnet-20-seed2-val0",
            },
        )
        c = experiment.pair_config("plain", 32, settings, paper=False, seed=7)
        self.assertEqual((c.seed, c.run_name), (7, "plainnet-32-seed7"))

    def test_seeds(self):
        self.assertEqual(resnet_vs_plain.parse_seeds(["0", "1", "2"]), [0, 1, 2])
        for bad, said in (
            (["x"], "not a whole number"),
            (["-1"], "between 0"),
            (["1", "1"], "twice"),
        ):
            with self.assertRaisesRegex(ValueError, f"--seeds: .*{said}"):
                resnet_vs_plain.parse_seeds(bad)

    def test_every_paper_depth_builds(self):
        for depth in (20, 32, 44, 56, 110):
            self.assertEqual(
                resnet_vs_plain.parse_pairs([str(depth)], ["resnet"]), [("resnet", depth)]
            )
        with self.assertRaisesRegex(ValueError, "6n\\+2"):
            resnet_vs_plain.parse_pairs(["21"], ["resnet"])
        with self.assertRaisesRegex(ValueError, "Unknown model 'dense'"):
            resnet_vs_plain.parse_pairs(["20"], ["dense"])


class SeedDifferencesTest(tf.test.TestCase):
    def test_pairs_matched_by_seed_only(self):
        def row(model, depth, seed, acc, images=45000):
            return dict(
                model=model, depth=depth, seed=seed, test_accuracy_pct=acc, train_images=images
            )

        rows = [
            row("resnet", 20, 0, 3.0),
            row("resnet", 20, 1, 5.0),
            row("resnet", 20, 2, 7.0),
            row("plain", 20, 0, 2.0),
            row("plain", 20, 1, 3.0),
            row("plain", 20, 2, 4.0),
            row("plain", 20, 3, 99.0),  # no ResNet partner: left out of the pairing
            row("resnet", 32, 0, 9.0),  # one seed against depth 20: no test
            row("resnet", 20, 0, 50.0, images=50000),  # another training set: its own network
        ]
        text = report.seed_differences(rows)
        # differences 1, 2, 3 (the stats test's case): +2.00 +- 1.00, t = 3.46, p = 0.0742
        self.assertIn(
            "ResNet-20 minus PlainNet-20, 45000 training images, seeds 0, 1, 2: +2.00 +- 1.00 "
            "points (mean +- sd of the per-seed differences; paired t = 3.46, 2 df, "
            "two-sided p = 0.0742)",
            text,
        )
        self.assertEqual(text.count("\n- "), 1)
        self.assertEqual(report.seed_differences(rows[:1] + rows[3:4]), "")


class DepthComparisonsTest(tf.test.TestCase):
    def test_which_runs_are_paired_on_the_test_images(self):
        y = np.zeros(8, int)

        def run(name, model, depth, seed, images, right):
            pred = np.where(np.arange(8) < right, 0, 1)
            return dict(run=name, model=model, depth=depth, seed=seed, train_images=images), {
                "y_true": y,
                "y_pred": pred,
            }

        made = [
            run("resnet-20", "resnet", 20, 0, 45000, 5),
            run("plainnet-20", "plain", 20, 0, 45000, 4),
            run("resnet-32", "resnet", 32, 0, 45000, 6),
            run("resnet-20-val0", "resnet", 20, 0, 50000, 7),
            run("plainnet-20-seed1", "plain", 20, 1, 45000, 3),  # no partner at seed 1
        ]
        rows = [r for r, _ in made]
        preds = {r["run"]: p for r, p in made}
        text = report.depth_comparisons(rows, preds)
        pairs = [line.split(":")[0] for line in text.splitlines() if line.startswith("- ")]
        self.assertEqual(
            pairs,
            [
                "- resnet-20 vs plainnet-20",
                "- resnet-32 vs resnet-20",
                "- resnet-20-val0 vs resnet-20",  # all 50k images against 45k, same seed
            ],
        )
        self.assertIn("resnet-20-val0 alone right on 2 images, resnet-20 alone on 0", text)


class _EndToEnd:
    """The study on a few hundred images of `data_dir`: train, report, reuse."""

    def test_train_report_and_reuse(self):
        out = self.create_tempdir().full_path
        args = [
            "--depths=8,14",
            "--models=resnet,plain",
            f"--data_dir={self.data_dir}",
            "--train_limit=300",
            "--val_size=100",
            "--test_limit=200",
            "--epochs=1",
            f"--output_dir={out}",
            "--verbose=0",
        ]
        r = run_script("scripts.resnet_vs_plain", *args, "--publish")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        # The report is drawn in reports/resnet_vs_plain/; --publish copied it
        # and the models (each in its run folder) to the shared places.
        plots = os.path.join(out, "reports", "resnet_vs_plain", "plots", "resnet")
        expected = ["error_vs_depth.png", "misclassified-8.png", "misclassified-14.png"]
        for stem in ("resnet-8", "resnet-14", "plainnet-8", "plainnet-14"):
            h5 = os.path.join(out, "runs", stem, f"{stem}.h5")
            self.assertEqual(saving.class_names_of(h5), list(cifar.CIFAR10_CLASSES), stem)
            self.assertTrue(os.path.isfile(os.path.join(out, "saved_models", f"{stem}.h5")), stem)
            expected += [f"{stem}.png", f"confusion-{stem}.png"]
        drawn = fixtures.tree_hashes(plots)
        self.assertCountEqual(drawn, expected)
        self.assertEqual(fixtures.tree_hashes(os.path.join(out, "plots", "resnet")), drawn)
        with open(os.path.join(out, "results", "resnet_architecture.md")) as f:
            self.assertIn("| total |  |  | 20 |  | 274,042 |", f.read())  # ResNet-20 as built
        with open(os.path.join(out, "results", "resnet_vs_plain.json")) as f:
            rows = json.load(f)["rows"]
        self.assertCountEqual(
            [(r["model"], r["depth"]) for r in rows],
            [("resnet", 8), ("resnet", 14), ("plain", 8), ("plain", 14)],
        )
        (_, _), (xt, yt) = cifar.load_cifar("cifar10", self.data_dir)
        xt, yt = pipeline.limit(xt, yt, 200, seed=0)
        for row in rows:
            stem = f"{report.FILE_STEM[row['model']]}-{row['depth']}"
            with open(os.path.join(out, "runs", stem, "metrics.json")) as f:
                metrics = json.load(f)
            self.assertEqual(row["test_accuracy_pct"], round(100 * metrics["test_accuracy"], 2))
            self.assertEqual(row["epochs"], 1)
            # What the confusion matrix and the misclassified grid are drawn from.
            with np.load(os.path.join(out, "runs", stem, "test_predictions.npz")) as p:
                y_true, y_pred, wrong = p["y_true"], p["y_pred"], p["wrong_index"]
                self.assertAllEqual(y_true, yt[:, 0])
                self.assertAlmostEqual(np.mean(y_true == y_pred), metrics["test_accuracy"])
                # Misclassified test images, each once, as many as the grid takes.
                self.assertLen(set(wrong), min(64, np.sum(y_true != y_pred)))
                self.assertAllEqual(y_true[wrong] != y_pred[wrong], [True] * len(wrong))
                self.assertAllEqual(p["wrong_images"], xt[wrong])
        with open(os.path.join(out, "results", "resnet_vs_plain.md")) as f:
            text = f.read()
        self.assertIn("| resnet | 14 |", text)
        # A line per run: epochs, training time and the machine with its CPU class.
        self.assertRegex(
            text,
            r"- resnet-14: 1 epochs, [\d.]+ min of training, .*\(.*\), \d+ cores, "
            r"(no GPU|\d GPU\(s\)), TensorFlow 2\.",
        )

        # --report_only redraws from runs/ alone, the same figures: no data (no
        # --data_dir), no training.
        shutil.rmtree(plots)
        r = run_script(
            "scripts.resnet_vs_plain",
            "--depths=8,14",
            f"--output_dir={out}",
            "--report_only",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertNotIn("training", r.stdout)
        self.assertEqual(fixtures.tree_hashes(plots), drawn)

        # A finished pair is reused, not retrained.
        r = run_script("scripts.resnet_vs_plain", *args[:1], "--models=resnet", *args[2:])
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("resnet-8: finished run", r.stdout)
        self.assertNotIn("training (", r.stdout)

        # Another --epochs is another run: the finished one is neither reused
        # nor replaced, unless --retrain says so.
        other = [
            "--depths=8",
            "--models=plain",
            *args[2:6],
            "--epochs=2",
            f"--output_dir={out}",
            "--verbose=0",
        ]
        r = run_script("scripts.resnet_vs_plain", *other)
        self.assertEqual(r.returncode, 2, r.stderr[-3000:])
        self.assertIn(
            "runs/plainnet-8 holds a finished run made with other settings (epochs 1 -> 2)",
            r.stderr,
        )
        r = run_script("scripts.resnet_vs_plain", *other, "--retrain")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        with open(os.path.join(out, "runs", "plainnet-8", "metrics.json")) as f:
            self.assertEqual(json.load(f)["epochs"], 2)


class EndToEndTest(_EndToEnd, fixtures.FixtureImagesTestCase):
    pass


class EndToEndRealDataTest(_EndToEnd, fixtures.RealImagesTestCase):
    pass


if __name__ == "__main__":
    tf.test.main()
