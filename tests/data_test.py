import io
import os
import pickle
import shutil
import tarfile
from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import data
from tests import fixtures
from tests.fixtures import run_script


class DataTestCase(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.dir = self.create_tempdir().full_path
        patcher = mock.patch.dict(
            os.environ, {"RESNET_KERAS_CACHE": os.path.join(self.dir, "cache")}
        )
        patcher.start()
        self.addCleanup(patcher.stop)


class LoadTest(DataTestCase, parameterized.TestCase):
    def assertSplitsEqual(self, got, want):
        (x, y), (xt, yt) = got
        (ex, ey), (ext, eyt) = want
        for a, b in ((x, ex), (y, ey), (xt, ext), (yt, eyt)):
            self.assertEqual(a.dtype, np.uint8)
            self.assertEqual(a.shape, b.shape)
            self.assertAllEqual(a, b)

    def test_cifar10_python_folder_loads_exactly(self):
        want = fixtures.write_cifar10_python(self.dir)
        got = data.load_cifar("cifar10", os.path.join(self.dir, "cifar-10-batches-py"))
        self.assertSplitsEqual(got, want)
        self.assertEqual(got[0][0].shape, (100, 32, 32, 3))
        self.assertEqual(got[0][1].shape, (100, 1))
        # The parent folder works too, as after extracting the tarball.
        self.assertSplitsEqual(data.load_cifar("cifar10", self.dir), want)
        ds = data.load_dataset("cifar10", self.dir)
        self.assertEqual(ds.class_names[0], "airplane")

    @parameterized.parameters(("fine", 100), ("coarse", 20))
    def test_cifar100_python_folder_fine_and_coarse(self, mode, classes):
        want = fixtures.write_cifar100_python(self.dir)[mode]
        ds = data.load_dataset("cifar100", self.dir, label_mode=mode)
        self.assertSplitsEqual(((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)), want)
        self.assertEqual(ds.num_classes, classes)
        self.assertEqual(ds.class_names[3], f"{mode}3")

    def test_tarball_loads_exactly(self):
        want = fixtures.write_cifar10_python(self.dir)
        tar = fixtures.make_tarball(
            os.path.join(self.dir, "cifar-10-batches-py"),
            os.path.join(self.dir, "cifar-10-python.tar.gz"),
        )
        self.assertSplitsEqual(data.load_cifar("cifar10", tar), want)
        # Second load reuses the extracted copy.
        self.assertSplitsEqual(data.load_cifar("cifar10", tar), want)
        want100 = fixtures.write_cifar100_python(os.path.join(self.dir, "c100"))["fine"]
        tar100 = fixtures.make_tarball(
            os.path.join(self.dir, "c100", "cifar-100-python"),
            os.path.join(self.dir, "cifar-100-python.tar.gz"),
        )
        self.assertSplitsEqual(data.load_cifar("cifar100", tar100), want100)

    def test_image_folder_loads_in_sorted_class_order(self):
        root = os.path.join(self.dir, "imgs")
        want = fixtures.write_image_folder(root)
        ds = data.load_dataset("cifar10", root)
        self.assertSplitsEqual(((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)), want)
        self.assertEqual(ds.class_names, ("bird", "cat", "dog"))
        cached = data.load_dataset("cifar10", root)  # from the decode cache
        self.assertIn("cached", cached.source)
        self.assertAllEqual(cached.x_train, ds.x_train)

    def test_image_folder_resizes_other_sizes_and_says_so(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root, size=40)
        ds = data.load_dataset("cifar10", root)
        self.assertEqual(ds.x_train.shape[1:], (32, 32, 3))
        self.assertIn("resized 18 images to 32x32", ds.notes)

    def test_keras_download_failure_is_one_clear_error(self):
        with mock.patch("keras.datasets.cifar10.load_data", side_effect=OSError("no network")):
            with self.assertRaisesRegex(data.DataError, "could not download cifar10.*--data_dir"):
                data.load_cifar("cifar10")

    def test_keras_source_is_used_without_data_dir(self):
        fake = (
            (fixtures.random_images(4), np.zeros((4, 1), "uint8")),
            (fixtures.random_images(2), np.ones((2, 1), "uint8")),
        )
        with mock.patch("keras.datasets.cifar10.load_data", return_value=fake) as load:
            ds = data.load_dataset("cifar10")
        load.assert_called_once()
        self.assertEqual(ds.x_train.shape, (4, 32, 32, 3))
        self.assertEqual(ds.source, "keras.datasets")


class BadDataTest(DataTestCase):
    def assertDataError(self, regex, path, name="cifar10"):
        with self.assertRaisesRegex(data.DataError, regex):
            data.load_cifar(name, path)

    def test_missing_and_empty_folders(self):
        self.assertDataError("no such file or folder", os.path.join(self.dir, "nope"))
        self.assertDataError("found neither CIFAR python-format files", self.dir)

    def test_image_folder_problems(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root)
        shutil.rmtree(os.path.join(root, "test", "dog"))
        self.assertDataError("class folder\\(s\\) dog missing", root)
        shutil.rmtree(os.path.join(root, "test"))
        self.assertDataError("has train/ but no test/", root)
        os.makedirs(os.path.join(root, "test", "cat"))
        os.makedirs(os.path.join(root, "test", "bird"))
        os.makedirs(os.path.join(root, "test", "dog"))
        self.assertDataError("no images in bird, cat, dog", root)

    def test_unreadable_image_named_and_skippable(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root)
        bad = os.path.join(root, "train", "cat", "broken.jpg")
        with open(bad, "w") as f:
            f.write("this is text, not a JPEG")
        self.assertDataError("broken.jpg: unreadable image", root)
        ds = data.load_dataset("cifar10", root, skip_bad_images=True)
        self.assertEqual(len(ds.x_train), 12)
        self.assertIn("skipped 1 unreadable images (--skip_bad_images)", ds.notes)

    def test_16_bit_pngs_are_scaled_to_8_bits(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root)
        gray = (np.arange(32 * 32).reshape(32, 32) * 64).astype("uint16")  # 0 .. 65472
        rgb = np.stack([gray, gray // 2, gray // 4], axis=-1)
        fixtures.write_png16(os.path.join(root, "train", "cat", "x_gray16.png"), gray)
        fixtures.write_png16(os.path.join(root, "train", "cat", "y_rgb48.png"), rgb)
        ds = data.load_dataset("cifar10", root)
        cat = list(ds.class_names).index("cat")
        # The two files sort after the fixture's 0000..0003.png in the cat class.
        first = int(np.flatnonzero(ds.y_train[:, 0] == cat)[0]) + 4
        got_gray, got_rgb = ds.x_train[first], ds.x_train[first + 1]
        want = np.round(gray / 257.0)
        self.assertAllClose(got_gray, np.stack([want] * 3, -1), atol=1)  # not all white
        self.assertLess(got_gray.mean(), 140)
        self.assertAllClose(got_rgb, rgb / 257.0, atol=1)

    def test_file_name_that_is_not_utf8_is_named_and_skippable(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root)
        good = os.path.join(root, "train", "cat", "0000.png")
        shutil.copy(good, os.path.join(os.fsencode(root), b"train", b"cat", b"caf\xe9.png"))
        self.assertDataError(r"train/cat/caf\\xe9\.png: file name is not valid UTF-8", root)
        ds = data.load_dataset("cifar10", root, skip_bad_images=True)
        self.assertEqual(len(ds.x_train), 12)
        self.assertIn("skipped 1 files whose names are not UTF-8 (--skip_bad_images)", ds.notes)

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
            data.load_cifar("mnist")
        with self.assertRaisesRegex(ValueError, "Unknown label_mode"):
            data.load_cifar("cifar100", label_mode="medium")


class AugmentTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        # Each image a distinct ramp, so a crop's offset can be read off.
        base = np.arange(32 * 32 * 3).reshape(32, 32, 3) % 251
        self.images = np.stack([(base + 7 * i) % 251 for i in range(64)]).astype("uint8")

    def _check_is_crop_or_flip(self, images, out):
        padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
        offsets = set()
        for img, o in zip(padded, out):
            found = None
            for dy in range(9):
                for dx in range(9):
                    crop = img[dy : dy + 32, dx : dx + 32]
                    if np.array_equal(crop, o) or np.array_equal(crop[:, ::-1], o):
                        found = (dy, dx, np.array_equal(crop[:, ::-1], o))
                        break
                if found:
                    break
            self.assertIsNotNone(found)
            offsets.add(found)
        return offsets

    def test_eager_each_image_gets_its_own_crop_and_flip(self):
        out = data.augment_batch(tf.constant(self.images), tf.constant([1, 2])).numpy()
        self.assertEqual(out.dtype, np.uint8)
        self.assertEqual(out.shape, self.images.shape)
        offsets = self._check_is_crop_or_flip(self.images, out)
        self.assertGreater(len({o[:2] for o in offsets}), 10)  # not one offset per batch
        self.assertEqual({o[2] for o in offsets}, {True, False})
        again = data.augment_batch(tf.constant(self.images), tf.constant([1, 2])).numpy()
        self.assertAllEqual(out, again)  # stateless: same seed, same batch

    def test_inside_tf_data_and_eval_untouched(self):
        labels = np.arange(64).reshape(-1, 1) % 10
        ds = data.train_dataset(self.images, labels, 16, seed=3)
        seen = 0
        for xb, yb in ds:
            self.assertEqual(xb.dtype, tf.uint8)
            self.assertEqual(yb.dtype, tf.int32)
            seen += len(xb)
        self.assertEqual(seen, 64)
        # Two epochs differ (new shuffle and new crops), and a second pass over
        # a fresh pipeline with the same seed repeats the first.
        e1 = np.concatenate([x.numpy() for x, _ in ds])
        e2 = np.concatenate([x.numpy() for x, _ in ds])
        self.assertNotAllEqual(e1, e2)
        ev = np.concatenate([x.numpy() for x, _ in data.eval_dataset(self.images, labels, 16)])
        self.assertAllEqual(ev, self.images)

    def test_one_hot_labels_for_label_smoothing(self):
        labels = np.arange(64).reshape(-1, 1) % 10
        plain = list(data.train_dataset(self.images, labels, 16, seed=4))
        hot = list(data.train_dataset(self.images, labels, 16, seed=4, one_hot=10))
        for (x, y), (xh, yh) in zip(plain, hot):
            self.assertEqual((yh.dtype, tuple(yh.shape)), (tf.float32, (16, 10)))
            self.assertAllEqual(xh, x)  # same images, same order
            self.assertAllEqual(np.argmax(yh, 1), y)
            self.assertAllEqual(np.sum(yh, 1), np.ones(16))
        ((_, ye),) = data.eval_dataset(self.images[:8], labels[:8], 8, one_hot=10)
        self.assertAllEqual(ye, np.eye(10)[labels[:8, 0]])

    def test_repeatable_with_seed(self):
        labels = np.zeros((64, 1))
        a = [x.numpy() for x, _ in data.train_dataset(self.images, labels, 16, seed=5)]
        b = [x.numpy() for x, _ in data.train_dataset(self.images, labels, 16, seed=5)]
        self.assertAllEqual(np.concatenate(a), np.concatenate(b))


class SplitTest(tf.test.TestCase):
    def test_balanced_subset_and_validation_split(self):
        y = np.repeat(np.arange(10), 50).reshape(-1, 1)
        x = np.arange(500)
        xs, ys = data.limit(x, y, 100, seed=0)
        self.assertAllEqual(np.bincount(ys[:, 0]), [10] * 10)
        (xt, yt), (xv, yv) = data.split_validation(x, y, 50, seed=0)
        self.assertLen(xt, 450)
        self.assertAllEqual(np.bincount(yv[:, 0]), [5] * 10)
        self.assertEmpty(np.intersect1d(xt, xv))
        with self.assertRaisesRegex(data.DataError, "asked for 501 images"):
            data.limit(x, y, 501)

    def test_channel_stats(self):
        x = np.zeros((2, 2, 2, 3), "uint8")
        x[0] = [0, 100, 255]
        x[1] = [0, 200, 255]
        mean, std = data.channel_stats(x)
        self.assertAllClose(mean, [0, 150, 255])
        self.assertAllClose(std, [0, 50, 0], atol=1e-3)


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
            data.DataError, r"data_batch_2: refused or unreadable pickle .*(posix|os)\.system"
        ):
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
        with self.assertRaisesRegex(data.DataError, "meta: refused"):
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
            with self.assertRaisesRegex(
                data.DataError, f"hostile.tar.gz: refused member .*{reason}"
            ):
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


if __name__ == "__main__":
    tf.test.main()
