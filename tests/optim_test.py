import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras.run import optim


class ScheduleTest(tf.test.TestCase, parameterized.TestCase):
    def test_step_schedule_switches_at_epochs_50_and_75_of_100(self):
        spe = 391  # 50k images at batch 128
        lr = lambda epoch, i=0: optim.learning_rate(
            epoch * spe + i, "step", 0.1, spe, 100
        )  # noqa: E731
        self.assertAlmostEqual(lr(0), 0.1)
        self.assertAlmostEqual(lr(49, spe - 1), 0.1)
        self.assertAlmostEqual(lr(50), 0.01)
        self.assertAlmostEqual(lr(74, spe - 1), 0.01)
        self.assertAlmostEqual(lr(75), 0.001)
        self.assertAlmostEqual(lr(99, spe - 1), 0.001)

    def test_paper_schedule_switches_at_32k_and_48k(self):
        lr = lambda s: optim.learning_rate(s, "paper", 0.1, 352, 182)  # noqa: E731
        self.assertEqual(
            [lr(0), lr(31_999), lr(32_000), lr(47_999), lr(48_000), lr(63_999)],
            [0.1, 0.1, 0.01, 0.01, 0.001, 0.001],
        )

    def test_resnet110_warmup(self):
        lr = lambda s: optim.learning_rate(
            s, "paper", 0.1, 352, 182, warmup_steps=400
        )  # noqa: E731
        self.assertEqual([lr(0), lr(399), lr(400), lr(32_000)], [0.01, 0.01, 0.1, 0.01])

    def test_constant(self):
        self.assertEqual(optim.learning_rate(10_000, "constant", 1e-3, 10, 20), 1e-3)
        self.assertEqual(optim.keras_schedule("constant", 1e-3, 10, 20), 1e-3)

    @parameterized.parameters(
        ("step", 0.1, 10, 20, 0), ("paper", 0.1, 352, 182, 0), ("paper", 0.1, 352, 182, 400)
    )
    def test_keras_schedule_equals_pure_function_at_every_boundary(
        self, name, lr, spe, epochs, warm
    ):
        sched = optim.keras_schedule(name, lr, spe, epochs, warm)
        bounds, _ = optim.schedule_boundaries(name, lr, spe, epochs, warm)
        steps = sorted({0, 1} | {b + d for b in bounds for d in (-1, 0, 1)})
        for s in steps:
            self.assertAllClose(
                float(sched(s)),
                optim.learning_rate(s, name, lr, spe, epochs, warm),
                msg=f"step {s}",
            )

    def test_onecycle_ramps_then_cosines_to_zero_and_keras_agrees(self):
        spe, epochs, lr = 10, 5, 0.3  # 50 steps: 10 warm-up, 40 cosine
        rate = lambda s: optim.learning_rate(s, "onecycle", lr, spe, epochs)  # noqa: E731
        self.assertAlmostEqual(rate(0), 0.03)
        self.assertAlmostEqual(rate(5), 0.03 + 0.27 * 0.5)
        self.assertAlmostEqual(rate(10), 0.3)
        self.assertAlmostEqual(rate(30), 0.15)
        self.assertAlmostEqual(rate(50), 0.0)
        sched = optim.keras_schedule("fast", lr, spe, epochs)
        for s in (0, 1, 5, 9, 10, 11, 30, 49, 50):
            self.assertAllClose(float(sched(s)), rate(s), atol=1e-6, msg=f"step {s}")

    def test_unknown_names(self):
        with self.assertRaisesRegex(
            ValueError, "Unknown schedule 'cosine'; expected one of constant"
        ):
            optim.schedule_boundaries("cosine", 0.1, 1, 1)
        with self.assertRaisesRegex(
            ValueError, "Unknown optimizer 'adagrad'; expected one of adam, rmsprop, sgd"
        ):
            optim.make_optimizer("adagrad", 0.1)

    def test_optimizers_by_name(self):
        sgd = optim.make_optimizer("sgd", 0.1)
        self.assertIsInstance(sgd, keras.optimizers.SGD)
        self.assertAllClose(sgd.momentum, 0.9)
        self.assertIsInstance(optim.make_optimizer("adam", 1e-3), keras.optimizers.Adam)
        self.assertIsInstance(optim.make_optimizer("rmsprop", 1e-3), keras.optimizers.RMSprop)
        self.assertFalse(sgd.nesterov)
        self.assertTrue(optim.make_optimizer("sgd", 0.1, nesterov=True).nesterov)
        with self.assertRaisesRegex(
            ValueError, "--nesterov is SGD's momentum; a run with adam cannot use it"
        ):
            optim.make_optimizer("adam", 1e-3, nesterov=True)


class LabelSmoothingTest(tf.test.TestCase):
    def _model(self, classes=3):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(inputs))

    def test_smoothed_loss_is_keras_own_on_one_hot_targets(self):
        model = self._model()
        optim.compile_classifier(model, keras.optimizers.SGD(0.1), label_smoothing=0.1, top5=True)
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
        optim.compile_classifier(model, keras.optimizers.SGD(0.1), label_smoothing=0.2)
        path = os.path.join(self.create_tempdir().full_path, "m.h5")
        model.save(path)
        loaded = keras.models.load_model(path)  # no project code needed
        x = np.random.default_rng(1).normal(size=(5, 4)).astype("float32")
        y = tf.one_hot([0, 1, 2, 1, 0], 3)
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
        # The smoothing came back with the file.
        self.assertAllClose(
            loaded.compute_loss(x, y, loaded(x)), model.compute_loss(x, y, model(x))
        )


class BaseLearningRateTest(tf.test.TestCase):
    def test_base_learning_rate(self):
        self.assertEqual(optim.base_learning_rate("sgd"), 0.1)
        self.assertEqual(optim.base_learning_rate("adam", None), 1e-3)
        self.assertEqual(optim.base_learning_rate("sgd", 0.5), 0.5)


if __name__ == "__main__":
    tf.test.main()
