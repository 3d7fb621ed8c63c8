"""TensorFlow's own distribution strategies, by name.

`--batch_size` is always the global batch: Keras splits it across replicas,
so N replicas each see batch_size / N images per step. The learning rate is
not rescaled behind the user's back; when the global batch changes, scale
`--lr` with it (the linear scaling rule of Goyal et al. 2017: lr x k for a
k times larger batch, with a warm-up for large k).

multi_worker would read the cluster from TF_CONFIG, one process per node
(Kubernetes, Slurm), but Keras 3's `fit` does not train under
MultiWorkerMirroredStrategy (keras-team/keras#20585, open upstream: tried
here with two local workers, both fail converting PerReplica batches), so
the flag stops at once with that explanation. `is_chief` and the per-worker
run folders are in place for when it does.
"""

import json
import os

import tensorflow as tf

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
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices(kind)])
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("--strategy multi_worker needs TF_CONFIG describing the cluster "
                             "and this task (see resnet_keras/distribute.py)")  # fmt: skip
        # The strategy itself can be built (collectives configured at start-up),
        # but Keras 3's fit fails inside it, converting PerReplica batches to
        # tensors (keras-team/keras#20585, open; tensorflow#72388). Say so
        # plainly rather than fail an hour into a cluster job.
        raise ValueError(
            "--strategy multi_worker: Keras 3's model.fit cannot train under "
            "MultiWorkerMirroredStrategy yet (keras-team/keras#20585); use --strategy "
            "mirrored for several GPUs of one machine"
        )
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
