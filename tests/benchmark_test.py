"""scripts.benchmark runs the project's real path and prints its key=value line.

Speeds are measured by the script, never asserted here."""

import re

import tensorflow as tf

from tests.question1_test import run_script


class BenchmarkTest(tf.test.TestCase):
    def test_last_line_has_every_figure(self):
        r = run_script("scripts.benchmark", "--n=1", "--batch_size=16", "--steps=4", "--warmup=2",
                       "--eval_batch_size=32")  # fmt: skip
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        last = r.stdout.strip().splitlines()[-1]
        self.assertRegex(last, r"^train_img_per_s=[\d.]+ eval_img_per_s=[\d.]+ "
                               r"pipeline_img_per_s=[\d.]+ peak_rss_mb=\d+$")  # fmt: skip
        values = dict(kv.split("=") for kv in last.split())
        self.assertTrue(all(float(v) > 0 for v in values.values()))
        self.assertIn("model=resnet n=1", r.stdout)

    def test_bad_steps(self):
        r = run_script("scripts.benchmark", "--steps=3", "--warmup=5")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(re.search("must exceed --warmup", r.stderr))


if __name__ == "__main__":
    tf.test.main()
