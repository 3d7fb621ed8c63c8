"""The steps every run shares (resnet_keras.run.lifecycle): seeded determinism
end to end. A whole classification run is classification_test's; the run
settings are folders_test's."""

import os

import h5py
import numpy as np
import tensorflow as tf

from resnet_keras.classification.config import TrainConfig
from tests import fixtures
from tests.fixtures import run_script


class DeterminismTest(tf.test.TestCase):
    def test_same_seed_gives_bit_identical_weights(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
        paths = []
        for k in range(2):
            out = os.path.join(root, f"out{k}")
            r = run_script(
                "scripts.question1",
                f"--data_dir={root}",
                "--n=1",
                "--epochs=2",
                "--val_size=20",
                "--batch_size=16",
                f"--output_dir={out}",
                "--verbose=0",
                "--deterministic",
                "--seed=7",
            )
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            paths.append(os.path.join(out, "runs", "question1_resnet8_cifar10", "best.weights.h5"))

        def arrays(path):
            found = []
            with h5py.File(path, "r") as f:
                f.visititems(
                    lambda n, o: found.append((n, o[()])) if isinstance(o, h5py.Dataset) else None
                )
            return found

        a, b = arrays(paths[0]), arrays(paths[1])
        self.assertEqual([n for n, _ in a], [n for n, _ in b])
        self.assertNotEmpty(a)
        for (name, x), (_, y) in zip(a, b):
            self.assertTrue(np.array_equal(x, y), name)


class SeedTest(tf.test.TestCase):
    def test_a_seed_numpy_cannot_take_is_refused_by_flag_name_before_any_folder(self):
        out = os.path.join(self.create_tempdir().full_path, "out")
        for seed, message in ((-1, "--seed must be at least 0"), (2**32, "--seed must be at most")):
            config = TrainConfig(seed=seed, output_dir=out)
            with self.assertRaisesRegex(ValueError, message):
                config.validate()
        TrainConfig(seed=2**32 - 1).validate()
        self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    tf.test.main()
