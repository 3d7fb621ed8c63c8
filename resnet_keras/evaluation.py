"""Test metrics of classifiers and colorizers, computed from their predictions.

Classifiers: accuracy, plain cross-entropy and top-5 accuracy of softmax
outputs (`evaluate_predictions`), test-time augmentation over mirrored and
shifted views (`predict_tta`), the confusion matrix and per-class accuracy,
and test_predictions.npz, from which figures are redrawn without the model.
`test_classifier` is the test at the end of every classification run;
`scripts.evaluate` uses the same functions on saved models.

Colorizers: per-image MSE, PSNR and SSIM of the sRGB image in [0, 1], for the
model and for the gray input taken as colour (`evaluate_colorizer`), the
model's PSNR against the gray input's by how colourful the image is
(`against_gray`), and how well a linear classifier reads the classes from
its encoder's features (`linear_probe`).
"""

import keras
import numpy as np
import tensorflow as tf

from resnet_keras import colorization as col
from resnet_keras import files, training

# The test-time augmentations by option name, as reports label them.
TTA_LABELS = {"tta": "with flips", "tta_shifts": "with flips and shifts"}


# --- classifiers --------------------------------------------------------------


def evaluate_predictions(probs, y):
    """Test metrics from softmax outputs (B, K) and labels (B,) or (B, 1).

    The loss is the plain cross-entropy: `model.evaluate` would add the L2
    weight-decay term, which is not a property of the predictions.
    """
    y = np.asarray(y).reshape(-1).astype("int64")
    probs = np.asarray(probs, "float64")
    pred = probs.argmax(axis=1)
    top5 = np.argsort(-probs, axis=1)[:, :5]
    return {
        "loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)))),
        "accuracy": float(np.mean(pred == y)),
        "top5_accuracy": float(np.mean((top5 == y[:, None]).any(axis=1))),
        "y_true": y,
        "y_pred": pred,
        "confidence": probs.max(axis=1),
        "probs": probs.astype("float32"),
    }


def predict_tta(model, x, probs, tta=False, tta_shifts=False, batch_size=1000):
    """The augmented predictions asked for, keyed by option name ("tta": two
    views, "tta_shifts": six); the mirror pair is predicted once for both.
    `probs`: the plain predictions."""
    if not (tta or tta_shifts):
        return {}
    flips = predict_with_flips(model, x, probs, batch_size)
    out = {"tta": flips} if tta else {}
    if tta_shifts:
        out["tta_shifts"] = predict_with_shifts(model, x, flips, batch_size)
    return out


def predict_with_flips(model, x, probs=None, batch_size=1000):
    """Test-time augmentation: the mean softmax of each image and its mirror
    image (the training flips make both equally valid views). `probs`: the
    plain predictions, where already made."""
    if probs is None:
        probs = model.predict(x, batch_size=batch_size, verbose=0)
    mirrored = model.predict(np.ascontiguousarray(x[:, :, ::-1]), batch_size=batch_size, verbose=0)
    return (np.asarray(probs, "float64") + mirrored) / 2


def predict_with_shifts(model, x, flips=None, batch_size=1000):
    """Six-view test-time augmentation (airbench's level 2): half the weight on
    the mirror pair (`predict_with_flips`, passed as `flips` where already
    made), a quarter each on that pair moved one pixel up-left and one
    down-right. The border pixels it uncovers are zeros, as the training
    crops' padding is, so every view is one the model trained on."""
    if flips is None:
        flips = predict_with_flips(model, x, batch_size=batch_size)
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    h, w = x.shape[1:3]
    shifted = [
        predict_with_flips(model, padded[:, dy : dy + h, dx : dx + w], batch_size=batch_size)
        for dy, dx in [(0, 0), (2, 2)]
    ]
    return flips / 2 + (shifted[0] + shifted[1]) / 4


def test_classifier(model, x, y, tta=False, tta_shifts=False, batch_size=1000):
    """Tests a classifier once on the test split.

    Args:
        model: a classifier with softmax outputs.
        x, y: the test inputs (images, or e.g. cached features) and labels.
        tta, tta_shifts: also test on two or six views of each image
            (`predict_tta`); inputs that are not images (N, H, W, C) have none.
        batch_size: images per prediction batch.

    Returns:
        `(scores, metrics)`: `evaluate_predictions` of the plain predictions,
        and the metrics.json entries: test_loss, test_accuracy,
        test_top5_accuracy (over 10 classes), and test_accuracy_<option>
        and test_loss_<option> per test-time augmentation.
    """
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    scores = evaluate_predictions(probs, y)
    metrics = {"test_loss": scores["loss"], "test_accuracy": scores["accuracy"]}
    if probs.shape[-1] > 10:
        metrics["test_top5_accuracy"] = scores["top5_accuracy"]
    if np.ndim(x) == 4:
        for name, views in predict_tta(model, x, probs, tta, tta_shifts, batch_size).items():
            augmented = evaluate_predictions(views, y)
            metrics[f"test_accuracy_{name}"] = augmented["accuracy"]
            metrics[f"test_loss_{name}"] = augmented["loss"]
    return scores, metrics


def confusion_matrix(y_true, y_pred, num_classes):
    """(num_classes, num_classes) int64 counts; rows: true class, columns: predicted."""
    return tf.math.confusion_matrix(
        np.reshape(y_true, -1), np.reshape(y_pred, -1), num_classes=num_classes, dtype=tf.int64
    ).numpy()


def per_class_accuracy(y_true, y_pred, num_classes):
    """The share of each class's images predicted as that class (the confusion
    matrix's diagonal over its row sums); NaN for a class with no images."""
    cm = confusion_matrix(y_true, y_pred, num_classes)
    counts = cm.sum(axis=1)
    return np.where(counts > 0, cm.diagonal() / np.maximum(counts, 1), np.nan)


def save_test_predictions(path, test, x_test, keep_wrong=64):
    """Labels, predictions, softmax outputs and the first misclassified images,
    so that confusion matrices, misclassified grids and ensembles of runs can
    be made without the model or data.

    Args:
        path: the .npz file to write.
        test: `evaluate_predictions`' result.
        x_test: the test images, in the order of `test`'s labels.
        keep_wrong: how many misclassified images to keep.
    """
    # A fixed random sample, not the first ones: test sets often come sorted
    # by class (image folders do), and a grid of airplanes says little.
    wrong = np.flatnonzero(test["y_pred"] != test["y_true"])
    wrong = np.random.default_rng(0).permutation(wrong)[:keep_wrong]
    with files.atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            y_true=test["y_true"],
            y_pred=test["y_pred"],
            confidence=test["confidence"],
            # every softmax output, so that runs can be ensembled without their models
            probs=test["probs"],
            wrong_index=wrong,
            wrong_images=x_test[wrong],
        )


# --- colorizers ---------------------------------------------------------------


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


def evaluate_colorizer(model, images, color_space, batch_size=500, keep=8):
    """Per-image metrics of a colorizer and of the gray baseline on uint8 images.

    Args:
        model: a colorizer taking (B, H, W, 1) gray of the images' size.
        images: uint8 sRGB images (N, H, W, 3), the ground truth.
        color_space: the model's space (`colorization.describe(model)[1]`).
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
        gray, _ = col.training_pair(batch, color_space)
        truth = tf.cast(batch, tf.float32) / 255.0
        predicted = col.to_rgb(model(gray, training=False), gray, color_space)
        out["model"].append(image_metrics(predicted, truth))
        out["gray"].append(image_metrics(col.gray_as_color(gray), truth))
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
        lab = col.rgb_to_lab(tf.cast(images[i : i + batch_size], tf.float32) / 255.0)
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
        of images where the model's PSNR is higher (a tie is not)}], all
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
        return {
            "chroma": chroma_range,
            "images": int(len(index)),
            "psnr": float(np.mean(m)),
            "gray_psnr": float(np.mean(g)),
            "median_psnr": float(np.median(m)),
            "gray_median_psnr": float(np.median(g)),
            "above_gray": float(np.mean(m > g)),
        }

    # By rank, not by quantile value, so the groups are equal however many ties.
    order = np.argsort(chroma, kind="stable")
    parts = np.array_split(order, min(groups, len(order)))
    rows = [row(np.arange(len(order)), None)]
    rows += [row(p, [float(chroma[p].min()), float(chroma[p].max())]) for p in parts]
    return rows


def linear_probe(
    model, color_space, train, test, num_classes, epochs=10, batch_size=256, lr=1e-3, seed=0
):
    """Accuracy of a linear classifier on a colorizer's frozen encoder features.

    The features are the bottleneck's output averaged over space; the
    classifier is a standardisation and one softmax Dense layer (linear). The
    same probe on a fresh copy of the model with random weights shows how
    much of the accuracy colorization training gave.

    Args:
        model: a colorizer; its weights are not changed.
        color_space: the model's space (it decides the gray conversion).
        train, test: (uint8 images (N, H, W, 3), labels (N, 1)).
        num_classes: softmax outputs.
        epochs, batch_size, lr: the classifier's Adam training.
        seed: the random encoder's weights and the classifier's.

    Returns:
        {"trained_accuracy", "random_accuracy", "feature_dim"}.
    """
    keras.utils.set_random_seed(seed)
    random_model = keras.models.clone_model(model)  # same layers, fresh initial weights
    out = {}
    for label, m in (("trained", model), ("random", random_model)):
        bottleneck = m.get_layer("bottleneck").output
        pooled = keras.layers.GlobalAveragePooling2D(name="probe_pool")(bottleneck)
        encoder = keras.Model(m.inputs, pooled, name=f"{label}_encoder")
        # Features computed once: the same as a frozen encoder, and one pass, not `epochs`.
        feats = [
            encoder.predict(col.pairs_dataset(x, color_space, 500).map(lambda g, _: g), verbose=0)
            for x, _ in (train, test)
        ]
        norm = keras.layers.Normalization(name="standardize")
        norm.adapt(feats[0])
        probe = keras.Sequential(
            [
                keras.Input((feats[0].shape[1],)),
                norm,
                keras.layers.Dense(num_classes, activation="softmax", name="linear"),
            ],
            name=f"{label}_probe",
        )
        training.compile_classifier(probe, keras.optimizers.Adam(lr))
        keras.utils.set_random_seed(seed)
        probe.fit(feats[0], train[1].reshape(-1), epochs=epochs, batch_size=batch_size, verbose=0)
        _, acc = probe.evaluate(feats[1], test[1].reshape(-1), verbose=0)
        out[f"{label}_accuracy"] = float(acc)
        out["feature_dim"] = int(feats[0].shape[1])
    return out


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
