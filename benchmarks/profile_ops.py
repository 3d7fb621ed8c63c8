"""Where a ResNet-20 training step spends its time, by kernel, in either framework.

    python benchmarks/profile_ops.py tf                         # the project's step
    /path/to/torch-venv/bin/python benchmarks/profile_ops.py torch  # the PyTorch reference

Profiles `--steps` training steps (batch 128, after 10 warm-up steps) with the
framework's own profiler and prints the ops by self time: each op's share and
milliseconds per step, and the shares of a few groups (convolutions forward and
backward, BatchNorm, the rest). Run both under the same environment (for an
AVX2 CPU emulated on a newer one: ONEDNN_MAX_CPU_ISA=AVX2, plus
ATEN_CPU_CAPABILITY=avx2 for torch) to see which kernels make the difference.
The profiler's own overhead makes steps slower than `scripts.benchmark` says:
read shares, not speeds.
"""

import argparse
import collections
import glob
import json
import os
import sys
import tempfile

GROUPS = [  # (group, substrings of op names, lower case), first match wins
    ("conv backward", ("backprop", "convolution_backward")),
    ("conv forward", ("conv",)),
    ("batchnorm", ("batchnorm", "batch_norm")),
    ("optimizer", ("apply", "sgd", "momentum", "foreach")),
]


def group_of(name):
    low = name.lower()
    return next((g for g, keys in GROUPS if any(k in low for k in keys)), "other")


def report(times_us, steps, framework):
    """times_us: {op: total self time in microseconds over `steps` steps}."""
    total = sum(times_us.values())
    print(f"{framework}: {total / steps / 1000:.1f} ms of op self time per step")
    for name, t in sorted(times_us.items(), key=lambda kv: -kv[1])[:15]:
        print(f"  {100 * t / total:5.1f} %  {t / steps / 1000:7.2f} ms  {name}")
    groups = collections.Counter()
    for name, t in times_us.items():
        groups[group_of(name)] += t
    print("  groups: " + ", ".join(f"{g} {100 * t / total:.1f} %" for g, t in groups.most_common()))


def profile_tf(steps):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from scripts import common  # noqa: F401  (the project's oneDNN default, before TensorFlow)

    import numpy as np
    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin

    from resnet_keras.classification import task
    from resnet_keras.classification.config import TrainConfig
    from resnet_keras.data import pipeline

    config = TrainConfig(n=3, opt="sgd", lr=0.1, batch_size=128)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128 * (steps + 10), 32, 32, 3), dtype="uint8")
    y = rng.integers(0, 10, (len(x), 1)).astype("uint8")
    model = task.build_model(config, 10, x)
    task.compile_for_run(model, config, len(x), top5=False)
    ds = pipeline.train_dataset(x, y, 128, 0, True, 0)
    model.fit(ds.take(10), epochs=1, verbose=0)
    logdir = tempfile.mkdtemp()
    tf.profiler.experimental.start(logdir)
    model.fit(ds.take(steps), epochs=1, verbose=0)
    tf.profiler.experimental.stop()
    path = glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]
    raw, _ = plugin.xspace_to_tools_data([path], "framework_op_stats", {})
    table = json.loads(raw)[0]
    cols = [c["id"] for c in table["cols"]]
    times = collections.Counter()
    for row in table["rows"]:
        r = dict(zip(cols, (c.get("v") for c in row["c"])))
        if r["type"] != "IDLE":
            times[r["type"]] += r["total_self_time"]
    report(times, steps, "tensorflow")


def profile_torch(steps):
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch_reference import ResNet, augment

    torch.manual_seed(0)
    model = ResNet(3).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (128,))

    def step():
        xb = augment(x.float() / 255.0).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(10):
        step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    times = {e.key: e.self_cpu_time_total for e in prof.key_averages() if e.self_cpu_time_total}
    report(times, steps, "torch")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("framework", choices=["tf", "torch"])
    p.add_argument("--steps", type=int, default=20)
    a = p.parse_args()
    (profile_tf if a.framework == "tf" else profile_torch)(a.steps)


if __name__ == "__main__":
    main()
