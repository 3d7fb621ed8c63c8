"""scripts/common.py: each script's --help, defaults, presets and refusals,
through the scripts' own command lines, in this process; and the flags every
training script shares reaching its run, in a subprocess as a user runs it."""

import contextlib
import json
import os
import re
import unittest.mock

import keras
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import files
from resnet_keras.classification import task
from resnet_keras.run import folders
from scripts import _flags
from tests import fixtures
from tests.fixtures import run_in_process, run_script

# The flags each script defines itself, beside the shared ones it takes.
OWN = {
    "question1": ["init"],
    "question2": [],
    "question3": "base weights head_units train_base fine_tune_epochs unfreeze fine_tune_lr "
    "cache_features".split(),
    "resnet_vs_plain": ["depths", "models", "seeds"],
    "colorize": ["color_space", "overwrite", "figures", "patience", "min_epochs"],
    "evaluate": ["predictions_out", "record"],
    "export": ["to", "tolerance"],
    "convert": [],
    "benchmark": ["steps", "warmup", "eval_batch_size", "steps_per_execution"],
}


class _Stop(Exception):
    """Raised by a stand-in for the training call, once it has the configs."""


# The calls a script hands its configs to: one run, a study's runs, and
# question3's runs, whose folders it claims before training any.
TRAINING_CALLS = ((task, "run_classification"), (task, "train_study"), (folders, "claim_runs"))


def configs_of(module, *args):
    """The TrainConfigs the script would train, for a command line: the first
    of TRAINING_CALLS it makes receives them, and stops the script."""
    got = []

    def capture(configs, *_, **__):
        got.extend(configs if isinstance(configs, (list, tuple)) else [configs])
        raise _Stop

    with contextlib.ExitStack() as stack:
        for owner, name in TRAINING_CALLS:
            stack.enter_context(unittest.mock.patch.object(owner, name, capture))
        stack.enter_context(unittest.mock.patch.object(files, "check_writable", lambda *_: None))
        try:
            r = run_in_process(module, *args)
        except _Stop:
            return got
    raise AssertionError(f"{module} {args} did not train: {r.returncode} {r.stderr}")


def help_of(script, flag="--help"):
    r = run_in_process(f"scripts.{script}", flag)
    assert r.returncode == 0, r  # a help request succeeds (absl alone exits with 1)
    return r.stdout


def default_shown(text, name):
    """The default --help shows for --name, or None."""
    match = re.search(rf"^  --(?:\[no\])?{name}:.*?(?=^  --|\Z)", text, re.M | re.S)
    assert match, name
    shown = re.search(r"\(default: '(.*?)'\)", match.group(0))
    return shown and shown.group(1)


class HelpTest(tf.test.TestCase):
    def test_a_help_request_succeeds_in_every_script(self):
        for script in OWN:
            for flag in ("--help", "--helpshort", "--helpfull"):
                shown = {"export": "--to", "convert": "--output_dir"}.get(script, "--batch_size")
                self.assertIn(shown, help_of(script, flag), (script, flag))
        r = run_script("scripts.question1", "--helpshort")  # the real exit status
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--epochs", r.stdout)

    def test_each_script_lists_exactly_the_flags_it_takes(self):
        for script, own in OWN.items():
            listed = re.findall(r"^  --(?:\[no\])?(\w+)", help_of(script), re.M)
            self.assertCountEqual(listed, _flags.USES[script] + own, script)

    def test_defaults_are_the_scripts_own(self):
        q1, q2, q3 = help_of("question1"), help_of("question2"), help_of("question3")
        rvp, colorize = help_of("resnet_vs_plain"), help_of("colorize")
        self.assertEqual(
            [default_shown(q1, "opt"), default_shown(q2, "opt"), default_shown(rvp, "opt")],
            ["adam", "rmsprop", "sgd"],
        )
        self.assertEqual([default_shown(q1, "n"), default_shown(q2, "n")], ["3", "7"])
        # From the config dataclass where DEFAULTS says nothing.
        self.assertEqual(default_shown(q1, "weight_decay"), "0.0001")
        self.assertEqual(default_shown(q3, "augment"), "false")
        self.assertEqual(default_shown(colorize, "model"), "autoencoder")
        # Per optimizer, as the help says: no single default.
        self.assertIsNone(default_shown(q2, "batch_size"))
        self.assertIsNone(default_shown(q2, "lr"))
        self.assertIsNone(default_shown(rvp, "lr"))
        q1, q2, q3, rvp = (" ".join(text.split()) for text in (q1, q2, q3, rvp))  # unwrapped
        self.assertIn("(adam 0.001, rmsprop 0.001, sgd 0.01)", q2)
        self.assertIn("(adam 64, rmsprop 128, sgd 256)", q2)
        self.assertIn("(adam 0.001, rmsprop 0.001, sgd 0.01)", q3)
        self.assertIn("(adam 0.001, rmsprop 0.001, sgd 0.1)", q1)
        self.assertIn("(adam 0.001, rmsprop 0.001, sgd 0.1)", rvp)  # the recipe's SGD 0.1
        self.assertIn("--opt=sgd --lr=0.2 --batch_size=128 --epochs=180", q1)  # PRESETS["fast"]
        # question2 keeps its per-optimizer lr and batch size under the preset.
        self.assertIn("fast preset: --opt=sgd --epochs=180", q2)
        self.assertIn("unless given; Nesterov momentum is SGD's).", q2)
        self.assertNotIn("keeps its default lr", q2)
        self.assertIn("--shortcut=identity --normalization=per_pixel", rvp)  # PRESETS["paper"]


class PrecedenceTest(tf.test.TestCase):
    """Script defaults < preset < flags given."""

    def test_fast_preset_over_defaults_under_flags(self):
        (c,) = configs_of("scripts.question1")
        self.assertEqual((c.opt, c.lr, c.epochs, c.nesterov), ("adam", None, 20, False))
        (c,) = configs_of("scripts.question1", "--schedule=fast")
        self.assertEqual(
            (c.opt, c.lr, c.epochs, c.nesterov, c.val_size), ("sgd", 0.2, 180, True, 0)
        )
        (c,) = configs_of("scripts.question1", "--schedule=fast", "--lr=0.05", "--nonesterov")
        self.assertEqual((c.opt, c.lr, c.nesterov), ("sgd", 0.05, False))

    def test_fast_preset_lr_and_nesterov_are_sgds_only(self):
        # Another optimizer under --schedule fast: the rest of the preset, its
        # own default lr, plain momentum (the preset's Nesterov refused it before).
        (c,) = configs_of("scripts.question1", "--schedule=fast", "--opt=adam")
        self.assertEqual(
            (c.opt, c.lr, c.learning_rate, c.nesterov, c.epochs, c.label_smoothing),
            ("adam", None, 0.001, False, 180, 0.1),
        )
        got = configs_of("scripts.question2", "--schedule=fast", "--all")
        self.assertEqual(
            [(c.opt, c.lr, c.nesterov, c.schedule) for c in got],
            [("rmsprop", 0.001, False, "fast"), ("adam", 0.001, False, "fast")]
            + [("sgd", 0.01, True, "fast")],  # question2 keeps its per-optimizer lr
        )
        got = configs_of("scripts.question3", "--schedule=fast", "--all")
        self.assertEqual(
            [(c.opt, c.lr, c.nesterov) for c in got],
            [("rmsprop", 0.001, False), ("adam", 0.001, False), ("sgd", 0.2, True)],
        )
        # Unset lr is the optimizer's in resnet_vs_plain too (SGD 0.1, the recipe's).
        pairs = ["--depths=20", "--models=resnet"]
        for args, want in [
            ([], ("sgd", 0.1, False)),
            (["--opt=adam"], ("adam", 0.001, False)),
            (["--schedule=onecycle", "--opt=adam"], ("adam", 0.001, False)),
            (["--schedule=fast", "--opt=adam"], ("adam", 0.001, False)),
            (["--schedule=fast"], ("sgd", 0.2, True)),
        ]:
            c = configs_of("scripts.resnet_vs_plain", *pairs, *args)[0]
            self.assertEqual((c.opt, c.learning_rate, c.nesterov), want, args)
        # A flag given still wins, and Nesterov given with Adam is refused by name.
        (c,) = configs_of("scripts.question1", "--schedule=fast", "--opt=adam", "--lr=0.01")
        self.assertEqual((c.lr, c.nesterov), (0.01, False))
        r = run_in_process("scripts.question1", "--schedule=fast", "--opt=adam", "--nesterov")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--nesterov is SGD's momentum; a run with adam cannot use it", r.stderr)

    def test_paper_preset_and_a_flag_given_over_it(self):
        c = configs_of("scripts.resnet_vs_plain", "--depths=20", "--models=resnet", "--paper")[0]
        self.assertEqual((c.shortcut, c.normalization, c.epochs), ("identity", "per_pixel", 182))
        paper = ["--depths=20", "--models=resnet", "--paper"]
        c = configs_of("scripts.resnet_vs_plain", *paper, "--shortcut=projection", "--epochs=3")[0]
        self.assertEqual((c.shortcut, c.schedule, c.epochs), ("projection", "paper", 3))

    def test_a_flag_given_at_its_default_value_counts_as_given(self):
        # question2's default --opt is rmsprop: given, it still conflicts with --all.
        r = run_in_process("scripts.question2", "--all", "--opt=rmsprop")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--all runs the original three", r.stderr)
        # ... and an optimizer's batch size yields to --batch_size given at 128.
        (c,) = configs_of("scripts.question2", "--opt=adam", "--batch_size=128")
        self.assertEqual(c.batch_size, 128)
        (c,) = configs_of("scripts.question2", "--opt=adam")
        self.assertEqual((c.batch_size, c.lr), (64, 0.001))


class RefusalTest(tf.test.TestCase):
    def test_enums_and_bounds_of_the_scripts_own_flags(self):
        for module, args, message in [
            ("scripts.colorize", ["train", "--color_space=hsv"], "Unknown color space 'hsv'"),
            ("scripts.question3", ["--unfreeze=0"], "--unfreeze must be at least 1; got 0"),
            ("scripts.question3", ["--head_units=-1"], "--head_units must be at least 1"),
            ("scripts.benchmark", ["--steps=0"], "--steps must be at least 1; got 0"),
            ("scripts.question1", ["--strategy=horovod"], "Unknown strategy 'horovod'"),
            ("scripts.question1", ["--val_size=-1"], "--val_size must be at least 0; got -1"),
            ("scripts.question1", ["--paper"], "--paper is not used by scripts.question1"),
        ]:
            r = run_in_process(module, *args)
            self.assertEqual((r.returncode, r.stderr.count("\n")), (2, 1), (args, r.stderr))
            self.assertIn(message, r.stderr)


class ScriptsTest(tf.test.TestCase, parameterized.TestCase):
    """Each training script takes --mixed_precision and --strategy and records them."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = fixtures.class_tempdir(cls)
        fixtures.write_cifar10_python(cls.data, per_batch=16, test=16)

    # The CPU class is faked (fixtures.*_CPU), so each expectation holds on any host.
    @parameterized.named_parameters(
        ("question1", "scripts.question1", [], fixtures.BF16_CPU, "mixed_bfloat16"),
        (
            "question3",
            "scripts.question3",
            ["--weights=none", "--head_units=8"],
            fixtures.BF16_CPU,
            "mixed_bfloat16",
        ),
        (
            "colorize",
            "scripts.colorize",
            ["train", "--model=autoencoder"],
            fixtures.BF16_CPU,
            "mixed_bfloat16",
        ),
        ("question1_avx2", "scripts.question1", [], fixtures.AVX2_CPU, "float32"),
    )
    def test_flags_reach_the_run(self, module, extra, cpu_env, precision):
        out = self.create_tempdir().full_path
        args = [
            f"--data_dir={self.data}",
            "--epochs=1",
            "--val_size=16",
            "--batch_size=16",
            f"--output_dir={out}",
            "--verbose=0",
            "--mixed_precision",
            "--strategy=one_device",
        ]
        if module == "scripts.question1":
            args.append("--n=1")
        r = run_script(module, *extra, *args, env=cpu_env)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        runs = [d for d in os.listdir(os.path.join(out, "runs")) if not d.startswith(".")]
        self.assertLen(runs, 1)
        with open(os.path.join(out, "runs", runs[0], "flags.json")) as f:
            flags = json.load(f)
        self.assertEqual(
            (flags["precision"], flags["strategy"], flags["replicas"]), (precision, "one_device", 1)
        )
        # The reason is recorded, and a refused bfloat16 is said once in the log.
        note = "mixed precision: float32, this CPU has no native bfloat16"
        if precision == "float32":
            self.assertIn("no native bfloat16", flags["precision_reason"])
            self.assertEqual(r.stdout.count(note), 1, r.stdout)
        else:
            self.assertIn("natively (avx512_bf16)", flags["precision_reason"])
            self.assertNotIn(note, r.stdout)
        # The model is in the run folder, and nothing was published.
        run = os.path.join(out, "runs", runs[0])
        saved = [os.path.join(run, f) for f in os.listdir(run) if f.endswith(".h5")]
        saved.remove(os.path.join(run, "best.weights.h5"))
        self.assertLen(saved, 1)
        self.assertFalse(os.path.exists(os.path.join(out, "saved_models")))
        self.assertEqual(keras.models.load_model(saved[0], compile=False).output.dtype, "float32")


if __name__ == "__main__":
    tf.test.main()
