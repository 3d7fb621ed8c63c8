"""What the model is fed (resnet_keras/data/pipeline.py): class-balanced subsets, per-image
augmentation eagerly and inside tf.data, the pipelines' labels, channel statistics."""

import numpy as np
import tensorflow as tf

from resnet_keras.checks import DataError
from resnet_keras.data import pipeline


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
        out = pipeline.augment_batch(tf.constant(self.images), tf.constant([1, 2])).numpy()
        self.assertEqual(out.dtype, np.uint8)
        self.assertEqual(out.shape, self.images.shape)
        offsets = self._check_is_crop_or_flip(self.images, out)
        self.assertGreater(len({o[:2] for o in offsets}), 10)  # not one offset per batch
        self.assertEqual({o[2] for o in offsets}, {True, False})
        again = pipeline.augment_batch(tf.constant(self.images), tf.constant([1, 2])).numpy()
        self.assertAllEqual(out, again)  # stateless: same seed, same batch

    def test_inside_tf_data_and_eval_untouched(self):
        labels = np.arange(64).reshape(-1, 1) % 10
        ds = pipeline.train_dataset(self.images, labels, 16, seed=3)
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
        ev = np.concatenate([x.numpy() for x, _ in pipeline.eval_dataset(self.images, labels, 16)])
        self.assertAllEqual(ev, self.images)

    def test_one_hot_labels_for_label_smoothing(self):
        labels = np.arange(64).reshape(-1, 1) % 10
        plain = list(pipeline.train_dataset(self.images, labels, 16, seed=4))
        hot = list(pipeline.train_dataset(self.images, labels, 16, seed=4, one_hot=10))
        for (x, y), (xh, yh) in zip(plain, hot):
            self.assertEqual((yh.dtype, tuple(yh.shape)), (tf.float32, (16, 10)))
            self.assertAllEqual(xh, x)  # same images, same order
            self.assertAllEqual(np.argmax(yh, 1), y)
            self.assertAllEqual(np.sum(yh, 1), np.ones(16))
        ((_, ye),) = pipeline.eval_dataset(self.images[:8], labels[:8], 8, one_hot=10)
        self.assertAllEqual(ye, np.eye(10)[labels[:8, 0]])

    def test_repeatable_with_seed(self):
        labels = np.zeros((64, 1))
        a = [x.numpy() for x, _ in pipeline.train_dataset(self.images, labels, 16, seed=5)]
        b = [x.numpy() for x, _ in pipeline.train_dataset(self.images, labels, 16, seed=5)]
        self.assertAllEqual(np.concatenate(a), np.concatenate(b))


class SplitTest(tf.test.TestCase):
    def test_balanced_subset_and_validation_split(self):
        y = np.repeat(np.arange(10), 50).reshape(-1, 1)
        x = np.arange(500)
        xs, ys = pipeline.limit(x, y, 100, seed=0)
        self.assertAllEqual(np.bincount(ys[:, 0]), [10] * 10)
        (xt, yt), (xv, yv) = pipeline.split_validation(x, y, 50, seed=0)
        self.assertLen(xt, 450)
        self.assertAllEqual(np.bincount(yv[:, 0]), [5] * 10)
        self.assertEmpty(np.intersect1d(xt, xv))
        with self.assertRaisesRegex(DataError, "asked for 501 images"):
            pipeline.limit(x, y, 501)

    def test_channel_stats(self):
        x = np.zeros((2, 2, 2, 3), "uint8")
        x[0] = [0, 100, 255]
        x[1] = [0, 200, 255]
        mean, std = pipeline.channel_stats(x)
        self.assertAllClose(mean, [0, 150, 255])
        self.assertAllClose(std, [0, 50, 0], atol=1e-3)


if __name__ == "__main__":
    tf.test.main()
