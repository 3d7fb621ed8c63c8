"""Question 2: the multi-configuration study on CIFAR-10 and CIFAR-100.

    python -m scripts.question2 --n 7 --opt rmsprop                 # one configuration
    python -m scripts.question2 --all --dataset cifar100            # the original three
    python -m scripts.question2 --all --report_only                 # redraw plot and table

The original three: n=7 + RMSprop (batch 128), n=7 + Adam (batch 64), n=5 + SGD
(momentum 0.9, batch 256), 20 epochs each. Each optimizer brings its batch size
unless --batch_size is given. Each configuration trains in
runs/question2_resnet_n<n>_<Opt>[_cifar100]/ (or runs/<run_name>/), its model
resnet_n<n>_<Opt>[_cifar100].h5 there; the report is drawn into
reports/question2/: plots/question2_multi_config_comparison[_cifar100].png and
results/question2.{md,json}, whose table ends with the ensemble of the
finished configurations (`classification.report.ensemble_row`). --publish copies the models to
saved_models/ (<run_name>.h5 for a named run) and the report to plots/ and
results/; --report_only draws from runs/, or from the records the repository
ships in results/runs/ where runs/ has none.
"""

from scripts import _flags, common  # defines the shared flags  # noqa: I001

from absl import flags

from resnet_keras import files
from resnet_keras.classification import report, task
from resnet_keras.classification.config import TrainConfig
from resnet_keras.configs.question2 import ALL, BATCH_SIZE, DEFAULTS, LR, config_name, make_config
from resnet_keras.run import distribute, publish

FLAGS = flags.FLAGS

HELP = {
    "batch_size": "Global batch size. Unset: the optimizer's, as in the original "
    f"({_flags.per_optimizer(BATCH_SIZE)}); --schedule fast keeps these.",
    "lr": "Base learning rate. Unset: the optimizer's Keras default, as in the original "
    f"({_flags.per_optimizer(LR)}); --schedule fast keeps these.",
    "schedule": _flags.schedule_help(kept=("lr", "batch_size")),
    "all": "Run the original three configurations, each with its own --n and --opt: "
    + ", ".join(f"--n={n} --opt={opt}" for n, opt in ALL)
    + ".",
}


def main(argv):
    settings = common.resolve()
    explicit = common.explicit_flags()
    if FLAGS.all and "run_name" in explicit:
        raise ValueError("--run_name names one run; it cannot be combined with --all")
    if FLAGS.all and explicit & {"n", "opt"}:
        raise ValueError(
            "--all runs the original three configurations, each with its own "
            "--n and --opt; drop them"
        )
    pairs = ALL if FLAGS.all else [(settings["n"], settings["opt"])]
    configs = [make_config(n, opt, settings, explicit) for n, opt in pairs]
    for c in configs:
        c.validate()
    out = settings["output_dir"]
    names = [common.file_name(c.run_name, config_name(c.n, c.opt, c.dataset)) for c in configs]
    trained = [
        (c.run_dir, publish.run_files(c, config_name(c.n, c.opt, c.dataset), name))
        for c, name in zip(configs, names)
    ]
    trained = trained if FLAGS.publish and not FLAGS.report_only else []
    publish.publish_runs(trained, out, FLAGS.replace, early=True)
    if not FLAGS.report_only:
        files.check_writable(out)
        model_names = [config_name(c.n, c.opt, c.dataset) for c in configs]
        task.train_study(configs, model_names, FLAGS.retrain)
    # The figure and table cover every configuration with a finished run.
    others = [
        make_config(n, opt, settings, explicit - {"run_name"})
        for n, opt in ALL
        if (n, opt) not in pairs and "run_name" not in explicit
    ]
    if distribute.is_chief():  # other workers of a cluster write nothing final
        dest = publish.report_dir(out, "question2")
        report.question2_report(configs + others, out, settings["dataset"], dest, FLAGS.report_only)
        if FLAGS.publish:
            publish.publish_study(out, dest, trained, FLAGS.replace, key=("run", "dataset"))


def cli(argv=None):
    """The command line (`argv`: None for sys.argv; tests pass their own)."""
    common.run(main, "question2", DEFAULTS, configs=[TrainConfig], help_text=HELP, argv=argv)


if __name__ == "__main__":
    cli()
