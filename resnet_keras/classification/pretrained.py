"""Paper-accuracy CIFAR-10 ResNets in one call, as `keras.applications` offers
ImageNet networks.

The four networks of akamaster/pytorch_resnet_cifar10 (BSD 2-clause; its
notice and the files' provenance are in resnet_keras/classification/weights/), converted
exactly into `build_resnet(n, shortcut="identity")` (`conversion`). They take
raw 0-255 RGB images:

    import resnet_keras
    model = resnet_keras.pretrained("resnet56_cifar10")            # softmax over 10 classes
    features = resnet_keras.pretrained("resnet20_cifar10", include_top=False, pooling="avg")

The shipped .h5 files are plain Keras: `keras.models.load_model(path)` works
in a Python that never imported this project. `from_checkpoint=True` instead
downloads the original PyTorch checkpoint from its public URL (sha256
checked, cached by Keras under ~/.keras/models) and converts it here.
"""

import dataclasses
import os

import keras
from keras import layers

from resnet_keras.checks import check_choice
from resnet_keras.classification import conversion

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights")
SOURCE_REPOSITORY = "https://github.com/akamaster/pytorch_resnet_cifar10"
SOURCE_COMMIT = "d5489e8995e81e91ce6b1d69dcc98ad579b0b153"
SOURCE_URL = SOURCE_REPOSITORY + "/raw/master/pretrained_models/{}"
POOLINGS = ("avg", "max")  # or None: no pooling


@dataclasses.dataclass(frozen=True)
class Preset:
    n: int  # blocks per stage
    checkpoint: str  # the reference's file name
    sha256: str  # of the checkpoint
    published_accuracy: float  # % on the original CIFAR-10 test set (their README)

    @property
    def url(self):
        return SOURCE_URL.format(self.checkpoint)


PRESETS = {
    "resnet20_cifar10": Preset(
        3,
        "resnet20-12fca82f.th",
        "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
        91.73,
    ),
    "resnet32_cifar10": Preset(
        5,
        "resnet32-d509ac18.th",
        "d509ac1820d7f25398913559d7e81a13229b1e7adc5648e3bfa5e22dc137f850",
        92.63,
    ),
    "resnet44_cifar10": Preset(
        7,
        "resnet44-014dd654.th",
        "014dd6541728a1c700b1642ab640e211dc6eb8ed507d70697458dc8f8a0ae2e4",
        93.10,
    ),
    "resnet56_cifar10": Preset(
        9,
        "resnet56-4bfd9763.th",
        "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
        93.39,
    ),
}


def path(name):
    """The shipped .h5 file of a preset."""
    check_choice("pretrained model", name, tuple(PRESETS))
    return os.path.join(WEIGHTS_DIR, f"{name}.h5")


def fetch_checkpoint(name, cache_dir=None):
    """The preset's original PyTorch checkpoint: downloaded once from its public
    URL by `keras.utils.get_file`, which refuses a file whose sha256 differs."""
    preset = PRESETS[name]
    return keras.utils.get_file(
        preset.checkpoint,
        origin=preset.url,
        file_hash=preset.sha256,
        hash_algorithm="sha256",
        cache_subdir="models",
        cache_dir=cache_dir,
    )


def pretrained(name, include_top=True, pooling=None, from_checkpoint=False, cache_dir=None):
    """A paper-accuracy CIFAR-10 ResNet, trained by akamaster/pytorch_resnet_cifar10.

    Args:
        name: resnet20_cifar10, resnet32_cifar10, resnet44_cifar10 or
            resnet56_cifar10 (91.73 / 92.63 / 93.10 / 93.39 % on the original
            CIFAR-10 test images).
        include_top: the classifier (a softmax over CIFAR-10's 10 classes,
            `CIFAR10_CLASSES` order); False gives features.
        pooling: without the top, "avg" ((B, 64) global average: the
            classifier's own input), "max" ((B, 64) global max) or None
            ((B, 8, 8, 64), the last block's output).
        from_checkpoint: convert the original checkpoint (downloaded with its
            sha256 checked) instead of loading the shipped file; also used when
            the shipped file is missing.
        cache_dir: where `keras.utils.get_file` keeps downloads (None: ~/.keras).

    Returns:
        An uncompiled `keras.Model` taking raw 0-255 RGB images (B, 32, 32, 3).
    """
    check_choice("pretrained model", name, tuple(PRESETS))
    if pooling is not None:
        check_choice("pooling", pooling, POOLINGS)
    if include_top and pooling is not None:
        raise ValueError("pooling applies to features: pass include_top=False with it")
    if from_checkpoint or not os.path.isfile(path(name)):
        model = conversion.convert_checkpoint(fetch_checkpoint(name, cache_dir))
    else:
        model = keras.models.load_model(path(name), compile=False, safe_mode=True)
    if include_top:
        return model
    pool = model.get_layer("pool")
    if pooling == "avg":
        out = pool.output
    else:
        out = pool.input  # (B, 8, 8, 64): the last block's ReLU
        if pooling == "max":
            out = layers.GlobalMaxPooling2D(name="max_pool")(out)
    return keras.Model(model.inputs, out, name=f"{name}_features")
