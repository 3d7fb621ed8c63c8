"""Image colorization models, colour conversions, their data pipeline and inference.

The Deep Learning Lab's first project: a convolutional autoencoder trained
self-supervised to turn gray images into colour (MSE, Adam), and the U-Net its
future work asks for. The runs (train, eval, apply, probe) are in
`colorization_tasks.py`, the metrics in `evaluation.py`; the command is

    python -m scripts.colorize train --model unet --color_space lab \\
        --data_dir ../shared/datasets/cifar10

Every model takes raw 0-255 gray images (B, H, W, 1) (a Rescaling layer
inside divides by 255) and is named `colorizer_<model>_<color space>`; the
name is how `eval` and `apply` know what the output means:

  rgb  the original: sRGB in [0, 1] (sigmoid). The gray input is ITU-R 601
       luma, 0.299 R + 0.587 G + 0.114 B (`tf.image.rgb_to_grayscale`).
  lab  CIE L*a*b* (D65): the a*, b* channels divided by 128 (`AB_SCALE`),
       in [-1, 1] (tanh); the image is the input's L* with the predicted a*b*.
       The gray input is the gray of equal CIE luminance Y (Y sRGB-encoded),
       whose L* is exactly the colour image's L*. Luma would not do: pure red
       has L* 53, its luma gray (76) has L* 32, so even perfect a*b* could
       not give the colour back.

Both builders have `len(filters)` strided 3x3 convs down (32 -> 4 pixels
with the default three), a 3x3 "bottleneck" conv (the compressed features the
linear probe reads), and as many stride-2 transposed convs back up; the U-Net
concatenates each encoder output (and the input) onto the decoder tensor of
the same size. With the default filters (32, 64, 128) the autoencoder has
342,627 weights (rgb; 342,338 lab) and the U-Net 370,302 (lab 370,004),
asserted in tests.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from resnet_keras.checks import check_choice

MODELS = ("autoencoder", "unet")
COLOR_SPACES = ("rgb", "lab")
DEFAULT_FILTERS = (32, 64, 128)
# a*, b* of sRGB colours lie within about [-87, 99] and [-108, 95].
AB_SCALE = 128.0

# sRGB primaries, linear RGB -> CIE XYZ, and the D65 reference white
# (IEC 61966-2-1); the white is the matrix's row sums, so white has a* = b* = 0.
_RGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    "float64",
)
_WHITE = _RGB_TO_XYZ.sum(axis=1)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ)
_DELTA = 6.0 / 29.0  # CIE's switch from the cube root to a line, near black


# --- colour conversions: TF ops on any (..., 3) tensor, eager or in tf.data --


def srgb_to_linear(c):
    """sRGB-encoded values in [0, 1] -> linear light."""
    c = tf.convert_to_tensor(c, tf.float32)
    # The maximum keeps pow away from the branch tf.where throws away.
    curve = tf.pow((tf.maximum(c, 0.04045) + 0.055) / 1.055, 2.4)
    return tf.where(c <= 0.04045, c / 12.92, curve)


def linear_to_srgb(c):
    """Linear light -> sRGB-encoded values, clipped to [0, 1]."""
    c = tf.clip_by_value(tf.convert_to_tensor(c, tf.float32), 0.0, 1.0)
    curve = 1.055 * tf.pow(tf.maximum(c, 0.0031308), 1 / 2.4) - 0.055
    return tf.where(c <= 0.0031308, 12.92 * c, curve)


def _lab_f(t):
    return tf.where(
        t > _DELTA**3, tf.pow(tf.maximum(t, _DELTA**3), 1 / 3), t / (3 * _DELTA**2) + 4 / 29
    )


def _lab_f_inverse(t):
    return tf.where(t > _DELTA, t**3, 3 * _DELTA**2 * (t - 4 / 29))


def _matmul(x, matrix):
    """(..., 3) x (3, 3) matrix applied to the last axis."""
    return tf.tensordot(x, tf.constant(matrix.T, tf.float32), axes=1)


def rgb_to_lab(rgb):
    """sRGB in [0, 1] (..., 3) -> CIE L*a*b* (D65): L* in [0, 100], a*, b* in about +-110."""
    xyz = _matmul(srgb_to_linear(rgb), _RGB_TO_XYZ) / tf.constant(_WHITE, tf.float32)
    fx, fy, fz = tf.unstack(_lab_f(xyz), axis=-1)
    return tf.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)


def lab_to_rgb(lab):
    """CIE L*a*b* (D65) (..., 3) -> sRGB in [0, 1]; colours outside sRGB are clipped."""
    lab = tf.convert_to_tensor(lab, tf.float32)
    lightness, a, b = tf.unstack(lab, axis=-1)
    fy = (lightness + 16) / 116
    f = tf.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    xyz = _lab_f_inverse(f) * tf.constant(_WHITE, tf.float32)
    return linear_to_srgb(_matmul(xyz, _XYZ_TO_RGB))


def gray_lightness(gray):
    """L* (..., 1) of gray sRGB values (..., 1) in [0, 1]; R = G = B makes Y their linear light."""
    return 116 * _lab_f(srgb_to_linear(gray)) - 16


def to_gray(rgb, color_space):
    """sRGB in [0, 1] (..., 3) -> the gray (..., 1) in [0, 1] the space's models are trained on."""
    check_choice("color space", color_space, COLOR_SPACES)
    rgb = tf.convert_to_tensor(rgb, tf.float32)
    if color_space == "rgb":
        return tf.image.rgb_to_grayscale(rgb)
    y = _matmul(srgb_to_linear(rgb), _RGB_TO_XYZ)[..., 1:2]  # CIE luminance Y
    return linear_to_srgb(y)


def training_pair(images, color_space):
    """uint8 sRGB images (B, H, W, 3) -> (gray 0-255 (B, H, W, 1), target).

    The target is sRGB in [0, 1] (rgb) or a*b* / AB_SCALE (lab), what the
    models' last layer predicts.
    """
    rgb = tf.cast(images, tf.float32) / 255.0
    gray = to_gray(rgb, color_space)
    if color_space == "rgb":
        return gray * 255.0, rgb
    return gray * 255.0, rgb_to_lab(rgb)[..., 1:] / AB_SCALE


def to_rgb(prediction, gray, color_space):
    """A model's output and its gray input (0-255, same height and width) -> sRGB in [0, 1]."""
    check_choice("color space", color_space, COLOR_SPACES)
    if color_space == "rgb":
        return tf.clip_by_value(tf.convert_to_tensor(prediction, tf.float32), 0.0, 1.0)
    lightness = gray_lightness(tf.cast(gray, tf.float32) / 255.0)
    ab = tf.convert_to_tensor(prediction, tf.float32) * AB_SCALE
    return lab_to_rgb(tf.concat([lightness, ab], axis=-1))


def gray_as_color(gray):
    """The trivial baseline: the gray input (0-255) repeated as R, G and B in [0, 1].

    It equals `to_rgb` of an a*b* of zero, so it is the baseline of both spaces.
    """
    return tf.repeat(tf.cast(gray, tf.float32) / 255.0, 3, axis=-1)


# --- models ---------------------------------------------------------------


def _conv(filters, strides, name, activation="relu", dtype=None):
    return layers.Conv2D(
        filters,
        3,
        strides=strides,
        padding="same",
        activation=activation,
        name=name,
        dtype=dtype,
    )


def _encoder_decoder(kind, input_shape, color_space, filters):
    check_choice("model", kind, MODELS)
    check_choice("color space", color_space, COLOR_SPACES)
    filters = tuple(int(f) for f in filters)
    if not filters or min(filters) < 1:
        raise ValueError(f"filters must be one or more positive widths; got {filters}")
    h, w, channels = input_shape
    step = 2 ** len(filters)
    if channels != 1 or h % step or w % step or h < step or w < step:
        raise ValueError(
            f"input_shape {tuple(input_shape)}: colorizers take gray (H, W, 1) images with H "
            f"and W multiples of {step} ({len(filters)} halvings)"
        )
    inputs = keras.Input(shape=input_shape, name="gray")
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    skips = [x]  # (B, H / 2^i, W / 2^i, C) for i = 0 .. len(filters) - 1
    for i, f in enumerate(filters, 1):
        x = _conv(f, 2, f"enc{i}_conv")(x)  # (B, H / 2^i, W / 2^i, f)
        skips.append(x)
    x = _conv(filters[-1], 1, "bottleneck")(x)  # the compressed feature space
    for i in range(len(filters), 0, -1):
        width = filters[max(i - 2, 0)]  # the encoder's width at the size reached
        x = layers.Conv2DTranspose(
            width, 3, strides=2, padding="same", activation="relu", name=f"dec{i}_up"
        )(
            x
        )  # (B, H / 2^(i-1), W / 2^(i-1), width)
        if kind == "unet":
            x = layers.Concatenate(name=f"dec{i}_skip")([x, skips[i - 1]])
    if color_space == "rgb":
        outputs = _conv(3, 1, "rgb", activation="sigmoid", dtype="float32")(x)
    else:
        outputs = _conv(2, 1, "ab", activation="tanh", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"colorizer_{kind}_{color_space}")


def build_autoencoder(input_shape=(32, 32, 1), color_space="rgb", filters=DEFAULT_FILTERS):
    """The original convolutional encoder-decoder colorizer.

    Args:
        input_shape: (H, W, 1) raw 0-255 gray images; H and W multiples of
            2 ** len(filters).
        color_space: "rgb" (predict sRGB in [0, 1]) or "lab" (predict a*b*
            divided by `AB_SCALE`, in [-1, 1]).
        filters: widths of the strided encoder convs; the decoder mirrors them.

    Returns:
        An uncompiled `keras.Model` named "colorizer_autoencoder_<color_space>".
    """
    return _encoder_decoder("autoencoder", input_shape, color_space, filters)


def build_unet(input_shape=(32, 32, 1), color_space="rgb", filters=DEFAULT_FILTERS):
    """`build_autoencoder` with U-Net skip connections from encoder to decoder.

    Args and returns as `build_autoencoder`; the name is "colorizer_unet_<color_space>".
    """
    return _encoder_decoder("unet", input_shape, color_space, filters)


def build_colorizer(model, input_shape=(32, 32, 1), color_space="rgb", filters=DEFAULT_FILTERS):
    """`build_autoencoder` or `build_unet` by name ("autoencoder", "unet")."""
    check_choice("model", model, MODELS)
    builder = build_unet if model == "unet" else build_autoencoder
    return builder(input_shape, color_space, filters)


def describe(model):
    """(model kind, color space) of a colorizer, read from its name.

    Raises ValueError for any other model (a ResNet classifier, say).
    """
    parts = model.name.split("_")
    shape = tuple(model.input_shape)
    if (
        len(parts) != 3
        or parts[0] != "colorizer"
        or parts[1] not in MODELS
        or parts[2] not in COLOR_SPACES
        or len(shape) != 4
        or shape[-1] != 1
    ):
        raise ValueError(
            f"model {model.name!r} with input {shape} is not a colorizer (expected a model "
            f"named colorizer_<{'|'.join(MODELS)}>_<{'|'.join(COLOR_SPACES)}> taking gray "
            "(H, W, 1) images)"
        )
    return parts[1], parts[2]


# --- data and inference ------------------------------------------------------


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
