"""Question 3: transfer learning from a frozen, pre-trained base.

The model takes raw 32x32 0-255 images, like every model of the project:

    image -> [Resizing to image_size] -> the base's preprocess_input (built-in
    layers) -> base (frozen; BatchNorm in inference mode) -> "pool"
    (GlobalAveragePooling2D) -> "head_dense" (Dense 256, relu) -> "predictions"

Bases: keras.applications' resnet50 (the default), resnet101, densenet121 and
efficientnet_b0, with ImageNet weights (Keras' download), a local "notop"
weights file, or random weights; or one of this project's own trained CIFAR
models (a .h5/.keras file), cut at its pooling layer; or, the same way, a
paper-accuracy CIFAR-10 ResNet shipped with the package, by its `pretrained`
name (e.g. resnet56_cifar10, offline).

With a frozen base and no augmentation the pooled features of an image never
change: `feature_extractor` and `head_model` let a run compute them once and
train the head on them (resnet_keras/transfer/task.py).

    python -m scripts.question3 --base saved_models/resnet_cifar10.h5 \\
        --data_dir path/to/cifar10 --train_limit 5000 --val_size 500
"""

import dataclasses
import os
import re

import keras
import numpy as np
from keras import layers

from resnet_keras.checks import check_choice
from resnet_keras.classification import pretrained
from resnet_keras.run import saving

BASE = "base"  # the name of the nested base model inside every transfer model
HEAD = ("head_dense", "predictions")

# ResNet-50/101 stages conv1..conv5 as keras.applications names their layers.
RESNET_STAGES = (("conv5_",), ("conv4_",), ("conv3_",), ("conv2_",), ("conv1_", "pool1_"))


@dataclasses.dataclass(frozen=True)
class Application:
    constructor: str  # the keras.applications function
    preprocessing: str  # the mode of its preprocess_input
    stages: tuple  # layer-name prefixes per stage, top stage first


APPLICATIONS = {
    "resnet50": Application("ResNet50", "caffe", RESNET_STAGES),
    "resnet101": Application("ResNet101", "caffe", RESNET_STAGES),
    "densenet121": Application(
        "DenseNet121",
        "torch",
        (
            ("conv5_", "bn", "relu"),
            ("conv4_", "pool4_"),
            ("conv3_", "pool3_"),
            ("conv2_", "pool2_"),
            ("conv1", "pool1", "zero_padding2d"),
        ),
    ),
    # EfficientNet rescales and normalises inside the model (its
    # preprocess_input is the identity); its seven blocks are its stages.
    "efficientnet_b0": Application(
        "EfficientNetB0",
        "none",
        (
            ("block7", "top_"),
            ("block6",),
            ("block5",),
            ("block4",),
            ("block3",),
            ("block2",),
            ("block1", "stem_", "rescaling", "normalization"),
        ),
    ),
}
# The project's CIFAR ResNets (resnet_keras.classification.models): three stages and a stem.
PROJECT_STAGES = (("stage3_",), ("stage2_",), ("stage1_",), ("stem_", "normalization"))

# keras.applications.imagenet_utils: "caffe" = RGB->BGR, then minus the
# ImageNet mean (BGR order); "torch" = /255, then minus mean, over std (RGB).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], "float32")
TORCH_MEAN = np.array([0.485, 0.456, 0.406], "float32")
TORCH_STD = np.array([0.229, 0.224, 0.225], "float32")
MIN_IMAGE_SIZE = 32  # keras.applications refuses smaller inputs


def is_saved_model(base):
    """True when `base` names a model file (or a `pretrained` name, whose file is
    shipped) rather than a keras.applications base."""
    if base in pretrained.PRESETS:
        return True
    return base not in APPLICATIONS and (base.endswith((".h5", ".keras")) or os.sep in base)


def model_file(base):
    """The file of a saved-model base: "resnet56_cifar10" -> its shipped .h5; a path as it is."""
    return pretrained.path(base) if base in pretrained.PRESETS else base


def base_label(base):
    """ "resnet50", or a model file's stem: "saved_models/resnet_cifar10.h5" -> "resnet_cifar10"."""
    if not is_saved_model(base):
        return base
    stem = os.path.splitext(os.path.basename(base))[0]
    return re.sub(r"\W", "_", stem)


def preprocess(x, mode):
    """The base's `preprocess_input` as built-in layers, so saved models need no project code.

    Args:
        x: raw 0-255 RGB images (B, H, W, 3).
        mode: "caffe" (ResNet), "torch" (DenseNet) or "none" (EfficientNet).

    Returns:
        The preprocessed tensor, equal to `keras.applications.<x>.preprocess_input`.
    """
    if mode == "caffe":
        # A fixed 1x1 conv: the channel flip as a permutation matrix, the mean as its bias.
        conv = layers.Conv2D(3, 1, name="preprocess", trainable=False)
        y = conv(x)
        conv.set_weights([np.eye(3, dtype="float32")[::-1].reshape(1, 1, 3, 3), -CAFFE_MEAN_BGR])
        return y
    if mode == "torch":
        return layers.Normalization(
            mean=255 * TORCH_MEAN, variance=np.square(255 * TORCH_STD), name="preprocess"
        )(x)
    return x


def _application(base, weights, image_size):
    """keras.applications' `base` without its top, with one-line errors for its weights."""
    ctor = getattr(keras.applications, APPLICATIONS[base].constructor)
    if weights not in ("imagenet", None) and not os.path.isfile(weights):
        raise ValueError(f"--weights {weights}: no such file; expected {base} notop weights")
    try:
        return ctor(
            include_top=False, weights=weights, input_shape=(image_size, image_size, 3), name=BASE
        )
    except Exception as e:  # urllib, h5py and Keras raise many types
        if weights is None:
            raise
        cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if weights == "imagenet":
            raise ValueError(
                f"could not download ImageNet weights for {base} ({cause}); offline, pass "
                "--weights PATH to a local notop .h5 file or --weights none"
            ) from None
        raise ValueError(f"--weights {weights}: not {base} notop weights ({cause})") from None


def _attach_head(inputs, x, net, num_classes, head_units, train_base, name):
    net.trainable = train_base
    # training=False keeps BatchNorm in inference mode for good, also once the
    # top is unfrozen for fine-tuning: its statistics never move (keras.io's
    # transfer-learning guide). A base trained from the start normalises as usual.
    x = net(x) if train_base else net(x, training=False)
    x = layers.GlobalAveragePooling2D(name="pool")(x)  # (B, C) features
    x = layers.Dense(head_units, activation="relu", name=HEAD[0])(x)
    # float32 softmax under mixed precision (and float32 features in, from a cache).
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name=HEAD[1])(x)
    return keras.Model(inputs, outputs, name=name)


def build_transfer_model(
    num_classes,
    base="resnet50",
    weights="imagenet",
    image_size=32,
    head_units=256,
    input_shape=(32, 32, 3),
    train_base=False,
):
    """A keras.applications base without its top, frozen, under a new head.

    Args:
        num_classes: softmax outputs.
        base: resnet50, resnet101, densenet121 or efficientnet_b0.
        weights: "imagenet" (Keras' download), None (random) or the path of a
            local notop weights file (.h5 or .weights.h5).
        image_size: the size the base sees. Above the input size, images are
            resized inside the model: ImageNet features are much better at
            128-224 pixels than at 32, where ResNet-50's last map is 1x1.
        head_units: units of the Dense(relu) layer before the softmax.
        input_shape: the raw images the model takes, 0-255 RGB.
        train_base: train every layer from the start (no freezing, BatchNorm
            in training mode), e.g. from random weights as a baseline.

    Returns:
        An uncompiled `keras.Model` whose layers are image, [resize],
        [preprocess], base, pool, head_dense, predictions.
    """
    check_choice("base", base, tuple(APPLICATIONS))
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"--image_size must be at least {MIN_IMAGE_SIZE}; got {image_size}")
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    if tuple(input_shape[:2]) != (image_size, image_size):
        x = layers.Resizing(image_size, image_size, name="resize")(x)
    x = preprocess(x, APPLICATIONS[base].preprocessing)
    net = _application(base, weights, image_size)
    return _attach_head(inputs, x, net, num_classes, head_units, train_base, f"{base}_transfer")


def build_from_saved_model(path, num_classes, head_units=256, reinitialize=False, train_base=False):
    """One of the project's trained CIFAR models, cut at its pooling layer, under a new head.

    The project's models normalise their raw 0-255 input themselves, so no
    preprocessing is added; the input size is the saved model's.

    Args:
        path: a .h5 or .keras model file (loaded in safe mode).
        num_classes: softmax outputs of the new head (e.g. 100 from a CIFAR-10 base).
        head_units: units of the Dense(relu) layer before the softmax.
        reinitialize: the same layers with fresh random weights (the input
            normalisation keeps its statistics): training "the same network"
            from scratch, as a baseline.
        train_base: train every layer (see `build_transfer_model`).

    Returns:
        An uncompiled `keras.Model`: image, base, pool, head_dense, predictions.
    """
    source = saving.load_model(path, compile=False)
    pools = [l for l in source.layers if isinstance(l, layers.GlobalAveragePooling2D)]
    if not pools:
        raise ValueError(
            f"{path}: no GlobalAveragePooling2D layer to cut the model at; expected a "
            "classifier from this project (its pooling layer is named 'pool')"
        )
    pool = next((l for l in pools if l.name == "pool"), pools[-1])
    net = keras.Model(source.inputs, pool.input, name=BASE)
    if reinitialize:
        net = keras.models.clone_model(net)  # new variables, drawn from each layer's initializer
    inputs = keras.Input(source.inputs[0].shape[1:], name="image")
    name = f"{base_label(path)}_transfer"
    return _attach_head(inputs, inputs, net, num_classes, head_units, train_base, name)


def stages_of(base):
    """The base's stages as layer-name prefixes, the top (last) stage first."""
    return PROJECT_STAGES if is_saved_model(base) else APPLICATIONS[base].stages


def unfreeze_top(model, stages, count):
    """Makes the top `count` stages of the model's base trainable; returns their layer names.

    BatchNorm layers stay frozen (and, being called with training=False, in
    inference mode): with few images, updating their scale and shift would
    undo what the layers above them were trained on (keras.io fine-tuning guide).

    Args:
        model: a model from `build_transfer_model` or `build_from_saved_model`.
        stages: `stages_of(base)`.
        count: 1 = the last stage (ResNet-50's conv5), 2 = the last two, ...
    """
    if not 1 <= count <= len(stages):
        raise ValueError(f"--unfreeze must be between 1 and {len(stages)} stages; got {count}")
    prefixes = tuple(p for stage in stages[:count] for p in stage)
    net = model.get_layer(BASE)
    net.trainable = True  # a frozen parent hides its layers' trainable weights
    unfrozen = []
    for layer in net.layers:
        layer.trainable = layer.name.startswith(prefixes) and not isinstance(
            layer, layers.BatchNormalization
        )
        if layer.trainable and layer.weights:
            unfrozen.append(layer.name)
    return unfrozen


def feature_extractor(model):
    """The model up to its pooling layer: raw images -> (B, C) features."""
    return keras.Model(model.inputs, model.get_layer("pool").output, name="features")


def head_model(model):
    """The model's head on its own: (B, C) features -> class probabilities.

    It shares its layers with `model`, so training it trains the model's head.
    """
    features = keras.Input(model.get_layer("pool").output.shape[1:], name="features")
    x = features
    for name in HEAD:
        x = model.get_layer(name)(x)
    return keras.Model(features, x, name="head")
