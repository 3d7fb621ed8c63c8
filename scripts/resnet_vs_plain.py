"""He et al. 2015, section 4.2: ResNet against PlainNet on CIFAR-10 at several depths.

    python -m scripts.resnet_vs_plain --depths 20,32 --models resnet,plain
    python -m scripts.resnet_vs_plain --depths 20,32,44,56,110 --paper      # the paper's recipe
    python -m scripts.resnet_vs_plain --depths 20,32 --report_only          # redraw only

Defaults are the original write-up's (deep-learning-lab.md): SGD momentum 0.9,
weight decay 1e-4, lr 0.1 /10 at epochs 50 and 75 of 100, batch 128, crop +
flip, per-channel normalisation, projection shortcuts. `--paper` switches to
option A shortcuts, per-pixel mean, 45k/5k split, /10 at 32k and 48k
iterations, stop at 64k, and ResNet-110's warm-up at lr 0.01 for 400 steps.

Each network trains in runs/<run>/ (resnet-20, resnet-20-seed1, resnet-20-val0;
its model <run>.h5 there); the report is drawn into reports/resnet_vs_plain/:
plots/resnet/*.png, results/resnet_architecture.md and
results/resnet_vs_plain.{md,json}. --publish copies the models to
saved_models/ and the report to plots/ and results/ (never over the
repository's files or another run's unless --replace names them).
--report_only draws the report from the finished runs in runs/, or, where
there is none, from the records the repository ships in results/runs/.
"""

from scripts import common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import files
from resnet_keras.classification import models, report, task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.configs.resnet_vs_plain import DEFAULTS, DEPTHS, MODELS, SEEDS, pair_config
from resnet_keras.run import distribute, folders, publish

# The defaults are the experiment's (configs/resnet_vs_plain.py), as the flags' strings.
flags.DEFINE_list(
    "depths", [str(d) for d in DEPTHS], "Depths to train, each 6n+2 (20, 32, 44, 56, 110)."
)
flags.DEFINE_list("models", list(MODELS), "Networks to train: resnet, plain.")
flags.DEFINE_list(
    "seeds",
    [str(s) for s in SEEDS],
    "Seeds to train each network with (weights, validation split, shuffling, "
    "augmentation); a seed other than 0 is in the run's name: resnet-20-seed1.",
)
FLAGS = flags.FLAGS


def parse_pairs(depths, model_names):
    pairs = []
    for m in model_names:
        if m not in report.FILE_STEM:
            raise ValueError(f"Unknown model {m!r} in --models; expected resnet, plain")
        for d in depths:
            try:
                depth = int(d)
            except ValueError:
                raise ValueError(
                    f"--depths: {d!r} is not a number; expected e.g. 20,32,44,56,110"
                ) from None
            models.depth_to_n(depth)  # refuses depths that are not 6n+2
            pairs.append((m, depth))
    return pairs


def parse_seeds(seeds):
    out = []
    for s in seeds:
        try:
            seed = int(s)
        except ValueError:
            raise ValueError(f"--seeds: {s!r} is not a whole number; expected e.g. 0,1,2") from None
        if not 0 <= seed < 2**32:
            raise ValueError(f"--seeds: {seed} is not between 0 and 2**32 - 1")
        out.append(seed)
    if len(set(out)) != len(out):
        raise ValueError(f"--seeds: {','.join(seeds)} names a seed twice")
    return out


def main(argv):
    pairs = parse_pairs(FLAGS.depths, FLAGS.models)
    settings = common.resolve()
    seeds = parse_seeds(FLAGS.seeds)
    configs = [
        pair_config(m, d, settings, FLAGS.paper, s, common.explicit_flags())
        for m, d in pairs
        for s in seeds
    ]
    for c in configs:
        c.validate()
    out = settings["output_dir"]
    trained = [(c.run_dir, publish.run_files(c, c.run_name, c.run_name)) for c in configs]
    trained = trained if FLAGS.publish and not FLAGS.report_only else []
    publish.publish_runs(trained, out, FLAGS.replace, early=True)
    if not FLAGS.report_only:
        files.check_writable(out)
        try:
            task.train_study(configs, [c.run_name for c in configs], FLAGS.retrain)
        except folders.RunConflict as e:  # this script names its runs: no --run_name to offer
            raise folders.RunConflict(
                str(e).replace(folders.OTHER_FOLDER, "use another --output_dir")
            ) from None
    if distribute.is_chief():  # other workers of a cluster write nothing final
        dest = publish.report_dir(out, "resnet_vs_plain")
        report.resnet_vs_plain_report(pairs, out, dest, settings, shipped=FLAGS.report_only)
        if FLAGS.publish:
            publish.publish_study(
                out, dest, trained, FLAGS.replace, key=("model", "depth", "seed", "train_images")
            )


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "resnet_vs_plain", DEFAULTS, configs=[TrainConfig], argv=argv)


if __name__ == "__main__":
    cli()
