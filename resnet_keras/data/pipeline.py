"""What the model is fed: class-balanced subsets and the validation split,
per-image augmentation, the tf.data pipelines, and the normalization statistics.

Takes the uint8 arrays `cifar.load_dataset` returns:

    python -c "from resnet_keras.data import pipeline; import numpy as np; print(pipeline.train_dataset(np.zeros((8, 32, 32, 3), 'uint8'), np.zeros(8), 4))"
"""

import numpy as np
import tensorflow as tf

from resnet_keras.checks import DataError

# --- subsets and splits -----------------------------------------------------


def balanced_indices(y, limit, seed=0):
    """`limit` indices with the classes as equal as possible, in random order."""
    y = np.asarray(y).reshape(-1)
    if limit > len(y):
        raise DataError(f"asked for {limit} images but the split has only {len(y)}")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per_class = {c: rng.permutation(np.flatnonzero(y == c)) for c in classes}
    base, extra = divmod(limit, len(classes))
    picked, short = [], 0
    for k, c in enumerate(classes):
        want = base + (k < extra)
        take = per_class[c][:want]
        short += want - len(take)
        picked.append(take)
    if short:  # a class ran out: fill from the others' leftovers
        used = np.concatenate(picked)
        rest = rng.permutation(np.setdiff1d(np.arange(len(y)), used))
        picked.append(rest[:short])
    return rng.permutation(np.concatenate(picked))


def split_validation(x, y, val_size, seed=0):
    """Holds `val_size` class-balanced images out of the training split."""
    if val_size <= 0:
        return (x, y), None
    if val_size >= len(x):
        raise DataError(f"--val_size {val_size} leaves no training images (the split has {len(x)})")
    val = balanced_indices(y, val_size, seed)
    mask = np.ones(len(x), bool)
    mask[val] = False
    return (x[mask], y[mask]), (x[val], y[val])


def limit(x, y, n, seed=0):
    """A class-balanced subset of `n` images (`--train_limit`/`--test_limit`)."""
    if not n:
        return x, y
    idx = balanced_indices(y, n, seed)
    return x[idx], y[idx]


# --- tf.data ----------------------------------------------------------------


def augment_batch(images, seed, pad=4):
    """Per-image random crop after zero padding, and per-image horizontal flip.

    Works on a batch (B, H, W, C) of any dtype (uint8 in the pipeline, so the
    gathers move a quarter of the bytes). Each image draws its own offsets,
    unlike keras.layers.RandomCrop, which crops a whole batch alike. `seed` is
    a shape-[2] int tensor: stateless ops keep parallel map calls repeatable.
    """
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([b, 2], seed, 0, 2 * pad + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(h)[None, :]  # (B, H)
    cols = offsets[:, 1:] + tf.range(w)[None, :]  # (B, W)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2p, C)
    out = tf.gather(out, cols, axis=2, batch_dims=1)  # (B, H, W, C)
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    flip = tf.random.stateless_uniform([b], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(out, axis=[2]), out)


def _one_hot_labels(ds, one_hot):
    # One-hot float labels for a label-smoothed loss, made per batch.
    return ds.map(lambda x, y: (x, tf.one_hot(y, one_hot))) if one_hot else ds


def train_dataset(x, y, batch_size, seed=0, augment=True, one_hot=0):
    """Shuffled, augmented, batched uint8 images with int32 labels (or, with
    `one_hot` = the number of classes, one-hot float32 labels).

    Augmentation runs here in the pipeline (on whole uint8 batches, in
    parallel with the training step) rather than in the model, so saved
    models carry no augmentation layers and evaluation sees untouched images.
    """
    y = np.asarray(y).reshape(-1).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        # One random seed per batch, new every epoch, independent of map order.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (augment_batch(xy[0], s), xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return _one_hot_labels(ds, one_hot).prefetch(tf.data.AUTOTUNE)


def eval_dataset(x, y, batch_size, one_hot=0):
    """Batched, in order, nothing random (labels as in `train_dataset`)."""
    y = np.asarray(y).reshape(-1).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    return _one_hot_labels(ds, one_hot).prefetch(tf.data.AUTOTUNE)


def channel_stats(x):
    """Per-channel mean and std of uint8 images, in 0-255 units."""
    x = x.reshape(-1, x.shape[-1])
    mean = np.zeros(x.shape[-1])
    sq = np.zeros(x.shape[-1])
    for i in range(0, len(x), 1 << 20):  # chunks keep float64 copies small
        c = x[i : i + (1 << 20)].astype("float64")
        mean += c.sum(0)
        sq += (c**2).sum(0)
    mean /= len(x)
    return mean.astype("float32"), np.sqrt(sq / len(x) - mean**2).astype("float32")


def pixel_mean(x):
    """The mean image (H, W, C) of uint8 images, 0-255 units (paper's per-pixel mean)."""
    return x.mean(axis=0, dtype="float64").astype("float32")
