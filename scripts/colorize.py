"""Image colorization: train, eval, apply and probe gray-to-colour models.

    python -m scripts.colorize train --model autoencoder|unet [--color_space rgb|lab] \\
        [--data_dir path/to/cifar10] [--image_size 32]
    python -m scripts.colorize eval saved_models/colorizer_unet_lab.h5 [more models]
    python -m scripts.colorize apply saved_models/colorizer_unet_lab.h5 photo.jpg [...] --out DIR
    python -m scripts.colorize probe saved_models/colorizer_unet_lab.h5 --train_limit 10000

train writes runs/<name>/ under --output_dir: the model <name>.h5, its figures
<name>_eval.png and <name>_examples.png, the run's flags, log, history and
metrics; eval and probe add their rows to reports/colorize/results/
colorization.md and .json there. --publish copies the model to saved_models/
and the figures to plots/colorization/ (train), or the table to results/
(eval, probe); a table's row of a subset (--test_limit) never replaces a
full-size one, and nothing the repository ships or another run published is
replaced unless --replace names it.
apply takes picture files and folders (their pictures, not subfolders);
it refuses to replace a picture already in --out unless --overwrite is
given, and pictures over 16.8 megapixels (4096x4096). It exits with status
1 when it skipped an unreadable file (each gets one line on stderr) and 2
on bad input, as every script here.

eval --figures also draws each model's figures again beside the table, from
the record of the run that trained it (the same test images only).

--epochs is the colorizer's training epochs for train and the linear
classifier's for probe (defaults 100 and 10 below); train stops sooner
after the first epoch, --min_epochs or later, that ends --patience epochs in
a row without a new best validation MSE.
"""

import os
import sys

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import files
from resnet_keras.checks import check_choice
from resnet_keras.colorization import color, models, task
from resnet_keras.colorization.config import ColorizeConfig
from resnet_keras.configs.colorize import DEFAULTS, make_config
from resnet_keras.run import publish

flags.DEFINE_enum(
    "color_space",
    None,
    color.COLOR_SPACES,
    "train: rgb (predict sRGB from luma gray) or lab (predict a*b* from L*).",
)
flags.DEFINE_bool(
    "overwrite", False, "apply: replace colorized pictures already in --out (else refused)."
)
flags.DEFINE_bool(
    "figures",
    False,
    "eval: also draw each model's two figures again, from the record of the run that "
    "trained it and this eval's scores (the same test images only), beside the table; "
    "--publish --replace puts them in plots/colorization/.",
)
flags.DEFINE_integer(
    "patience",
    None,
    "train: stop once the validation MSE has not improved for this many epochs "
    "(0: train all --epochs); the best epoch's weights are kept.",
    lower_bound=0,
)
flags.DEFINE_integer(
    "min_epochs",
    None,
    "train: the earliest epoch after which --patience may stop the run.",
    lower_bound=0,
)

COMMANDS = ("train", "eval", "apply", "probe")
USAGE = "train | eval MODEL... | apply MODEL FILE|FOLDER... --out DIR | probe MODEL..."
HELP = {
    "out": "apply: folder the colorized pictures are written to.",
    "model": f"train: the colorizer, {' or '.join(models.MODELS)}.",
    "image_size": "The side images are resized to, a multiple of 8.",
    "epochs": "train: the colorizer's most training epochs (default below; --patience may "
    "stop it sooner); probe: the linear "
    f"classifier's ({DEFAULTS['probe_epochs']} unless given).",
}


def main(argv):
    if len(argv) < 2:
        raise ValueError(f"missing command; usage: python -m scripts.colorize {USAGE}")
    command, args = argv[1], argv[2:]
    check_choice("command", command, COMMANDS)
    if common.FLAGS.retrain and command != "train":
        raise ValueError(f"--retrain is for train; {command} trains nothing")
    if common.FLAGS.overwrite and command != "apply":
        raise ValueError(f"--overwrite is for apply; {command} writes no pictures")
    if common.FLAGS.figures and command != "eval":
        raise ValueError(f"--figures is for eval; {command} redraws no figures")
    config, probe_epochs, pictures = make_config(common.resolve(), command, common.explicit_flags())
    out = config.output_dir
    report = publish.report_dir(out, "colorize")
    results = os.path.join(report, "results")
    if command == "train":
        if args:
            raise ValueError(f"train takes no file arguments; got {' '.join(args)!r}")
        name = config.run_name or config.name
        figures = {
            f"{name}_{kind}.png": f"plots/colorization/{name}_{kind}.png"
            for kind in ("eval", "examples")
        }
        trained = [(config.run_dir, publish.run_files(config, name, name, figures))]
        trained = trained if common.FLAGS.publish else []
        publish.publish_runs(trained, out, common.FLAGS.replace, early=True)
        _, _, paths = task.train(config, retrain=common.FLAGS.retrain)
        for p in paths:
            print(f"wrote {p}")
        publish.publish_runs(trained, out, common.FLAGS.replace)
        return
    if not args:
        raise ValueError(f"{command} needs a model file; usage: scripts.colorize {USAGE}")
    if common.FLAGS.figures:
        for path in args:  # every model's record, before any of them is scored
            task.run_record(path)
    if command in ("eval", "probe"):
        files.check_writable(results)  # before any model runs, not after
        publish.start_table(report, out, os.path.join("results", "colorization.json"))
    if command == "eval":
        for path in args:
            task.evaluate_file(path, config, results, figures=common.FLAGS.figures)
    elif command == "probe":
        for path in args:
            task.probe_file(path, config, results, epochs=probe_epochs)
    else:
        if len(args) < 2:
            raise ValueError("apply needs pictures after the model file")
        warn = lambda line: print(f"error: {line}", file=sys.stderr)  # noqa: E731
        _, failed = task.colorize_files(
            args[0], args[1:], pictures, warn=warn, overwrite=common.FLAGS.overwrite
        )
        if failed:
            sys.exit(1)
        return
    print(f"wrote {os.path.join(results, 'colorization.md')} and .json")
    if common.FLAGS.publish:  # apply returned above: it publishes nothing
        publish.publish_study(out, report, replace=common.FLAGS.replace)


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(
        main,
        "colorize",
        DEFAULTS,
        configs=[ColorizeConfig],
        help_text=HELP,
        positional=True,
        argv=argv,
    )


if __name__ == "__main__":
    cli()
