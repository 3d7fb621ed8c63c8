"""--mixed_precision: the policy chosen, float32 where it must be, and every
training script taking it (with --strategy) end to end.

Speed is measured by scripts.benchmark (docs/performance.md), not here.
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest.mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import colorization, cpu, distribute, models, speedups, training, transfer
from tests import fixtures
from tests.question1_test import ROOT, run_script

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
        self.assertEqual(
            distribute.precision_note(True, policy, reason),
            "mixed precision: float32, this CPU has no native bfloat16 "
            "(no avx512_bf16/amx_bf16)",
        )
        # Nothing to explain where nobody asked for mixed precision.
        with devices([]), cpu_with(AVX2):
            policy, reason = distribute.precision_decision(None)
        self.assertIsNone(distribute.precision_note(None, policy, reason))

    def test_fast_preset_never_runs_bfloat16_without_native_support(self):
        with devices([]), cpu_with(AVX2):
            self.assertEqual(
                distribute.precision_policy(training.FAST_PRESET["mixed_precision"]), "float32"
            )

    def test_flags_from_a_cpuinfo_file(self):
        folder = tempfile.mkdtemp()
        for flags, policy in [
            ("fpu avx2 amx_tile amx_bf16", "mixed_bfloat16"),
            ("fpu avx2 avx512f avx512_vnni", "float32"),
        ]:
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
        for m in (reference, model):  # BatchNorm on the fused kernel, as training runs it
            speedups.fuse_batch_norm(m)
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


# The project as it trains on a GPU, run on two logical CPUs: the defaults are
# picked by the project's own code with a GPU in the (faked) device list, then
# the model trains on the CPUs for real. argv: strategy name, output folder.
GPU_DEFAULTS = textwrap.dedent("""
    import json, os, sys, unittest.mock
    import numpy as np, tensorflow as tf, keras
    cpu0 = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu0, [tf.config.LogicalDeviceConfiguration()] * 2)
    from resnet_keras import classification, distribute, experiment, keras_private, models, saving, speedups
    name, out = sys.argv[1], sys.argv[2]
    strategy = distribute.make_strategy(name)  # the real device list: CPUs
    replicas = strategy.num_replicas_in_sync
    real = tf.config.list_physical_devices
    gpu = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")
    y = (np.arange(16) % 10).reshape(-1, 1)
    # jit_compile and mixed_precision left None: the defaults.
    config = experiment.TrainConfig(n=1, opt="sgd", lr=0.05, batch_size=8)
    listed = lambda kind=None: gpu if kind == "GPU" else real(kind)
    with unittest.mock.patch.object(tf.config, "list_physical_devices", side_effect=listed):
        policy = distribute.precision_policy(config.mixed_precision)
        xla = distribute.use_xla(config.jit_compile)
        with experiment.model_scope(config, strategy):
            keras.utils.set_random_seed(0)
            model = classification.build_model(config, 10, x, sync_bn=replicas > 1)
            classification.compile_for_run(model, config, len(x), top5=False)
    compiled_with_xla = model.jit_compile
    if replicas > 1:
        model.jit_compile = False  # not on logical CPUs under a strategy: see the test
    h = model.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0)
    fused = [speedups.is_fused(l) for l in keras_private.all_layers(model)
             if isinstance(l, keras.layers.BatchNormalization)]
    np.save(os.path.join(out, "x.npy"), x[:4])
    np.save(os.path.join(out, "pred.npy"), model.predict(x[:4], verbose=0))
    for fmt in ("h5", "keras"):
        saving.save_model(model, os.path.join(out, f"m.{fmt}"))
    json.dump({"policy": policy, "xla": xla, "jit_compile": compiled_with_xla,
               "replicas": replicas, "optimizer": type(model.optimizer).__name__,
               "compute_dtype": model.get_layer("stem_conv").compute_dtype,
               "fused_bn": all(fused), "loss": h.history["loss"]}, sys.stdout)
""")

# A Python that cannot import the project loads the saved files.
PLAIN_LOAD = textwrap.dedent("""
    import json, sys
    sys.modules["resnet_keras"] = None  # any import of the project now fails
    import numpy as np, keras
    x, out = np.load(sys.argv[1]), {}
    for path in sys.argv[2:]:
        m = keras.models.load_model(path)
        inner = getattr(m.optimizer, "inner_optimizer", m.optimizer)
        out[path] = {"pred": m.predict(x, verbose=0).tolist(),
                     "optimizer": [type(m.optimizer).__name__, type(inner).__name__],
                     "policy": m.get_layer("stem_conv").dtype_policy.name}
    json.dump(out, sys.stdout)
""")


class GpuDefaultsTest(tf.test.TestCase, parameterized.TestCase):
    """The GPU defaults (float16 with Keras' loss scaling, XLA, the fused
    BatchNorm kernel), which no GPU run has exercised, train on the CPU.

    one_device runs the single-GPU path whole. mirrored (two logical CPUs)
    runs the several-GPU path, float16 with loss scaling across replicas and
    synchronized BatchNorm, but without XLA: TensorFlow 2.21 runs a replica's
    jit-compiled step on CPU:0 whatever logical CPU the replica has, and XLA
    refuses the other replica's variables ("Trying to access resource
    .../replica_1 located in device CPU:1 from device CPU:0",
    GetVariableInfosFromInputs), in float32 as well; keras-team/keras#19005
    hit the same error on the same two-CPU setup. On several real GPUs each
    replica has its own XLA device.
    """

    @parameterized.parameters(("one_device", 1, True), ("mirrored", 2, False))
    def test_gpu_defaults_train_and_save_plain_keras_files(self, strategy, replicas, xla):
        out = tempfile.mkdtemp()
        # Hidden GPUs: the CPUs train, whatever the machine has.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="-1")
        r = subprocess.run(
            [sys.executable, "-c", GPU_DEFAULTS, strategy, out],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        run = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual(
            (run["policy"], run["xla"], run["jit_compile"], run["replicas"]),
            ("mixed_float16", True, True, replicas),
        )
        # Keras 3 wraps the optimizer itself under mixed_float16.
        self.assertEqual(run["optimizer"], "LossScaleOptimizer")
        self.assertEqual(run["compute_dtype"], "float16")
        self.assertEqual(run["fused_bn"], replicas == 1)  # several replicas: synchronized BN
        losses = run["loss"]
        self.assertTrue(np.all(np.isfinite(losses)), losses)
        self.assertLess(losses[-1], losses[0], losses)

        # No project code and no PYTHONPATH: the files alone.
        env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
        files = [os.path.join(out, f"m.{fmt}") for fmt in ("h5", "keras")]
        args = [sys.executable, "-c", PLAIN_LOAD, os.path.join(out, "x.npy"), *files]
        r = subprocess.run(args, cwd=out, env=env, capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        loaded = json.loads(r.stdout.strip().splitlines()[-1])
        pred = np.load(os.path.join(out, "pred.npy"))
        for path in files:
            self.assertEqual(loaded[path]["policy"], "mixed_float16", path)
            self.assertAllClose(loaded[path]["pred"], pred, atol=2e-3, msg=path)
            # The run's SGD, not Keras' default RMSprop (saving.save_model).
            self.assertEqual(loaded[path]["optimizer"][1], "SGD", path)
        # The .h5 file stores the wrapper itself. (A .keras file stores the
        # optimizer given to compile, and Keras 3.15 reloads it unwrapped:
        # the reloaded model's own policy is the global float32.)
        self.assertEqual(loaded[files[0]]["optimizer"][0], "LossScaleOptimizer")


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
        out = tempfile.mkdtemp()
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
