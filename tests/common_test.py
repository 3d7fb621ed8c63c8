"""scripts.common: the flags every training script shares reach its run."""

import json
import os

import keras
import tensorflow as tf
from absl.testing import parameterized

from tests import fixtures
from tests.fixtures import run_script


class ScriptsTest(tf.test.TestCase, parameterized.TestCase):
    """Each training script takes --mixed_precision and --strategy and records them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = fixtures.class_tempdir(cls)
        fixtures.write_cifar10_python(cls.data, per_batch=16, test=16)

    # The CPU class is faked (fixtures.*_CPU), so each expectation holds on any host.
    @parameterized.named_parameters(
        ("question1", "scripts.question1", [], fixtures.BF16_CPU, "mixed_bfloat16"),
        (
            "question3",
            "scripts.question3",
            ["--weights=none", "--head_units=8"],
            fixtures.BF16_CPU,
            "mixed_bfloat16",
        ),
        (
            "colorize",
            "scripts.colorize",
            ["train", "--model=autoencoder"],
            fixtures.BF16_CPU,
            "mixed_bfloat16",
        ),
        ("question1_avx2", "scripts.question1", [], fixtures.AVX2_CPU, "float32"),
    )
    def test_flags_reach_the_run(self, module, extra, cpu_env, precision):
        out = self.create_tempdir().full_path
        args = [
            f"--data_dir={self.data}",
            "--epochs=1",
            "--val_size=16",
            "--batch_size=16",
            f"--output_dir={out}",
            "--verbose=0",
            "--mixed_precision",
            "--strategy=one_device",
        ]
        if module == "scripts.question1":
            args.append("--n=1")
        r = run_script(module, *extra, *args, env=cpu_env)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        runs = [d for d in os.listdir(os.path.join(out, "runs")) if not d.startswith(".")]
        self.assertLen(runs, 1)
        with open(os.path.join(out, "runs", runs[0], "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual(
            (flags["precision"], flags["strategy"], flags["replicas"]), (precision, "one_device", 1)
        )
        # The reason is recorded, and a refused bfloat16 is said once in the log.
        note = "mixed precision: float32, this CPU has no native bfloat16"
        if precision == "float32":
            self.assertIn("no native bfloat16", flags["precision_reason"])
            self.assertEqual(r.stdout.count(note), 1, r.stdout)
        else:
            self.assertIn("natively (avx512_bf16)", flags["precision_reason"])
            self.assertNotIn(note, r.stdout)
        saved = [
            os.path.join(d, f)
            for d, _, fs in os.walk(os.path.join(out, "saved_models"))
            for f in fs
        ]
        self.assertLen(saved, 1)
        self.assertEqual(keras.models.load_model(saved[0], compile=False).output.dtype, "float32")


if __name__ == "__main__":
    tf.test.main()
