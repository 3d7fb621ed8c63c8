"""CIFAR ResNet and PlainNet builders (He et al. 2015, section 4.2).

The network is a 3x3 conv with 16 filters, three stages of `n` blocks with
16, 32 and 64 filters (the first block of stages 2 and 3 halves the feature
map), global average pooling and a dense softmax: 6n+2 weighted layers.

Parameter counts with the paper's option A (identity) shortcuts, as asserted
in tests/models_test.py. The paper's figures are the trainable weights,
rounded; `count_params()` also counts BatchNorm's moving statistics:

| n  | depth | trainable | `count_params()` | paper |
|----|-------|-----------|------------------|-------|
| 3  | 20    | 269,722   | 271,098          | 0.27M |
| 5  | 32    | 464,154   | 466,426          | 0.46M |
| 7  | 44    | 658,586   | 661,754          | 0.66M |
| 9  | 56    | 853,018   | 857,082          | 0.85M |
| 18 | 110   | 1,727,962 | 1,736,058        | 1.7M  |

Projection shortcuts (the default, as both original write-ups use) add two
1x1 conv + BN pairs, 2,944 weights (e.g. 274,042 for n=3). The input
`Normalization` layer holds its mean/variance as constants, not weights.

Stride-2 3x3 convolutions pad one pixel on every side, then run 'valid', as
the paper's Torch/Caffe networks and PyTorch's `padding=1` do (Keras'
padding="same" pads only bottom and right at stride 2), so a network trained
in PyTorch runs here unchanged (`conversion`). The padding is a
`ZeroPadding2D` layer named "<conv>_pad", which has no weights: parameter
counts and weight names are those of the models built before (which used
"same"; their saved files keep that graph).

Every model takes raw 0-255 RGB images: normalisation is the model's first
layer, so a saved file needs no project code to be used. The builders return
plain Keras models on any backend; the training speed-ups (TensorFlow's fused
BatchNorm, block recomputation) are applied by the training code: `speedups`.

    python -c "from resnet_keras import build_resnet; build_resnet(3).summary()"
"""

import keras
import numpy as np
from keras import layers

from resnet_keras.checks import check_choice

SHORTCUTS = ("projection", "identity")
# The deepest network built: Keras walks a functional graph recursively when it
# builds, saves and loads one, and at Python's default recursion limit (1,000)
# ResNet-(6n+2) fails somewhat beyond n = 40 (docs/reliability.md has the
# measurement). A limit raised here would not help a user loading the file in
# plain Keras, so deeper nets are refused.
MAX_N = 40
NORMALIZATIONS = ("per_channel", "per_pixel")
# 1e-4 is the paper's weight decay: a gradient of 1e-4 * w. Keras' l2(c) adds
# c * sum(w**2) to the loss, whose gradient is 2c * w, hence the halving.
PAPER_WEIGHT_DECAY = 1e-4


def _conv(x, filters, kernel_size, strides, weight_decay, name):
    """A conv without bias (the batch normalisation after every conv has its own).

    A strided 3x3 conv pads one pixel on every side and then runs 'valid', as
    the paper's Torch/Caffe networks and PyTorch's `padding=1` do: output
    pixel i is centred on input pixel 2i, the pixel the option-A shortcut
    keeps. Keras' padding="same" would pad only bottom and right at stride 2
    on an even size, centring it on 2i + 1 (one pixel off the shortcut, and
    off every network trained in PyTorch). At stride 1, and for 1x1 convs,
    "same" is already symmetric.
    """
    reg = keras.regularizers.l2(weight_decay / 2) if weight_decay else None
    padding = "same"
    if strides > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad")(x)
        padding = "valid"
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        kernel_regularizer=reg,
        name=name,
    )(x)


def _bn(name, synchronized=False):
    # Synchronized BN averages batch statistics over replicas, so N replicas
    # compute what one device does with the same global batch.
    return layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=synchronized, name=name
    )


def _identity_shortcut(x, filters, name):
    """Option A: subsample by 2 and zero-pad the new channels; no parameters."""
    x = layers.MaxPooling2D(pool_size=1, strides=2, name=f"{name}_subsample")(x)
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    extra = filters - c
    # Built-in layers only (no Lambda): view channels as a third spatial axis
    # so that ZeroPadding3D can pad them.  (B, H, W, C) -> (B, H, W, C, 1)
    x = layers.Reshape((h, w, c, 1), name=f"{name}_expand")(x)
    x = layers.ZeroPadding3D(
        ((0, 0), (0, 0), (extra // 2, extra - extra // 2)), name=f"{name}_pad"
    )(x)
    return layers.Reshape((h, w, filters), name=f"{name}_squeeze")(x)


def residual_block(
    x,
    filters,
    downsample=False,
    shortcut="projection",
    weight_decay=PAPER_WEIGHT_DECAY,
    residual=True,
    sync_bn=False,
    name="block",
):
    """Basic residual block: conv-BN-ReLU, conv-BN, add shortcut, ReLU.

    Args:
        x: input tensor (B, H, W, C).
        filters: output channels.
        downsample: stride 2 in the first conv (and the shortcut).
        shortcut: "projection" (1x1 conv + BN where the shape changes) or
            "identity" (the paper's option A, parameter-free).
        weight_decay: paper-style decay (gradient `weight_decay * w`).
        residual: False drops the shortcut, giving a PlainNet block.
        sync_bn: synchronized batch normalisation (for several replicas).
        name: prefix of every layer name in the block.

    Returns:
        The output tensor (B, H/s, W/s, filters).
    """
    check_choice("shortcut", shortcut, SHORTCUTS)
    stride = 2 if downsample else 1
    y = _conv(x, filters, 3, stride, weight_decay, f"{name}_conv1")
    y = _bn(f"{name}_bn1", sync_bn)(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, filters, 3, 1, weight_decay, f"{name}_conv2")
    y = _bn(f"{name}_bn2", sync_bn)(y)
    if residual:
        if downsample or x.shape[-1] != filters:
            if shortcut == "projection":
                s = _conv(x, filters, 1, stride, weight_decay, f"{name}_proj_conv")
                s = _bn(f"{name}_proj_bn", sync_bn)(s)
            else:
                s = _identity_shortcut(x, filters, f"{name}_shortcut")
        else:
            s = x
        y = layers.Add(name=f"{name}_add")([y, s])
    return layers.ReLU(name=f"{name}_out")(y)


def normalization_layer(normalization="per_channel", mean=None, std=None):
    """The model's input layer: raw 0-255 pixels in, normalised values out.

    Args:
        normalization: "per_channel" (subtract the per-channel mean, divide by
            the per-channel std: the original write-ups) or "per_pixel" (the
            paper: subtract the mean image, then divide by 255 so values stay
            near [-1, 1]).
        mean: per-channel (3,) or per-pixel (H, W, 3) mean in 0-255 units;
            defaults to CIFAR-10's training-set statistics.
        std: per-channel std (3,), 0-255 units; ignored for "per_pixel".
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    if normalization == "per_channel":
        mean = CIFAR10_MEAN if mean is None else np.asarray(mean, "float32")
        std = CIFAR10_STD if std is None else np.asarray(std, "float32")
        return layers.Normalization(
            axis=-1, mean=mean, variance=np.square(std), name="normalization"
        )
    if mean is None:
        raise ValueError("per_pixel normalization needs the mean image (H, W, 3)")
    mean = np.asarray(mean, "float32")
    return layers.Normalization(
        axis=(1, 2, 3),
        mean=mean,
        variance=np.full(mean.shape, 255.0**2, "float32"),
        name="normalization",
    )


# CIFAR-10 training-set statistics in 0-255 units (used when no data is given).
CIFAR10_MEAN = np.array([125.307, 122.950, 113.865], "float32")
CIFAR10_STD = np.array([62.993, 62.089, 66.705], "float32")


def _cifar_net(
    n,
    num_classes,
    input_shape,
    shortcut,
    residual,
    weight_decay,
    normalization,
    mean,
    std,
    name,
    sync_bn=False,
):
    if not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_N:
        raise ValueError(
            f"n must be an integer from 1 to {MAX_N} (depth 6n+2, at most "
            f"{n_to_depth(MAX_N)}); got {n!r}"
        )
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2; got {num_classes!r}")
    check_choice("shortcut", shortcut, SHORTCUTS)
    inputs = keras.Input(shape=input_shape, name="image")
    x = normalization_layer(normalization, mean, std)(inputs)
    x = _conv(x, 16, 3, 1, weight_decay, "stem_conv")
    x = _bn("stem_bn", sync_bn)(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            x = residual_block(
                x,
                filters,
                downsample=stage > 0 and block == 0,
                shortcut=shortcut,
                weight_decay=weight_decay,
                residual=residual,
                sync_bn=sync_bn,
                name=f"stage{stage + 1}_block{block + 1}",
            )
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    reg = keras.regularizers.l2(weight_decay / 2) if weight_decay else None
    outputs = layers.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer="he_normal",
        kernel_regularizer=reg,
        dtype="float32",  # a float32 softmax under mixed precision
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name=f"{name}{n_to_depth(n)}")


def build_resnet(
    n,
    num_classes=10,
    input_shape=(32, 32, 3),
    shortcut="projection",
    weight_decay=PAPER_WEIGHT_DECAY,
    normalization="per_channel",
    mean=None,
    std=None,
    sync_bn=False,
):
    """CIFAR ResNet-(6n+2).

    Args:
        n: blocks per stage (3 -> ResNet-20, 5 -> 32, 7 -> 44, 9 -> 56, 18 -> 110).
        num_classes: softmax outputs.
        input_shape: (H, W, 3) of the raw 0-255 images the model takes.
        shortcut: "projection" (default) or "identity" (paper's option A).
        weight_decay: paper-style L2 decay; 0 turns it off.
        normalization: "per_channel" or "per_pixel" (see `normalization_layer`).
        mean, std: statistics of the training images, 0-255 units.
        sync_bn: synchronized BatchNorm, for training on several replicas.

    Returns:
        An uncompiled plain `keras.Model` named e.g. "resnet20", built from
        Keras layers only (training adds its speed-ups: `speedups`).
    """
    return _cifar_net(
        n,
        num_classes,
        input_shape,
        shortcut,
        True,
        weight_decay,
        normalization,
        mean,
        std,
        "resnet",
        sync_bn,
    )


def build_plainnet(
    n,
    num_classes=10,
    input_shape=(32, 32, 3),
    weight_decay=PAPER_WEIGHT_DECAY,
    normalization="per_channel",
    mean=None,
    std=None,
    sync_bn=False,
):
    """The same 6n+2 network as `build_resnet` with every shortcut removed.

    Args and returns as `build_resnet` (there is no `shortcut` to choose).
    """
    return _cifar_net(
        n,
        num_classes,
        input_shape,
        "projection",
        False,
        weight_decay,
        normalization,
        mean,
        std,
        "plainnet",
        sync_bn,
    )


def n_to_depth(n):
    """3 -> 20, 5 -> 32, ...: the weighted layers of the network with n blocks
    a stage (the stem's conv, three stages of n two-conv blocks, the dense layer)."""
    return 6 * n + 2


def depth_to_n(depth):
    """20 -> 3, 32 -> 5, ... (`n_to_depth`'s inverse); a depth that is not 6n+2 is refused."""
    n, rest = divmod(depth - 2, 6)
    if n < 1 or rest:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110); got {depth}")
    if n > MAX_N:
        raise ValueError(
            f"depth {depth} is deeper than the {n_to_depth(MAX_N)} layers (n = {MAX_N}) "
            "that Keras can build and load at Python's default recursion limit"
        )
    return n


def count_weights(variables):
    """The number of weights in `variables` (e.g. a model's trainable_weights)."""
    return int(sum(int(np.prod(v.shape)) for v in variables))
