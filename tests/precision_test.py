"""--mixed_precision: the policy chosen, float32 where it must be, and every
training script taking it (with --strategy) end to end.

Speed is measured by scripts.benchmark (docs/performance.md), not here.
"""

import json
import os
import tempfile
import unittest.mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import colorization, cpu, distribute, models, training, transfer
from tests import fixtures
from tests.question1_test import run_script


GPU = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
AVX2 = frozenset({"avx", "avx2", "fma"})


def devices(gpus):
    """tf.config.list_physical_devices reporting `gpus`, whatever the machine has."""
    return unittest.mock.patch.object(tf.config, "list_physical_devices", return_value=gpus)


def cpu_with(flags):
    """The flags reader answering `flags`, as on a CPU that has them."""
    return unittest.mock.patch.object(cpu, "cpu_flags", return_value=flags)


class PolicyTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        # The override variable (set by benchmarks/compare.sh) must not leak in.
        patcher = unittest.mock.patch.dict(os.environ)
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop(cpu.FLAGS_VAR, None)

    def test_default_is_off_on_cpu_and_on_with_a_gpu(self):
        with devices([]), cpu_with(BF16):
            self.assertEqual(distribute.precision_policy(None), "float32")
            self.assertEqual(distribute.precision_policy(False), "float32")
            self.assertEqual(distribute.precision_policy(True), "mixed_bfloat16")
        with devices(GPU), cpu_with(AVX2):
            self.assertEqual(distribute.precision_policy(None), "mixed_float16")
            self.assertEqual(distribute.precision_policy(True), "mixed_float16")
            self.assertEqual(distribute.precision_policy(False), "float32")

    def test_bfloat16_only_on_a_cpu_that_computes_it(self):
        with devices([]), cpu_with(BF16):
            policy, reason = distribute.precision_decision(True)
        self.assertEqual(policy, "mixed_bfloat16")
        self.assertIn("natively (avx512_bf16)", reason)
        self.assertIsNone(distribute.precision_note(True, policy, reason))
        with devices([]), cpu_with(AVX2):
            policy, reason = distribute.precision_decision(True)
        self.assertEqual(policy, "float32")
        self.assertEqual(distribute.precision_note(True, policy, reason),
                         "mixed precision: float32, this CPU has no native bfloat16 "
                         "(no avx512_bf16/amx_bf16)")  # fmt: skip
        # Nothing to explain where nobody asked for mixed precision.
        with devices([]), cpu_with(AVX2):
            policy, reason = distribute.precision_decision(None)
        self.assertIsNone(distribute.precision_note(None, policy, reason))

    def test_fast_preset_never_runs_bfloat16_without_native_support(self):
        with devices([]), cpu_with(AVX2):
            self.assertEqual(distribute.precision_policy(training.FAST_PRESET["mixed_precision"]),
                             "float32")  # fmt: skip

    def test_flags_from_a_cpuinfo_file(self):
        folder = tempfile.mkdtemp()
        for flags, policy in [("fpu avx2 amx_tile amx_bf16", "mixed_bfloat16"),
                              ("fpu avx2 avx512f avx512_vnni", "float32")]:  # fmt: skip
            path = os.path.join(folder, "cpuinfo")
            with open(path, "w") as f:
                f.write(f"processor\t: 0\nflags\t\t: {flags}\n")
            with devices([]), unittest.mock.patch.object(cpu, "CPUINFO", path):
                self.assertEqual(distribute.precision_policy(True), policy, flags)
        # No /proc/cpuinfo (macOS, Windows): no bfloat16.
        missing = os.path.join(folder, "absent")
        with devices([]), unittest.mock.patch.object(cpu, "CPUINFO", missing):
            self.assertEqual(distribute.precision_decision(True)[0], "float32")

    def test_the_override_variable_decides_and_is_named(self):
        os.environ[cpu.FLAGS_VAR] = "avx avx2 fma"
        with devices([]):
            policy, reason = distribute.precision_decision(True)
        self.assertEqual(policy, "float32")
        self.assertIn(f"(flags from {cpu.FLAGS_VAR})", reason)

    def test_xla_is_on_by_default_only_with_a_gpu(self):
        with devices([]):
            self.assertEqual((distribute.use_xla(None), distribute.use_xla(True)), (False, True))
        with devices(GPU):
            self.assertEqual((distribute.use_xla(None), distribute.use_xla(False)), (True, False))

    def test_the_global_policy_is_restored(self):
        with distribute.dtype_policy("mixed_bfloat16"):
            self.assertEqual(keras.config.dtype_policy().name, "mixed_bfloat16")
        self.assertEqual(keras.config.dtype_policy().name, "float32")
        with self.assertRaises(RuntimeError):
            with distribute.dtype_policy("mixed_float16"):
                raise RuntimeError
        self.assertEqual(keras.config.dtype_policy().name, "float32")


class MixedModelsTest(tf.test.TestCase, parameterized.TestCase):
    def test_resnet_computes_in_bfloat16_keeps_float32_weights_and_softmax(self):
        x = fixtures.random_images(8).astype("float32")
        keras.utils.set_random_seed(0)
        reference = models.build_resnet(1)
        with distribute.dtype_policy("mixed_bfloat16"):
            model = models.build_resnet(1)
        model.set_weights(reference.get_weights())
        self.assertEqual(model.get_layer("stem_conv").compute_dtype, "bfloat16")
        self.assertTrue(all(w.dtype == "float32" for w in model.weights))
        out = model(x, training=False)
        self.assertEqual(out.dtype, tf.float32)
        # Same weights, same answer up to bfloat16's 8-bit mantissa.
        self.assertAllClose(out, reference(x, training=False), atol=0.05)

        training.compile_classifier(model, training.make_optimizer("sgd", 0.1))
        before = model.get_layer("stem_conv").kernel.numpy()
        h = model.fit(x, np.arange(8) % 10, batch_size=8, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(h.history["loss"][0]))
        self.assertNotAllClose(model.get_layer("stem_conv").kernel.numpy(), before)

        path = os.path.join(tempfile.mkdtemp(), "m.h5")
        model.save(path)
        loaded = keras.models.load_model(path)  # plain Keras, raw 0-255 images
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)

    def test_float16_on_a_gpu_gets_loss_scaling(self):
        with distribute.dtype_policy("mixed_float16"):
            model = models.build_resnet(1)
        training.compile_classifier(model, training.make_optimizer("sgd", 0.1))
        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    @parameterized.parameters("colorizer", "transfer")
    def test_other_models_keep_float32_outputs(self, kind):
        with distribute.dtype_policy("mixed_bfloat16"):
            if kind == "colorizer":
                model = colorization.build_colorizer("unet", (32, 32, 1), "lab")
                x = np.zeros((2, 32, 32, 1), "float32")
            else:
                model = transfer.build_transfer_model(10, weights=None)
                x = fixtures.random_images(2).astype("float32")
        self.assertEqual(model(x).dtype, tf.float32)
        self.assertTrue(all(w.dtype == "float32" for w in model.weights))


class ScriptsTest(tf.test.TestCase, parameterized.TestCase):
    """Each training script takes --mixed_precision and --strategy and records them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = tempfile.mkdtemp()
        fixtures.write_cifar10_python(cls.data, per_batch=16, test=16)

    # The CPU class is faked (fixtures.*_CPU), so each expectation holds on any host.
    @parameterized.named_parameters(
        ("question1", "scripts.question1", [], fixtures.BF16_CPU, "mixed_bfloat16"),
        ("question3", "scripts.question3", ["--weights=none", "--head_units=8"], fixtures.BF16_CPU,
         "mixed_bfloat16"),
        ("colorize", "scripts.colorize", ["train", "--model=autoencoder"], fixtures.BF16_CPU,
         "mixed_bfloat16"),
        ("question1_avx2", "scripts.question1", [], fixtures.AVX2_CPU, "float32"),
    )  # fmt: skip
    def test_flags_reach_the_run(self, module, extra, cpu_env, precision):
        out = tempfile.mkdtemp()
        args = [f"--data_dir={self.data}", "--epochs=1", "--val_size=16", "--batch_size=16",
                f"--output_dir={out}", "--verbose=0", "--mixed_precision", "--strategy=one_device"]  # fmt: skip
        if module == "scripts.question1":
            args.append("--n=1")
        r = run_script(module, *extra, *args, env=cpu_env)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        runs = os.listdir(os.path.join(out, "runs"))
        self.assertLen(runs, 1)
        with open(os.path.join(out, "runs", runs[0], "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual((flags["precision"], flags["strategy"], flags["replicas"]),
                         (precision, "one_device", 1))  # fmt: skip
        # The reason is recorded, and a refused bfloat16 is said once in the log.
        note = "mixed precision: float32, this CPU has no native bfloat16"
        if precision == "float32":
            self.assertIn("no native bfloat16", flags["precision_reason"])
            self.assertEqual(r.stdout.count(note), 1, r.stdout)
        else:
            self.assertIn("natively (avx512_bf16)", flags["precision_reason"])
            self.assertNotIn(note, r.stdout)
        saved = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(out, "saved_models"))
                 for f in fs]  # fmt: skip
        self.assertLen(saved, 1)
        self.assertEqual(keras.models.load_model(saved[0], compile=False).output.dtype, "float32")


if __name__ == "__main__":
    tf.test.main()
