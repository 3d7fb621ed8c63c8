"""resnet_keras.run.tables: the one writer of results tables (rows merged by key,
their Markdown), and its refusals."""

import json
import os
import re

import tensorflow as tf

from resnet_keras.classification import models, report
from resnet_keras.run import tables

NAME_COLUMNS = [("name", "name"), ("acc", "accuracy")]
COLUMNS = [("model", "model"), ("depth", "depth"), ("acc", "test accuracy %")]


class TableTest(tf.test.TestCase):
    def test_write_table_writes_both_files_and_reads_back(self):
        stem = os.path.join(self.create_tempdir().full_path, "results", "t")
        self.assertEqual(tables.load_table(f"{stem}.json"), {})  # none yet
        tables.write_table(stem, {"section": {"a": 1}}, "# T\n")
        self.assertEqual(tables.load_table(f"{stem}.json"), {"section": {"a": 1}})
        with open(f"{stem}.md") as f:
            self.assertEqual(f.read(), "# T\n")
        self.assertEqual(sorted(os.listdir(os.path.dirname(stem))), ["t.json", "t.md"])

    def test_rows_merge_by_key(self):
        stem = os.path.join(self.create_tempdir().full_path, "q")
        tables.write_results(stem, [{"name": "a", "acc": 0.5}], NAME_COLUMNS, ["name"], "Q")
        tables.write_results(stem, [{"name": "b", "acc": 0.25}], NAME_COLUMNS, ["name"], "Q")
        rows = tables.write_results(stem, [{"name": "a", "acc": 0.75}], NAME_COLUMNS, ["name"], "Q")
        self.assertEqual(rows, [{"name": "b", "acc": 0.25}, {"name": "a", "acc": 0.75}])
        self.assertEqual(tables.load_rows(f"{stem}.json"), rows)
        with open(f"{stem}.md") as f:
            self.assertEqual(
                f.read(), "# Q\n\n| name | accuracy |\n|---|---|\n| b | 0.25 |\n| a | 0.75 |\n\n\n"
            )

    def test_a_file_that_is_no_table_is_refused_and_kept(self):
        folder = self.create_tempdir().full_path
        for name, text, why in [
            ("half.json", "{ half a table", r"Expecting"),
            ("list.json", "[1, 2]", r"not a JSON object"),
            ("norows.json", json.dumps({"rows": {"a": 1}}), r"no list of rows"),
        ]:
            path = os.path.join(folder, name)
            with open(path, "w") as f:
                f.write(text)
            with self.assertRaisesRegex(
                ValueError, rf"^{re.escape(path)}: not a results table \({why}"
            ):
                tables.load_rows(path)
            with self.assertRaisesRegex(ValueError, "move it aside"):
                tables.write_results(
                    path[: -len(".json")], [{"name": "a"}], NAME_COLUMNS, ["name"], ""
                )
            with open(path) as f:
                self.assertEqual(f.read(), text)


class MergeTest(tf.test.TestCase):
    def test_new_rows_replace_their_key_and_the_others_stay_in_order(self):
        old = [
            {"model": "resnet", "depth": 20, "acc": 90.0},
            {"model": "plain", "depth": 20, "acc": 89.0},
            {"model": "resnet", "depth": 32, "acc": 91.0},
        ]
        new = [{"model": "plain", "depth": 20, "acc": 88.5}, {"model": "plain", "depth": 32}]
        merged = tables.merge_rows(old, new, ("model", "depth"))
        self.assertEqual(merged, [old[0], old[2], *new])
        self.assertEqual(tables.merge_rows([], new, ("model",)), new)


class WriteTest(tf.test.TestCase):
    def test_a_rerun_replaces_its_row_in_both_files(self):
        stem = os.path.join(self.create_tempdir().full_path, "results", "study")
        first = [{"model": "resnet", "depth": 20, "acc": 90.071}, {"model": "plain", "depth": 20}]
        tables.write_results(stem, first, COLUMNS, ("model", "depth"), "Study", "Made by x.")
        rerun = [{"model": "resnet", "depth": 20, "acc": 91.5}]
        merged = tables.write_results(stem, rerun, COLUMNS, ("model", "depth"), "Study")
        self.assertEqual(merged, [first[1], rerun[0]])
        self.assertEqual(tables.load_rows(f"{stem}.json"), merged)
        with open(f"{stem}.md") as f:
            self.assertEqual(
                f.read(),
                "# Study\n\n| model | depth | test accuracy % |\n|---|---|---|\n"
                "| plain | 20 |  |\n| resnet | 20 | 91.5 |\n\n\n",
            )
        self.assertEqual(sorted(os.listdir(os.path.dirname(stem))), ["study.json", "study.md"])

    def test_a_file_that_is_not_a_table_is_refused_and_kept(self):
        folder = self.create_tempdir().full_path
        self.assertEqual(tables.load_rows(os.path.join(folder, "none.json")), [])
        for text in ("{not json", json.dumps({"columns": []}), json.dumps([1, 2])):
            path = os.path.join(folder, "study.json")
            with open(path, "w") as f:
                f.write(text)
            with self.assertRaisesRegex(ValueError, "study.json: not a results table"):
                tables.write_results(path[:-5], [{"model": "x"}], COLUMNS, ("model",), "S")
            with open(path) as f:
                self.assertEqual(f.read(), text)

    def test_cells_and_run_lines(self):
        table = tables.markdown_table(
            [{"model": "resnet", "depth": 1234.5, "acc": 0.123456}, {"model": None}], COLUMNS
        )
        self.assertEqual(table.splitlines()[2:], ["| resnet | 1234 | 0.1235 |", "|  |  |  |"])
        flags = {"invocations": [{"git_commit": "0123456789abc", "git_dirty": True}, {}]}
        rows = [
            {"epochs": 2, "train_time_min": 0.5, "hardware": "cpu (avx2), 2 cores"}
            | tables.record_fields(flags, {"wall_time_s": 90}),
            {"epochs": 3, "train_time_min": 1.0, "hardware": "AMD EPYC, 2 cores"},
            {"epochs": 3, "train_time_min": 1.0},
        ]
        self.assertEqual(
            tables.run_lines(rows, ["a", "b", "c"]),
            "- a: 2 epochs, 0.5 min of training, 1.5 min from first start to finish over "
            "2 starts, cpu (avx2), 2 cores, "
            "commit 0123456+changes\n"
            "- b: 3 epochs, 1.0 min of training, AMD EPYC, 2 cores (CPU flags not recorded), "
            "commit not recorded\n"
            "- c: 3 epochs, 1.0 min of training, hardware not recorded (CPU flags not recorded), "
            "commit not recorded",
        )
        self.assertEqual(tables.record_fields({}, {}), {})
        self.assertRegex(
            tables.hardware(), r"\(.+\), \d+ cores, (no GPU|\d+ GPU\(s\)), TensorFlow 2\."
        )


class ArchitectureTableTest(tf.test.TestCase):
    def test_the_papers_table_from_the_built_model(self):
        # He et al. 2015, 4.2: output 32x32 / 16x16 / 8x8, 1 + 2n / 2n / 2n layers,
        # 16 / 32 / 64 filters, then pooling and a dense layer: 6n + 2.
        for n in (1, 3):
            for model in (models.build_resnet(n), models.build_plainnet(n)):
                text = report.architecture_table(model)
                rows = [l.split(" | ") for l in text.splitlines() if l.startswith("| ")][1:]
                self.assertEqual([r[1] for r in rows[:5]], ["32x32", "32x32", "16x16", "8x8", "1"])
                self.assertEqual(
                    [r[3] for r in rows],
                    ["1", str(2 * n), str(2 * n), str(2 * n), "1", str(6 * n + 2)],
                )
                self.assertEqual([r[4] for r in rows[:5]], ["16", "16", "32", "64", "10"])
                self.assertTrue(rows[-1][-1].startswith(f"{model.count_params():,}"))
                self.assertEqual("+ shortcut" in text, model.name.startswith("resnet"))


if __name__ == "__main__":
    tf.test.main()
