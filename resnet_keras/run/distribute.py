"""TensorFlow's own distribution strategies, by name.

`--batch_size` is always the global batch: Keras splits it across replicas,
so N replicas each see batch_size / N images per step. The learning rate is
not rescaled behind the user's back; when the global batch changes, scale
`--lr` with it (the linear scaling rule of Goyal et al. 2017: lr x k for a
k times larger batch, with a warm-up for large k).

multi_worker reads the cluster from TF_CONFIG, one process per node
(Kubernetes, Slurm). Keras 3's `fit` fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585, open upstream) at two places only, both of which
reduce per-replica values across workers in a way the collective ops refuse;
`keras_private.patch_fit_for_multi_worker` replaces exactly those two steps,
and only in a process that asked for `multi_worker`. Only the chief writes final files.
"""

import contextlib
import json
import os

import keras
import tensorflow as tf

from resnet_keras import cpu, keras_private
from resnet_keras.checks import check_choice

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


_made = {}


def make_strategy(name="auto"):
    """auto: MirroredStrategy over several GPUs, else one device.

    One strategy per name and process: a multi-worker strategy configures the
    collective ops, which TensorFlow allows once, before any other op runs.
    """
    check_choice("strategy", name, STRATEGIES)
    if name not in _made:
        _made[name] = _make(name)
    return _made[name]


def _make(name):
    # Physical, not logical, devices: listing logical ones starts TensorFlow's
    # runtime, after which a multi-worker strategy can no longer be set up.
    gpus = tf.config.list_physical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        # Without GPUs, mirror over the logical CPU devices (tests make two).
        kind = "GPU" if gpus else "CPU"
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices(kind)]
        )
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError(
                "--strategy multi_worker needs TF_CONFIG describing the cluster "
                "and this task (see resnet_keras/run/distribute.py)"
            )
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        keras_private.patch_fit_for_multi_worker()
        return strategy
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError) as e:
        raise ValueError(f"--strategy tpu: no TPU found ({str(e).splitlines()[0]})") from None
    return tf.distribute.TPUStrategy(resolver)


def precision_policy(mixed_precision=None):
    """The Keras dtype policy for `--mixed_precision` (`precision_decision`'s first half)."""
    return precision_decision(mixed_precision)[0]


def precision_decision(mixed_precision=None):
    """(Keras dtype policy, the reason, for flags.json) for `--mixed_precision`.

    None (the default) means on where a GPU is present and off on the CPU.
    On means float16 compute on a GPU (Keras adds loss scaling). On a CPU it
    means bfloat16 only where the CPU computes it natively (AVX512_BF16 or
    AMX-BF16, where it trains faster than float32: docs/performance.md).
    Elsewhere every bfloat16 op would go through
    conversions to and from float32, with no hardware to gain from, so the
    run stays float32 and the reason says why. Variables, the softmax and the
    losses stay float32 either way. The CPU's flags come from `cpu.cpu_flags`
    (RESNET_KERAS_CPU_FLAGS overrides them, to emulate another CPU).
    """
    gpus = tf.config.list_physical_devices("GPU")
    if mixed_precision is None:
        if not gpus:
            return "float32", "mixed precision is off by default without a GPU"
    elif not mixed_precision:
        return "float32", "mixed precision off"
    if gpus:
        return "mixed_float16", "a GPU: float16 compute, with Keras' loss scaling"
    flags = cpu.cpu_flags()
    source = "" if cpu.flags_source() == cpu.CPUINFO else f" (flags from {cpu.FLAGS_VAR})"
    if cpu.native_bfloat16(flags):
        native = "/".join(f for f in cpu.BFLOAT16_FLAGS if f in flags)
        return "mixed_bfloat16", f"this CPU computes bfloat16 natively ({native}){source}"
    return "float32", (
        "this CPU has no native bfloat16 (no " f"{'/'.join(cpu.BFLOAT16_FLAGS)}){source}"
    )


def precision_note(mixed_precision, policy, reason):
    """The one line a run logs when --mixed_precision asked for what it does
    not get (a CPU without native bfloat16); None otherwise."""
    if mixed_precision and policy == "float32":
        return f"mixed precision: float32, {reason}"
    return None


def use_xla(jit_compile=None):
    """`--jit_compile`: None (the default) means on where a GPU is present.
    Off on a CPU, where XLA trains ResNet-20 slower (docs/performance.md)."""
    if jit_compile is None:
        return bool(tf.config.list_physical_devices("GPU"))
    return bool(jit_compile)


@contextlib.contextmanager
def dtype_policy(name):
    """Layers built inside compute in `name`'s dtype; the global policy is
    restored after, so it never leaks into the next model of the process."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def task():
    """(type, index) of this process in TF_CONFIG; ("chief", 0) without one."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    t = config.get("task", {})
    return t.get("type", "chief"), int(t.get("index", 0))


def is_chief():
    """Only the chief writes final models, plots and results.

    The chief is the "chief" task, or worker 0 of a cluster that has none.
    """
    kind, index = task()
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster", {})
    if kind == "chief":
        return True
    return kind == "worker" and index == 0 and "chief" not in cluster
