"""How well a linear classifier reads the classes from a colorizer's encoder features."""

import keras

from resnet_keras.colorization import data as color_data
from resnet_keras.run import optim


def linear_probe(
    model,
    color_space,
    train,
    test,
    num_classes,
    epochs=10,
    batch_size=256,
    lr=optim.base_learning_rate("adam"),
    seed=0,
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
        {"trained_accuracy", "random_accuracy", "feature_dim"}, and each probe's
        predicted test classes ("trained_predictions", "random_predictions")
        for a paired test of the two.
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
            encoder.predict(
                color_data.pairs_dataset(x, color_space, 500).map(lambda g, _: g), verbose=0
            )
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
        optim.compile_classifier(probe, keras.optimizers.Adam(lr))
        keras.utils.set_random_seed(seed)
        probe.fit(feats[0], train[1].reshape(-1), epochs=epochs, batch_size=batch_size, verbose=0)
        _, acc = probe.evaluate(feats[1], test[1].reshape(-1), verbose=0)
        out[f"{label}_accuracy"] = float(acc)
        out[f"{label}_predictions"] = probe.predict(feats[1], verbose=0).argmax(-1)
        out["feature_dim"] = int(feats[0].shape[1])
    return out
