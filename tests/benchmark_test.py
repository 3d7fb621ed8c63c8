"""scripts.benchmark runs the project's real path and prints its key=value line,
with the CPU flags, oneDNN state and precision that decided the figures.

Speeds are measured by the script, never asserted here."""

import os
import unittest.mock

import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import cpu
from scripts import benchmark
from tests import fixtures
from tests.question1_test import run_script

# compare.sh --isa avx2's "TF default" row: an AVX2 CPU's flags, oneDNN capped
# at AVX2 and switched off as TensorFlow leaves it there.
AVX2_TF_DEFAULT = dict(fixtures.AVX2_CPU, TF_ENABLE_ONEDNN_OPTS="0", ONEDNN_MAX_CPU_ISA="AVX2")
LAST_LINE = (
    r"^train_img_per_s=[\d.]+ eval_img_per_s=[\d.]+ pipeline_img_per_s=[\d.]+ "
    r"peak_rss_mb=\d+ cpu=[a-z0-9_,]+ onednn=(on|off)\([a-z,-]+\)"
    r"( onednn_max_isa=\w+)? precision=\w+$"
)


class BenchmarkTest(tf.test.TestCase, parameterized.TestCase):
    def setUp(self):
        super().setUp()
        # The scripts' own oneDNN default shows only where the caller set nothing.
        patcher = unittest.mock.patch.dict(os.environ)
        patcher.start()
        self.addCleanup(patcher.stop)
        for name in (cpu.ONEDNN_VAR, cpu.ONEDNN_MARK, "ONEDNN_MAX_CPU_ISA", cpu.FLAGS_VAR):
            os.environ.pop(name, None)

    @parameterized.parameters(
        ("resnet", [], None, "float32"),
        ("resnet", ["--steps_per_execution=2"], None, "float32"),  # timed from step 2
        ("plain", ["--mixed_precision"], fixtures.BF16_CPU, "mixed_bfloat16"),
        ("plain", ["--mixed_precision"], AVX2_TF_DEFAULT, "float32"),  # no native bfloat16
        ("resnet", ["--recompute"], None, "float32"),
        ("colorizer", [], None, "float32"),
        ("transfer", [], None, "float32"),
    )
    def test_last_line_has_every_figure(self, model, extra, env, precision):
        r = run_script(
            "scripts.benchmark",
            f"--model={model}",
            "--n=1",
            "--batch_size=8",
            "--steps=3",
            "--warmup=1",
            "--eval_batch_size=8",
            *extra,
            env=env,
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        last = r.stdout.strip().splitlines()[-1]
        self.assertRegex(last, LAST_LINE)
        values = dict(kv.split("=") for kv in last.split())
        figures = ("train_img_per_s", "eval_img_per_s", "pipeline_img_per_s", "peak_rss_mb")
        self.assertTrue(all(float(values[k]) > 0 for k in figures))
        self.assertIn(f"model={model} n=1", r.stdout)
        self.assertEqual(values["precision"], precision)
        self.assertIn(f"precision={precision}", r.stdout.splitlines()[-2])
        # What decided the speed: the CPU as the project saw it, and oneDNN.
        env = env or {}
        if env.get(cpu.FLAGS_VAR):
            self.assertEqual(values["cpu"], cpu.reported_flags(env[cpu.FLAGS_VAR].split()))
        if cpu.ONEDNN_VAR in env:
            self.assertEqual(values["onednn"], "off(user)")
            self.assertEqual(values["onednn_max_isa"], "AVX2")
            self.assertIn("mixed precision: float32, this CPU has no native bfloat16", r.stdout)
        else:
            self.assertEqual(values["onednn"], "on(default-set)")
            self.assertNotIn("onednn_max_isa", values)

    def test_unknown_model(self):
        r = run_script("scripts.benchmark", "--model=vgg")
        self.assertEqual(r.returncode, 2)
        self.assertIn("vgg", r.stderr)

    def test_recompute_only_for_the_cifar_networks(self):
        r = run_script("scripts.benchmark", "--model=colorizer", "--recompute")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--recompute is for the CIFAR networks", r.stderr)

    def test_a_short_run_works_with_the_default_warmup(self):
        self.assertEqual(
            [benchmark.warmup_steps(s) for s in (1, 4, 10, 19, 20, 60)], [0, 2, 5, 9, 10, 10]
        )
        self.assertEqual(benchmark.warmup_steps(10, warmup=0), 0)  # given: as given
        r = run_script(
            "scripts.benchmark", "--n=1", "--batch_size=8", "--steps=4", "--eval_batch_size=8"
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("steps=4 warmup=2", r.stdout)

    def test_bad_steps(self):
        r = run_script("scripts.benchmark", "--steps=3", "--warmup=5")
        self.assertEqual(r.returncode, 2)
        self.assertIn("must exceed --warmup", r.stderr)


if __name__ == "__main__":
    tf.test.main()
