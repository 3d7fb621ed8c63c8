"""Evaluates saved classifiers on a data set's test split, alone and as an ensemble.

    python -m scripts.evaluate saved_models/resnet_cifar10.h5 --data_dir path/to/cifar10
    python -m scripts.evaluate saved_models/resnet_n7_Adam.h5 saved_models/resnet_n5_SGD.h5

Prints test accuracy, loss (plain cross-entropy), top-5 accuracy when there are
more than 10 classes, and per-class accuracy; given several models, also their
ensemble (the mean of their softmax outputs). `--tta` adds each model's figures
averaged with the mirrored test images, `--tta_shifts` its six-view figures
(classification.metrics.predict_with_shifts). Each accuracy comes with its exact 95 %
interval, and every pair of models with an exact McNemar test on the images
one gets right and the other wrong (`stats`). `--predictions_out` keeps one
model's predictions as a run's test_predictions.npz, from which the result
tables draw their intervals and paired tests. `--record` writes what was
printed, with the evaluation's record (command line, commit, versions, CPU), to
a JSON file: the record of a number published from an evaluation alone
(results/pretrained.json). Models load in Keras' safe mode.
"""

import itertools
import os

import numpy as np

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import files, stats
from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.data import cifar, pipeline
from resnet_keras.run import provenance, saving

flags.DEFINE_string(
    "predictions_out",
    None,
    "With one model: write its test predictions (labels, predictions, softmax, a sample "
    "of misclassified images) to this new .npz file, as a run's test_predictions.npz.",
)
flags.DEFINE_string(
    "record",
    None,
    "Also write each model's scores and the paired tests, with this evaluation's record "
    "(command line, commit, versions, CPU), to this new .json file.",
)
FLAGS = flags.FLAGS
DEFAULTS = dict(
    dataset="cifar10",
    label_mode="fine",
    test_limit=0,
    seed=0,
    batch_size=500,
    tta=False,
    tta_shifts=False,
    skip_bad_images=False,
)


def check_classifier(model, path, num_classes, image_shape):
    out = model.output_shape
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"{path}: output shape {out} is not a classifier's (batch, classes)")
    if out[1] != num_classes:
        raise ValueError(
            f"{path}: the model predicts {out[1]} classes but the data set has {num_classes}; "
            "pick the matching --dataset / --label_mode"
        )
    want = tuple(model.input_shape[1:])
    if want[-1] != image_shape[-1] or (None not in want and want != tuple(image_shape)):
        raise ValueError(
            f"{path}: the model takes inputs {want}, the data set has images {image_shape}"
        )


def report(name, test, class_names, top5):
    """Prints a model's scores; returns them as a row of the --record file."""
    interval = stats.interval_of(test["y_true"], test["y_pred"])
    print(
        f"{name}: test accuracy {test['accuracy']:.4f} "
        f"(95 % interval {interval} %), "
        f"test loss {test['loss']:.4f}"
        + (f", top-5 accuracy {test['top5_accuracy']:.4f}" if top5 else "")
    )
    accuracy = classifier_metrics.per_class_accuracy(
        test["y_true"], test["y_pred"], len(class_names)
    )
    per_class = {c: float(a) for c, a in zip(class_names, accuracy) if not np.isnan(a)}
    print("  per class: " + ", ".join(f"{c} {a:.3f}" for c, a in per_class.items()))
    row = {"test_accuracy": float(test["accuracy"]), "interval_pct": interval}
    row |= {"test_loss": float(test["loss"]), "per_class_accuracy": per_class}
    return row | ({"top5_accuracy": float(test["top5_accuracy"])} if top5 else {})


def check_new_file(flag, path, ending):
    """Refuses an output file that exists, has another ending or cannot be
    written where it is named, before any work."""
    if not path.endswith(ending):
        raise ValueError(f"--{flag} {path}: give a file name ending in {ending}")
    if os.path.exists(path):
        raise ValueError(f"--{flag} {path}: exists; move it aside or name a new file")
    files.check_writable(os.path.dirname(os.path.abspath(path)), flag)


def main(argv):
    paths = argv[1:]
    if not paths:
        raise ValueError("give one or more model files: python -m scripts.evaluate MODEL.h5 [...]")
    s = common.resolve()
    out = FLAGS.predictions_out
    if out is not None:
        if len(paths) != 1:
            raise ValueError("--predictions_out takes the predictions of one model; give one")
        check_new_file("predictions_out", out, ".npz")
    if FLAGS.record is not None:
        check_new_file("record", FLAGS.record, ".json")
    # Built only when asked for: the record runs git.
    record = {"invocation": provenance.invocation()} if FLAGS.record else {}
    record |= {"models": {}, "paired": []}
    loaded = [saving.load_model(p, compile=False) for p in paths]  # fail before reading data
    ds = cifar.load_dataset(
        s["dataset"],
        s["data_dir"],
        s["label_mode"],
        skip_bad_images=s["skip_bad_images"],
    )
    xt, yt = pipeline.limit(ds.x_test, ds.y_test, s["test_limit"], s["seed"])
    for path, model in zip(paths, loaded):
        check_classifier(model, path, ds.num_classes, xt.shape[1:])
    print(f"data: {ds.source}: {len(xt)} test images, {ds.num_classes} classes")
    record |= {"data": ds.source, "test_images": len(xt)}
    top5 = classifier_metrics.reports_top5(ds.num_classes)
    probs = []
    for path, model in zip(paths, loaded):
        p = model.predict(xt, batch_size=s["batch_size"], verbose=0)
        probs.append(p)
        scores = classifier_metrics.evaluate_predictions(p, yt)
        record["models"][path] = report(path, scores, ds.class_names, top5)
        if FLAGS.record:
            record["models"][path]["sha256"] = files.sha256(path)  # which file was scored
        augmented = classifier_metrics.predict_tta(
            model, xt, p, s["tta"], s["tta_shifts"], s["batch_size"]
        )
        for name, views in augmented.items():
            label = f"{path} {classifier_metrics.TTA_LABELS[name]}"
            record["models"][label] = report(
                label,
                classifier_metrics.evaluate_predictions(views, yt),
                ds.class_names,
                top5,
            )
    if out is not None:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        classifier_metrics.save_test_predictions(
            out, classifier_metrics.evaluate_predictions(probs[0], yt), xt
        )
        print(f"wrote {out}")
    for (i, a), (j, b) in itertools.combinations(enumerate(paths), 2):
        test = stats.mcnemar(yt, probs[i].argmax(-1), probs[j].argmax(-1))
        print(stats.comparison_text(a, b, test))
        record["paired"].append({"a": a, "b": b, **test})
    if len(paths) > 1:
        record["models"][f"ensemble of {len(paths)}"] = report(
            f"ensemble of {len(paths)}",
            classifier_metrics.evaluate_predictions(np.mean(probs, 0), yt),
            ds.class_names,
            top5,
        )
    if FLAGS.record is not None:
        check_new_file("record", FLAGS.record, ".json")  # still new: never replace a record
        files.write_json(FLAGS.record, record | {"finished_utc": provenance.now_utc()})
        print(f"wrote {FLAGS.record}")


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "evaluate", DEFAULTS, positional=True, argv=argv)


if __name__ == "__main__":
    cli()
