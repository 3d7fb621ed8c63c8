"""resnet_keras.transfer, resnet_keras.transfer_experiment and scripts.question3.

No ImageNet weights exist on the test machines: bases use weights=None, or a
notop weights file the test writes itself, or a tiny model of the project.
"""

import dataclasses
import json
import os
import tempfile
import unittest
from unittest import mock

import h5py
import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from keras.src.legacy.saving import legacy_h5_format

from resnet_keras import experiment, models, runs, saving, transfer
from resnet_keras import transfer_experiment as te
from resnet_keras import transfer_results
from tests import fixtures
from tests.question1_test import run_script

RESNET50_NOTOP_PARAMS = 23_587_712  # keras.applications.ResNet50(include_top=False)


def head_params(features, units, classes):
    return features * units + units + units * classes + classes


def weights_of(layer):
    return [w.numpy().copy() for w in layer.weights]


def unchanged(before, layer):
    return all(np.array_equal(a, b.numpy()) for a, b in zip(before, layer.weights))


def one_step(model, x, y, lr=1e-2):
    model.compile(keras.optimizers.SGD(lr), "sparse_categorical_crossentropy")
    model.train_on_batch(x, y)


class PreprocessTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        ("resnet50", keras.applications.resnet50),
        ("resnet101", keras.applications.resnet),
        ("densenet121", keras.applications.densenet),
        ("efficientnet_b0", keras.applications.efficientnet),
    )
    def test_equals_keras_preprocess_input(self, base, module):
        x = fixtures.random_images(4).astype("float32")
        inputs = keras.Input((32, 32, 3))
        out = transfer.preprocess(inputs, transfer.APPLICATIONS[base].preprocessing)
        got = keras.Model(inputs, out).predict(x, verbose=0) if out is not inputs else x
        self.assertAllClose(got, module.preprocess_input(x.copy()), atol=1e-4)


class ResNet50Test(tf.test.TestCase):
    """ResNet-50 with random weights at 32x32: built once, ~24M parameters."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        keras.utils.set_random_seed(0)
        cls.model = transfer.build_transfer_model(10, weights=None)
        cls.x = fixtures.random_images(4, seed=1).astype("float32")
        cls.y = np.arange(4)

    def test_layers_and_parameter_counts(self):
        m = self.model
        names = ["image", "preprocess", "base", "pool", "head_dense", "predictions"]
        self.assertEqual([l.name for l in m.layers], names)
        head = head_params(2048, 256, 10)
        self.assertEqual(head, 527_114)
        # The 12 fixed weights of the 1x1 conv that does caffe preprocessing count, frozen.
        self.assertEqual(m.count_params(), RESNET50_NOTOP_PARAMS + 12 + head)
        self.assertEqual(transfer.count_weights(m.trainable_weights), head)
        self.assertEqual(
            [w.path for w in m.trainable_weights],
            ["head_dense/kernel", "head_dense/bias", "predictions/kernel", "predictions/bias"],
        )

    def test_a_training_step_moves_only_the_head(self):
        m = self.model
        base, pre = weights_of(m.get_layer("base")), weights_of(m.get_layer("preprocess"))
        head = weights_of(m.get_layer("head_dense"))
        one_step(m, self.x, self.y)
        # BatchNorm's moving statistics are among the base's weights: they stay too.
        self.assertTrue(unchanged(base, m.get_layer("base")))
        self.assertTrue(unchanged(pre, m.get_layer("preprocess")))
        self.assertFalse(unchanged(head, m.get_layer("head_dense")))

    def test_cached_features_give_the_full_models_predictions(self):
        features = transfer.feature_extractor(self.model).predict(self.x, verbose=0)
        self.assertEqual(features.shape, (4, 2048))
        head = transfer.head_model(self.model)
        self.assertAllClose(
            head.predict(features, verbose=0), self.model.predict(self.x, verbose=0), atol=1e-5
        )

    def test_saved_h5_loads_in_plain_keras_with_the_base_frozen(self):
        path = saving.save_model(self.model, os.path.join(tempfile.mkdtemp(), "m.h5"))
        loaded = keras.models.load_model(path)
        self.assertAllClose(
            loaded.predict(self.x, verbose=0), self.model.predict(self.x, verbose=0), atol=1e-5
        )
        self.assertFalse(loaded.get_layer("base").trainable)
        self.assertLen(loaded.trainable_weights, 4)
        base = next(l for l in loaded.get_config()["layers"] if l["name"] == "base")
        self.assertIs(base["inbound_nodes"][0]["kwargs"]["training"], False)


class FineTuneTest(tf.test.TestCase):
    def test_unfreezing_conv5_trains_its_convs_and_nothing_below(self):
        keras.utils.set_random_seed(0)
        m = transfer.build_transfer_model(10, weights=None)
        unfrozen = transfer.unfreeze_top(m, transfer.RESNET_STAGES, 1)
        net = m.get_layer("base")
        convs = [
            l.name
            for l in net.layers
            if l.name.startswith("conv5_")
            and l.weights
            and not isinstance(l, keras.layers.BatchNormalization)
        ]
        self.assertEqual(unfrozen, convs)
        self.assertLen(unfrozen, 10)  # 3 blocks of 3 convs, and block 1's shortcut conv
        conv5 = sum(net.get_layer(n).count_params() for n in unfrozen)
        self.assertEqual(
            transfer.count_weights(m.trainable_weights), conv5 + head_params(2048, 256, 10)
        )
        bns = [l for l in net.layers if isinstance(l, keras.layers.BatchNormalization)]
        top, below = net.get_layer("conv5_block3_3_conv"), net.get_layer("conv4_block6_3_conv")
        before = {l.name: weights_of(l) for l in bns + [top, below]}
        x = fixtures.random_images(4, seed=1).astype("float32")
        one_step(m, x, np.arange(4))
        self.assertFalse(unchanged(before[top.name], top))
        self.assertTrue(unchanged(before[below.name], below))
        for l in bns:  # scale, shift and moving statistics: BatchNorm stays in inference mode
            self.assertTrue(unchanged(before[l.name], l), l.name)
        self.assertIn("conv4_block1_1_conv", transfer.unfreeze_top(m, transfer.RESNET_STAGES, 2))
        with self.assertRaisesRegex(ValueError, "--unfreeze must be between 1 and 5"):
            transfer.unfreeze_top(m, transfer.RESNET_STAGES, 6)


class OtherBasesTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters("resnet101", "densenet121", "efficientnet_b0")
    def test_frozen_with_stages_covering_every_weighted_layer(self, base):
        m = transfer.build_transfer_model(7, base=base, weights=None, head_units=32)
        self.assertEqual(m.output.shape, (None, 7))
        features = m.get_layer("pool").output.shape[-1]
        self.assertEqual(transfer.count_weights(m.trainable_weights), head_params(features, 32, 7))
        stages = transfer.APPLICATIONS[base].stages
        for layer in m.get_layer("base").layers:
            if layer.weights:
                hits = [s for s in stages if layer.name.startswith(s)]
                self.assertLen(hits, 1, layer.name)
        unfrozen = transfer.unfreeze_top(m, stages, 1)
        self.assertNotEmpty(unfrozen)
        self.assertTrue(all(n.startswith(stages[0]) for n in unfrozen), unfrozen)

    def test_image_size_resizes_inside_the_model(self):
        m = transfer.build_transfer_model(10, weights=None, image_size=64)
        self.assertEqual(m.input.shape, (None, 32, 32, 3))
        self.assertEqual(m.get_layer("resize").output.shape, (None, 64, 64, 3))
        self.assertEqual(m.get_layer("base").input.shape, (None, 64, 64, 3))
        x = fixtures.random_images(2).astype("float32")
        self.assertEqual(m.predict(x, verbose=0).shape, (2, 10))
        with self.assertRaisesRegex(ValueError, "--image_size must be at least 32"):
            transfer.build_transfer_model(10, weights=None, image_size=16)


class WeightsTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters("notop.h5", "notop.weights.h5")
    def test_local_notop_weights_file(self, name):
        keras.utils.set_random_seed(1)
        source = keras.applications.ResNet50(
            include_top=False, weights=None, input_shape=(32, 32, 3)
        )
        path = os.path.join(tempfile.mkdtemp(), name)
        if name == "notop.h5":  # the legacy layout of Keras' own downloaded files
            with h5py.File(path, "w") as f:
                legacy_h5_format.save_weights_to_hdf5_group(f, source)
        else:
            source.save_weights(path)
        keras.utils.set_random_seed(2)
        m = transfer.build_transfer_model(10, weights=path)
        loaded = m.get_layer("base").get_weights()
        self.assertTrue(all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded)))

    def test_bad_weights_files(self):
        d = tempfile.mkdtemp()
        with self.assertRaisesRegex(ValueError, "missing.h5: no such file"):
            transfer.build_transfer_model(10, weights=os.path.join(d, "missing.h5"))
        other = os.path.join(d, "other.weights.h5")
        models.build_resnet(1).save_weights(other)
        with self.assertRaisesRegex(ValueError, "other.weights.h5: not resnet50 notop weights"):
            transfer.build_transfer_model(10, weights=other)

    def test_failed_download_names_the_offline_ways(self):
        error = Exception(
            "URL fetch failure on https://example: None -- [Errno -2] Name or " "service not known"
        )
        with mock.patch("keras.src.utils.file_utils.get_file", side_effect=error):
            with self.assertRaisesRegex(
                ValueError,
                r"^could not download ImageNet weights for resnet50 \(URL fetch failure.*\); "
                r"offline, pass --weights PATH to a local notop .h5 file or --weights none$",
            ):
                transfer.build_transfer_model(10, weights="imagenet")


class ProjectBaseTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        keras.utils.set_random_seed(0)
        self.source = models.build_resnet(1, num_classes=10)
        self.path = saving.save_model(self.source, os.path.join(self.dir, "resnet_cifar10.h5"))
        self.x = fixtures.random_images(4, seed=3).astype("float32")

    def test_cut_at_pool_frozen_under_a_new_head(self):
        m = transfer.build_from_saved_model(self.path, 100)
        self.assertEqual(
            [l.name for l in m.layers], ["image", "base", "pool", "head_dense", "predictions"]
        )
        self.assertEqual(m.name, "resnet_cifar10_transfer")
        cut = keras.Model(self.source.inputs, self.source.get_layer("pool").output)
        self.assertAllClose(
            transfer.feature_extractor(m).predict(self.x, verbose=0),
            cut.predict(self.x, verbose=0),
            atol=1e-5,
        )
        old_head = 64 * 10 + 10
        total = self.source.count_params() - old_head + head_params(64, 256, 100)
        self.assertEqual(m.count_params(), total)
        self.assertEqual(transfer.count_weights(m.trainable_weights), head_params(64, 256, 100))
        base = weights_of(m.get_layer("base"))
        one_step(m, self.x, np.arange(4))
        self.assertTrue(unchanged(base, m.get_layer("base")))
        unfrozen = transfer.unfreeze_top(m, transfer.stages_of(self.path), 1)
        self.assertEqual(
            unfrozen, ["stage3_block1_conv1", "stage3_block1_conv2", "stage3_block1_proj_conv"]
        )

    def test_reinitialized_and_trained_base_is_the_same_network_from_scratch(self):
        m = transfer.build_from_saved_model(self.path, 10, reinitialize=True, train_base=True)
        net = m.get_layer("base")
        kernel = lambda model: model.get_layer("stem_conv").get_weights()[0]  # noqa: E731
        self.assertFalse(np.array_equal(kernel(net), kernel(self.source)))
        norm = [w.numpy() for w in net.get_layer("normalization").weights]
        for a, b in zip(norm, self.source.get_layer("normalization").weights):
            self.assertAllClose(a, b.numpy())  # the input statistics are data, not weights
        self.assertEqual(
            transfer.count_weights(m.trainable_weights),
            transfer.count_weights(self.source.trainable_weights)
            - (64 * 10 + 10)
            + head_params(64, 256, 10),
        )
        moving = weights_of(net.get_layer("stem_bn"))[2]
        one_step(m, self.x, np.arange(4))
        # Trained from scratch, BatchNorm normalises with batch statistics and updates its own.
        self.assertFalse(np.array_equal(moving, net.get_layer("stem_bn").moving_mean.numpy()))

    def test_a_model_without_pooling_is_refused(self):
        inputs = keras.Input((32, 32, 3))
        x = keras.layers.Conv2D(4, 3, name="c")(inputs)
        out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
        path = saving.save_model(keras.Model(inputs, out), os.path.join(self.dir, "flat.h5"))
        with self.assertRaisesRegex(ValueError, "flat.h5: no GlobalAveragePooling2D layer"):
            transfer.build_from_saved_model(path, 10)

    def test_options(self):
        opts = te.TransferOptions(base=self.path)
        self.assertEqual((opts.mode, opts.weights_label), ("transfer", "own"))
        self.assertEqual(opts.stem("cifar100", "sgd"), "resnet_cifar10_transfer_cifar100_sgd")
        scratch = te.TransferOptions(base=self.path, weights="none", train_base=True)
        self.assertEqual(scratch.stem("cifar10", "adam"), "resnet_cifar10_scratch_cifar10_adam")
        self.assertFalse(scratch.caches(augment=False))
        self.assertTrue(opts.caches(augment=False))
        self.assertFalse(opts.caches(augment=True))
        default = te.TransferOptions().stem("cifar10", "adam")
        self.assertEqual(default, "resnet50_transfer_cifar10_adam")
        with self.assertRaisesRegex(ValueError, "takes 32x32 images.*--image_size is 96"):
            te.build_model(te.TransferOptions(base=self.path, image_size=96), 10, (32, 32, 3))
        bad = [
            (dict(base="resnet5O"), "Unknown base 'resnet5O'; expected one of resnet50, resnet1"),
            (dict(base=self.path, weights="imagenet"), "brings its own weights"),
            (dict(base=os.path.join(self.dir, "gone.h5")), "gone.h5: no such model file"),
            (dict(unfreeze=6), "--unfreeze must be at most 5"),
            (dict(base=self.path, unfreeze=5), "--unfreeze must be at most 4"),
            (dict(train_base=True, fine_tune_epochs=2), "needs a frozen base"),
            (dict(cache_features=True, train_base=True), "--cache_features needs a frozen base"),
            (dict(fine_tune_lr=0.0), "--fine_tune_lr must be positive"),
        ]
        for kwargs, message in bad:
            with self.assertRaisesRegex(ValueError, message, msg=kwargs):
                te.TransferOptions(**kwargs).validate()
        with self.assertRaisesRegex(ValueError, "drop --augment"):
            te.TransferOptions(cache_features=True).validate(augment=True)


class RunTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()
        fixtures.write_cifar10_python(self.dir, per_batch=20, test=30)
        keras.utils.set_random_seed(0)
        self.base = saving.save_model(models.build_resnet(1), os.path.join(self.dir, "b.h5"))

    def config(self, **kwargs):
        return experiment.TrainConfig(
            **dict(
                data_dir=self.dir,
                epochs=2,
                batch_size=16,
                val_size=20,
                augment=False,
                verbose=0,
                output_dir=os.path.join(self.dir, "out"),
            )
            | kwargs
        )

    def test_cached_and_uncached_runs_agree_and_fine_tuning_moves_the_top(self):
        runs = {}
        for cache in (True, False):
            opts = te.TransferOptions(base=self.base, cache_features=cache, fine_tune_epochs=1)
            config = self.config(run_name=f"c{cache}")
            runs[cache] = te.run_transfer(config, opts, log=lambda line: None)
        (model, metrics, history), (_, plain, plain_history) = runs[True], runs[False]
        self.assertTrue(metrics["cache_features"])
        self.assertFalse(plain["cache_features"])
        self.assertAllClose(history["loss"], plain_history["loss"], atol=1e-4)
        self.assertAllClose(metrics["test_accuracy"], plain["test_accuracy"])
        self.assertLen(history["loss"], 3)
        self.assertEqual(metrics["fine_tune_start_epoch"], 2)
        self.assertEqual(metrics["epochs"], 3)
        self.assertGreater(metrics["fine_tune_trainable_params"], metrics["trainable_params"])
        run_dir = os.path.join(self.dir, "out", "runs", "cTrue")
        with open(os.path.join(run_dir, "history.json")) as f:
            self.assertLen(json.load(f)["loss"], 3)
        self.assertTrue(os.path.isfile(os.path.join(run_dir, "fine_tune", "metrics.json")))
        source = saving.load_model(self.base).get_layer
        net = model.get_layer("base")
        for name, moved in (
            ("stage3_block1_conv1", True),
            ("stage2_block1_conv1", False),
            ("stage3_block1_bn1", False),
            ("stem_conv", False),
        ):
            pairs = zip(source(name).get_weights(), net.get_layer(name).get_weights())
            self.assertEqual(all(np.array_equal(a, b) for a, b in pairs), not moved, name)

    def test_flip_tta_on_images_only(self):
        for cache in (True, False):
            opts = te.TransferOptions(base=self.base, cache_features=cache)
            config = self.config(run_name=f"tta{cache}", epochs=1, tta=True)
            _, metrics, _ = te.run_transfer(config, opts, log=lambda line: None)
            # Cached features have no mirror image; the images of an uncached run do.
            self.assertEqual("test_accuracy_tta" in metrics, not cache)

    def test_runs_that_differ_in_optimizer_extract_features_once(self):
        cache, lines = {}, []
        for opt in ("adam", "sgd"):
            opts = te.TransferOptions(base=self.base)
            _, metrics, _ = te.run_transfer(
                self.config(opt=opt, run_name=opt, epochs=1),
                opts,
                log=lines.append,
                feature_cache=cache,
            )
        self.assertLen([l for l in lines if l.startswith("features:")], 1)
        self.assertLen(cache, 1)
        self.assertEqual(metrics["feature_time_s"], 0.0)
        # A finished run is reused only with the settings it was made with
        # (options included); with others it is refused, not replaced.
        config = self.config(opt="sgd", run_name="sgd", epochs=1)
        opts = te.TransferOptions(base=self.base)
        self.assertEqual(runs.claim_runs([config], extra=opts), [True])
        self.assertEqual(runs.load_run(config.run_dir)[1], metrics)
        with self.assertRaisesRegex(runs.RunConflict, r"other settings \(epochs 1 -> 2\)"):
            runs.claim_runs([dataclasses.replace(config, epochs=2)], extra=opts)
        with self.assertRaisesRegex(runs.RunConflict, r"other settings \(head_units 256 -> 8\)"):
            runs.claim_runs([config], extra=te.TransferOptions(base=self.base, head_units=8))


class ResultsTest(tf.test.TestCase):
    def test_rows_merge_by_key_and_the_plot_is_drawn_from_histories(self):
        out = tempfile.mkdtemp()
        row = dict(
            base="resnet50",
            weights="imagenet",
            mode="transfer",
            dataset="cifar10",
            opt="adam",
            train_images=45_000,
            cache_features=True,
            params=24_114_838,
            test_accuracy=0.5,
            run="runs/a",
        )
        transfer_results.record(out, row)
        transfer_results.record(
            out,
            row
            | {"opt": "sgd", "run": "runs/b", "mode": "transfer_ft5", "fine_tune_start_epoch": 20},
        )
        rows = transfer_results.record(out, row | {"test_accuracy": 0.75})
        # A rerun replaces its row (and moves it last); other rows stay.
        self.assertEqual(
            [(r["opt"], r["test_accuracy"]) for r in rows], [("sgd", 0.5), ("adam", 0.75)]
        )
        self.assertEqual(
            sorted(os.listdir(os.path.join(out, "results"))), ["question3.json", "question3.md"]
        )
        with open(os.path.join(out, "results", "question3.md")) as f:
            lines = [l for l in f.read().splitlines() if l.startswith("|")]
        self.assertLen(lines, 4)
        cells = "| resnet50 | imagenet | transfer | cifar10 | adam | 45000 | True | 24114838 |"
        self.assertIn(cells, lines[3])
        for name, n in (("a", 20), ("b", 25)):
            os.makedirs(os.path.join(out, "runs", name))
            training_history = {"accuracy": list(np.linspace(0.1, 0.6, n)), "loss": [1.0] * n}
            with open(os.path.join(out, "runs", name, "history.json"), "w") as f:
                json.dump(training_history, f)
        paths = transfer_results.plot_results(rows, out, "resnet50", "cifar10", 45_000)
        names = ["question3_transfer_learning.png", "question3_resnet50_cifar10_45000.png"]
        self.assertEqual([os.path.basename(p) for p in paths], names)
        self.assertTrue(all(os.path.getsize(p) > 0 for p in paths))
        self.assertEqual(transfer_results.run_label(rows[0]), "sgd, frozen base + fine-tuning")
        with open(os.path.join(out, "results", "question3.json"), "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(ValueError, "question3.json: not a results table"):
            transfer_results.record(out, row)


class ScriptTest(tf.test.TestCase):
    @unittest.skipUnless(
        os.path.isdir(fixtures.REAL_CIFAR10),
        "needs the real CIFAR-10 at ../shared/datasets/cifar10",
    )
    def test_few_hundred_real_images_from_a_project_base(self):
        out = tempfile.mkdtemp()
        keras.utils.set_random_seed(0)
        base = saving.save_model(models.build_resnet(1), os.path.join(out, "resnet_cifar10.h5"))
        common = [
            f"--data_dir={fixtures.REAL_CIFAR10}",
            f"--base={base}",
            "--train_limit=400",
            "--val_size=100",
            "--test_limit=200",
            f"--output_dir={out}",
            "--verbose=0",
        ]
        r = run_script("scripts.question3", *common, "--epochs=2", "--fine_tune_epochs=1")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        stem = "resnet_cifar10_transfer_ft1_cifar10_adam"
        self.assertRegex(r.stdout, rf"Test accuracy: 0\.\d{{4}} \({stem}\)")
        h5 = os.path.join(out, "saved_models", f"{stem}.h5")
        with open(os.path.join(out, "runs", f"question3_{stem}", "metrics.json")) as f:
            metrics = json.load(f)
        self.assertTrue(metrics["cache_features"])
        self.assertEqual((metrics["epochs"], metrics["fine_tune_start_epoch"]), (3, 2))
        # The saved model takes raw 32x32 images and gives the logged accuracy.
        from resnet_keras import data, pipeline

        (_, _), (xt, yt) = data.load_cifar("cifar10", fixtures.REAL_CIFAR10)
        xt, yt = pipeline.limit(xt, yt, 200, seed=0)
        model = keras.models.load_model(h5)
        acc = np.mean(model.predict(xt, verbose=0).argmax(1) == yt[:, 0])
        self.assertAlmostEqual(acc, metrics["test_accuracy"], places=4)
        # The same network from scratch: a second row, a second curve in the same figure.
        scratch = ["--epochs=1", "--weights=none", "--train_base"]
        r = run_script("scripts.question3", *common, *scratch)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        with open(os.path.join(out, "results", "question3.json")) as f:
            rows = json.load(f)["rows"]
        self.assertEqual(
            [(r["mode"], r["train_images"]) for r in rows],
            [("transfer_ft1", 300), ("scratch", 300)],
        )
        plot = os.path.join(out, "plots", "question3_transfer_learning.png")
        self.assertTrue(os.path.isfile(plot))
        # The same command again reuses the finished run instead of training.
        r = run_script("scripts.question3", *common, *scratch)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("finished run reused", r.stdout)

    def test_failed_imagenet_download_is_one_line(self):
        root = tempfile.mkdtemp()
        fixtures.write_cifar10_python(root, per_batch=4, test=10)
        # A closed local proxy makes the download fail fast even where there is
        # internet; a fresh KERAS_HOME keeps any cached weights out of reach.
        env = {
            "https_proxy": "http://127.0.0.1:9",
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "KERAS_HOME": os.path.join(root, "keras"),
        }
        with mock.patch.dict(os.environ, env):
            r = run_script(
                "scripts.question3",
                f"--data_dir={root}",
                "--val_size=0",
                "--weights=imagenet",
                f"--output_dir={root}/out",
            )
        self.assertEqual(r.returncode, 2, r.stderr[-3000:])
        self.assertNotIn("Traceback", r.stderr)
        self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        self.assertRegex(r.stderr, r"^error: could not download ImageNet weights for resnet50 \(")
        self.assertIn("pass --weights PATH to a local notop .h5 file or --weights none", r.stderr)

    def test_bad_flags_get_one_line_and_exit_2(self):
        out = tempfile.mkdtemp()
        # The script's own checks; the library's are in ProjectBaseTest.test_options.
        cases = [
            (["--n=3"], "--n is not used by scripts.question3; it is taken by"),
            (["--all", "--opt=sgd"], "--all runs rmsprop, adam and sgd; drop --opt"),
        ]
        for args, message in cases:
            r = run_script("scripts.question3", *args, f"--output_dir={out}")
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(message, r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        self.assertEqual(os.listdir(out), [])


if __name__ == "__main__":
    tf.test.main()
