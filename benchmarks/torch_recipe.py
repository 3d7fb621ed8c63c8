"""PyTorch yardstick for the full-length ResNet-vs-PlainNet runs: ResNet-(6n+2)
trained with the original write-up's 100-epoch recipe on the CIFAR-10 image
folder, to tell a data effect from a code effect when the project's accuracy
differs from the write-up's.

The recipe (deep-learning-lab.md, and `scripts.resnet_vs_plain`'s defaults):
SGD 0.1, momentum 0.9, weight decay 1e-4, /10 at epochs 50 and 75, batch 128,
per-image crop after 4-pixel padding and flip, per-channel normalisation,
projection shortcuts, 100 epochs. Trained on 45,000 training images (the
project holds 5,000 out for validation; `--holdout 0` trains on all 50,000 as
the write-up did), tested on the 10,000 test images after every epoch.

Weight decay goes to every parameter, as `torch.optim.SGD(model.parameters(),
weight_decay=1e-4)` in the write-up's notebook does (the project decays the
conv and dense kernels only, like the paper's Keras ports): `--decay kernels`
matches the project instead.

Resumable: a checkpoint is written after every epoch next to `--log`; the same
command continues from it. Prints one line per epoch.
Usage: python benchmarks/torch_recipe.py DATA_DIR --log /path/run.log [--n 3]
Needs: pip install torch==2.13.0 numpy pillow; shared/bench/torch_reference.py
(the network and augmentation), found beside DATA_DIR's ../../bench or --bench.
"""

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("data_dir")
p.add_argument("--log", required=True, help="per-epoch lines; the checkpoint sits beside it")
p.add_argument("--n", type=int, default=3)
p.add_argument("--epochs", type=int, default=100)
p.add_argument("--holdout", type=int, default=5000, help="training images left out")
p.add_argument("--decay", choices=("all", "kernels"), default="all")
p.add_argument("--bench", default=None, help="folder of torch_reference.py")
a = p.parse_args()
bench = a.bench or os.path.join(os.path.dirname(os.path.abspath(a.data_dir)), "..", "bench")
sys.path.insert(0, bench)
from torch_reference import ResNet, augment  # noqa: E402


def load(split):
    classes = sorted(os.listdir(os.path.join(a.data_dir, split)))
    xs, ys = [], []
    for i, c in enumerate(classes):
        for f in sorted(glob.glob(os.path.join(a.data_dir, split, c, "*"))):
            xs.append(np.asarray(Image.open(f).convert("RGB")))
            ys.append(i)
    return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous(), torch.tensor(ys)


xtr, ytr = load("train")
xte, yte = load("test")
keep = torch.randperm(len(ytr), generator=torch.Generator().manual_seed(0))
keep = keep[: len(ytr) - a.holdout]
xtr, ytr = xtr[keep], ytr[keep]
mean = (xtr.float() / 255).mean((0, 2, 3)).view(1, 3, 1, 1)
std = (xtr.float() / 255).std((0, 2, 3)).view(1, 3, 1, 1)

torch.manual_seed(0)
model = ResNet(a.n).to(memory_format=torch.channels_last)
if a.decay == "all":
    groups = [{"params": list(model.parameters()), "weight_decay": 1e-4}]
else:
    kernels = [q for q in model.parameters() if q.ndim > 1]
    others = [q for q in model.parameters() if q.ndim <= 1]
    groups = [{"params": kernels, "weight_decay": 1e-4}, {"params": others, "weight_decay": 0}]
opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[50, 75], gamma=0.1)
ckpt, start, spent = a.log + ".ckpt", 0, 0.0
if os.path.isfile(ckpt):
    state = torch.load(ckpt, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    torch.set_rng_state(state["rng"])
    start, spent = state["epoch"], state["spent"]


def norm(x):
    return ((x.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)


B = 128
with open(a.log, "a") as log:
    if start == 0:
        print(f"# {' '.join(sys.argv)}; torch {torch.__version__}; {len(ytr)} train", file=log)
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
            opt.step()
            correct_train += (out.argmax(1) == ytr[idx]).sum().item()
            seen += len(idx)
        sched.step()
        model.eval()
        correct, test_loss = 0, 0.0
        with torch.no_grad():
            for k in range(0, len(yte), 1000):
                out = model(norm(xte[k : k + 1000]))
                correct += (out.argmax(1) == yte[k : k + 1000]).sum().item()
                test_loss += F.cross_entropy(out, yte[k : k + 1000], reduction="sum").item()
        spent += time.perf_counter() - t0
        line = (
            f"epoch {ep + 1}/{a.epochs} train_acc={correct_train / seen:.4f} "
            f"test_acc={correct / len(yte):.4f} test_loss={test_loss / len(yte):.4f} "
            f"minutes={spent / 60:.1f}"
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
            },
            tmp,
        )
        os.replace(tmp, ckpt)
