"""Test metrics of classifiers, computed from their predictions.

Accuracy, plain cross-entropy and top-5 accuracy of softmax
outputs (`evaluate_predictions`), test-time augmentation over mirrored and
shifted views (`predict_tta`), the confusion matrix and per-class accuracy,
and test_predictions.npz, from which figures are redrawn without the model.
`test_classifier` is the test at the end of every classification run;
`scripts.evaluate` uses the same functions on saved models.
"""

import numpy as np
import tensorflow as tf

from resnet_keras import files

# The test-time augmentations by option name, as reports label them.
TTA_LABELS = {"tta": "with flips", "tta_shifts": "with flips and shifts"}


def reports_top5(num_classes):
    """Whether top-5 accuracy is measured and reported: above 10 classes only
    (out of 10 or fewer it says little, and CIFAR-10's papers give none)."""
    return num_classes > 10


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
    if reports_top5(probs.shape[-1]):
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
