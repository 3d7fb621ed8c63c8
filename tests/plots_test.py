"""resnet_keras.run.plots: each figure is written whole, as a PNG, with nothing
left beside it.

What the figures are drawn from is checked where it is made (lifecycle_test,
resnet_vs_plain_test); here, that any such data draws."""

import os
from unittest import mock

import numpy as np
import tensorflow as tf
from PIL import Image

from resnet_keras.run import plots
from tests import fixtures

NAMES = [f"class{k}" for k in range(10)]


class FiguresTest(tf.test.TestCase):
    def assertPng(self, path, folder):
        with Image.open(path) as im:
            self.assertEqual(im.format, "PNG")
            self.assertGreater(min(im.size), 100)
        self.assertEqual(os.listdir(folder), [os.path.basename(path)])  # no temporary file

    def test_confusion_misclassified_and_history(self):
        rng = np.random.default_rng(0)
        y_true, y_pred = rng.integers(0, 10, 50), rng.integers(0, 10, 50)
        cases = {
            "confusion": lambda p: plots.plot_confusion(
                np.bincount(10 * y_true + y_pred, minlength=100).reshape(10, 10), NAMES, p, "t"
            ),
            # Fewer images than the grid holds, and more.
            "few": lambda p: plots.plot_misclassified(
                fixtures.random_images(5), y_true[:5], y_pred[:5], NAMES, p
            ),
            "many": lambda p: plots.plot_misclassified(
                fixtures.random_images(40), y_true[:40], y_pred[:40], NAMES, p
            ),
            "history": lambda p: plots.plot_history(
                {"accuracy": [0.3, 0.5], "val_accuracy": [0.2, 0.4], "loss": [2.0, 1.5]}, p
            ),
        }
        for name, draw in cases.items():
            folder = self.create_tempdir().full_path
            path = os.path.join(folder, f"{name}.png")
            self.assertEqual(draw(path), path)
            self.assertPng(path, folder)

    def test_a_run_watched_on_the_test_set_draws_its_test_curve(self):
        drawn = {}

        def keep(fig, path):
            drawn.update({ax.get_ylabel(): [ln.get_label() for ln in ax.lines] for ax in fig.axes})
            return path

        history = {"accuracy": [0.3, 0.5], "loss": [2.0, 1.5], "test_accuracy": [0.2, 0.4]}
        history["test_loss"] = [2.2, 1.7]
        with mock.patch.object(plots, "save_figure", keep):
            plots.plot_history(history, "unused.png")
        want = ["training", "test (watched, not used to choose weights)"]
        self.assertEqual(drawn, {"accuracy": want, "loss": want})

    def test_the_loss_axis_says_what_the_loss_holds(self):
        self.assertEqual(plots.classifier_loss_label(1e-4, 0), "loss (cross-entropy + L2 term)")
        self.assertEqual(plots.classifier_loss_label(0, 0), "loss (cross-entropy)")
        self.assertEqual(
            plots.classifier_loss_label(5e-4, 0.1),
            "loss (label-smoothed (0.1) cross-entropy + L2 term)",
        )


if __name__ == "__main__":
    tf.test.main()
