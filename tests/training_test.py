import os
import tempfile
from unittest import mock

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import evaluation, experiment, files, models, training
from tests import fixtures


class ScheduleTest(tf.test.TestCase, parameterized.TestCase):
    def test_step_schedule_switches_at_epochs_50_and_75_of_100(self):
        spe = 391  # 50k images at batch 128
        lr = lambda epoch, i=0: training.learning_rate(
            epoch * spe + i, "step", 0.1, spe, 100
        )  # noqa: E731
        self.assertAlmostEqual(lr(0), 0.1)
        self.assertAlmostEqual(lr(49, spe - 1), 0.1)
        self.assertAlmostEqual(lr(50), 0.01)
        self.assertAlmostEqual(lr(74, spe - 1), 0.01)
        self.assertAlmostEqual(lr(75), 0.001)
        self.assertAlmostEqual(lr(99, spe - 1), 0.001)

    def test_paper_schedule_switches_at_32k_and_48k(self):
        lr = lambda s: training.learning_rate(s, "paper", 0.1, 352, 182)  # noqa: E731
        self.assertEqual(
            [lr(0), lr(31_999), lr(32_000), lr(47_999), lr(48_000), lr(63_999)],
            [0.1, 0.1, 0.01, 0.01, 0.001, 0.001],
        )

    def test_resnet110_warmup(self):
        lr = lambda s: training.learning_rate(
            s, "paper", 0.1, 352, 182, warmup_steps=400
        )  # noqa: E731
        self.assertEqual([lr(0), lr(399), lr(400), lr(32_000)], [0.01, 0.01, 0.1, 0.01])

    def test_constant(self):
        self.assertEqual(training.learning_rate(10_000, "constant", 1e-3, 10, 20), 1e-3)
        self.assertEqual(training.keras_schedule("constant", 1e-3, 10, 20), 1e-3)

    @parameterized.parameters(
        ("step", 0.1, 10, 20, 0), ("paper", 0.1, 352, 182, 0), ("paper", 0.1, 352, 182, 400)
    )
    def test_keras_schedule_equals_pure_function_at_every_boundary(
        self, name, lr, spe, epochs, warm
    ):
        sched = training.keras_schedule(name, lr, spe, epochs, warm)
        bounds, _ = training.schedule_boundaries(name, lr, spe, epochs, warm)
        steps = sorted({0, 1} | {b + d for b in bounds for d in (-1, 0, 1)})
        for s in steps:
            self.assertAllClose(
                float(sched(s)),
                training.learning_rate(s, name, lr, spe, epochs, warm),
                msg=f"step {s}",
            )

    def test_onecycle_ramps_then_cosines_to_zero_and_keras_agrees(self):
        spe, epochs, lr = 10, 5, 0.3  # 50 steps: 10 warm-up, 40 cosine
        rate = lambda s: training.learning_rate(s, "onecycle", lr, spe, epochs)  # noqa: E731
        self.assertAlmostEqual(rate(0), 0.03)
        self.assertAlmostEqual(rate(5), 0.03 + 0.27 * 0.5)
        self.assertAlmostEqual(rate(10), 0.3)
        self.assertAlmostEqual(rate(30), 0.15)
        self.assertAlmostEqual(rate(50), 0.0)
        sched = training.keras_schedule("fast", lr, spe, epochs)
        for s in (0, 1, 5, 9, 10, 11, 30, 49, 50):
            self.assertAllClose(float(sched(s)), rate(s), atol=1e-6, msg=f"step {s}")

    def test_unknown_names(self):
        with self.assertRaisesRegex(
            ValueError, "Unknown schedule 'cosine'; expected one of constant"
        ):
            training.schedule_boundaries("cosine", 0.1, 1, 1)
        with self.assertRaisesRegex(
            ValueError, "Unknown optimizer 'adagrad'; expected one of adam, rmsprop, sgd"
        ):
            training.make_optimizer("adagrad", 0.1)

    def test_optimizers_by_name(self):
        sgd = training.make_optimizer("sgd", 0.1)
        self.assertIsInstance(sgd, keras.optimizers.SGD)
        self.assertAllClose(sgd.momentum, 0.9)
        self.assertIsInstance(training.make_optimizer("adam", 1e-3), keras.optimizers.Adam)
        self.assertIsInstance(training.make_optimizer("rmsprop", 1e-3), keras.optimizers.RMSprop)
        self.assertFalse(sgd.nesterov)
        self.assertTrue(training.make_optimizer("sgd", 0.1, nesterov=True).nesterov)
        with self.assertRaisesRegex(ValueError, "--nesterov is SGD's momentum; --opt is adam"):
            training.make_optimizer("adam", 1e-3, nesterov=True)


class LabelSmoothingTest(tf.test.TestCase):
    def _model(self, classes=3):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(inputs))

    def test_smoothed_loss_is_keras_own_on_one_hot_targets(self):
        model = self._model()
        training.compile_classifier(
            model, keras.optimizers.SGD(0.1), label_smoothing=0.1, top5=True
        )
        x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
        y = np.array([0, 1, 2, 0, 1, 2, 0, 1])
        probs = model.predict(x, verbose=0)
        # (1 - 0.1) one-hot + 0.1 / 3 everywhere, against the model's softmax.
        target = 0.9 * np.eye(3)[y] + 0.1 / 3
        want = -np.mean(np.sum(target * np.log(probs), axis=1))
        got = model.compute_loss(x, tf.one_hot(y, 3), model(x))
        self.assertAllClose(got, want, atol=1e-5)
        # The plain loss is larger on a confident right answer than smoothing's
        # floor: it really is a different target, not the same loss renamed.
        plain = -np.mean(np.log(probs[np.arange(8), y]))
        self.assertNotAllClose(plain, want)
        logs = model.fit(x, tf.one_hot(y, 3), epochs=1, verbose=0).history
        self.assertIn("accuracy", logs)
        self.assertIn("top5_accuracy", logs)

    def test_saved_smoothed_model_loads_in_plain_keras(self):
        model = self._model()
        training.compile_classifier(model, keras.optimizers.SGD(0.1), label_smoothing=0.2)
        path = os.path.join(tempfile.mkdtemp(), "m.h5")
        model.save(path)
        loaded = keras.models.load_model(path)  # no project code needed
        x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
        y = tf.one_hot([0, 1, 2, 1, 0], 3)
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
        # The smoothing came back with the file.
        self.assertAllClose(
            loaded.compute_loss(x, y, loaded(x)), model.compute_loss(x, y, model(x))
        )


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


class ResumeTest(tf.test.TestCase):
    def test_a_first_backup_cut_off_mid_write_is_discarded_not_loaded(self):
        config = experiment.TrainConfig(output_dir=self.create_tempdir().full_path, run_name="r")
        run = config.run_dir
        os.makedirs(os.path.join(run, "backup"))
        with open(os.path.join(run, "backup", "latest.weights.h5"), "w") as f:
            f.write("half an HDF5 file")  # no training_metadata.json: no epoch finished
        model = models.build_resnet(1)
        training.compile_classifier(model, training.make_optimizer("sgd", 0.1))
        callbacks = training.callbacks_for_run(run, 8, has_validation=False)
        self.assertFalse(os.path.exists(os.path.join(run, "backup")))
        x, y = fixtures.random_images(8), np.arange(8)
        model.fit(x, y, batch_size=8, epochs=1, callbacks=callbacks, verbose=0)
        # The resume state outlives the last epoch (a kill before the test
        # resumes there) and goes only when the run is finished.
        self.assertEqual(training.resume_epoch(run), 1)
        experiment.finish_run(config, run)
        self.assertFalse(os.path.exists(os.path.join(run, "backup")))


class FilesTest(tf.test.TestCase):
    def test_csv_history_and_atomic_json(self):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "log.csv")
        with open(path, "w") as f:
            f.write("epoch,accuracy,loss\n0,0.5,1.5\n1,0.6,1.2\n")
        self.assertEqual(
            training.read_csv_history(path), {"accuracy": [0.5, 0.6], "loss": [1.5, 1.2]}
        )
        # A run without validation: CSVLogger writes NA in every val_ column.
        na = os.path.join(tempfile.mkdtemp(), "log.csv")
        with open(na, "w") as f:
            f.write("epoch,accuracy,val_accuracy\n0,0.5,NA\n1,0.6,NA\n")
        self.assertEqual(training.read_csv_history(na), {"accuracy": [0.5, 0.6]})
        files.write_json(os.path.join(d, "h.json"), {"a": np.float32(1.5), "b": np.arange(2)})
        self.assertEqual(sorted(os.listdir(d)), ["h.json", "log.csv"])
        with open(os.path.join(d, "h.json")) as f:
            self.assertIn('"a": 1.5', f.read())


class FitWithResumeTest(tf.test.TestCase):
    def fit(self, run_dir, epochs=3, lr=0.05, val=True, log=print):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        training.compile_classifier(model, training.make_optimizer("sgd", lr))
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(16, 4)).astype("float32"), np.arange(16) % 3
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        history, seconds = training.fit_with_resume(
            model, data, data.take(1) if val else None, run_dir, epochs, 16, verbose=0, log=log
        )
        return model, history, seconds

    def test_history_read_back_and_the_best_weights_loaded(self):
        run = os.path.join(self.create_tempdir().full_path, "new")  # made if missing
        model, history, seconds = self.fit(run)
        self.assertLen(history["loss"], 3)
        self.assertLen(history["val_accuracy"], 3)
        self.assertAllClose(seconds, sum(history["epoch_time_s"]))
        best = keras.models.clone_model(model)
        best.load_weights(os.path.join(run, "best.weights.h5"))
        for got, want in zip(model.get_weights(), best.get_weights()):
            self.assertAllEqual(got, want)
        # The resume state stays until the run is finished (experiment.finish_run).
        self.assertEqual(training.resume_epoch(run), 3)

    def test_an_unreadable_best_weights_file_leaves_the_last_weights(self):
        lines = []
        truncated = OSError("Unable to open file (truncated file)")
        with mock.patch.object(keras.Model, "load_weights", side_effect=truncated):
            self.fit(self.create_tempdir().full_path, epochs=1, log=lines.append)
        self.assertLen(lines, 1)
        self.assertRegex(lines[0], r"^warning: .*best.weights.h5 is unreadable \(Unable to open")

    def test_nan_loss_stops_with_its_place(self):
        with self.assertRaisesRegex(
            FloatingPointError, r"NaN at epoch \d, batch \d \(learning rate 1e\+38\)"
        ):
            self.fit(self.create_tempdir().full_path, lr=1e38, val=False)

    def test_base_learning_rate(self):
        self.assertEqual(training.base_learning_rate("sgd"), 0.1)
        self.assertEqual(training.base_learning_rate("adam", None), 1e-3)
        self.assertEqual(training.base_learning_rate("sgd", 0.5), 0.5)


if __name__ == "__main__":
    tf.test.main()
