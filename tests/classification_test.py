"""A classification run start to finish on an easy fixture
(resnet_keras.classification.task.run_classification through the run lifecycle's steps):
the test metrics and saved predictions against values computed by hand."""

import json
import os
from unittest import mock

import tensorflow as tf

from resnet_keras.classification import metrics as classifier_metrics
from resnet_keras.classification import task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.run import folders
from tests import fixtures


class ClassificationRunTest(tf.test.TestCase):
    def test_learns_an_easy_fixture_and_tests_its_best_weights(self):
        root = self.create_tempdir().full_path
        data_dir = os.path.join(root, "data")
        # Three classes whose colour and lightness show (fixtures.easy_images).
        (_, _), (xt, yt) = fixtures.write_image_folder(
            data_dir, ("a", "b", "c"), per_class=40, test_per_class=20, easy=True
        )
        config = TrainConfig(
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
            model, metrics, history = task.run_classification(config, log=lines.append)
        # Chance is 1/3: the run learned.
        self.assertGreaterEqual(metrics["test_accuracy"], 0.9)
        self.assertEqual(metrics["epochs"], 2)
        self.assertLen(history["val_accuracy"], 2)
        self.assertEqual(metrics["best_val_accuracy"], max(history["val_accuracy"]))
        # The returned model is the one tested: its predictions give the metrics.
        probs = model.predict(xt, verbose=0)
        want = classifier_metrics.evaluate_predictions(probs, yt)
        self.assertAlmostEqual(metrics["test_accuracy"], want["accuracy"])
        self.assertAlmostEqual(metrics["test_loss"], want["loss"], places=5)
        self.assertEqual(metrics["params"], model.count_params())
        self.assertIn(f"test accuracy {metrics['test_accuracy']:.4f}", "\n".join(lines))
        # The run folder holds a finished run, and what its figures are drawn from.
        history_, metrics_, flags, preds = folders.load_run(config.run_dir)
        self.assertEqual((history_, metrics_), (history, json.loads(json.dumps(metrics))))
        self.assertEqual((flags["train_images"], flags["val_images"]), (90, 30))
        self.assertEqual(flags["class_names"], ["a", "b", "c"])
        self.assertAllEqual(preds["y_true"], yt[:, 0])
        self.assertAllEqual(preds["y_pred"], probs.argmax(1))
        self.assertFalse(os.path.exists(os.path.join(config.run_dir, "backup")))


if __name__ == "__main__":
    tf.test.main()
