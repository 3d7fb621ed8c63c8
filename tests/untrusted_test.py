"""Hostile files built by the tests: nothing they name may run or be written."""

import io
import os
import pickle
import shutil
import tarfile
import tempfile

import keras
import numpy as np
import tensorflow as tf

from resnet_keras import data, saving
from resnet_keras.checks import DataError
from tests import fixtures
from tests.data_test import DataTestCase
from tests.question1_test import run_script


class _Evil:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class UntrustedDataTest(DataTestCase):
    """A temporary folder and data cache per test (DataTestCase)."""

    def setUp(self):
        super().setUp()
        self.marker = os.path.join(self.dir, "PWNED")

    def test_pickle_calling_a_function_is_refused_and_nothing_runs(self):
        fixtures.write_cifar10_python(self.dir)
        batch = os.path.join(self.dir, "cifar-10-batches-py", "data_batch_2")
        with open(batch, "wb") as f:
            pickle.dump({b"data": _Evil(self.marker), b"labels": [0]}, f, protocol=4)
        with self.assertRaisesRegex(DataError, r"data_batch_2: refused .*posix\.system|system"):
            data.load_cifar("cifar10", self.dir)
        self.assertFalse(os.path.exists(self.marker))
        # Through the script: one line, exit 2, still nothing run.
        r = run_script("scripts.question1", f"--data_dir={self.dir}", f"--output_dir={self.dir}/o")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("data_batch_2: refused", r.stderr)
        self.assertLen(r.stderr.strip().splitlines(), 1)
        self.assertFalse(os.path.exists(self.marker))

    def test_hostile_meta_file_is_refused(self):
        fixtures.write_cifar100_python(self.dir)
        with open(os.path.join(self.dir, "cifar-100-python", "meta"), "wb") as f:
            pickle.dump({b"fine_label_names": _Evil(self.marker)}, f, protocol=4)
        with self.assertRaisesRegex(DataError, "meta: refused"):
            data.load_cifar("cifar100", self.dir)
        self.assertFalse(os.path.exists(self.marker))

    def _tar_with(self, name, **kind):
        path = os.path.join(self.dir, "hostile.tar.gz")
        with tarfile.open(path, "w:gz") as tar:
            info = tarfile.TarInfo(name)
            payload = b"owned"
            if kind.get("symlink"):
                info.type, info.linkname = tarfile.SYMTYPE, kind["symlink"]
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        return path

    def test_tar_members_escaping_the_folder_are_refused(self):
        outside = os.path.join(self.dir, "escaped.txt")
        cases = [
            ("cifar-10-batches-py/../../escaped.txt", {}, "outside the extraction folder"),
            (outside, {}, "an absolute path"),
            ("cifar-10-batches-py/link", {"symlink": "/etc/passwd"}, "link pointing outside"),
        ]
        for name, kind, reason in cases:
            tar = self._tar_with(name, **kind)
            with self.assertRaisesRegex(DataError, f"hostile.tar.gz: refused member .*{reason}"):
                data.load_cifar("cifar10", tar)
            self.assertFalse(os.path.exists(outside), name)
            shutil.rmtree(os.path.join(self.dir, "cache"), ignore_errors=True)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "..", "escaped.txt")))

    def test_valid_tarball_still_loads_exactly(self):
        (x, y), (xt, yt) = fixtures.write_cifar10_python(self.dir)
        tar = fixtures.make_tarball(
            os.path.join(self.dir, "cifar-10-batches-py"), os.path.join(self.dir, "c.tar.gz")
        )
        (gx, gy), (gxt, gyt) = data.load_cifar("cifar10", tar)
        self.assertAllEqual(gx, x)
        self.assertAllEqual(gyt, yt)


class UntrustedModelTest(tf.test.TestCase):
    def test_lambda_models_are_refused_in_both_formats(self):
        d = tempfile.mkdtemp()
        inp = keras.Input((32, 32, 3))
        out = keras.layers.Lambda(lambda t: t * 0 + 1.0)(inp)
        out = keras.layers.GlobalAveragePooling2D()(out)
        out = keras.layers.Dense(10, activation="softmax")(out)
        model = keras.Model(inp, out)
        for ext in ("keras", "h5"):
            path = os.path.join(d, f"lambda.{ext}")
            model.save(path)
            with self.assertRaisesRegex(saving.ModelFileError, "carries code .* safe mode refuses"):
                saving.load_model(path)
            r = run_script("scripts.evaluate", path, "--data_dir=/nonexistent")
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("safe mode refuses", r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1)

    def test_truncated_h5_is_one_clear_error(self):
        d = tempfile.mkdtemp()
        good = os.path.join(d, "m.h5")
        inp = keras.Input((4,))
        keras.Model(inp, keras.layers.Dense(2)(inp)).save(good)
        with open(good, "rb") as f:
            head = f.read(2000)
        bad = os.path.join(d, "truncated.h5")
        with open(bad, "wb") as f:
            f.write(head)
        with self.assertRaisesRegex(saving.ModelFileError, "truncated.h5: cannot load model"):
            saving.load_model(bad)
        self.assertEqual(
            np.asarray(saving.load_model(good).predict(np.zeros((1, 4)), verbose=0)).shape, (1, 2)
        )


if __name__ == "__main__":
    tf.test.main()
