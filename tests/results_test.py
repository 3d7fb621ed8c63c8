"""resnet_keras.results: the results tables' rows, merged by key, and their Markdown."""

import json
import os

import tensorflow as tf

from resnet_keras import results

COLUMNS = [("model", "model"), ("depth", "depth"), ("acc", "test accuracy %")]


class MergeTest(tf.test.TestCase):
    def test_new_rows_replace_their_key_and_the_others_stay_in_order(self):
        old = [
            {"model": "resnet", "depth": 20, "acc": 90.0},
            {"model": "plain", "depth": 20, "acc": 89.0},
            {"model": "resnet", "depth": 32, "acc": 91.0},
        ]
        new = [{"model": "plain", "depth": 20, "acc": 88.5}, {"model": "plain", "depth": 32}]
        merged = results.merge_rows(old, new, ("model", "depth"))
        self.assertEqual(merged, [old[0], old[2], *new])
        self.assertEqual(results.merge_rows([], new, ("model",)), new)


class WriteTest(tf.test.TestCase):
    def test_a_rerun_replaces_its_row_in_both_files(self):
        stem = os.path.join(self.create_tempdir().full_path, "results", "study")
        first = [{"model": "resnet", "depth": 20, "acc": 90.071}, {"model": "plain", "depth": 20}]
        results.write_results(stem, first, COLUMNS, ("model", "depth"), "Study", "Made by x.")
        rerun = [{"model": "resnet", "depth": 20, "acc": 91.5}]
        merged = results.write_results(stem, rerun, COLUMNS, ("model", "depth"), "Study")
        self.assertEqual(merged, [first[1], rerun[0]])
        self.assertEqual(results.load_rows(f"{stem}.json"), merged)
        with open(f"{stem}.md") as f:
            self.assertEqual(
                f.read(),
                "# Study\n\n| model | depth | test accuracy % |\n|---|---|---|\n"
                "| plain | 20 |  |\n| resnet | 20 | 91.5 |\n\n\n",
            )
        self.assertEqual(sorted(os.listdir(os.path.dirname(stem))), ["study.json", "study.md"])

    def test_a_file_that_is_not_a_table_is_refused_and_kept(self):
        folder = self.create_tempdir().full_path
        self.assertEqual(results.load_rows(os.path.join(folder, "none.json")), [])
        for text in ("{not json", json.dumps({"columns": []}), json.dumps([1, 2])):
            path = os.path.join(folder, "study.json")
            with open(path, "w") as f:
                f.write(text)
            with self.assertRaisesRegex(ValueError, "study.json: not a results table"):
                results.write_results(path[:-5], [{"model": "x"}], COLUMNS, ("model",), "S")
            with open(path) as f:
                self.assertEqual(f.read(), text)

    def test_cells_and_run_lines(self):
        table = results.markdown_table(
            [{"model": "resnet", "depth": 1234.5, "acc": 0.123456}, {"model": None}], COLUMNS
        )
        self.assertEqual(table.splitlines()[2:], ["| resnet | 1234 | 0.1235 |", "|  |  |  |"])
        rows = [
            {"epochs": 2, "train_time_min": 0.5, "hardware": "cpu (avx2), 2 cores"},
            {"epochs": 3, "train_time_min": 1.0},
        ]
        self.assertEqual(
            results.run_lines(rows, ["a", "b"]),
            "- a: 2 epochs, 0.5 min of training, cpu (avx2), 2 cores\n"
            "- b: 3 epochs, 1.0 min of training, hardware not recorded",
        )
        self.assertRegex(
            results.hardware(), r"\(.+\), \d+ cores, (no GPU|\d+ GPU\(s\)), TensorFlow 2\."
        )


if __name__ == "__main__":
    tf.test.main()
