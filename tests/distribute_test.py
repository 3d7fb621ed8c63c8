"""resnet_keras.distribute: the precision policy each device gets, the GPU
defaults trained on the CPU, and the strategies (mirrored over two logical
CPUs, multi-worker over two local processes)."""

import json
import os
import subprocess
import sys
import textwrap
import unittest.mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import cpu
from resnet_keras.configs import presets
from resnet_keras.run import distribute
from tests import fixtures
from tests.fixtures import ROOT, popen_script, run_script

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
                distribute.precision_policy(presets.FAST["mixed_precision"]), "float32"
            )

    def test_flags_from_a_cpuinfo_file(self):
        folder = self.create_tempdir().full_path
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


# The project as it trains on a GPU, run on two logical CPUs: the defaults are
# picked by the project's own code with a GPU in the (faked) device list, then
# the model trains on the CPUs for real. argv: strategy name, output folder.
GPU_DEFAULTS = textwrap.dedent("""
    import json, os, sys, unittest.mock
    import numpy as np, tensorflow as tf, keras
    cpu0 = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu0, [tf.config.LogicalDeviceConfiguration()] * 2)
    from resnet_keras import keras_private
    from resnet_keras.classification import task
    from resnet_keras.classification.config import TrainConfig
    from resnet_keras.run import distribute, lifecycle, saving, speedups
    name, out = sys.argv[1], sys.argv[2]
    strategy = distribute.make_strategy(name)  # the real device list: CPUs
    replicas = strategy.num_replicas_in_sync
    real = tf.config.list_physical_devices
    gpu = [tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")]
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")
    y = (np.arange(16) % 10).reshape(-1, 1)
    # jit_compile and mixed_precision left None: the defaults.
    config = TrainConfig(n=1, opt="sgd", lr=0.05, batch_size=8)
    listed = lambda kind=None: gpu if kind == "GPU" else real(kind)
    with unittest.mock.patch.object(tf.config, "list_physical_devices", side_effect=listed):
        policy = distribute.precision_policy(config.mixed_precision)
        xla = distribute.use_xla(config.jit_compile)
        with lifecycle.model_scope(config, strategy):
            keras.utils.set_random_seed(0)
            model = task.build_model(config, 10, x, sync_bn=replicas > 1)
            task.compile_for_run(model, config, len(x), top5=False)
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
        out = self.create_tempdir().full_path
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


def free_ports(count):
    import socket

    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from resnet_keras.classification import models
    from resnet_keras.run import distribute, optim
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 10
    out = {}
    for name in ("one_device", "mirrored"):
        strategy = distribute.make_strategy(name)
        with strategy.scope():
            keras.utils.set_random_seed(1)
            m = models.build_resnet(1, sync_bn=strategy.num_replicas_in_sync > 1)
            optim.compile_classifier(m, optim.make_optimizer("sgd", 0.1))
        h = m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        out[name] = {"replicas": strategy.num_replicas_in_sync, "loss": h.history["loss"][0],
                     "w": m.get_layer("stem_conv").kernel.numpy().ravel()[:50].tolist()}
    json.dump(out, sys.stdout)
""")


class StrategyTest(tf.test.TestCase):
    def test_mirrored_over_two_cpus_matches_one_device(self):
        # GPUs hidden: "mirrored" would otherwise mirror over them, not the two CPUs.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="-1")
        r = subprocess.run(
            [sys.executable, "-c", MIRRORED], env=env, capture_output=True, text=True, timeout=600
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((out["one_device"]["replicas"], out["mirrored"]["replicas"]), (1, 2))
        self.assertAllClose(out["mirrored"]["loss"], out["one_device"]["loss"], rtol=1e-4)
        self.assertAllClose(out["mirrored"]["w"], out["one_device"]["w"], atol=1e-5)

    def test_unknown_strategy_and_missing_tf_config(self):
        for args, message in [
            (["--strategy=horovod"], "Unknown strategy 'horovod'"),
            (["--strategy=multi_worker"], "needs TF_CONFIG"),
        ]:
            env_backup = os.environ.pop("TF_CONFIG", None)
            try:
                r = run_script(
                    "scripts.question1",
                    *args,
                    f"--data_dir={self.create_tempdir().full_path}",  # exists: checked first
                    f"--output_dir={self.create_tempdir().full_path}",
                )
            finally:
                if env_backup is not None:
                    os.environ["TF_CONFIG"] = env_backup
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(message, r.stderr)

    def test_multi_worker_two_local_processes_train_and_only_the_chief_writes(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
        ports = free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        outs, procs = [], []
        for index in range(2):
            # Each worker its own output folder, so what a non-chief writes shows.
            outs.append(os.path.join(root, f"out{index}"))
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            procs.append(
                popen_script(
                    "scripts.question1",
                    "--strategy=multi_worker",
                    f"--data_dir={root}",
                    "--n=1",
                    "--epochs=2",
                    "--val_size=20",
                    "--batch_size=16",
                    f"--output_dir={outs[index]}",
                    "--verbose=0",
                    "--seed=1",
                    env={"TF_CONFIG": config},
                )
            )
        try:
            results = [p.communicate(timeout=400) for p in procs]
        finally:
            for p in procs:  # a hung collective must not outlive the test
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, (_, err) in zip(procs, results):
            self.assertEqual(p.returncode, 0, err[-3000:])
        run = os.path.join(outs[0], "runs", "question1_resnet8_cifar10")
        chief_model = os.path.join(run, "resnet8_cifar10.h5")
        import keras

        model = keras.models.load_model(chief_model)
        self.assertEqual(model.output_shape, (None, 10))
        with open(os.path.join(run, "metrics.json")) as f:
            self.assertEqual(json.load(f)["epochs"], 2)
        with open(os.path.join(run, "flags.json")) as f:
            self.assertEqual(json.load(f)["replicas"], 2)
        # Worker 1 kept only its resume state, in a folder of its own.
        written = sorted(
            os.path.relpath(os.path.join(d, f), outs[1])
            for d, _, files in os.walk(outs[1])
            for f in files
        )
        self.assertTrue(written, "worker 1 should have a run folder")
        for path in written:
            self.assertTrue(
                path.startswith(os.path.join("runs", "question1_resnet8_cifar10", "worker1")), path
            )

    def test_chief_is_worker_0_without_a_chief_task(self):
        from resnet_keras.run import distribute

        cases = [
            (None, True),
            (
                '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}',
                True,
            ),
            (
                '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}',
                False,
            ),
            (
                '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
                False,
            ),
            (
                '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
                True,
            ),
        ]
        for config, chief in cases:
            env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
            if config:
                env["TF_CONFIG"] = config
            with unittest.mock.patch.dict(os.environ, env, clear=True):
                self.assertEqual(distribute.is_chief(), chief, config)


if __name__ == "__main__":
    tf.test.main()
