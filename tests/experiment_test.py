"""A classification run start to finish on an easy fixture
(classification.run_classification through experiment's steps), the test
metrics and saved predictions against values computed by hand, test-time
augmentation (resnet_keras.evaluation), and seeded determinism. The run
settings are runs_test's."""

import json
import os
from unittest import mock

import h5py
import keras
import numpy as np
import tensorflow as tf

from resnet_keras import classification, evaluation, experiment, runs
from tests import fixtures
from tests.fixtures import run_script


class ClassificationRunTest(tf.test.TestCase):
    def test_learns_an_easy_fixture_and_tests_its_best_weights(self):
        root = self.create_tempdir().full_path
        data_dir = os.path.join(root, "data")
        # Three classes whose colour and lightness show (fixtures.easy_images).
        (_, _), (xt, yt) = fixtures.write_image_folder(
            data_dir, ("a", "b", "c"), per_class=40, test_per_class=20, easy=True
        )
        config = experiment.TrainConfig(
            data_dir=data_dir,
            n=1,
            epochs=2,
            batch_size=16,
            val_size=30,
            verbose=0,
            output_dir=os.path.join(root, "out"),
            run_name="easy",
        )
        lines = []
        with mock.patch.dict(os.environ, {"RESNET_KERAS_CACHE": f"{root}/cache"}):
            model, metrics, history = classification.run_classification(config, log=lines.append)
        # Chance is 1/3: the run learned.
        self.assertGreaterEqual(metrics["test_accuracy"], 0.9)
        self.assertEqual(metrics["epochs"], 2)
        self.assertLen(history["val_accuracy"], 2)
        self.assertEqual(metrics["best_val_accuracy"], max(history["val_accuracy"]))
        # The returned model is the one tested: its predictions give the metrics.
        probs = model.predict(xt, verbose=0)
        want = evaluation.evaluate_predictions(probs, yt)
        self.assertAlmostEqual(metrics["test_accuracy"], want["accuracy"])
        self.assertAlmostEqual(metrics["test_loss"], want["loss"], places=5)
        self.assertEqual(metrics["params"], model.count_params())
        self.assertIn(f"test accuracy {metrics['test_accuracy']:.4f}", lines[-1])
        # The run folder holds a finished run, and what its figures are drawn from.
        history_, metrics_, flags, preds = runs.load_run(config.run_dir)
        self.assertEqual((history_, metrics_), (history, json.loads(json.dumps(metrics))))
        self.assertEqual((flags["train_images"], flags["val_images"]), (90, 30))
        self.assertEqual(flags["class_names"], ["a", "b", "c"])
        self.assertAllEqual(preds["y_true"], yt[:, 0])
        self.assertAllEqual(preds["y_pred"], probs.argmax(1))
        self.assertFalse(os.path.exists(os.path.join(config.run_dir, "backup")))


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
        got = evaluation.evaluate_predictions(probs, y)
        self.assertAllEqual(got["y_true"], [0, 2, 0, 5])
        self.assertAllEqual(got["y_pred"], [0, 1, 5, 5])
        self.assertEqual(got["accuracy"], 0.5)
        self.assertEqual(got["top5_accuracy"], 0.75)
        self.assertAllClose(got["loss"], -np.mean(np.log([0.7, 0.1, 0.01, 1.0])))
        self.assertAllClose(got["confidence"], [0.7, 0.6, 0.6, 1.0])
        cm = evaluation.confusion_matrix(got["y_true"], got["y_pred"], 6)
        self.assertEqual(cm.shape, (6, 6))
        self.assertEqual((cm[0, 0], cm[2, 1], cm[0, 5], cm[5, 5], cm.sum()), (1, 1, 1, 1, 4))

    def test_saved_predictions_keep_a_sample_of_the_misclassified_images(self):
        y = np.arange(100) % 10
        pred = np.where(np.arange(100) < 30, (y + 1) % 10, y)  # the first 30 wrong
        scores = {"y_true": y, "y_pred": pred, "confidence": np.full(100, 0.5)}
        images = fixtures.random_images(100, size=4)
        path = os.path.join(self.create_tempdir().full_path, "test_predictions.npz")
        evaluation.save_test_predictions(path, scores, images, keep_wrong=8)
        with np.load(path) as saved:
            wrong = saved["wrong_index"]
            self.assertLen(set(wrong), 8)
            self.assertTrue(set(wrong) <= set(range(30)), wrong)
            self.assertAllEqual(saved["wrong_images"], images[wrong])
            self.assertAllEqual(saved["y_pred"], pred)
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
        tta = evaluation.predict_with_flips(model, x)
        self.assertAllClose(tta, (plain + flipped) / 2, atol=1e-6)
        # An image and its mirror get the same answer; given plain, the same again.
        self.assertAllClose(evaluation.predict_with_flips(model, mirror), tta, atol=1e-6)
        self.assertAllClose(evaluation.predict_with_flips(model, x, plain), tta, atol=1e-6)

    def test_six_views_weighted_half_plain_pair_quarter_each_shift(self):
        model = self.model()
        x = np.random.default_rng(1).integers(1, 256, (6, 4, 4, 3)).astype("uint8")
        # By hand: moved up-left, image pixel (i, j) lands at (i - 1, j - 1) and
        # the uncovered last row and column are zero; down-right the reverse.
        up_left, down_right = np.zeros_like(x), np.zeros_like(x)
        up_left[:, :-1, :-1] = x[:, 1:, 1:]
        down_right[:, 1:, 1:] = x[:, :-1, :-1]
        pair = evaluation.predict_with_flips
        want = pair(model, x) / 2 + (pair(model, up_left) + pair(model, down_right)) / 4
        got = evaluation.predict_with_shifts(model, x)
        self.assertAllClose(got, want, atol=1e-6)
        self.assertNotAllClose(got, pair(model, x))
        self.assertAllClose(got.sum(axis=1), np.ones(6), atol=1e-6)
        self.assertAllClose(
            evaluation.predict_with_shifts(model, x, pair(model, x)), got, atol=1e-6
        )


class DeterminismTest(tf.test.TestCase):
    def test_same_seed_gives_bit_identical_weights(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
        paths = []
        for k in range(2):
            out = os.path.join(root, f"out{k}")
            r = run_script(
                "scripts.question1",
                f"--data_dir={root}",
                "--n=1",
                "--epochs=2",
                "--val_size=20",
                "--batch_size=16",
                f"--output_dir={out}",
                "--verbose=0",
                "--deterministic",
                "--seed=7",
            )
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            paths.append(os.path.join(out, "runs", "question1_resnet8_cifar10", "best.weights.h5"))

        def arrays(path):
            found = []
            with h5py.File(path, "r") as f:
                f.visititems(
                    lambda n, o: found.append((n, o[()])) if isinstance(o, h5py.Dataset) else None
                )
            return found

        a, b = arrays(paths[0]), arrays(paths[1])
        self.assertEqual([n for n, _ in a], [n for n, _ in b])
        self.assertNotEmpty(a)
        for (name, x), (_, y) in zip(a, b):
            self.assertTrue(np.array_equal(x, y), name)


if __name__ == "__main__":
    tf.test.main()
