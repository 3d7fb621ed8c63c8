"""Colorizer data and inference: image pairs made in tf.data, resizing, colouring one image."""

import numpy as np
import tensorflow as tf

from resnet_keras.colorization.color import to_rgb, training_pair


def resize_images(images, size):
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3); CIFAR arrays are always 32."""
    if images.shape[1:3] == (size, size):
        return images
    out = [
        tf.image.resize(images[i : i + 1000], (size, size), antialias=True)
        for i in range(0, len(images), 1000)  # chunks keep float copies small
    ]
    return np.clip(np.round(np.concatenate(out)), 0, 255).astype("uint8")


def pairs_dataset(images, color_space, batch_size, shuffle=False, seed=0):
    """(gray 0-255, target) batches made in the pipeline from uint8 images.

    The conversions run in tf.data on whole batches, in parallel with the
    training step; nothing is augmented (the original did not, and flips or
    crops would not change what colour a gray pixel should get).
    """
    ds = tf.data.Dataset.from_tensor_slices(images)
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(
        lambda b: training_pair(b, color_space), num_parallel_calls=tf.data.AUTOTUNE
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def colorize_image(model, gray, color_space):
    """(H, W, 1) gray 0-255 of any size -> uint8 sRGB (H, W, 3).

    The model sees a copy resized to its input size; its output is resized
    back. In Lab mode the full-resolution L* of `gray` is kept, so only the
    colour is at the model's resolution; in RGB mode the whole picture is.
    """
    h, w = gray.shape[:2]
    size = tuple(model.input_shape[1:3])
    small = tf.image.resize(gray[None], size, antialias=True)
    prediction = tf.image.resize(model(small, training=False), (h, w))
    rgb = to_rgb(prediction, gray[None], color_space)[0]
    return np.round(rgb.numpy() * 255).astype("uint8")
