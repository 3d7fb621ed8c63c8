"""resnet_keras.transfer.task: question3's options, runs (cached
features or not, fine-tuning, reuse) and results table, on data the tests
write. The script end to end is in question3_test.py."""

import dataclasses
import json
import os

import h5py
import keras
import numpy as np
import tensorflow as tf

from resnet_keras.classification import models as classification_models
from resnet_keras.classification import pretrained
from resnet_keras.classification.config import TrainConfig
from resnet_keras.run import folders, saving
from resnet_keras.transfer import models as transfer_models
from resnet_keras.transfer import task
from resnet_keras.transfer.config import TransferOptions
from tests import fixtures


def count_head(model):
    return sum(model.get_layer(name).count_params() for name in transfer_models.HEAD)


class OptionsTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.create_tempdir().full_path
        keras.utils.set_random_seed(0)
        model = classification_models.build_resnet(1, num_classes=10)
        self.path = saving.save_model(model, os.path.join(self.dir, "resnet_cifar10.h5"))

    def test_options_and_their_checks(self):
        opts = TransferOptions(base=self.path)
        self.assertEqual((opts.mode, opts.weights_label), ("transfer", "own"))
        self.assertEqual(opts.stem("cifar100", "sgd"), "resnet_cifar10_transfer_cifar100_sgd")
        scratch = TransferOptions(base=self.path, weights="none", train_base=True)
        self.assertEqual(scratch.stem("cifar10", "adam"), "resnet_cifar10_scratch_cifar10_adam")
        self.assertFalse(scratch.caches(augment=False))
        self.assertTrue(opts.caches(augment=False))
        self.assertFalse(opts.caches(augment=True))
        default = TransferOptions().stem("cifar10", "adam")
        self.assertEqual(default, "resnet50_transfer_cifar10_adam")
        with self.assertRaisesRegex(ValueError, "takes 32x32 images.*--image_size is 96"):
            task.build_model(TransferOptions(base=self.path, image_size=96), 10, (32, 32, 3))
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
                TransferOptions(**kwargs).validate()
        with self.assertRaisesRegex(ValueError, "drop --augment"):
            TransferOptions(cache_features=True).validate(augment=True)


class RunTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.create_tempdir().full_path
        fixtures.write_cifar10_python(self.dir, per_batch=20, test=30)
        keras.utils.set_random_seed(0)
        self.base = saving.save_model(
            classification_models.build_resnet(1), os.path.join(self.dir, "b.h5")
        )

    def config(self, **kwargs):
        return TrainConfig(
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
        folders = {}
        for cache in (True, False):
            opts = TransferOptions(base=self.base, cache_features=cache, fine_tune_epochs=1)
            config = self.config(run_name=f"c{cache}")
            folders[cache] = task.run_transfer(config, opts, log=lambda line: None)
        (model, metrics, history), (_, plain, plain_history) = folders[True], folders[False]
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
        # One marker for the whole run, in its folder: the phases write none of their own.
        self.assertTrue(os.path.isfile(os.path.join(run_dir, "metrics.json")))
        self.assertFalse(os.path.exists(os.path.join(run_dir, "fine_tune", "metrics.json")))
        classification_models = [n for n in metrics["outputs"] if n.endswith(".h5")]
        self.assertLen(classification_models, 1)
        self.assertTrue(os.path.isfile(os.path.join(run_dir, classification_models[0])))
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

    def test_a_shipped_paper_grade_resnet_is_a_base_by_name(self):
        opts = TransferOptions(base="resnet56_cifar10", fine_tune_epochs=1)
        self.assertEqual(
            (opts.stem("cifar10", "adam"), opts.weights_label),
            ("resnet56_cifar10_transfer_ft1_cifar10_adam", "own"),
        )
        model, metrics, _ = task.run_transfer(
            self.config(run_name="r56", epochs=1), opts, log=lambda line: None
        )
        # The base is the shipped ResNet-56 (weights untouched below its top
        # stage), its own input normalisation inside, under a new head.
        shipped = pretrained.pretrained("resnet56_cifar10", include_top=False, pooling="avg")
        net = model.get_layer("base")
        for name in ("stem_conv", "stage2_block9_conv2", "stage3_block1_bn1"):
            pairs = zip(shipped.get_layer(name).get_weights(), net.get_layer(name).get_weights())
            self.assertTrue(all(np.array_equal(a, b) for a, b in pairs), name)
        self.assertEqual(metrics["params"] - count_head(model), shipped.count_params())
        self.assertEqual(metrics["unfrozen_layers"][0], "stage3_block1_conv1")

    def test_flip_tta_on_images_only(self):
        for cache in (True, False):
            opts = TransferOptions(base=self.base, cache_features=cache)
            config = self.config(run_name=f"tta{cache}", epochs=1, tta=True)
            _, metrics, _ = task.run_transfer(config, opts, log=lambda line: None)
            # Cached features have no mirror image; the images of an uncached run do.
            self.assertEqual("test_accuracy_tta" in metrics, not cache)

    def test_a_model_whose_head_trained_on_features_is_saved_compiled(self):
        opts = TransferOptions(base=self.base, cache_features=True)
        model, _, _ = task.run_transfer(self.config(run_name="head", epochs=1), opts, log=len)
        path = saving.save_model(model, os.path.join(self.dir, "head.h5"))
        with h5py.File(path, "r") as f:
            training = json.loads(f.attrs["training_config"])  # absent: loads uncompiled
        self.assertEqual(training["loss"], "sparse_categorical_crossentropy")
        self.assertEqual(training["optimizer_config"]["class_name"], "Adam")

    def test_runs_that_differ_in_optimizer_extract_features_once(self):
        cache, lines = {}, []
        for opt in ("adam", "sgd"):
            opts = TransferOptions(base=self.base)
            _, metrics, _ = task.run_transfer(
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
        opts = TransferOptions(base=self.base)
        self.assertEqual(folders.claim_runs([config], extra=opts), [True])
        self.assertEqual(folders.load_run(config.run_dir)[1], metrics)
        # The run function reuses it too, as run_classification does: nothing
        # trains, the record is read back and the log says so in the one wording.
        lines = []
        model, again, history = task.run_transfer(config, opts, log=lines.append)
        self.assertIsNone(model)
        self.assertEqual(again, metrics)
        self.assertEqual(history, folders.load_run(config.run_dir)[0])
        self.assertEqual(lines, [folders.reused_line(config.run_dir)])
        self.assertStartsWith(lines[0], f"sgd: finished run in {config.run_dir} reused")
        with self.assertRaisesRegex(folders.RunConflict, r"other settings \(unfreeze 1 -> 2\)"):
            task.run_transfer(config, TransferOptions(base=self.base, unfreeze=2), log=len)
        with self.assertRaisesRegex(folders.RunConflict, r"other settings \(epochs 1 -> 2\)"):
            folders.claim_runs([dataclasses.replace(config, epochs=2)], extra=opts)
        with self.assertRaisesRegex(folders.RunConflict, r"other settings \(head_units 256 -> 8\)"):
            folders.claim_runs([config], extra=TransferOptions(base=self.base, head_units=8))


if __name__ == "__main__":
    tf.test.main()
