"""resnet_keras.classification.metrics and resnet_keras.colorization.metrics: test metrics from predictions, TTA and the files they go to.

Also the flip and shift views (FlipTtaTest); the colorization metrics are
colorization_test's.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.colorization import metrics as colorizer_metrics
from tests import fixtures


def _classifier(classes, input_shape=(4, 4, 3)):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(input_shape)
    flat = keras.layers.Flatten()(inputs)  # position-sensitive: a mirror changes the output
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(flat))


class ClassifierMetricsTest(tf.test.TestCase):
    def test_predictions_by_hand(self):
        probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
        scores = classifier_metrics.evaluate_predictions(probs, np.array([[0], [1], [1]]))
        self.assertAllEqual(scores["y_pred"], [0, 2, 0])
        self.assertAlmostEqual(scores["accuracy"], 1 / 3)
        self.assertAlmostEqual(scores["loss"], -np.mean(np.log([0.7, 0.3, 0.4])))
        self.assertAllClose(scores["confidence"], [0.7, 0.6, 0.5])

    def test_confusion_matrix_and_per_class_accuracy(self):
        y_true, y_pred = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 0, 2, 2])
        cm = classifier_metrics.confusion_matrix(y_true, y_pred, 4)
        self.assertEqual(cm.dtype, np.int64)
        want = [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
        self.assertAllEqual(cm, want)
        # (N, 1) labels as the data sets give them count the same.
        self.assertAllEqual(classifier_metrics.confusion_matrix(y_true[:, None], y_pred, 4), want)
        accuracy = classifier_metrics.per_class_accuracy(y_true, y_pred, 4)
        self.assertAllClose(accuracy[:3], [0.5, 1.0, 2 / 3])
        self.assertTrue(np.isnan(accuracy[3]))  # no test image of class 3

    def test_test_classifier_metrics_and_views(self):
        model = _classifier(12)
        x = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 3)).astype("uint8")
        y = np.arange(20) % 12
        scores, metrics = classifier_metrics.test_classifier(model, x, y, tta=True, tta_shifts=True)
        probs = model.predict(x, verbose=0)
        plain = classifier_metrics.evaluate_predictions(probs, y)
        self.assertEqual(scores["accuracy"], plain["accuracy"])
        flips = classifier_metrics.evaluate_predictions(
            classifier_metrics.predict_with_flips(model, x), y
        )
        self.assertAllClose(metrics["test_loss_tta"], flips["loss"])
        self.assertEqual(
            sorted(metrics),
            [
                "test_accuracy",
                "test_accuracy_tta",
                "test_accuracy_tta_shifts",
                "test_loss",
                "test_loss_tta",
                "test_loss_tta_shifts",
                "test_top5_accuracy",  # more than 10 classes
            ],
        )
        self.assertEqual(metrics["test_top5_accuracy"], plain["top5_accuracy"])
        # Cached features are no images: they have no mirror views.
        features = _classifier(3, (8,))
        f = np.random.default_rng(1).normal(size=(5, 8)).astype("float32")
        _, metrics = classifier_metrics.test_classifier(features, f, np.zeros(5), tta=True)
        self.assertEqual(sorted(metrics), ["test_accuracy", "test_loss"])

    def test_saved_predictions_keep_a_fixed_sample_of_the_wrong_ones(self):
        x = np.arange(10 * 2 * 2 * 3, dtype="uint8").reshape(10, 2, 2, 3)
        probs = np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0]]
        y = np.array([0, 1, 2, 1, 2, 0, 1, 2, 0, 0])  # wrong: 3, 4, 5, 6, 7, 8
        scores = classifier_metrics.evaluate_predictions(probs, y)
        path = os.path.join(self.create_tempdir().full_path, "test_predictions.npz")
        classifier_metrics.save_test_predictions(path, scores, x, keep_wrong=4)
        saved = np.load(path)
        self.assertAllEqual(saved["y_true"], y)
        self.assertLen(saved["wrong_index"], 4)
        self.assertContainsSubset(saved["wrong_index"].tolist(), [3, 4, 5, 6, 7, 8])
        self.assertAllEqual(saved["wrong_images"], x[saved["wrong_index"]])
        again = path.replace(".npz", "_again.npz")
        classifier_metrics.save_test_predictions(again, scores, x, keep_wrong=4)
        self.assertAllEqual(np.load(again)["wrong_index"], saved["wrong_index"])


class EvaluationTest(tf.test.TestCase):
    def test_metrics_of_hand_made_predictions(self):
        probs = np.array(
            [
                [0.7, 0.1, 0.1, 0.05, 0.05, 0.0],  # right
                [0.1, 0.6, 0.1, 0.1, 0.05, 0.05],  # wrong (true 2), 2 in the top 5
                [0.01, 0.05, 0.1, 0.1, 0.14, 0.6],  # wrong (true 0), 0 outside the top 5
                [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],  # right, and a zero elsewhere
            ]
        )
        y = np.array([[0], [2], [0], [5]])
        got = classifier_metrics.evaluate_predictions(probs, y)
        self.assertAllEqual(got["y_true"], [0, 2, 0, 5])
        self.assertAllEqual(got["y_pred"], [0, 1, 5, 5])
        self.assertEqual(got["accuracy"], 0.5)
        self.assertEqual(got["top5_accuracy"], 0.75)
        self.assertAllClose(got["loss"], -np.mean(np.log([0.7, 0.1, 0.01, 1.0])))
        self.assertAllClose(got["confidence"], [0.7, 0.6, 0.6, 1.0])
        cm = classifier_metrics.confusion_matrix(got["y_true"], got["y_pred"], 6)
        self.assertEqual(cm.shape, (6, 6))
        self.assertEqual((cm[0, 0], cm[2, 1], cm[0, 5], cm[5, 5], cm.sum()), (1, 1, 1, 1, 4))

    def test_saved_predictions_keep_a_sample_of_the_misclassified_images(self):
        y = np.arange(100) % 10
        pred = np.where(np.arange(100) < 30, (y + 1) % 10, y)  # the first 30 wrong
        probs = (0.5 * np.eye(10)[pred] + 0.05).astype("float32")
        scores = {"y_true": y, "y_pred": pred, "confidence": np.full(100, 0.55), "probs": probs}
        images = fixtures.random_images(100, size=4)
        path = os.path.join(self.create_tempdir().full_path, "test_predictions.npz")
        classifier_metrics.save_test_predictions(path, scores, images, keep_wrong=8)
        with np.load(path) as saved:
            wrong = saved["wrong_index"]
            self.assertLen(set(wrong), 8)
            self.assertTrue(set(wrong) <= set(range(30)), wrong)
            self.assertAllEqual(saved["wrong_images"], images[wrong])
            self.assertAllEqual(saved["y_pred"], pred)
            self.assertAllEqual(saved["probs"], probs)  # for ensembles of runs
        self.assertEqual(os.listdir(os.path.dirname(path)), ["test_predictions.npz"])


class FlipTtaTest(tf.test.TestCase):
    def model(self):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4, 4, 3))
        flat = keras.layers.Flatten()(inputs)  # position-sensitive: a mirror or shift changes it
        return keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(flat))

    def test_mirror_invariant_and_the_mean_of_both_views(self):
        model = self.model()
        x = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3)).astype("uint8")
        mirror = x[:, :, ::-1]
        plain, flipped = model.predict(x, verbose=0), model.predict(mirror, verbose=0)
        self.assertNotAllClose(plain, flipped)
        tta = classifier_metrics.predict_with_flips(model, x)
        self.assertAllClose(tta, (plain + flipped) / 2, atol=1e-6)
        # An image and its mirror get the same answer; given plain, the same again.
        self.assertAllClose(classifier_metrics.predict_with_flips(model, mirror), tta, atol=1e-6)
        self.assertAllClose(classifier_metrics.predict_with_flips(model, x, plain), tta, atol=1e-6)

    def test_six_views_weighted_half_plain_pair_quarter_each_shift(self):
        model = self.model()
        x = np.random.default_rng(1).integers(1, 256, (6, 4, 4, 3)).astype("uint8")
        # By hand: moved up-left, image pixel (i, j) lands at (i - 1, j - 1) and
        # the uncovered last row and column are zero; down-right the reverse.
        up_left, down_right = np.zeros_like(x), np.zeros_like(x)
        up_left[:, :-1, :-1] = x[:, 1:, 1:]
        down_right[:, 1:, 1:] = x[:, :-1, :-1]
        pair = classifier_metrics.predict_with_flips
        want = pair(model, x) / 2 + (pair(model, up_left) + pair(model, down_right)) / 4
        got = classifier_metrics.predict_with_shifts(model, x)
        self.assertAllClose(got, want, atol=1e-6)
        self.assertNotAllClose(got, pair(model, x))
        self.assertAllClose(got.sum(axis=1), np.ones(6), atol=1e-6)
        self.assertAllClose(
            classifier_metrics.predict_with_shifts(model, x, pair(model, x)), got, atol=1e-6
        )


class CappedPsnrTest(tf.test.TestCase):
    def test_round_off_no_longer_decides_the_mean(self):
        # A gray image scored exactly, or off by float round-off only: uncapped
        # PSNR is inf or 150 dB, the capped value one 8-bit level's 48.13 dB.
        truth = np.full((3, 4, 4, 3), 0.5, "float32")
        predicted = truth.copy()
        predicted[1] += 1e-8
        predicted[2] += 0.1  # an ordinary error: 20 dB, untouched by the cap
        m = colorizer_metrics.image_metrics(predicted, truth)
        self.assertTrue(np.isinf(m["psnr"][0]))
        self.assertAllClose(m["psnr_capped"], [48.1308, 48.1308, 20.0], atol=1e-3)
        s = colorizer_metrics.summarize(m)
        self.assertAllClose(s["psnr_capped"], (2 * 48.1308 + 20) / 3, atol=1e-3)
        # The PSNR of the mean MSE: 10 log10(1 / (0.01 / 3)).
        self.assertAllClose(s["psnr_of_mean_mse"], 10 * np.log10(300), atol=1e-3)


if __name__ == "__main__":
    tf.test.main()
