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


if __name__ == "__main__":
    tf.test.main()
