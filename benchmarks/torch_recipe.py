"""PyTorch yardstick for the full-length ResNet-vs-PlainNet runs: ResNet-(6n+2)
trained with the original write-up's 100-epoch recipe on the CIFAR-10 image
folder, to tell a data effect from a code effect when the project's accuracy
differs from the write-up's.

The recipe (deep-learning-lab.md, and `configs.resnet_vs_plain.DEFAULTS`):
SGD 0.1, momentum 0.9, weight decay 1e-4, /10 at epochs 50 and 75, batch 128,
per-image crop after 4-pixel padding and flip, per-channel normalisation,
projection shortcuts, 100 epochs, tested on the 10,000 test images after every
epoch. By default it is the write-up's PyTorch code: 5,000 training images
held out by its own random draw (`--holdout 0` trains on all 50,000), weight
decay on every parameter, PyTorch's default initialisation and padding, the
last epoch's weights tested.

`--align` makes it compute what the project computes, step by step, so that
what remains between the two is named (docs/resnet_vs_plain.md):
  --split FILE     the project's own held-out images (benchmarks/export_split.py
                   writes FILE from the project's split), checked by their labels;
                   with held-out images the weights that did best on them are
                   tested too ("best") beside the last epoch's ("last")
  --init keras     Keras' he_normal (a normal truncated at 2 sd, scaled to
                   sd sqrt(2 / fan_in)) for every conv and the dense kernel, zero bias
  --decay kernels  weight decay on conv and dense kernels only (Keras' L2 on kernels)
  --pad keras      stride-2 3x3 convs padded bottom and right only, as Keras'
                   padding="same" does on an even size (the project's builder
                   until issue 31's fix; PyTorch pads every side)
  --momentum keras v = 0.9 v - lr g; w += v (Keras' SGD; PyTorch's buffer is not
                   scaled by the learning rate, so the two differ after each lr drop)
  --std population per-channel std over N, as the project's statistics (PyTorch: N - 1)
What stays different: random streams (initial weights, shuffling,
augmentation), cuDNN-free CPU kernels of two libraries, float32 summation order.

Resumable: a checkpoint is written after every epoch next to `--log`; the same
command continues from it. Prints one line per epoch; the first line of the log
is the run record (command line, versions, CPU flags, kernel variables).
Usage: python benchmarks/torch_recipe.py DATA_DIR --log /path/run.log [--n 3] [--align --split F]
Needs: pip install torch==2.13.0 numpy pillow; shared/bench/torch_reference.py
(the network and augmentation), found beside DATA_DIR's ../../bench or --bench.
"""

import argparse
import copy
import glob
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("data_dir")
p.add_argument("--log", required=True, help="per-epoch lines; the checkpoint sits beside it")
p.add_argument("--n", type=int, default=3)
p.add_argument("--epochs", type=int, default=100)
p.add_argument("--holdout", type=int, default=5000, help="training images left out")
p.add_argument("--split", default=None, help="the project's held-out indices (export_split.py)")
p.add_argument("--decay", choices=("all", "kernels"), default="all")
p.add_argument("--init", choices=("torch", "keras"), default="torch")
p.add_argument("--pad", choices=("torch", "keras"), default="torch")
p.add_argument("--momentum", choices=("torch", "keras"), default="torch")
p.add_argument("--std", choices=("sample", "population"), default="sample")
p.add_argument("--align", action="store_true", help="every option above as the project has it")
p.add_argument("--bench", default=None, help="folder of torch_reference.py")
a = p.parse_args()
if a.align:
    a.decay, a.init, a.pad, a.momentum, a.std = "kernels", "keras", "keras", "keras", "population"
    if a.split is None:
        sys.exit("error: --align needs --split (the project's held-out images)")
bench = a.bench or os.path.join(os.path.dirname(os.path.abspath(a.data_dir)), "..", "bench")
sys.path.insert(0, bench)
from torch_reference import ResNet, augment  # noqa: E402


def load(split):
    """Images in the project's order: sorted class folders, sorted files; and
    their paths under the data folder (kept with the test predictions, so a
    comparison can check it pairs the same images)."""
    classes = sorted(os.listdir(os.path.join(a.data_dir, split)))
    xs, ys, names = [], [], []
    for i, c in enumerate(classes):
        for f in sorted(glob.glob(os.path.join(a.data_dir, split, c, "*"))):
            xs.append(np.asarray(Image.open(f).convert("RGB")))
            ys.append(i)
            names.append(os.path.relpath(f, a.data_dir))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(ys), names


xtr, ytr, _ = load("train")
xte, yte, test_files = load("test")
if a.split:
    with np.load(a.split) as s:
        if not np.array_equal(s["y_train"], ytr.numpy()):
            sys.exit(f"error: {a.split} was made from another training set (labels differ)")
        held = torch.from_numpy(s["val_index"].astype("int64"))
    mask = torch.ones(len(ytr), dtype=torch.bool)
    mask[held] = False
    xval, yval = xtr[held], ytr[held]
    xtr, ytr = xtr[mask], ytr[mask]
else:
    keep = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))
    keep = keep[: len(ytr) - a.holdout]
    xval = yval = None
    xtr, ytr = xtr[keep], ytr[keep]
scaled = xtr.float() / 255
mean = scaled.mean((0, 2, 3)).view(1, 3, 1, 1)
std = scaled.std((0, 2, 3), unbiased=a.std == "sample").view(1, 3, 1, 1)
del scaled


class KerasPad(nn.Module):
    """A stride-2 conv whose input is padded bottom and right only (Keras' "same")."""

    def __init__(self, conv):
        super().__init__()
        conv.padding = (0, 0)
        self.conv = conv

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


def keras_padding(module):
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.stride == (2, 2) and child.kernel_size == (3, 3):
            setattr(module, name, KerasPad(child))
        else:
            keras_padding(child)


def keras_init(model):
    """Keras' he_normal: normal truncated at 2 sd, scaled so its sd is sqrt(2 / fan_in)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            sd = math.sqrt(2.0 / fan_in) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, std=sd, a=-2 * sd, b=2 * sd)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


torch.manual_seed(0)
model = ResNet(a.n)
if a.pad == "keras":
    keras_padding(model)
if a.init == "keras":
    keras_init(model)
model = model.to(memory_format=torch.channels_last)
if a.decay == "all":
    groups = [{"params": list(model.parameters()), "weight_decay": 1e-4}]
else:
    kernels = [q for q in model.parameters() if q.ndim > 1]
    others = [q for q in model.parameters() if q.ndim <= 1]
    groups = [{"params": kernels, "weight_decay": 1e-4}, {"params": others, "weight_decay": 0}]
opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[50, 75], gamma=0.1)
# Keras-style momentum buffers, in the optimizer's parameter order.
velocity = [torch.zeros_like(q) for g in opt.param_groups for q in g["params"]]


@torch.no_grad()
def keras_sgd_step():
    """Keras' SGD with momentum: v = 0.9 v - lr (g + wd w); w += v."""
    i = 0
    for group in opt.param_groups:
        for q in group["params"]:
            g = q.grad if group["weight_decay"] == 0 else q.grad + group["weight_decay"] * q
            velocity[i].mul_(0.9).sub_(group["lr"] * g)
            q.add_(velocity[i])
            i += 1


def score(x, y):
    """(accuracy, mean cross-entropy, predictions) of the model on (x, y)."""
    model.eval()
    correct, loss, preds = 0, 0.0, []
    with torch.no_grad():
        for k in range(0, len(y), 1000):
            out = model(norm(x[k : k + 1000]))
            preds.append(out.argmax(1))
            correct += (preds[-1] == y[k : k + 1000]).sum().item()
            loss += F.cross_entropy(out, y[k : k + 1000], reduction="sum").item()
    return correct / len(y), loss / len(y), torch.cat(preds)


def norm(x):
    return ((x.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)


def record():
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        flags = []
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")
    env = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")
    return {
        "argv": ["python", *sys.argv],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_flags": ",".join(f for f in wanted if f in flags),
        "kernel_env": {k: os.environ[k] for k in env if k in os.environ},
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data_dir": os.path.realpath(a.data_dir),
        "train_images": len(ytr),
        "val_images": 0 if yval is None else len(yval),
        "options": {k: getattr(a, k) for k in ("decay", "init", "pad", "momentum", "std")},
    }


ckpt, start, spent, best = a.log + ".ckpt", 0, 0.0, None
if os.path.isfile(ckpt):
    state = torch.load(ckpt, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    torch.set_rng_state(state["rng"])
    start, spent, best = state["epoch"], state["spent"], state.get("best")
    for v, saved in zip(velocity, state.get("velocity", [])):
        v.copy_(saved)

B = 128
with open(a.log, "a") as log:
    if start == 0:
        print(f"# {json.dumps(record())}", file=log)
    else:
        print(f"# resumed: {json.dumps(record())}", file=log)
    for ep in range(start, a.epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(ytr))
        seen = correct_train = 0
        for k in range(0, len(ytr), B):
            idx = perm[k : k + B]
            out = model(norm(augment(xtr[idx])))
            loss = F.cross_entropy(out, ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.momentum == "keras":
                keras_sgd_step()
            else:
                opt.step()
            correct_train += (out.argmax(1) == ytr[idx]).sum().item()
            seen += len(idx)
        sched.step()
        val = ""
        if yval is not None:
            val_acc, val_loss, _ = score(xval, yval)
            val = f"val_acc={val_acc:.4f} val_loss={val_loss:.4f} "
            if best is None or val_acc > best["val_acc"]:
                best = {
                    "val_acc": val_acc,
                    "epoch": ep + 1,
                    "model": copy.deepcopy(model.state_dict()),
                }
        test_acc, test_loss, _ = score(xte, yte)
        spent += time.perf_counter() - t0
        line = (
            f"epoch {ep + 1}/{a.epochs} train_acc={correct_train / seen:.4f} {val}"
            f"test_acc={test_acc:.4f} test_loss={test_loss:.4f} minutes={spent / 60:.1f}"
        )
        print(line, file=log, flush=True)
        tmp = ckpt + ".tmp"
        torch.save(
            {
                "model": model.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": ep + 1,
                "spent": spent,
                "best": best,
                "velocity": velocity,
            },
            tmp,
        )
        os.replace(tmp, ckpt)
    if best is not None:  # also after a kill between the last checkpoint and this line
        last, _, _ = score(xte, yte)  # the model holds the last epoch's weights
        model.load_state_dict(best["model"])
        acc, loss, preds = score(xte, yte)
        print(
            f"final last={last:.4f} best={acc:.4f} best_test_loss={loss:.4f} "
            f"best_epoch={best['epoch']} best_val_acc={best['val_acc']:.4f}",
            file=log,
            flush=True,
        )
        np.savez_compressed(
            a.log + ".best_predictions.npz",
            y_true=yte.numpy(),
            y_pred=preds.numpy(),
            test_files=np.array(test_files),
        )
