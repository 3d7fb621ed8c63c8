"""scripts.benchmark runs the project's real path and prints its key=value line.

Speeds are measured by the script, never asserted here."""

import re

import tensorflow as tf
from absl.testing import parameterized

from tests.question1_test import run_script


class BenchmarkTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        ("resnet", [], "float32"),
        ("resnet", ["--steps_per_execution=2"], "float32"),  # timed from step 2
        ("plain", ["--mixed_precision"], "mixed_bfloat16"),  # a CPU: bfloat16
        ("resnet", ["--recompute"], "float32"),
        ("colorizer", [], "float32"),
        ("transfer", [], "float32"),
    )
    def test_last_line_has_every_figure(self, model, extra, precision):
        r = run_script("scripts.benchmark", f"--model={model}", "--n=1", "--batch_size=8",
                       "--steps=3", "--warmup=1", "--eval_batch_size=8", *extra)  # fmt: skip
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        last = r.stdout.strip().splitlines()[-1]
        self.assertRegex(last, r"^train_img_per_s=[\d.]+ eval_img_per_s=[\d.]+ "
                               r"pipeline_img_per_s=[\d.]+ peak_rss_mb=\d+$")  # fmt: skip
        values = dict(kv.split("=") for kv in last.split())
        self.assertTrue(all(float(v) > 0 for v in values.values()))
        self.assertIn(f"model={model} n=1", r.stdout)
        self.assertIn(f"precision={precision}", r.stdout)

    def test_unknown_model(self):
        r = run_script("scripts.benchmark", "--model=vgg")
        self.assertEqual(r.returncode, 2)
        self.assertIn("vgg", r.stderr)

    def test_recompute_only_for_the_cifar_networks(self):
        r = run_script("scripts.benchmark", "--model=colorizer", "--recompute")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--recompute is for the CIFAR networks", r.stderr)

    def test_bad_steps(self):
        r = run_script("scripts.benchmark", "--steps=3", "--warmup=5")
        self.assertEqual(r.returncode, 2)
        self.assertTrue(re.search("must exceed --warmup", r.stderr))


if __name__ == "__main__":
    tf.test.main()
