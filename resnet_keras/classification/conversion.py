"""The CIFAR ResNets of akamaster/pytorch_resnet_cifar10, converted exactly
into this project's builder.

Their network is `build_resnet(n, shortcut="identity")` operation for
operation: the same stem, blocks and option-A shortcut (even pixels, zero
channels on both sides), BatchNorm epsilon 1e-5, stride-2 convolutions padded
on every side (`classification.models._conv`), global average pooling and a linear layer,
whose softmax is the model's output here. Their trainer feeds RGB/255
normalised by ImageNet's per-channel mean and std; the converted model holds
that normalisation as its first layer, so it takes raw 0-255 images as every
model of the project. On 100 JPEG test images the converted models give
PyTorch's softmax to about 1e-6 (tests/conversion_test.py).

The checkpoints are read without PyTorch (`torch_checkpoint`):

    python -m scripts.convert path/to/akamaster/pretrained_models/*.th --output_dir resnet_keras/classification/weights
"""

import os
import re

import numpy as np

from resnet_keras import files
from resnet_keras.classification import models, torch_checkpoint
from resnet_keras.data.cifar import CIFAR10_CLASSES
from resnet_keras.run import saving

# The reference's input normalisation: RGB in [0, 1], minus ImageNet's mean,
# over its std, per channel; here in 0-255 units for the model's first layer.
REFERENCE_MEAN = 255 * np.array([0.485, 0.456, 0.406], "float64")
REFERENCE_STD = 255 * np.array([0.229, 0.224, 0.225], "float64")
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")  # gamma, beta, moving mean, var


def build_reference_resnet(n, weight_decay=models.PAPER_WEIGHT_DECAY, sync_bn=False):
    """`build_resnet(n, shortcut="identity")` with the reference's input normalisation.

    Args:
        n: blocks per stage (3 -> ResNet-20, ..., 9 -> ResNet-56).
        weight_decay: the L2 term for training on (their trainer's 1e-4).
        sync_bn: synchronized BatchNorm, for several replicas.

    Returns:
        An uncompiled `keras.Model` with random weights: 10 classes, raw 32x32x3
        0-255 images in.
    """
    return models.build_resnet(
        n,
        shortcut="identity",
        weight_decay=weight_decay,
        mean=REFERENCE_MEAN.astype("float32"),
        std=REFERENCE_STD.astype("float32"),
        sync_bn=sync_bn,
    )


def _layer_names(n):
    """(PyTorch module prefix, Keras layer name) of every conv and BatchNorm, in order."""
    pairs = [("conv1", "stem_conv"), ("bn1", "stem_bn")]
    for stage in range(1, 4):
        for block in range(n):
            for part in ("conv1", "bn1", "conv2", "bn2"):
                pairs.append(
                    (f"layer{stage}.{block}.{part}", f"stage{stage}_block{block + 1}_{part}")
                )
    return pairs


def depth_of(state_dict):
    """n of a reference state dict, from its blocks per stage."""
    blocks = {
        int(m.group(1))
        for k in state_dict
        if (m := re.match(r"(?:module\.)?layer1\.(\d+)\.conv1\.weight$", k))
    }
    if not blocks or blocks != set(range(len(blocks))):
        raise ValueError("not a CIFAR ResNet state dict of akamaster/pytorch_resnet_cifar10")
    return len(blocks)


def convert_state_dict(state_dict):
    """A Keras model with the weights of a reference state dict.

    Args:
        state_dict: {name: array} as `torch_checkpoint.load(path)["state_dict"]`
            (names with or without DataParallel's "module." prefix).

    Returns:
        `build_reference_resnet(n)` holding the weights.

    Raises:
        ValueError: for a missing, unexpected or misshapen tensor.
    """
    sd = {re.sub(r"^module\.", "", k): np.asarray(v) for k, v in state_dict.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    n = depth_of(sd)
    model = build_reference_resnet(n)
    used = set()

    def take(key, shape):
        if key not in sd:
            raise ValueError(f"the state dict has no {key}")
        if sd[key].shape != shape:
            raise ValueError(f"{key}: shape {sd[key].shape}, expected {shape}")
        used.add(key)
        return sd[key]

    for torch_name, keras_name in _layer_names(n):
        layer = model.get_layer(keras_name)
        if keras_name.endswith(("conv", "conv1", "conv2")):
            (kernel,) = layer.get_weights()  # (kh, kw, in, out); PyTorch's is (out, in, kh, kw)
            w = take(f"{torch_name}.weight", tuple(np.array(kernel.shape)[[3, 2, 0, 1]]))
            layer.set_weights([w.transpose(2, 3, 1, 0)])
        else:
            c = layer.get_weights()[0].shape
            layer.set_weights([take(f"{torch_name}.{f}", c) for f in BN_FIELDS])
    dense = model.get_layer("predictions")
    kernel, _ = dense.get_weights()  # (64, 10); PyTorch's linear weight is (10, 64)
    w = take("linear.weight", kernel.shape[::-1])
    dense.set_weights([w.T, take("linear.bias", (kernel.shape[1],))])
    if set(sd) - used:
        raise ValueError(f"tensors the network has no place for: {sorted(set(sd) - used)[:5]}")
    return model


def convert_checkpoint(path):
    """`convert_state_dict` of a reference checkpoint file (read without PyTorch)."""
    checkpoint = torch_checkpoint.load(path)
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{path}: no state_dict in the checkpoint")
    try:
        return convert_state_dict(state_dict)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def convert_files(checkpoints, output_dir, log=print):
    """Converts reference checkpoints into `<output_dir>/resnet<depth>_cifar10.h5`.

    Every checkpoint is read and converted before anything is written.

    Args:
        checkpoints: paths of akamaster/pytorch_resnet_cifar10 checkpoints.
        output_dir: the folder the .h5 files go to (created if needed).
        log: where one line per written file goes.

    Returns:
        [{"source", "source_sha256", "file", "sha256", "n"}] per checkpoint,
        names relative to their folders (the provenance of each file).
    """
    converted = [(p, convert_checkpoint(p)) for p in checkpoints]
    os.makedirs(output_dir, exist_ok=True)
    records = []
    for source, model in converted:
        depth = int(model.name.removeprefix("resnet"))  # the builder names it "resnet20"
        out = saving.save_model(
            model, os.path.join(output_dir, f"resnet{depth}_cifar10.h5"), CIFAR10_CLASSES
        )
        records.append(
            dict(
                source=os.path.basename(source),
                source_sha256=files.sha256(source),
                file=os.path.basename(out),
                sha256=files.sha256(out),
                n=models.depth_to_n(depth),
            )
        )
        log(f"wrote {out} from {source}")
    return records
