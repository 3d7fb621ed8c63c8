"""TensorFlow's own distribution strategies, by name.

`--batch_size` is always the global batch: Keras splits it across replicas,
so N replicas each see batch_size / N images per step. The learning rate is
not rescaled behind the user's back; when the global batch changes, scale
`--lr` with it (the linear scaling rule of Goyal et al. 2017: lr x k for a
k times larger batch, with a warm-up for large k).

multi_worker reads the cluster from TF_CONFIG, one process per node, e.g. on
Kubernetes or Slurm:

    TF_CONFIG='{"cluster": {"worker": ["node1:12345", "node2:12345"]},
                "task": {"type": "worker", "index": 0}}' \
        python -m scripts.question1 --strategy multi_worker
"""

import json
import os

import tensorflow as tf

from resnet_keras.checks import check_choice

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")


def make_strategy(name="auto"):
    """auto: MirroredStrategy over several GPUs, else one device."""
    check_choice("strategy", name, STRATEGIES)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        # Without GPUs, mirror over the logical CPU devices (tests make two).
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy multi_worker needs TF_CONFIG describing the cluster "
                             "and this task (see resnet_keras/distribute.py)")  # fmt: skip
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.NotFoundError) as e:
        raise ValueError(f"--strategy tpu: no TPU found ({str(e).splitlines()[0]})") from None
    return tf.distribute.TPUStrategy(resolver)


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
