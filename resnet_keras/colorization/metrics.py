"""Test metrics of colorizers, computed from their predictions.

Per-image MSE, PSNR and SSIM of the sRGB image in [0, 1], for the model and
for the gray input taken as colour (`score_colorizer`), and the model's
PSNR against the gray input's by how colourful the image is (`against_gray`).
How well a linear classifier reads the classes from the encoder's features
trains a model and is in `probe.py`.
"""

import numpy as np
import tensorflow as tf

from resnet_keras import stats
from resnet_keras.colorization import color

# One 8-bit level, 1/255, as the smallest error an image stored in 8 bits can
# be said to have: PSNR 20 log10(255) = 48.13 dB. Above it, per-image PSNR
# measures float round-off (a gray image's gray input scores 48-156 dB
# depending on float32 or float64 arithmetic), and a mean of such values is
# decided by it.
PSNR_CAP_DB = 20 * np.log10(255.0)


def capped_psnr(mse):
    """PSNR (dB) of each MSE, no higher than PSNR_CAP_DB (float64)."""
    mse = np.maximum(np.asarray(mse, "float64"), 1 / 255.0**2)
    return -10 * np.log10(mse)


def image_metrics(predicted, target):
    """Per-image MSE, PSNR (dB) and SSIM of sRGB batches (B, H, W, 3) in [0, 1].

    Returns:
        {"mse": (B,), "psnr": (B,), "psnr_capped": (B,), "ssim": (B,)} NumPy
        arrays. Identical images give MSE 0, PSNR inf, capped PSNR 48.13 dB
        (`PSNR_CAP_DB`) and SSIM 1. SSIM uses tf.image's 11x11 Gaussian window
        (smaller for images under 11 pixels).
    """
    p = tf.convert_to_tensor(predicted, tf.float32)
    t = tf.convert_to_tensor(target, tf.float32)
    window = int(min(11, p.shape[1], p.shape[2]))
    mse = tf.reduce_mean(tf.square(p - t), axis=[1, 2, 3]).numpy()
    return {
        "mse": mse,
        "psnr": tf.image.psnr(p, t, max_val=1.0).numpy(),
        "psnr_capped": capped_psnr(mse),
        "ssim": tf.image.ssim(p, t, max_val=1.0, filter_size=window).numpy(),
    }


def score_colorizer(model, images, color_space, batch_size=500, keep=8):
    """Per-image metrics of a colorizer and of the gray baseline on uint8 images.

    Args:
        model: a colorizer taking (B, H, W, 1) gray of the images' size.
        images: uint8 sRGB images (N, H, W, 3), the ground truth.
        color_space: the model's space (`colorization.models.describe(model)[1]`).
        batch_size: images per prediction batch.
        keep: how many predicted images to return (the first ones); all of a
            large test set at a large size would not fit in memory.

    Returns:
        {"model": metrics, "gray": metrics}, each {"mse", "psnr", "ssim"} of
        shape (N,), plus "predicted": the model's sRGB images (keep, H, W, 3)
        in [0, 1] (for example figures).
    """
    out = {"model": [], "gray": [], "predicted": []}
    ds = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    for batch in ds.prefetch(tf.data.AUTOTUNE):
        gray, _ = color.training_pair(batch, color_space)
        truth = tf.cast(batch, tf.float32) / 255.0
        predicted = color.to_rgb(model(gray, training=False), gray, color_space)
        out["model"].append(image_metrics(predicted, truth))
        out["gray"].append(image_metrics(color.gray_as_color(gray), truth))
        kept = sum(len(p) for p in out["predicted"])
        out["predicted"].append(predicted[: max(keep - kept, 0)].numpy())
    join = lambda parts: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}  # noqa: E731
    return {
        "model": join(out["model"]),
        "gray": join(out["gray"]),
        "predicted": np.concatenate(out["predicted"]),
    }


def colorfulness(images, batch_size=1000):
    """Mean Lab chroma sqrt(a*^2 + b*^2) of each uint8 sRGB image, (N,):
    0 for a gray image, about 13 for a typical CIFAR-10 one."""
    out = []
    for i in range(0, len(images), batch_size):
        lab = color.rgb_to_lab(tf.cast(images[i : i + batch_size], tf.float32) / 255.0)
        out.append(tf.reduce_mean(tf.norm(lab[..., 1:], axis=-1), axis=[1, 2]).numpy())
    return np.concatenate(out) if out else np.zeros((0,), "float32")


def against_gray(model_psnr, gray_psnr, chroma, groups=4):
    """A colorizer's per-image PSNR against the gray input's, for all images
    and for `groups` equal groups of them by colourfulness, least first.

    The mean of per-image PSNR weighs the nearly gray images heavily: there
    the gray input is almost exact (35 dB and more) and a little wrong colour
    costs many decibels, so a model better on most images can still have the
    lower mean. The groups and the medians show where it wins and loses.

    Args:
        model_psnr, gray_psnr: per-image PSNR (N,) of the model and of the gray input.
        chroma: the images' `colorfulness` (N,).
        groups: how many groups (fewer if there are fewer images).

    Returns:
        [{"chroma": [min, max] or None for all images, "images", "psnr",
        "gray_psnr", "median_psnr", "gray_median_psnr", "above_gray": share
        of images where the model's PSNR is higher (a tie is not), "below_gray",
        "sign_p": the exact sign test's p of above against below
        (`stats.sign_test`)}], all
        images first. An image scored exactly gets PSNR inf (`image_metrics`),
        and the means of its groups are then inf; the medians and shares stay.
    """
    model_psnr, gray_psnr, chroma = (np.asarray(a) for a in (model_psnr, gray_psnr, chroma))
    if not len(chroma) == len(model_psnr) == len(gray_psnr) or not len(chroma) or groups < 1:
        raise ValueError(
            f"against_gray needs the same number (at least 1) of PSNRs and chromas and "
            f"groups >= 1; got {len(model_psnr)}, {len(gray_psnr)}, {len(chroma)} and {groups}"
        )

    def row(index, chroma_range):
        m, g = model_psnr[index], gray_psnr[index]
        sign = stats.sign_test(m, g)
        return {
            "chroma": chroma_range,
            "images": int(len(index)),
            "psnr": float(np.mean(m)),
            "gray_psnr": float(np.mean(g)),
            "median_psnr": float(np.median(m)),
            "gray_median_psnr": float(np.median(g)),
            "above_gray": sign["above"] / len(index),
            "below_gray": sign["below"] / len(index),
            "sign_p": sign["p_value"],
        }

    # By rank, not by quantile value, so the groups are equal however many ties.
    order = np.argsort(chroma, kind="stable")
    parts = np.array_split(order, min(groups, len(order)))
    rows = [row(np.arange(len(order)), None)]
    rows += [row(p, [float(chroma[p].min()), float(chroma[p].max())]) for p in parts]
    return rows


def summarize(metrics):
    """Means of per-image metrics as floats ({"mse", "psnr", "psnr_capped",
    "ssim"}), and "psnr_of_mean_mse": the PSNR of the mean MSE, which no
    single nearly exact image can move."""
    out = {k: float(np.mean(v)) for k, v in metrics.items()}
    if "mse" in metrics:
        out["psnr_of_mean_mse"] = float(
            -10 * np.log10(np.mean(np.asarray(metrics["mse"], "float64")))
        )
    return out
