"""The training speed-ups compute what plain Keras computes, and the training
path applies them as its flags say."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import keras_private
from resnet_keras.classification import models, task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.run import speedups
from tests import fixtures


def bn_layers(model):
    return [
        l for l in keras_private.all_layers(model) if isinstance(l, keras.layers.BatchNormalization)
    ]


def fused(build, n=1, **kwargs):
    """A network as training builds it by default: BatchNorm on the fused kernel."""
    model = build(n, **kwargs)
    speedups.fuse_batch_norm(model)
    return model


class FusedBatchNormTest(tf.test.TestCase, parameterized.TestCase):
    """The fused kernel computes what Keras' own BatchNormalization computes."""

    def _pair(self, **kwargs):
        keras.utils.set_random_seed(0)
        keras_bn = models.build_resnet(1, **kwargs)
        fused_bn = fused(models.build_resnet, **kwargs)
        fused_bn.set_weights(keras_bn.get_weights())
        return keras_bn, fused_bn

    def test_every_layer_is_switched_and_the_model_stays_plain_keras(self):
        model = models.build_resnet(1)
        bns = bn_layers(model)
        self.assertLen(bns, 9)
        self.assertEqual(speedups.fuse_batch_norm(model), len(bns))
        self.assertTrue(all(type(l) is keras.layers.BatchNormalization for l in bns))
        self.assertTrue(all(speedups.is_fused(l) for l in bns))
        # Synchronized layers (several replicas) keep Keras' path.
        synced = models.build_resnet(1, sync_bn=True)
        self.assertEqual(speedups.fuse_batch_norm(synced), 0)
        self.assertFalse(any("call" in vars(l) for l in bn_layers(synced)))

    @parameterized.parameters("float32", "mixed_bfloat16")
    def test_same_outputs_gradients_and_moving_statistics(self, policy):
        from resnet_keras.run import distribute

        x = tf.constant(np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)), "float32")
        y = tf.constant(np.arange(8) % 10)
        with distribute.dtype_policy(policy):
            keras_bn, fused_bn = self._pair()
        atol = 1e-4 if policy == "float32" else 2e-2
        results = []
        for model in (keras_bn, fused_bn):
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                loss = keras.losses.sparse_categorical_crossentropy(y, out)
            grads = tape.gradient(loss, model.trainable_weights)
            stats = [w.numpy() for w in model.non_trainable_weights]
            results.append(
                (out.numpy(), [g.numpy() for g in grads], stats, model(x, training=False).numpy())
            )
        (out_a, grads_a, stats_a, inf_a), (out_b, grads_b, stats_b, inf_b) = results
        self.assertAllClose(out_a, out_b, atol=atol)
        for g_a, g_b in zip(grads_a, grads_b):
            if policy == "float32":
                self.assertAllClose(g_a, g_b, atol=atol, rtol=atol)
            else:  # bfloat16 rounds at other places in the backward pass: same direction
                cosine = np.sum(g_a * g_b) / (np.linalg.norm(g_a) * np.linalg.norm(g_b) + 1e-12)
                self.assertGreater(cosine, 0.98)
        for s_a, s_b in zip(stats_a, stats_b):  # moving mean/variance after one update
            self.assertAllClose(s_a, s_b, atol=1e-4, rtol=1e-4)
        self.assertAllClose(inf_a, inf_b, atol=atol)

    def test_saved_fused_model_loads_as_plain_keras_with_equal_predictions(self):
        _, fused_bn = self._pair()
        fused_bn.compile("sgd", "sparse_categorical_crossentropy")
        x = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3)).astype("uint8")
        fused_bn.fit(x, np.arange(16) % 10, batch_size=8, epochs=1, verbose=0)
        path = os.path.join(self.create_tempdir().full_path, "m.h5")
        fused_bn.save(path)
        loaded = keras.models.load_model(path)
        self.assertFalse(any("call" in vars(l) for l in loaded.layers))
        self.assertAllClose(loaded.predict(x, verbose=0), fused_bn.predict(x, verbose=0), atol=1e-5)


class RecomputeBlocksTest(tf.test.TestCase, parameterized.TestCase):
    """Recomputing blocks in the backward pass changes memory, not results."""

    def _step(self, model, x, y):
        @tf.function  # graph mode, as fit runs it
        def step(x, y):
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(y, out))
            return loss, tape.gradient(loss, [w.value for w in model.trainable_weights])

        loss, grads = step(x, y)
        return (
            loss.numpy(),
            [g.numpy() for g in grads],
            [w.numpy() for w in model.non_trainable_weights],
        )

    @parameterized.parameters(models.build_resnet, models.build_plainnet)
    def test_same_loss_gradients_and_moving_statistics(self, build):
        x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype("uint8")
        y = np.arange(8) % 10
        keras.utils.set_random_seed(0)
        plain = fused(build)
        keras.utils.set_random_seed(0)
        recomputed = fused(build)
        self.assertEqual(speedups.recompute_blocks(recomputed), 3)
        (la, ga, sa), (lb, gb, sb) = self._step(plain, x, y), self._step(recomputed, x, y)
        self.assertAllClose(la, lb, atol=1e-6)
        self.assertLen(gb, len(ga))
        for g_a, g_b in zip(ga, gb):
            self.assertAllClose(g_a, g_b, atol=1e-5)
        # The moving averages moved once, as in the plain model: the backward
        # pass's second run of each BatchNorm made no update.
        for s_a, s_b, w in zip(sa, sb, plain.non_trainable_weights):
            self.assertAllClose(s_a, s_b, atol=1e-6, msg=w.path)
        self.assertAllClose(
            plain.predict(x, verbose=0), recomputed.predict(x, verbose=0), atol=1e-6
        )

    def test_trains_with_fit_and_saves_plain_keras(self):
        keras.utils.set_random_seed(0)
        model = fused(models.build_resnet)
        speedups.recompute_blocks(model)
        model.compile(keras.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
        x = np.random.default_rng(1).integers(0, 256, (32, 32, 32, 3)).astype("uint8")
        y = np.arange(32) % 10
        history = model.fit(x, y, batch_size=16, epochs=2, verbose=0).history
        self.assertTrue(np.all(np.isfinite(history["loss"])))
        path = os.path.join(self.create_tempdir().full_path, "m.h5")
        model.save(path)
        loaded = keras.models.load_model(path)
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)

    def test_refuses_keras_batch_norm_path(self):
        with self.assertRaisesRegex(ValueError, "needs the fused BatchNorm path"):
            speedups.recompute_blocks(models.build_resnet(1))


class TrainingPathTest(tf.test.TestCase, parameterized.TestCase):
    """`classification.task.build_model` applies the speed-ups its config asks for: the
    fused kernel by default, recomputation with `recompute`."""

    @parameterized.parameters("resnet", "plain")
    def test_speed_ups_follow_the_config(self, kind):
        x = fixtures.random_images(8)
        cases = [
            ({}, True, False),
            ({"fused_bn": False}, False, False),
            ({"recompute": True}, True, True),
        ]
        for overrides, want_fused, want_recompute in cases:
            config = TrainConfig(model=kind, n=1, **overrides)
            model = task.build_model(config, 10, x)
            bns = bn_layers(model)
            self.assertNotEmpty(bns)
            self.assertEqual([speedups.is_fused(l) for l in bns], [want_fused] * len(bns))
            self.assertEqual("call" in vars(model), want_recompute, overrides)

    def test_synchronized_batch_norm_keeps_keras_path(self):
        config = TrainConfig(n=1)
        model = task.build_model(config, 10, fixtures.random_images(8), sync_bn=True)
        self.assertFalse(any(speedups.is_fused(l) for l in bn_layers(model)))
        with self.assertRaisesRegex(ValueError, "needs the fused BatchNorm path"):
            task.build_model(
                TrainConfig(n=1, recompute=True),
                10,
                fixtures.random_images(8),
                sync_bn=True,
            )


if __name__ == "__main__":
    tf.test.main()
