"""Exports a saved classifier or colorizer for serving: SavedModel, TFLite or ONNX.

    python -m scripts.export saved_models/resnet_cifar10.h5 --to savedmodel
    python -m scripts.export saved_models/resnet_cifar10.h5 --to tflite
    python -m scripts.export saved_models/colorizer_unet_lab.h5 --to onnx --out unet.onnx

The export takes uint8 images of the model's size and returns class
probabilities and the class names (classifiers) or a uint8 RGB image
(colorizers, Lab ones converted inside the graph); resnet_keras/export.py says
exactly what. It is run through its own runtime on a few images and left in
place only if it agrees with Keras within --tolerance; the largest difference
is printed. ONNX needs `pip install -e ".[onnx]"`. docs/deploy.md has more.
"""

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import export

flags.DEFINE_enum("to", None, export.TARGETS, "Where the model is served: the export's format.")
flags.DEFINE_float(
    "tolerance",
    None,
    "Largest difference from Keras (probabilities, or RGB in [0, 1]) an export may show.",
)

FLAGS = flags.FLAGS
DEFAULTS = dict(to=None, tolerance=export.TOLERANCE, out=None)
HELP = {
    "out": "Where the export goes; unset: beside the model, MODEL_serving/ (savedmodel), "
    "MODEL.tflite or MODEL.onnx.",
}


def main(argv):
    paths = argv[1:]
    if len(paths) != 1:
        raise ValueError(
            "give one model file: python -m scripts.export MODEL.h5 --to "
            + "|".join(export.TARGETS)
        )
    s = common.resolve()
    if s["to"] is None:
        raise ValueError(f"--to is required: one of {', '.join(export.TARGETS)}")
    out, served, diff = export.export(paths[0], s["to"], s["out"], s["tolerance"])
    print(f"wrote {out}: {served.kind}, {s['to']}")
    if served.unnamed:
        print(f"note: {paths[0]} carries no class names; the export names the classes by index")
    print(
        f"largest difference from Keras on {export.VERIFY_IMAGES} images: {diff:.3g} "
        f"(tolerance {s['tolerance']:g})"
    )


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "export", DEFAULTS, positional=True, help_text=HELP, argv=argv)


if __name__ == "__main__":
    cli()
