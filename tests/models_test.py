"""resnet_keras.models: parameter counts per depth, shortcuts, gradients, the
fused BatchNorm and recomputed blocks against Keras' own, and the models
under mixed precision."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import colorization, distribute, models, training, transfer
from tests import fixtures

# (n, trainable, count_params()) with option A shortcuts: see models.py.
IDENTITY_COUNTS = [
    (3, 269_722, 271_098),
    (5, 464_154, 466_426),
    (7, 658_586, 661_754),
    (9, 853_018, 857_082),
    (18, 1_727_962, 1_736_058),
]
PAPER_MILLIONS = {3: 0.27, 5: 0.46, 7: 0.66, 9: 0.85, 18: 1.7}


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


class ModelsTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(*IDENTITY_COUNTS)
    def test_identity_shortcut_counts_match_paper(self, n, trainable, total):
        model = models.build_resnet(n, shortcut="identity")
        self.assertEqual(trainable_count(model), trainable)
        self.assertEqual(model.count_params(), total)
        digits = 1 if n == 18 else 2
        self.assertEqual(round(trainable / 1e6, digits), PAPER_MILLIONS[n])
        self.assertEqual(model.name, f"resnet{6 * n + 2}")

    @parameterized.parameters(3, 5)
    def test_projection_adds_two_1x1_convs(self, n):
        a = models.build_resnet(n, shortcut="identity").count_params()
        b = models.build_resnet(n).count_params()
        # 16*32 + 32*64 conv weights, plus 4 BN vectors of 32 and of 64.
        self.assertEqual(b - a, 16 * 32 + 32 * 64 + 4 * 32 + 4 * 64)

    def test_plainnet_has_no_shortcuts_and_same_weights_as_option_a(self):
        plain = models.build_plainnet(3)
        self.assertFalse([l for l in plain.layers if isinstance(l, keras.layers.Add)])
        self.assertEqual(
            plain.count_params(), models.build_resnet(3, shortcut="identity").count_params()
        )
        resnet = models.build_resnet(3)
        self.assertLen([l for l in resnet.layers if isinstance(l, keras.layers.Add)], 9)

    def test_weighted_layer_count_is_6n_plus_2(self):
        for n in (1, 3):
            m = models.build_plainnet(n)
            weighted = [
                l for l in m.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))
            ]
            self.assertLen(weighted, 6 * n + 2)

    @parameterized.parameters(("projection",), ("identity",))
    def test_shapes_and_softmax(self, shortcut):
        model = models.build_resnet(1, num_classes=7, shortcut=shortcut)
        x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
        y = model(x, training=False).numpy()
        self.assertEqual(y.shape, (4, 7))
        self.assertAllClose(y.sum(axis=1), np.ones(4), atol=1e-5)
        # Shapes inside: stage 3 runs at 8x8 with 64 channels.
        self.assertEqual(tuple(model.get_layer("stage3_block1_out").output.shape), (None, 8, 8, 64))

    def test_identity_shortcut_is_subsample_and_zero_pad(self):
        inp = keras.Input((8, 8, 4))
        out = models._identity_shortcut(inp, 8, "s")
        m = keras.Model(inp, out)
        x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
        y = m(x).numpy()
        self.assertEqual(y.shape, (2, 4, 4, 8))
        self.assertAllClose(y[..., 2:6], x[:, ::2, ::2, :])
        self.assertAllEqual(y[..., :2], np.zeros_like(y[..., :2]))
        self.assertAllEqual(y[..., 6:], np.zeros_like(y[..., 6:]))

    def test_every_trainable_weight_gets_a_gradient(self):
        for model in (
            models.build_resnet(1, shortcut="identity"),
            models.build_resnet(1),
            models.build_plainnet(1),
        ):
            x = tf.random.uniform((2, 32, 32, 3), 0, 255)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True)[:, 0]) + tf.add_n(model.losses)
            grads = tape.gradient(loss, model.trainable_weights)
            for w, g in zip(model.trainable_weights, grads):
                self.assertIsNotNone(g, w.path)
                self.assertGreater(float(tf.reduce_sum(tf.abs(g))), 0.0, w.path)

    def test_weight_decay_is_paper_style(self):
        model = models.build_resnet(1, weight_decay=1e-4)
        regularizer = model.get_layer("stem_conv").kernel_regularizer
        w = tf.Variable(tf.fill((3, 3, 3, 16), 2.0))
        with tf.GradientTape() as tape:
            loss = regularizer(w)
        # The L2 term's gradient is 1e-4 * w, as the paper's weight decay.
        self.assertAllClose(tape.gradient(loss, w), 1e-4 * w.numpy())
        self.assertLen(model.losses, 10)  # 7 convs, 2 projections, the dense layer
        self.assertEmpty(models.build_resnet(1, weight_decay=0).losses)

    def test_model_takes_raw_pixels(self):
        model = models.build_resnet(1, mean=[100.0, 110.0, 120.0], std=[50.0, 60.0, 70.0])
        norm = model.get_layer("normalization")
        out = norm(np.array([[[[100.0, 170.0, 50.0]]]], "float32")).numpy()
        self.assertAllClose(out.reshape(-1), [0.0, 1.0, -1.0], atol=1e-5)
        mean_img = np.full((32, 32, 3), 128.0, "float32")
        pp = models.build_resnet(1, normalization="per_pixel", mean=mean_img)
        out = pp.get_layer("normalization")(np.full((1, 32, 32, 3), 255.0, "float32")).numpy()
        self.assertAllClose(out, np.full_like(out, 127.0 / 255.0), atol=1e-5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(
            ValueError, "Unknown shortcut 'b'; expected one of projection, identity"
        ):
            models.build_resnet(3, shortcut="b")
        with self.assertRaisesRegex(ValueError, "an integer from 1 to 40"):
            models.build_resnet(0)
        with self.assertRaisesRegex(ValueError, "Unknown normalization"):
            models.build_resnet(1, normalization="zca")
        self.assertEqual(models.depth_to_n(110), 18)
        with self.assertRaisesRegex(ValueError, "6n\\+2"):
            models.depth_to_n(21)

    def test_layer_names_are_stable(self):
        names = [l.name for l in models.build_resnet(1).layers]
        self.assertIn("stage2_block1_proj_conv", names)
        self.assertIn("stage1_block1_conv1", names)
        self.assertEqual(names, [l.name for l in models.build_resnet(1).layers])


class FusedBatchNormTest(tf.test.TestCase, parameterized.TestCase):
    """The fused kernel computes what Keras' own BatchNormalization computes."""

    def _pair(self, **kwargs):
        keras.utils.set_random_seed(0)
        keras_bn = models.build_resnet(1, fused_bn=False, **kwargs)
        fused = models.build_resnet(1, fused_bn=True, **kwargs)
        fused.set_weights(keras_bn.get_weights())
        return keras_bn, fused

    def test_every_layer_is_switched_and_the_model_stays_plain_keras(self):
        model = models.build_resnet(1)
        bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
        self.assertEqual(models.fuse_batch_norm(models.build_resnet(1, fused_bn=False)), len(bns))
        self.assertTrue(all(type(l) is keras.layers.BatchNormalization for l in bns))
        self.assertTrue(all("call" in vars(l) for l in bns))
        # Synchronized layers (several replicas) keep Keras' path.
        synced = models.build_resnet(1, sync_bn=True)
        self.assertFalse(any("call" in vars(l) for l in synced.layers))

    @parameterized.parameters("float32", "mixed_bfloat16")
    def test_same_outputs_gradients_and_moving_statistics(self, policy):
        from resnet_keras import distribute

        x = tf.constant(np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3)), "float32")
        y = tf.constant(np.arange(8) % 10)
        with distribute.dtype_policy(policy):
            keras_bn, fused = self._pair()
        atol = 1e-4 if policy == "float32" else 2e-2
        results = []
        for model in (keras_bn, fused):
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
        _, fused = self._pair()
        fused.compile("sgd", "sparse_categorical_crossentropy")
        x = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3)).astype("uint8")
        fused.fit(x, np.arange(16) % 10, batch_size=8, epochs=1, verbose=0)
        path = os.path.join(self.create_tempdir().full_path, "m.h5")
        fused.save(path)
        loaded = keras.models.load_model(path)
        self.assertFalse(any("call" in vars(l) for l in loaded.layers))
        self.assertAllClose(loaded.predict(x, verbose=0), fused.predict(x, verbose=0), atol=1e-5)


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
        plain = build(1)
        keras.utils.set_random_seed(0)
        recomputed = build(1)
        self.assertEqual(models.recompute_blocks(recomputed), 3)
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
        model = models.build_resnet(1)
        models.recompute_blocks(model)
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
            models.recompute_blocks(models.build_resnet(1, fused_bn=False))


class DeepestNetworkTest(tf.test.TestCase):
    def test_deeper_than_max_n_is_refused(self):
        with self.assertRaisesRegex(ValueError, f"from 1 to {models.MAX_N}"):
            models.build_resnet(models.MAX_N + 1)
        with self.assertRaisesRegex(ValueError, "deeper than"):
            models.depth_to_n(6 * (models.MAX_N + 1) + 2)
        self.assertEqual(models.depth_to_n(6 * models.MAX_N + 2), models.MAX_N)


class MixedModelsTest(tf.test.TestCase, parameterized.TestCase):
    def test_resnet_computes_in_bfloat16_keeps_float32_weights_and_softmax(self):
        x = fixtures.random_images(8).astype("float32")
        keras.utils.set_random_seed(0)
        reference = models.build_resnet(1)
        with distribute.dtype_policy("mixed_bfloat16"):
            model = models.build_resnet(1)
        model.set_weights(reference.get_weights())
        self.assertEqual(model.get_layer("stem_conv").compute_dtype, "bfloat16")
        self.assertTrue(all(w.dtype == "float32" for w in model.weights))
        out = model(x, training=False)
        self.assertEqual(out.dtype, tf.float32)
        # Same weights, same answer up to bfloat16's 8-bit mantissa.
        self.assertAllClose(out, reference(x, training=False), atol=0.05)

        training.compile_classifier(model, training.make_optimizer("sgd", 0.1))
        before = model.get_layer("stem_conv").kernel.numpy()
        h = model.fit(x, np.arange(8) % 10, batch_size=8, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(h.history["loss"][0]))
        self.assertNotAllClose(model.get_layer("stem_conv").kernel.numpy(), before)

        path = os.path.join(self.create_tempdir().full_path, "m.h5")
        model.save(path)
        loaded = keras.models.load_model(path)  # plain Keras, raw 0-255 images
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)

    def test_float16_on_a_gpu_gets_loss_scaling(self):
        with distribute.dtype_policy("mixed_float16"):
            model = models.build_resnet(1)
        training.compile_classifier(model, training.make_optimizer("sgd", 0.1))
        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    @parameterized.parameters("colorizer", "transfer")
    def test_other_models_keep_float32_outputs(self, kind):
        with distribute.dtype_policy("mixed_bfloat16"):
            if kind == "colorizer":
                model = colorization.build_colorizer("unet", (32, 32, 1), "lab")
                x = np.zeros((2, 32, 32, 1), "float32")
            else:
                model = transfer.build_transfer_model(10, weights=None)
                x = fixtures.random_images(2).astype("float32")
        self.assertEqual(model(x).dtype, tf.float32)
        self.assertTrue(all(w.dtype == "float32" for w in model.weights))


if __name__ == "__main__":
    tf.test.main()
