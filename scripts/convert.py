"""Converts the CIFAR ResNet checkpoints of akamaster/pytorch_resnet_cifar10
into this project's Keras models (resnet_keras/classification/conversion.py), without PyTorch.

    python -m scripts.convert path/to/akamaster/pretrained_models/*.th --output_dir resnet_keras/classification/weights

Writes <output_dir>/resnet<depth>_cifar10.h5 per checkpoint (raw 0-255 images
in, CIFAR-10's class names in the file's `class_names` attribute) and
<output_dir>/provenance.json: the source repository and commit, and the sha256
of each checkpoint and of each file written from it.
"""

import os

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import files
from resnet_keras.classification import conversion, pretrained

FLAGS = flags.FLAGS
# No default: the package's own weights are shipped files, replaced only on purpose.
DEFAULTS = dict(output_dir=None)
HELP = {"output_dir": "Where the converted .h5 files and provenance.json go."}


def main(argv):
    checkpoints = argv[1:]
    if not checkpoints:
        raise ValueError("give one or more checkpoints: python -m scripts.convert FILE.th [...]")
    for path in checkpoints:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such checkpoint file")
    out = FLAGS.output_dir
    if not out:
        raise ValueError(
            "give --output_dir: the folder the converted files go to (resnet_keras/classification/weights "
            "holds the shipped ones: name it only to replace them)"
        )
    files.check_writable(out)
    records = conversion.convert_files(checkpoints, out)
    provenance = dict(
        source_repository=pretrained.SOURCE_REPOSITORY,
        source_commit=pretrained.SOURCE_COMMIT,
        source_folder="pretrained_models/",
        license="BSD 2-clause (LICENSE beside this file)",
        converted_with="python -m scripts.convert " + " ".join(checkpoints),
        files=records,
    )
    print(f"wrote {files.write_json(os.path.join(out, 'provenance.json'), provenance)}")


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "convert", DEFAULTS, positional=True, help_text=HELP, argv=argv)


if __name__ == "__main__":
    cli()
