"""Image folders (resnet_keras/image_folders.py), read through `data.load_dataset`
as every script reads them: class order, resizing, the decode cache, and the
files a user's folder may hold (broken, 16-bit, names that are not UTF-8)."""

import os
import shutil

import numpy as np
import tensorflow as tf

from resnet_keras import data
from tests import fixtures
from tests.data_test import DataTestCase


class ImageFolderLoadTest(DataTestCase):
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


class BadImageFolderTest(DataTestCase):
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


if __name__ == "__main__":
    tf.test.main()
