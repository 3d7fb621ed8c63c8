"""resnet_keras.models: parameter counts per depth, shortcuts, gradients, plain
Keras models from the builders, and the models under mixed precision. The
speed-ups (fused BatchNorm, recomputed blocks) are speedups_test's."""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import keras_private
from resnet_keras.classification import models as classification_models
from resnet_keras.colorization import models as colorization_models
from resnet_keras.run import distribute, optim, speedups
from resnet_keras.transfer import models as transfer_models
from tests import fixtures

# (n, trainable, count_params()) with option A shortcuts: see classification/models.py.
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
        model = classification_models.build_resnet(n, shortcut="identity")
        self.assertEqual(trainable_count(model), trainable)
        self.assertEqual(model.count_params(), total)
        digits = 1 if n == 18 else 2
        self.assertEqual(round(trainable / 1e6, digits), PAPER_MILLIONS[n])
        self.assertEqual(model.name, f"resnet{6 * n + 2}")

    @parameterized.parameters(3, 5)
    def test_projection_adds_two_1x1_convs(self, n):
        a = classification_models.build_resnet(n, shortcut="identity").count_params()
        b = classification_models.build_resnet(n).count_params()
        # 16*32 + 32*64 conv weights, plus 4 BN vectors of 32 and of 64.
        self.assertEqual(b - a, 16 * 32 + 32 * 64 + 4 * 32 + 4 * 64)

    def test_plainnet_has_no_shortcuts_and_same_weights_as_option_a(self):
        plain = classification_models.build_plainnet(3)
        self.assertFalse([l for l in plain.layers if isinstance(l, keras.layers.Add)])
        self.assertEqual(
            plain.count_params(),
            classification_models.build_resnet(3, shortcut="identity").count_params(),
        )
        resnet = classification_models.build_resnet(3)
        self.assertLen([l for l in resnet.layers if isinstance(l, keras.layers.Add)], 9)

    def test_weighted_layer_count_is_6n_plus_2(self):
        for n in (1, 3):
            m = classification_models.build_plainnet(n)
            weighted = [
                l for l in m.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))
            ]
            self.assertLen(weighted, 6 * n + 2)

    @parameterized.parameters(("projection",), ("identity",))
    def test_shapes_and_softmax(self, shortcut):
        model = classification_models.build_resnet(1, num_classes=7, shortcut=shortcut)
        x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("float32")
        y = model(x, optim=False).numpy()
        self.assertEqual(y.shape, (4, 7))
        self.assertAllClose(y.sum(axis=1), np.ones(4), atol=1e-5)
        # Shapes inside: stage 3 runs at 8x8 with 64 channels.
        self.assertEqual(tuple(model.get_layer("stage3_block1_out").output.shape), (None, 8, 8, 64))

    def test_identity_shortcut_is_subsample_and_zero_pad(self):
        inp = keras.Input((8, 8, 4))
        out = classification_models._identity_shortcut(inp, 8, "s")
        m = keras.Model(inp, out)
        x = np.random.default_rng(0).normal(size=(2, 8, 8, 4)).astype("float32")
        y = m(x).numpy()
        self.assertEqual(y.shape, (2, 4, 4, 8))
        self.assertAllClose(y[..., 2:6], x[:, ::2, ::2, :])
        self.assertAllEqual(y[..., :2], np.zeros_like(y[..., :2]))
        self.assertAllEqual(y[..., 6:], np.zeros_like(y[..., 6:]))

    def test_stride_2_conv_pads_every_side_as_the_paper(self):
        # Hand-computed on a 4x4 image: with padding 1 on every side, output
        # (i, j) sees input rows and columns 2i-1..2i+1 (zeros outside).
        x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
        inp = keras.Input((4, 4, 1))
        m = keras.Model(inp, classification_models._conv(inp, 1, 3, 2, 0, "c"))
        conv = m.get_layer("c")
        conv.set_weights([np.ones((3, 3, 1, 1), "float32")])
        # [[0+1+4+5, 1+2+3+5+6+7], [4+5+8+9+12+13, 5+6+7+9+10+11+13+14+15]];
        # Keras' padding="same" (bottom and right only) gives [[45, 39], [66, 50]].
        self.assertAllEqual(m(x).numpy()[0, ..., 0], [[10, 24], [51, 90]])
        top_left = np.zeros((3, 3, 1, 1), "float32")
        top_left[0, 0] = 1.0
        conv.set_weights([top_left])  # output (i, j) = input (2i-1, 2j-1)
        self.assertAllEqual(m(x).numpy()[0, ..., 0], [[0, 0], [0, 5]])
        centre = np.zeros((3, 3, 1, 1), "float32")
        centre[1, 1] = 1.0
        conv.set_weights([centre])  # centred on (2i, 2j): the pixels option A keeps
        self.assertAllEqual(m(x).numpy()[0, ..., 0], x[0, ::2, ::2, 0])

    def test_every_stride_2_conv_is_padded_then_valid(self):
        for shortcut in classification_models.SHORTCUTS:
            model = classification_models.build_resnet(1, shortcut=shortcut)
            strided = [l for l in model.layers if getattr(l, "strides", (1, 1)) == (2, 2)]
            convs = [l for l in strided if isinstance(l, keras.layers.Conv2D)]
            self.assertLen(convs, 2 if shortcut == "identity" else 4)
            for conv in convs:
                if conv.kernel_size == (3, 3):
                    self.assertEqual(conv.padding, "valid")
                    pad = model.get_layer(f"{conv.name}_pad")
                    self.assertEqual(pad.padding, ((1, 1), (1, 1)))
                else:  # a 1x1 projection needs no padding to keep the even pixels
                    self.assertEqual(conv.kernel_size, (1, 1))
            self.assertEqual(
                tuple(model.get_layer("stage2_block1_conv1").output.shape[1:3]), (16, 16)
            )

    def test_every_trainable_weight_gets_a_gradient(self):
        for model in (
            classification_models.build_resnet(1, shortcut="identity"),
            classification_models.build_resnet(1),
            classification_models.build_plainnet(1),
        ):
            x = tf.random.uniform((2, 32, 32, 3), 0, 255)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, optim=True)[:, 0]) + tf.add_n(model.losses)
            grads = tape.gradient(loss, model.trainable_weights)
            for w, g in zip(model.trainable_weights, grads):
                self.assertIsNotNone(g, w.path)
                self.assertGreater(float(tf.reduce_sum(tf.abs(g))), 0.0, w.path)

    def test_weight_decay_is_paper_style(self):
        model = classification_models.build_resnet(1, weight_decay=1e-4)
        regularizer = model.get_layer("stem_conv").kernel_regularizer
        w = tf.Variable(tf.fill((3, 3, 3, 16), 2.0))
        with tf.GradientTape() as tape:
            loss = regularizer(w)
        # The L2 term's gradient is 1e-4 * w, as the paper's weight decay.
        self.assertAllClose(tape.gradient(loss, w), 1e-4 * w.numpy())
        self.assertLen(model.losses, 10)  # 7 convs, 2 projections, the dense layer
        self.assertEmpty(classification_models.build_resnet(1, weight_decay=0).losses)

    def test_model_takes_raw_pixels(self):
        model = classification_models.build_resnet(
            1, mean=[100.0, 110.0, 120.0], std=[50.0, 60.0, 70.0]
        )
        norm = model.get_layer("normalization")
        out = norm(np.array([[[[100.0, 170.0, 50.0]]]], "float32")).numpy()
        self.assertAllClose(out.reshape(-1), [0.0, 1.0, -1.0], atol=1e-5)
        mean_img = np.full((32, 32, 3), 128.0, "float32")
        pp = classification_models.build_resnet(1, normalization="per_pixel", mean=mean_img)
        out = pp.get_layer("normalization")(np.full((1, 32, 32, 3), 255.0, "float32")).numpy()
        self.assertAllClose(out, np.full_like(out, 127.0 / 255.0), atol=1e-5)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(
            ValueError, "Unknown shortcut 'b'; expected one of projection, identity"
        ):
            classification_models.build_resnet(3, shortcut="b")
        with self.assertRaisesRegex(ValueError, "an integer from 1 to 40"):
            classification_models.build_resnet(0)
        with self.assertRaisesRegex(ValueError, "Unknown normalization"):
            classification_models.build_resnet(1, normalization="zca")
        self.assertEqual(classification_models.depth_to_n(110), 18)
        for n, depth in ((1, 8), (3, 20), (5, 32), (7, 44), (9, 56), (18, 110)):
            self.assertEqual(classification_models.n_to_depth(n), depth)
            self.assertEqual(classification_models.depth_to_n(depth), n)
        for depth in (21, 7, 2, -4):
            with self.assertRaisesRegex(ValueError, "6n\\+2", msg=depth):
                classification_models.depth_to_n(depth)

    def test_builders_return_plain_keras_models(self):
        # Nothing patched: the speed-ups are the training code's (speedups_test).
        for model, bns in (
            (classification_models.build_resnet(1), 9),
            (classification_models.build_plainnet(1), 7),
        ):
            inner = keras_private.all_layers(model)
            self.assertLen([l for l in inner if type(l) is keras.layers.BatchNormalization], bns)
            self.assertEqual([l.name for l in inner if "call" in vars(l)], [])
            self.assertNotIn("call", vars(model))

    def test_layer_names_are_stable(self):
        names = [l.name for l in classification_models.build_resnet(1).layers]
        self.assertIn("stage2_block1_proj_conv", names)
        self.assertIn("stage1_block1_conv1", names)
        self.assertEqual(names, [l.name for l in classification_models.build_resnet(1).layers])


class DeepestNetworkTest(tf.test.TestCase):
    def test_deeper_than_max_n_is_refused(self):
        with self.assertRaisesRegex(ValueError, f"from 1 to {classification_models.MAX_N}"):
            classification_models.build_resnet(classification_models.MAX_N + 1)
        with self.assertRaisesRegex(ValueError, "deeper than"):
            classification_models.depth_to_n(6 * (classification_models.MAX_N + 1) + 2)
        self.assertEqual(
            classification_models.depth_to_n(6 * classification_models.MAX_N + 2),
            classification_models.MAX_N,
        )


class MixedModelsTest(tf.test.TestCase, parameterized.TestCase):
    def test_resnet_computes_in_bfloat16_keeps_float32_weights_and_softmax(self):
        x = fixtures.random_images(8).astype("float32")
        keras.utils.set_random_seed(0)
        reference = classification_models.build_resnet(1)
        with distribute.dtype_policy("mixed_bfloat16"):
            model = classification_models.build_resnet(1)
        model.set_weights(reference.get_weights())
        for m in (reference, model):  # BatchNorm on the fused kernel, as training runs it
            speedups.fuse_batch_norm(m)
        self.assertEqual(model.get_layer("stem_conv").compute_dtype, "bfloat16")
        self.assertTrue(all(w.dtype == "float32" for w in model.weights))
        out = model(x, optim=False)
        self.assertEqual(out.dtype, tf.float32)
        # Same weights, same answer up to bfloat16's 8-bit mantissa.
        self.assertAllClose(out, reference(x, optim=False), atol=0.05)

        optim.compile_classifier(model, optim.make_optimizer("sgd", 0.1))
        before = model.get_layer("stem_conv").kernel.numpy()
        h = model.fit(x, np.arange(8) % 10, batch_size=8, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(h.history["loss"][0]))
        self.assertNotAllClose(model.get_layer("stem_conv").kernel.numpy(), before)

        path = os.path.join(self.create_tempdir().full_path, "m.h5")
        model.save(path)
        loaded = keras.models.load_model(path)  # plain Keras, raw 0-255 images
        with distribute.dtype_policy("mixed_bfloat16"):
            plain = classification_models.build_resnet(
                1
            )  # Keras' own BatchNorm, as the loaded file
        plain.set_weights(model.get_weights())
        self.assertAllClose(loaded.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6)
        # The fused kernel may round a bfloat16 BatchNorm output one unit (2**-7) apart.
        self.assertAllClose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-2)

    def test_float16_on_a_gpu_gets_loss_scaling(self):
        with distribute.dtype_policy("mixed_float16"):
            model = classification_models.build_resnet(1)
        optim.compile_classifier(model, optim.make_optimizer("sgd", 0.1))
        self.assertIsInstance(model.optimizer, keras.optimizers.LossScaleOptimizer)

    @parameterized.parameters("colorizer", "transfer")
    def test_other_models_keep_float32_outputs(self, kind):
        with distribute.dtype_policy("mixed_bfloat16"):
            if kind == "colorizer":
                model = colorization_models.build_colorizer("unet", (32, 32, 1), "lab")
                x = np.zeros((2, 32, 32, 1), "float32")
            else:
                model = transfer_models.build_transfer_model(10, weights=None)
                x = fixtures.random_images(2).astype("float32")
        self.assertEqual(model(x).dtype, tf.float32)
        self.assertTrue(all(w.dtype == "float32" for w in model.weights))


if __name__ == "__main__":
    tf.test.main()
