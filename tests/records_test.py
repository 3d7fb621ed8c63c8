"""Every row of every committed results table has its run record in results/runs/.

A number in results/ is only as good as the record of the run that made it
(settings, per-epoch history, test metrics; for runs made since records
existed, the command line, commit, versions and CPU flags too). This test
reads the committed tables and checks, row by row, that the record is there
and says the same number.
"""

import json
import os

import numpy as np
import tensorflow as tf

from resnet_keras import files, stats
from tests.fixtures import ROOT

RESULTS = os.path.join(ROOT, "results")
RECORDS = os.path.join(RESULTS, "runs")
RECORD_FILES = ("flags.json", "history.json", "metrics.json", "log.csv")
# Rows published before run records were kept and not yet made again; each is
# marked so where the README's results table and its docs/ page show it, with its command.
# When the rerun lands, its row gets a record and leaves this list.
AWAITING_RERUN = {"question3": set()}


def _load(name):
    with open(os.path.join(RESULTS, f"{name}.json")) as f:
        return json.load(f)


class RecordsTest(tf.test.TestCase):
    def assertRecord(self, run, accuracy_pct=None):
        folder = os.path.join(RECORDS, run)
        for name in RECORD_FILES:
            self.assertTrue(os.path.isfile(os.path.join(folder, name)), f"{run}: no {name}")
        with open(os.path.join(folder, "metrics.json")) as f:
            metrics = json.load(f)
        if accuracy_pct is not None:
            self.assertEqual(round(100 * metrics["test_accuracy"], 2), accuracy_pct, run)
        # The kept predictions are the tested model's: the tables' intervals and
        # paired tests are computed from them.
        predictions = os.path.join(folder, "test_predictions.npz")
        if os.path.isfile(predictions):
            with np.load(predictions) as p:
                accuracy = float(np.mean(p["y_pred"] == p["y_true"]))
            self.assertAllClose(accuracy, metrics["test_accuracy"], atol=5e-5, msg=run)
        head = os.path.join(folder, "head_test_predictions.npz")  # a fine-tuned transfer run's
        if os.path.isfile(head):
            with np.load(head) as p:
                accuracy = float(np.mean(p["y_pred"] == p["y_true"]))
            self.assertAllClose(accuracy, metrics["head_test_accuracy"], atol=5e-5, msg=run)
        with open(os.path.join(folder, "flags.json")) as f:
            flags = json.load(f)
        for invocation in flags.get("invocations", []):  # records made since they are kept
            for key in ("argv", "git_commit", "versions", "cpu_flags", "started_utc"):
                self.assertIn(key, invocation, run)
        return metrics, flags

    def test_resnet_vs_plain(self):
        for row in _load("resnet_vs_plain")["rows"]:
            self.assertRecord(row["run"], row["test_accuracy_pct"])

    def test_question2(self):
        rows = _load("question2")["rows"]
        members = [r for r in rows if r["run"] != "ensemble"]
        for row in members:
            self.assertRecord(row["run"], row["test_accuracy_pct"])
        # The ensemble row is no run: it is the mean of the members' kept outputs.
        (ensemble,) = [r for r in rows if r["run"] == "ensemble"]
        probs, labels = [], None
        for row in members:
            with np.load(os.path.join(RECORDS, row["run"], "test_predictions.npz")) as p:
                probs.append(p["probs"])
                labels = p["y_true"]
        accuracy = np.mean(np.mean(probs, 0).argmax(-1) == labels)
        self.assertEqual(round(100 * accuracy, 2), ensemble["test_accuracy_pct"])

    def test_colorization(self):
        table = _load("colorization")
        for file, row in table["colorizers"].items():
            metrics, _ = self.assertRecord(os.path.splitext(file)[0])
            self.assertEqual(row["run"]["epochs"], metrics["epochs"], file)

    def test_question3(self):
        for row in _load("question3")["rows"]:
            if row["run"] in AWAITING_RERUN["question3"]:
                continue
            self.assertRecord(os.path.basename(row["run"]), round(100 * row["test_accuracy"], 2))

    def test_question1(self):
        # Published in the README's table of other results, from its record.
        metrics, _ = self.assertRecord("question1_resnet20_cifar10")
        with open(os.path.join(ROOT, "README.md")) as f:
            line = next(l for l in f if l.startswith("| Question 1: ResNet-20"))
        self.assertIn(f"**{100 * metrics['test_accuracy']:.2f} %**", line)

    def test_pretrained(self):
        # The converted reference models on the JPEG copy: an evaluation's record
        # (scripts.evaluate --record) of the very files the package ships, and the
        # accuracies docs/pretrained.md quotes from it.
        record = _load("pretrained")
        for key in ("argv", "git_commit", "versions", "cpu_flags", "started_utc"):
            self.assertIn(key, record["invocation"])
        self.assertEqual(record["test_images"], 10_000)
        with open(os.path.join(ROOT, "docs", "pretrained.md")) as f:
            page = f.read()
        for depth in (20, 32, 44, 56):
            path = f"resnet_keras/classification/weights/resnet{depth}_cifar10.h5"
            row = record["models"][path]
            self.assertEqual(row["sha256"], files.sha256(os.path.join(ROOT, path)), path)
            line = next(
                l for l in page.splitlines() if l.startswith(f"| ResNet-{depth}, akamaster")
            )
            self.assertIn(f"**{100 * row['test_accuracy']:.2f} %**", line)

    def test_results_page_quotes_the_reference_models_records(self):
        # docs/results.md's table of the converted reference models and the
        # runs that use them: each accuracy and interval as its record says.
        with open(os.path.join(ROOT, "docs", "results.md")) as f:
            page = f.read().splitlines()

        def line(start):
            return next(l for l in page if l.startswith(start))

        models = _load("pretrained")["models"]
        for depth in (20, 32, 44, 56):
            row = models[f"resnet_keras/classification/weights/resnet{depth}_cifar10.h5"]
            self.assertIn(
                f"**{100 * row['test_accuracy']:.2f} %** ({row['interval_pct']})",
                line(f"| ResNet-{depth}, akamaster"),
            )
        for depth in (20, 32):
            row = models[f"saved_models/resnet-{depth}.h5"]
            self.assertIn(
                f"**{100 * row['test_accuracy']:.2f} %** ({row['interval_pct']})",
                line(f"| ResNet-{depth}, this project"),
            )
        tuned = np.load(os.path.join(RECORDS, "resnet20_cifar10_finetune", "test_predictions.npz"))
        scratch = np.load(os.path.join(RECORDS, "resnet-20", "test_predictions.npz"))
        paired = stats.mcnemar(tuned["y_true"], tuned["y_pred"], scratch["y_pred"])
        acc = 100 * np.mean(tuned["y_pred"] == tuned["y_true"])
        self.assertIn(
            f"**{acc:.2f} %** ({stats.interval_of(tuned['y_true'], tuned['y_pred'])}), "
            f"against 86.25 % from scratch (McNemar {paired['a_only']} against "
            f"{paired['b_only']}, p = {paired['p_value']:.2g})".replace("e-0", "e-"),
            line("| converted ResNet-20 fine-tuned"),
        )
        rows = {(r["base"], r["mode"]): r for r in _load("question3")["rows"]}
        for mode, start in (
            ("transfer", "| Question 3 on 5,000"),
            ("transfer_ft5", "| the same, then"),
        ):
            row = rows[("resnet56_cifar10", mode)]
            own = rows[("resnet_cifar10", mode)]
            self.assertIn(
                f"**{100 * row['test_accuracy']:.2f} %** ({row['interval_pct']}), against "
                f"{100 * own['test_accuracy']:.2f} %",
                line(start),
            )

    def test_the_rows_awaiting_a_rerun_are_said_to_be_so(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        if AWAITING_RERUN["question3"]:
            self.assertIn("Question 3: transfer on 5,000", readme)
            line = next(l for l in readme.splitlines() if "Question 3: transfer on 5,000" in l)
            self.assertIn("no run record", line)


if __name__ == "__main__":
    tf.test.main()
