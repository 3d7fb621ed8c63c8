import io
import os
import pickle
import shutil
import tarfile
import threading
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras.checks import DataError
from resnet_keras.data import cifar
from tests import fixtures
from tests.fixtures import run_script


class DataTestCase(tf.test.TestCase):
    """A temporary folder and data cache per test, and the checks the data tests share."""

    def setUp(self):
        super().setUp()
        self.dir = self.create_tempdir().full_path
        patcher = mock.patch.dict(
            os.environ, {"RESNET_KERAS_CACHE": os.path.join(self.dir, "cache")}
        )
        patcher.start()
        self.addCleanup(patcher.stop)

    def assertSplitsEqual(self, got, want):
        (x, y), (xt, yt) = got
        (ex, ey), (ext, eyt) = want
        for a, b in ((x, ex), (y, ey), (xt, ext), (yt, eyt)):
            self.assertEqual(a.dtype, np.uint8)
            self.assertEqual(a.shape, b.shape)
            self.assertAllEqual(a, b)

    def assertDataError(self, regex, path, name="cifar10"):
        with self.assertRaisesRegex(DataError, regex):
            cifar.load_cifar(name, path)


class LoadTest(DataTestCase, parameterized.TestCase):
    def test_cifar10_python_folder_loads_exactly(self):
        want = fixtures.write_cifar10_python(self.dir)
        got = cifar.load_cifar("cifar10", os.path.join(self.dir, "cifar-10-batches-py"))
        self.assertSplitsEqual(got, want)
        self.assertEqual(got[0][0].shape, (100, 32, 32, 3))
        self.assertEqual(got[0][1].shape, (100, 1))
        # The parent folder works too, as after extracting the tarball.
        self.assertSplitsEqual(cifar.load_cifar("cifar10", self.dir), want)
        ds = cifar.load_dataset("cifar10", self.dir)
        self.assertEqual(ds.class_names[0], "airplane")

    @parameterized.parameters(("fine", 100), ("coarse", 20))
    def test_cifar100_python_folder_fine_and_coarse(self, mode, classes):
        want = fixtures.write_cifar100_python(self.dir)[mode]
        ds = cifar.load_dataset("cifar100", self.dir, label_mode=mode)
        self.assertSplitsEqual(((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)), want)
        self.assertEqual(ds.num_classes, classes)
        self.assertEqual(ds.class_names[3], f"{mode}3")

    def test_tarball_loads_exactly(self):
        want = fixtures.write_cifar10_python(self.dir)
        tar = fixtures.make_tarball(
            os.path.join(self.dir, "cifar-10-batches-py"),
            os.path.join(self.dir, "cifar-10-python.tar.gz"),
        )
        self.assertSplitsEqual(cifar.load_cifar("cifar10", tar), want)
        # Second load reuses the extracted copy.
        self.assertSplitsEqual(cifar.load_cifar("cifar10", tar), want)
        want100 = fixtures.write_cifar100_python(os.path.join(self.dir, "c100"))["fine"]
        tar100 = fixtures.make_tarball(
            os.path.join(self.dir, "c100", "cifar-100-python"),
            os.path.join(self.dir, "cifar-100-python.tar.gz"),
        )
        self.assertSplitsEqual(cifar.load_cifar("cifar100", tar100), want100)

    def test_keras_download_failure_is_one_clear_error(self):
        with mock.patch("keras.datasets.cifar10.load_data", side_effect=OSError("no network")):
            with self.assertRaisesRegex(DataError, "could not download cifar10") as e:
                cifar.load_cifar("cifar10")
        # Said to a library user as well as to a script's: the argument first.
        self.assertIn("give data_dir (the scripts' --data_dir)", str(e.exception))
        self.assertNotIn("pass --data_dir", str(e.exception))

    def test_protocol_2_pickles_written_by_python_3_load_exactly(self):
        want = fixtures.write_cifar10_python(self.dir)
        folder = os.path.join(self.dir, "cifar-10-batches-py")
        for name in os.listdir(folder):  # as a user re-saving CIFAR with protocol=2 has them
            with open(os.path.join(folder, name), "rb") as f:
                d = pickle.load(f, encoding="bytes")
            with open(os.path.join(folder, name), "wb") as f:
                pickle.dump(d | {b"empty": b""}, f, protocol=2)
        self.assertSplitsEqual(cifar.load_cifar("cifar10", self.dir), want)

    def test_two_processes_extracting_one_new_tarball_both_load_it(self):
        want = fixtures.write_cifar10_python(self.dir)
        tar = fixtures.make_tarball(
            os.path.join(self.dir, "cifar-10-batches-py"), os.path.join(self.dir, "c.tar.gz")
        )
        # Both past the "already extracted?" check before either has renamed
        # its extraction into place: the race two processes meet.
        both_extracting = threading.Barrier(2, timeout=60)
        extract = tarfile.TarFile.extractall

        def extract_together(*args, **kwargs):
            both_extracting.wait()
            return extract(*args, **kwargs)

        got, errors = [], []

        def load():
            try:
                got.append(cifar.load_cifar("cifar10", tar))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        with mock.patch.object(tarfile.TarFile, "extractall", extract_together):
            threads = [threading.Thread(target=load) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        for loaded in got:
            self.assertSplitsEqual(loaded, want)
        extracted = os.path.join(self.dir, "cache", "extracted")
        self.assertLen(os.listdir(extracted), 1)  # one folder, no .extract-* left behind

    def test_keras_source_is_used_without_data_dir(self):
        fake = (
            (fixtures.random_images(4), np.zeros((4, 1), "uint8")),
            (fixtures.random_images(2), np.ones((2, 1), "uint8")),
        )
        with mock.patch("keras.datasets.cifar10.load_data", return_value=fake) as load:
            ds = cifar.load_dataset("cifar10")
        load.assert_called_once()
        self.assertEqual(ds.x_train.shape, (4, 32, 32, 3))
        self.assertEqual(ds.source, "keras.datasets")


class BadDataTest(DataTestCase):
    def test_missing_and_empty_folders(self):
        self.assertDataError("no such file or folder", os.path.join(self.dir, "nope"))
        self.assertDataError("found neither CIFAR python-format files", self.dir)

    def test_not_a_pickle_and_wrong_dataset(self):
        fixtures.write_cifar10_python(self.dir)
        self.assertDataError(
            "holds cifar10 python-format files, but --dataset is cifar100", self.dir, "cifar100"
        )
        with open(os.path.join(self.dir, "cifar-10-batches-py", "data_batch_3"), "w") as f:
            f.write("garbage")
        self.assertDataError("data_batch_3", self.dir)

    def test_bad_names(self):
        with self.assertRaisesRegex(
            ValueError, "Unknown dataset 'mnist'; expected one of cifar10, cifar100"
        ):
            cifar.load_cifar("mnist")
        with self.assertRaisesRegex(ValueError, "Unknown label_mode"):
            cifar.load_cifar("cifar100", label_mode="medium")


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
        with self.assertRaisesRegex(
            DataError, r"data_batch_2: refused or unreadable pickle .*(posix|os)\.system"
        ):
            cifar.load_cifar("cifar10", self.dir)
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
            cifar.load_cifar("cifar100", self.dir)
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
                cifar.load_cifar("cifar10", tar)
            self.assertFalse(os.path.exists(outside), name)
            shutil.rmtree(os.path.join(self.dir, "cache"), ignore_errors=True)
        self.assertFalse(os.path.exists(os.path.join(self.dir, "..", "escaped.txt")))

    def test_valid_tarball_still_loads_exactly(self):
        (x, y), (xt, yt) = fixtures.write_cifar10_python(self.dir)
        tar = fixtures.make_tarball(
            os.path.join(self.dir, "cifar-10-batches-py"), os.path.join(self.dir, "c.tar.gz")
        )
        (gx, gy), (gxt, gyt) = cifar.load_cifar("cifar10", tar)
        self.assertAllEqual(gx, x)
        self.assertAllEqual(gyt, yt)


if __name__ == "__main__":
    tf.test.main()
