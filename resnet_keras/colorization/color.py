"""Image colorization: the colour conversions every colorizer's data and outputs go through.

The Deep Learning Lab's first project: a convolutional autoencoder trained
self-supervised to turn gray images into colour (MSE, Adam), and the U-Net its
future work asks for. The models are in `classification/models.py`, their data pipeline and
inference in `data.py`, the runs (train, eval, apply, probe) in `task.py`, the
metrics in `metrics.py` and `probe.py`, the tables and figures in `report.py`;
the command is

    python -m scripts.colorize train --model unet --color_space lab \\
        --data_dir path/to/cifar10

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
"""

import numpy as np
import tensorflow as tf

from resnet_keras.checks import check_choice

COLOR_SPACES = ("rgb", "lab")
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
