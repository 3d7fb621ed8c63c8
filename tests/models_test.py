import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import keras_private, models, saving

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

    def test_builders_return_plain_keras_models(self):
        # Nothing patched: the speed-ups are the training code's (speedups_test).
        for model, bns in ((models.build_resnet(1), 9), (models.build_plainnet(1), 7)):
            inner = keras_private.all_layers(model)
            self.assertLen([l for l in inner if type(l) is keras.layers.BatchNormalization], bns)
            self.assertEqual([l.name for l in inner if "call" in vars(l)], [])
            self.assertNotIn("call", vars(model))

    def test_layer_names_are_stable(self):
        names = [l.name for l in models.build_resnet(1).layers]
        self.assertIn("stage2_block1_proj_conv", names)
        self.assertIn("stage1_block1_conv1", names)
        self.assertEqual(names, [l.name for l in models.build_resnet(1).layers])


class SavingTest(tf.test.TestCase, parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        self.model = models.build_resnet(1, num_classes=5, shortcut="identity")
        self.model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        self.x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype("float32")
        self.expected = self.model.predict(self.x, verbose=0)

    @parameterized.parameters(("h5",), ("keras",))
    def test_save_and_reload_gives_equal_predictions(self, fmt):
        path = saving.save_model(self.model, saving.model_path(os.path.join(self.dir, "m"), fmt))
        self.assertEqual(sorted(os.listdir(self.dir)), [os.path.basename(path)])  # no temp left
        loaded = saving.load_model(path)
        self.assertAllClose(loaded.predict(self.x, verbose=0), self.expected, atol=1e-5)
        self.assertEqual([w.path for w in loaded.weights], [w.path for w in self.model.weights])

    def test_a_keras_file_written_after_an_h5_keeps_the_optimizer(self):
        # Keras 3.15's .h5 writer drops the optimizer from the model's compile
        # config; saving.save_model puts it back (--formats h5,keras).
        saving.save_model(self.model, os.path.join(self.dir, "m.h5"))
        self.assertIn("optimizer", self.model.get_compile_config())
        path = saving.save_model(self.model, os.path.join(self.dir, "m.keras"))
        self.assertIsInstance(keras.models.load_model(path).optimizer, keras.optimizers.Adam)

    def test_savedmodel_export_serves_equal_predictions(self):
        path = saving.save_model(
            self.model, saving.model_path(os.path.join(self.dir, "m"), "savedmodel")
        )
        served = tf.saved_model.load(path)
        self.assertAllClose(served.serve(tf.constant(self.x)).numpy(), self.expected, atol=1e-5)
        # Overwriting replaces the folder atomically and leaves nothing beside it.
        saving.save_model(self.model, path)
        self.assertEqual(os.listdir(self.dir), ["m_savedmodel"])

    def test_h5_loads_in_plain_keras_without_project_code(self):
        path = saving.save_model(self.model, os.path.join(self.dir, "m.h5"))
        np.save(os.path.join(self.dir, "x.npy"), self.x)
        code = (
            "import sys, numpy as np, keras;"
            f"m = keras.models.load_model({path!r});"
            f"p = m.predict(np.load({os.path.join(self.dir, 'x.npy')!r}), verbose=0);"
            "assert 'resnet_keras' not in sys.modules;"
            f"np.save({os.path.join(self.dir, 'p.npy')!r}, p)"
        )
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run(
            [sys.executable, "-c", code], check=True, cwd=self.dir, env=env, capture_output=True
        )
        self.assertAllClose(np.load(os.path.join(self.dir, "p.npy")), self.expected, atol=1e-5)

    def test_bad_model_files_get_one_clear_error(self):
        bad = os.path.join(self.dir, "bad.h5")
        with open(bad, "w") as f:
            f.write("not hdf5")
        with self.assertRaisesRegex(saving.ModelFileError, "bad.h5: cannot load model"):
            saving.load_model(bad)
        with self.assertRaisesRegex(saving.ModelFileError, "no such model file"):
            saving.load_model(os.path.join(self.dir, "missing.h5"))


if __name__ == "__main__":
    tf.test.main()
