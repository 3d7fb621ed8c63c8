"""resnet_keras.transfer.report: question3's results table and figures."""

import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from resnet_keras.transfer import report


class ResultsTest(tf.test.TestCase):
    def test_rows_merge_by_key_and_the_plot_is_drawn_from_histories(self):
        out = self.create_tempdir().full_path
        row = dict(
            base="resnet50",
            weights="imagenet",
            mode="transfer",
            dataset="cifar10",
            opt="adam",
            train_images=45_000,
            cache_features=True,
            params=24_114_838,
            test_accuracy=0.5,
            run="runs/a",
        )
        report.record(out, row)
        report.record(
            out,
            row
            | {"opt": "sgd", "run": "runs/b", "mode": "transfer_ft5", "fine_tune_start_epoch": 20},
        )
        rows = report.record(out, row | {"test_accuracy": 0.75})
        # A rerun replaces its row (and moves it last); other rows stay.
        self.assertEqual(
            [(r["opt"], r["test_accuracy"]) for r in rows], [("sgd", 0.5), ("adam", 0.75)]
        )
        self.assertEqual(
            sorted(os.listdir(os.path.join(out, "results"))), ["question3.json", "question3.md"]
        )
        with open(os.path.join(out, "results", "question3.md")) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("|")]
        self.assertLen(lines, 4)
        cells = "| resnet50 | imagenet | transfer | cifar10 | adam | 45000 | True | 24114838 |"
        self.assertIn(cells, lines[3])
        for name, n in (("a", 20), ("b", 25)):
            os.makedirs(os.path.join(out, "runs", name))
            training_history = {"accuracy": list(np.linspace(0.1, 0.6, n)), "loss": [1.0] * n}
            with open(os.path.join(out, "runs", name, "history.json"), "w") as f:
                json.dump(training_history, f)
        path = report.plot_results(rows, out, "resnet50", "cifar10", 45_000)
        # One file per base, data set and size: no second copy under another name.
        self.assertEqual(os.path.basename(path), "question3_resnet50_cifar10_45000.png")
        self.assertEqual(os.listdir(os.path.join(out, "plots")), [os.path.basename(path)])
        with Image.open(path) as im:
            self.assertEqual(im.format, "PNG", path)
        self.assertEqual(report.run_label(rows[0]), "sgd, frozen base + fine-tuning")
        with open(os.path.join(out, "results", "question3.json"), "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(ValueError, "question3.json: not a results table"):
            report.record(out, row)

    def test_intervals_and_paired_tests_from_the_runs_predictions(self):
        # 20 test images: A right on 15 (7 of them alone), B on 10 (2 alone).
        # Clopper-Pearson 15/20: 50.90-91.34 %, 10/20: 27.20-72.80 %; McNemar 7 against 2:
        # 2 * P(X <= 2; 9, 1/2) = 2 * 46 / 512 = 0.1797.
        out = self.create_tempdir().full_path
        y = np.arange(20) % 10
        right_a = np.r_[np.ones(15), np.zeros(5)].astype(bool)
        right_b = np.r_[np.ones(8), np.zeros(7), np.ones(2), np.zeros(3)].astype(bool)
        base = dict(base="b", weights="own", dataset="cifar10", opt="adam", train_images=90)
        runs = {
            "head": (base | {"mode": "transfer", "cache_features": True}, right_a),
            "scratch": (base | {"mode": "scratch", "cache_features": False}, right_b),
            # the head again without the feature cache: trained the same way, not compared
            "head_nocache": (base | {"mode": "transfer", "cache_features": False}, right_a),
        }
        for name, (row, right) in runs.items():
            folder = os.path.join(out, "runs", name)
            os.makedirs(folder)
            y_pred = np.where(right, y, (y + 1) % 10)
            np.savez(os.path.join(folder, "test_predictions.npz"), y_true=y, y_pred=y_pred)
            finished = {"history.json": {}, "flags.json": {}, "metrics.json": {"train_images": 90}}
            for file, content in finished.items():  # a finished run's files
                with open(os.path.join(folder, file), "w") as f:
                    json.dump(content, f)
            report.record(out, row | {"run": f"runs/{name}", "test_accuracy": right.mean()})
        rows = report.record(out)  # no new row: the table is redrawn
        self.assertEqual(
            [r["interval_pct"] for r in rows], ["50.90-91.34", "27.20-72.80", "50.90-91.34"]
        )
        with open(os.path.join(out, "results", "question3.md")) as f:
            text = f.read()
        lines = [l for l in text.splitlines() if l.startswith("- ")]
        self.assertEqual(
            lines,
            [
                "- b/own/transfer/adam vs b/own/scratch/adam: b/own/transfer/adam alone right "
                "on 7 images, b/own/scratch/adam alone on 2 (exact McNemar p = 0.18, z = 1.67)"
            ],
        )
        # The run folder now holds another run of that name (other training
        # images), or predictions that do not give the row's accuracy (a
        # fine-tuned run that kept its head's): not the row's, so the row keeps
        # the interval its own predictions gave, and no test is drawn from them.
        scratch = os.path.join(out, "runs", "scratch")
        with open(os.path.join(scratch, "metrics.json"), "w") as f:
            json.dump({"train_images": 2000}, f)
        self.assertEqual(report.record(out)[1]["interval_pct"], "27.20-72.80")
        with open(os.path.join(out, "results", "question3.md")) as f:
            self.assertNotIn("Paired tests", f.read())
        with open(os.path.join(scratch, "metrics.json"), "w") as f:
            json.dump({"train_images": 90}, f)
        y_other = np.where(right_a, y, (y + 1) % 10)  # 75 %, not the row's 50 %
        np.savez(os.path.join(scratch, "test_predictions.npz"), y_true=y, y_pred=y_other)
        self.assertEqual(report.record(out)[1]["interval_pct"], "27.20-72.80")
        with open(os.path.join(out, "results", "question3.md")) as f:
            self.assertNotIn("Paired tests", f.read())
        # Predictions gone: the same.
        os.remove(os.path.join(scratch, "test_predictions.npz"))
        self.assertEqual(report.record(out)[1]["interval_pct"], "27.20-72.80")


if __name__ == "__main__":
    tf.test.main()
