"""resnet_keras.results: the one writer of results tables, and its refusals."""

import json
import os
import re

import tensorflow as tf

from resnet_keras import results

COLUMNS = [("name", "name"), ("acc", "accuracy")]


class TableTest(tf.test.TestCase):
    def test_write_table_writes_both_files_and_reads_back(self):
        stem = os.path.join(self.create_tempdir().full_path, "results", "t")
        self.assertEqual(results.load_table(f"{stem}.json"), {})  # none yet
        results.write_table(stem, {"section": {"a": 1}}, "# T\n")
        self.assertEqual(results.load_table(f"{stem}.json"), {"section": {"a": 1}})
        with open(f"{stem}.md") as f:
            self.assertEqual(f.read(), "# T\n")
        self.assertEqual(sorted(os.listdir(os.path.dirname(stem))), ["t.json", "t.md"])

    def test_rows_merge_by_key(self):
        stem = os.path.join(self.create_tempdir().full_path, "q")
        results.write_results(stem, [{"name": "a", "acc": 0.5}], COLUMNS, ["name"], "Q")
        results.write_results(stem, [{"name": "b", "acc": 0.25}], COLUMNS, ["name"], "Q")
        rows = results.write_results(stem, [{"name": "a", "acc": 0.75}], COLUMNS, ["name"], "Q")
        self.assertEqual(rows, [{"name": "b", "acc": 0.25}, {"name": "a", "acc": 0.75}])
        self.assertEqual(results.load_rows(f"{stem}.json"), rows)
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
                results.load_rows(path)
            with self.assertRaisesRegex(ValueError, "move it aside"):
                results.write_results(path[: -len(".json")], [{"name": "a"}], COLUMNS, ["name"], "")
            with open(path) as f:
                self.assertEqual(f.read(), text)


if __name__ == "__main__":
    tf.test.main()
