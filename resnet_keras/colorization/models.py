"""Colorizer models: a convolutional autoencoder and a U-Net, gray 0-255 in, colour out.

Both builders have `len(filters)` strided 3x3 convs down (32 -> 4 pixels
with the default three), a 3x3 "bottleneck" conv (the compressed features the
linear probe reads), and as many stride-2 transposed convs back up; the U-Net
concatenates each encoder output (and the input) onto the decoder tensor of
the same size. With the default filters (32, 64, 128) the autoencoder has
342,627 weights (rgb; 342,338 lab) and the U-Net 370,302 (lab 370,004),
asserted in tests.
"""

import keras
from keras import layers

from resnet_keras.checks import check_choice
from resnet_keras.colorization.color import COLOR_SPACES

MODELS = ("autoencoder", "unet")
DEFAULT_FILTERS = (32, 64, 128)


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
