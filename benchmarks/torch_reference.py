"""Reference point: the PyTorch ResNet-20 most users would pick instead.

Same structure as the widely used CIFAR reproductions (3 stages of 16/32/64
filters, BN, 1x1 projection shortcuts to match the Keras side), per-image random crop
with 4-pixel padding and horizontal flip done on tensors, SGD momentum 0.9 with
weight decay 1e-4, batch 128, channels-last memory format, random uint8
images. Prints steady-state training images/second (steps 0-9 are warm-up).
Needs: pip install torch==2.13.0 numpy (a CPU build of torch).
Usage: python torch_reference.py [--n 3] [--steps 60] [--batch 128] [--eval]

This copy (from ../shared/bench/) adds --eval: inference throughput at batch
1000 in eval mode under torch.inference_mode, the counterpart of
scripts/benchmark.py's eval_img_per_s; and prints peak RSS.
"""

import argparse, time
import torch, torch.nn as nn, torch.nn.functional as F


class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        s.b2 = nn.BatchNorm2d(cout)
        s.sc = nn.Sequential()
        if stride != 1 or cin != cout:
            s.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(s, x):
        y = F.relu(s.b1(s.c1(x)))
        y = s.b2(s.c2(y))
        return F.relu(y + s.sc(x))


class ResNet(nn.Module):
    def __init__(s, n):
        super().__init__()
        s.c = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        s.b = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for i, f in enumerate([16, 32, 64]):
            for j in range(n):
                layers.append(Block(cin, f, 2 if (i > 0 and j == 0) else 1))
                cin = f
        s.layers = nn.Sequential(*layers)
        s.fc = nn.Linear(64, 10)

    def forward(s, x):
        x = s.layers(F.relu(s.b(s.c(x))))
        return s.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def augment(x):
    """Per-image random crop after 4-pixel zero padding, and per-image flip. x: (N, C, 32, 32)."""
    n, c = x.shape[:2]
    x = F.pad(x, (4, 4, 4, 4))
    i = torch.randint(0, 9, (n,))
    j = torch.randint(0, 9, (n,))
    rows = (i.view(n, 1) + torch.arange(32)).view(n, 1, 32, 1).expand(n, c, 32, 40)
    cols = (j.view(n, 1) + torch.arange(32)).view(n, 1, 1, 32).expand(n, c, 32, 32)
    x = x.gather(2, rows).gather(3, cols)
    flip = torch.rand(n) < 0.5
    x[flip] = x[flip].flip(3)
    return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--eval", action="store_true")
    a = p.parse_args()
    torch.manual_seed(0)
    model = ResNet(a.n).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    N = a.batch * a.steps
    X = torch.randint(0, 256, (N, 3, 32, 32), dtype=torch.uint8)
    Y = torch.randint(0, 10, (N,))

    if a.eval:
        import resource

        model.eval()
        X = torch.randint(0, 256, (4000, 3, 32, 32), dtype=torch.uint8)
        with torch.inference_mode():
            model((X[:1000].float() / 255.0).contiguous(memory_format=torch.channels_last))
            t0 = time.perf_counter()
            for i in range(0, 4000, 1000):
                xb = (X[i : i + 1000].float() / 255.0).contiguous(memory_format=torch.channels_last)
                model(xb)
            dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"torch_reference_eval n={a.n} eval_img_per_s={4000 / dt:.1f} peak_rss_mb={rss:.0f}")
        return
    model.train()
    for step in range(a.steps):
        if step == 10:
            t0 = time.perf_counter()
        xb = augment(X[step * a.batch : (step + 1) * a.batch].float() / 255.0)
        xb = xb.contiguous(memory_format=torch.channels_last)
        yb = Y[step * a.batch : (step + 1) * a.batch]
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"torch_reference n={a.n} params={sum(p.numel() for p in model.parameters())} img_per_s={(a.steps-10)*a.batch/dt:.1f} peak_rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
