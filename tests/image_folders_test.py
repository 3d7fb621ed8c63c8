"""Image folders (resnet_keras/data/image_folders.py), read through `cifar.load_dataset`
as every script reads them: class order, resizing, the decode cache, and the
files a user's folder may hold (broken, 16-bit, names that are not UTF-8)."""

import os
import shutil
from unittest import mock

import numpy as np
import tensorflow as tf
from PIL import Image, ImageFile

from resnet_keras.data import cifar, image_folders
from tests import fixtures
from tests.cifar_test import DataTestCase


class ImageFolderLoadTest(DataTestCase):
    def test_image_folder_loads_in_sorted_class_order(self):
        root = os.path.join(self.dir, "imgs")
        want = fixtures.write_image_folder(root)
        ds = cifar.load_dataset("cifar10", root)
        self.assertSplitsEqual(((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)), want)
        self.assertEqual(ds.class_names, ("bird", "cat", "dog"))
        cached = cifar.load_dataset("cifar10", root)  # from the decode cache
        self.assertIn("cached", cached.source)
        self.assertAllEqual(cached.x_train, ds.x_train)

    def test_image_folder_resizes_other_sizes_and_says_so(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root, size=40)
        ds = cifar.load_dataset("cifar10", root)
        self.assertEqual(ds.x_train.shape[1:], (32, 32, 3))
        self.assertIn("resized 18 images to 32x32", ds.notes)


NAMES_SKIPPED = (
    "skipped {} files whose names are not UTF-8 or that cannot be opened (--skip_bad_images)"
)


class BadImageFolderTest(DataTestCase):
    def assertRefusedThenSkipped(self, root, regex, note):
        """Refused naming the file; left out with --skip_bad_images, with `note` logged."""
        self.assertDataError(regex, root)
        ds = cifar.load_dataset("cifar10", root, skip_bad_images=True)
        self.assertEqual(len(ds.x_train), 12)
        self.assertIn(note, ds.notes)

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
        ds = cifar.load_dataset("cifar10", root, skip_bad_images=True)
        self.assertEqual(len(ds.x_train), 12)
        self.assertIn("skipped 1 unreadable images (--skip_bad_images)", ds.notes)

    def test_hidden_files_are_passed_over(self):
        # macOS leaves ._<name> resource forks beside every file copied from it.
        root = os.path.join(self.dir, "imgs")
        want = fixtures.write_image_folder(root)
        with open(os.path.join(root, "train", "cat", "._0000.png"), "wb") as f:
            f.write(b"\x00\x05\x16\x07 Mac OS X resource fork")
        ds = cifar.load_dataset("cifar10", root)
        self.assertSplitsEqual(((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)), want)

    def test_links_to_nothing_are_named_and_skippable(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root)
        cat = os.path.join(root, "train", "cat")
        os.symlink(os.path.join(self.dir, "gone.png"), os.path.join(cat, "dangling.png"))
        os.symlink(os.path.join(cat, "loop.png"), os.path.join(cat, "loop.png"))
        self.assertRefusedThenSkipped(
            root, "(dangling|loop).png: not a readable file", NAMES_SKIPPED.format(2)
        )

    def test_pictures_over_the_pixel_limit_are_refused_undecoded_and_skippable(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root)
        big = os.path.join(root, "train", "dog", "big.png")
        Image.new("L", (40, 30)).save(big)
        decoded, load = [], ImageFile.ImageFile.load

        def recorded_load(im):
            decoded.append(os.path.basename(im.filename))
            return load(im)

        with (
            mock.patch.object(image_folders, "MAX_PIXELS", 32 * 32),  # the others are 32x32
            mock.patch.object(ImageFile.ImageFile, "load", recorded_load),
        ):
            self.assertDataError(r"big.png: 40x30 pixels, more than the 0.0 megapixels", root)
            ds = cifar.load_dataset("cifar10", root, skip_bad_images=True)
        self.assertIn("0000.png", decoded)
        self.assertNotIn("big.png", decoded)
        self.assertEqual(len(ds.x_train), 12)
        self.assertIn("skipped 1 unreadable images (--skip_bad_images)", ds.notes)

    def test_16_bit_pngs_are_scaled_to_8_bits(self):
        root = os.path.join(self.dir, "imgs")
        fixtures.write_image_folder(root)
        gray = (np.arange(32 * 32).reshape(32, 32) * 64).astype("uint16")  # 0 .. 65472
        rgb = np.stack([gray, gray // 2, gray // 4], axis=-1)
        fixtures.write_png16(os.path.join(root, "train", "cat", "x_gray16.png"), gray)
        fixtures.write_png16(os.path.join(root, "train", "cat", "y_rgb48.png"), rgb)
        ds = cifar.load_dataset("cifar10", root)
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
        self.assertRefusedThenSkipped(
            root, r"train/cat/caf\\xe9\.png: file name is not valid UTF-8", NAMES_SKIPPED.format(1)
        )


if __name__ == "__main__":
    tf.test.main()
