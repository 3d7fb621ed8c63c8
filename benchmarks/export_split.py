"""Writes the project's held-out training images for the PyTorch yardstick.

    python benchmarks/export_split.py path/to/cifar10 --out split.npz

`val_index`: the indices, in the image folder's order (sorted class folders,
sorted file names: what `benchmarks/torch_recipe.py --split` loads), of the
training images a run of this project with `--seed` and `--val_size` holds
out for validation (`pipeline.split_validation`); `y_train`: every training
label in that order, so the yardstick can check that it reads the same images.
"""

import argparse

import numpy as np

from resnet_keras.data import cifar, pipeline

p = argparse.ArgumentParser()
p.add_argument("data_dir")
p.add_argument("--out", required=True)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--val_size", type=int, default=5000)
a = p.parse_args()
ds = cifar.load_dataset("cifar10", a.data_dir)
y = np.asarray(ds.y_train).reshape(-1)
held = pipeline.balanced_indices(y, a.val_size, a.seed)
# The same call split_validation makes to choose the images it holds out.
np.savez(a.out, val_index=np.sort(held), y_train=y, seed=a.seed, val_size=a.val_size)
print(f"wrote {a.out}: {len(held)} of {len(y)} training images held out (seed {a.seed})")
