"""resnet_keras.run.publish: a run owns its outputs, and publishing is a step of its own.

KillTest cuts real runs off (SIGKILL through RESNET_KERAS_KILL_AT) right
after each output is written and checks the run is then resumable or
finished, and that the same command ends it; PublishTest checks who may
replace a published file, a publish cut off half-way and a full disk;
CloneTest runs the README's commands on a fresh copy of the repository and
checks that `git status` shows nothing changed, and that --report_only
redraws the committed figures and tables byte for byte.
"""

import errno
import json
import os
import shutil
import subprocess
from unittest import mock

import tensorflow as tf

from resnet_keras import files
from resnet_keras.classification import models
from resnet_keras.colorization import report
from resnet_keras.run import folders, optim, publish, saving, tables
from tests import fixtures
from tests.fixtures import ROOT, run_in_process, run_script

RUN = "question1_resnet8_cifar10"


def _finished(folder, name="m", text="weights"):
    """A finished run folder by hand: flags, a model file, metrics last."""
    os.makedirs(folder, exist_ok=True)
    files.write_json(os.path.join(folder, "flags.json"), {"epochs": 2, "invocations": []})
    files.write_text(os.path.join(folder, f"{name}.h5"), text)
    files.write_json(os.path.join(folder, "metrics.json"), {"outputs": [f"{name}.h5"]})
    return folder


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)


def fresh_clone(root):
    """The checkout's files as a fresh clone has them (tracked and new ones
    not ignored), committed in a repository of their own."""
    clone = os.path.join(root, "clone")
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=ROOT)
    for rel in filter(None, listed.stdout.split("\0")):
        if os.path.isfile(os.path.join(ROOT, rel)):
            os.makedirs(os.path.dirname(os.path.join(clone, rel)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), os.path.join(clone, rel))
    _git("init", "-q", cwd=clone)
    _git("add", "-A", cwd=clone)
    _git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clone", cwd=clone)
    return clone


def git_status(clone):
    return _git("status", "--porcelain", cwd=clone).stdout


class PublishTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.out = self.create_tempdir().full_path
        self.run = _finished(os.path.join(self.out, "runs", "a"))
        self.map = {"saved_models/m.h5": os.path.join(self.run, "m.h5")}

    def test_publish_records_the_source_and_refuses_another_runs_file(self):
        publish.publish(self.out, self.map, "runs/a", log=lambda _: None)
        with open(os.path.join(self.out, "saved_models", "m.h5")) as f:
            self.assertEqual(f.read(), "weights")
        entry = publish.read_record(self.out)["saved_models/m.h5"]
        self.assertEqual((entry["owner"], entry["source"]), ("runs/a", "runs/a/m.h5"))
        self.assertEqual(entry["sha256"], files.sha256(os.path.join(self.run, "m.h5")))
        self.assertEqual(entry["settings"], {"epochs": 2})
        # A look-alike run name: another run's file is not replaced unasked.
        other = _finished(os.path.join(self.out, "runs", "b"), text="other weights")
        b = {"saved_models/m.h5": os.path.join(other, "m.h5")}
        with self.assertRaisesRegex(ValueError, r"m.h5: not replaced \(runs/a published it\); "):
            publish.publish(self.out, b, "runs/b")
        with self.assertRaisesRegex(ValueError, "runs/a published it"):  # before any training
            publish.check_publish(self.out, b, "runs/b", early=True)
        publish.publish(self.out, b, "runs/b", replace=["saved_models/m.h5"], log=lambda _: None)
        self.assertEqual(publish.read_record(self.out)["saved_models/m.h5"]["owner"], "runs/b")
        # The run that published a file may publish it again (a --retrain run).
        files.write_text(os.path.join(other, "m.h5"), "retrained")
        self.assertLen(publish.publish(self.out, b, "runs/b", log=lambda _: None), 1)

    def test_publish_into_the_working_directory_the_scripts_default(self):
        # --output_dir's default is ".": its lock file is then "./.published.lock",
        # whose folder os.path.dirname gives as "" (it once failed in makedirs).
        here = os.getcwd()
        os.chdir(self.out)
        try:
            done = publish.publish(".", {"saved_models/m.h5": "runs/a/m.h5"}, "runs/a", log=print)
        finally:
            os.chdir(here)
        self.assertEqual(done, ["./saved_models/m.h5"])
        self.assertTrue(os.path.isfile(os.path.join(self.out, ".published.lock")))

    def test_a_file_of_unknown_origin_or_shipped_by_the_repository_is_kept(self):
        target = os.path.join(self.out, "saved_models", "m.h5")
        os.makedirs(os.path.dirname(target))
        files.write_text(target, "shipped")
        with self.assertRaisesRegex(ValueError, "no entry in published.json"):
            publish.publish(self.out, self.map, "runs/a")
        _git("init", "-q", cwd=self.out)
        _git("add", "saved_models/m.h5", cwd=self.out)
        with self.assertRaisesRegex(
            ValueError, r"not replaced \(the repository ships it\); pass --replace=saved_models"
        ):
            publish.publish(self.out, self.map, "runs/a")
        with open(target) as f:
            self.assertEqual(f.read(), "shipped")
        # The same bytes are no replacement.
        files.write_text(target, "weights")
        self.assertEqual(publish.publish(self.out, self.map, "runs/a", log=lambda _: None), [])

    def test_a_publish_cut_off_half_way_is_completed_by_the_same_command(self):
        other = os.path.join(self.run, "history.png")
        files.write_text(other, "curves")
        both = dict(self.map, **{"plots/a.png": other})

        class Killed(BaseException):
            pass

        def kill_at(name):
            if name == "published saved_models/m.h5":
                raise Killed

        with mock.patch.object(publish, "crash_point", kill_at), self.assertRaises(Killed):
            publish.publish(self.out, both, "runs/a", log=lambda _: None)
        self.assertTrue(os.path.exists(os.path.join(self.out, "saved_models", "m.h5")))
        self.assertFalse(os.path.exists(os.path.join(self.out, "plots", "a.png")))
        publish.publish(self.out, both, "runs/a", log=lambda _: None)
        self.assertTrue(os.path.exists(os.path.join(self.out, "plots", "a.png")))
        leftovers = [n for _, _, ns in os.walk(self.out) for n in ns if ".tmp" in n]
        self.assertEqual(leftovers, [])

    def test_a_full_disk_while_publishing_is_one_line_and_leaves_nothing(self):
        def full(src, dst, **_):
            with open(dst, "w") as f:
                f.write("half")
            raise OSError(errno.ENOSPC, "No space left on device")

        with mock.patch.object(shutil, "copyfile", full):
            with self.assertRaisesRegex(
                OSError, r"saved_models/m.h5: not written, the disk is full \(it needs about"
            ):
                publish.publish(self.out, self.map, "runs/a")
        self.assertEqual(os.listdir(os.path.join(self.out, "saved_models")), [])
        self.assertEqual(publish.read_record(self.out), {})
        publish.publish(self.out, self.map, "runs/a", log=lambda _: None)  # once there is space
        self.assertTrue(os.path.isfile(os.path.join(self.out, "saved_models", "m.h5")))

    def test_a_subset_row_never_replaces_a_full_size_one(self):
        old, new = (os.path.join(self.out, f"{n}.json") for n in ("old", "new"))
        files.write_json(old, {"rows": [{"run": "a", "test_images": 10000}]})
        files.write_json(new, {"rows": [{"run": "a", "test_images": 500}]})
        with self.assertRaisesRegex(ValueError, "has 10000 test images, the new one 500; a subset"):
            tables.check_not_smaller(old, new, key=("run",))
        files.write_json(old, {"colorizers": {"m.h5": {"test_images": 10000}}})
        files.write_json(new, {"colorizers": {"m.h5": {"test_images": 500}}})
        with self.assertRaisesRegex(ValueError, "colorizers m.h5 has 10000 test images"):
            tables.check_not_smaller(old, new)
        files.write_json(new, {"colorizers": {"m.h5": {"test_images": 10000}, "n.h5": {}}})
        tables.check_not_smaller(old, new)


class DiskTest(tf.test.TestCase):
    def test_a_model_is_not_written_to_a_full_disk(self):
        out = self.create_tempdir().full_path
        model = models.build_resnet(1)
        optim.compile_classifier(model, optim.make_optimizer("adam", 1e-3))
        path = os.path.join(out, "m.h5")
        with mock.patch.object(files, "free_bytes", return_value=100_000):
            with self.assertRaisesRegex(
                OSError, r"m.h5: not written, the disk is full: it needs about 0.\d MB and 0.1 MB"
            ):
                saving.save_model(model, path)
        self.assertEqual(os.listdir(out), [])
        saving.save_model(model, path)  # once there is space
        self.assertTrue(os.path.isfile(path))

    def test_training_stops_with_one_line_before_an_epochs_weights_meet_a_full_disk(self):
        import keras
        import numpy as np

        from resnet_keras.run import fit

        run = self.create_tempdir().full_path
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        optim.compile_classifier(model, optim.make_optimizer("sgd", 0.1))
        x, y = np.zeros((8, 4), "float32"), np.arange(8) % 3
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
        with mock.patch.object(files, "free_bytes", return_value=1000):
            with self.assertRaisesRegex(OSError, r"not written, the disk is full: it needs about"):
                fit.fit_with_resume(model, data, data, run, 2, 8, verbose=0)
        # Nothing half-written under a final name; the run resumes once there is space.
        self.assertFalse(os.path.exists(os.path.join(run, "best.weights.h5")))
        self.assertFalse(os.path.exists(os.path.join(run, "backup")))
        fit.fit_with_resume(model, data, data, run, 2, 8, verbose=0)
        self.assertEqual(fit.resume_epoch(run), 2)

    def test_a_full_disk_under_an_atomic_write_names_the_file_and_leaves_nothing(self):
        out = self.create_tempdir().full_path
        path = os.path.join(out, "history.json")
        real_open = open

        def full_open(name, mode="r", *args, **kwargs):
            f = real_open(name, mode, *args, **kwargs)
            if "w" in mode and ".tmp-" in str(name):
                f.write("{")
                f.flush()
                f.close()
                raise OSError(errno.ENOSPC, "No space left on device")
            return f

        with mock.patch("builtins.open", full_open):
            with self.assertRaisesRegex(OSError, "history.json: not written, the disk is full"):
                files.write_json(path, {"loss": [1.0]})
        self.assertEqual(os.listdir(out), [])


def _interrupted(run):
    """A locked run folder holding the resume state of 3 epochs."""
    folders.lock(run)
    os.makedirs(os.path.join(run, "backup"))
    files.write_json(os.path.join(run, "backup", "training_metadata.json"), {"epoch": 3})


class FailureTest(tf.test.TestCase):
    def test_a_nan_run_leaves_no_resume_state_and_an_unstarted_one_no_folder(self):
        out = self.create_tempdir().full_path
        config = runs_config(out)
        run = config.run_dir
        _interrupted(run)
        with self.assertRaises(FloatingPointError):
            with publish.discarded_on_failure(config, run):
                raise FloatingPointError("the loss became NaN")
        # Its state refused another --lr before; now there is nothing to refuse it.
        self.assertFalse(os.path.exists(run))
        self.assertEqual(os.listdir(os.path.join(out, "runs")), [])
        # An interrupted run that fails otherwise keeps its resume state.
        _interrupted(run)
        with self.assertRaises(OSError):
            with publish.discarded_on_failure(config, run):
                raise OSError("disk full")
        self.assertEqual(folders.state(run), "interrupted")


def runs_config(out):
    from resnet_keras.classification.config import TrainConfig

    return TrainConfig(output_dir=out, run_name="r")


class KillTest(tf.test.TestCase):
    """A SIGKILL right after each output of a run, then the same command."""

    def test_a_kill_after_any_output_leaves_a_resumable_or_finished_run(self):
        root = self.create_tempdir().full_path
        data = os.path.join(root, "data")
        fixtures.write_cifar10_python(data, per_batch=20, test=20)
        out = os.path.join(root, "out")
        args = [f"--data_dir={data}", "--n=1", "--val_size=20", "--batch_size=16"]
        args += [f"--output_dir={out}", "--verbose=0", "--epochs=2"]
        run = os.path.join(out, "runs", RUN)
        every = ["test_predictions.npz", "resnet8_cifar10.h5", "history.json", "history.png"]
        for point in every + ["metrics.json"]:
            r = run_script("scripts.question1", *args, env={files.KILL_VAR: point})
            self.assertEqual(r.returncode, -9, f"{point}: {r.stderr[-2000:]}")
            self.assertTrue(os.path.exists(os.path.join(run, point)), point)
            if point == "metrics.json":  # the marker is last: every output is there
                self.assertEqual(folders.state(run), "finished")
                for name in json.load(open(os.path.join(run, point)))["outputs"]:
                    self.assertTrue(os.path.isfile(os.path.join(run, name)), name)
            else:
                self.assertEqual(folders.state(run), "interrupted", point)
        r = run_script("scripts.question1", *args)  # a process of its own: it takes the lock
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertIn("reused", r.stdout)
        self.assertEqual(fixtures.csv_epochs(os.path.join(run, "log.csv")), [0, 1])  # once
        self.assertFalse(os.path.exists(os.path.join(run, "backup")))
        self.assertEqual(sorted(os.listdir(out)), ["runs"])  # nothing published unasked

        # --retrain killed after it finished but before its swap, then between
        # the swap's renames: the new run is put in place, not trained again.
        retrain = args + ["--seed=4", "--retrain"]
        r = run_script("scripts.question1", *retrain, env={files.KILL_VAR: "backup removed"})
        self.assertEqual(r.returncode, -9, r.stderr[-2000:])
        self.assertEqual((folders.state(run), folders.read_flags(run)["seed"]), ("finished", 0))
        point = "promote: old run moved aside"
        r = run_script("scripts.question1", *retrain, env={files.KILL_VAR: point})
        self.assertEqual(r.returncode, -9, r.stderr[-2000:])
        self.assertFalse(os.path.exists(run))  # between the renames
        r = run_in_process("scripts.question1", *retrain)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertEqual(folders.read_flags(run)["seed"], 4)
        with open(os.path.join(run, "metrics.json")) as f:
            names = json.load(f)["outputs"]
        self.assertIn("resnet8_cifar10.h5", names)
        self.assertTrue(all(os.path.isfile(os.path.join(run, n)) for n in names))
        self.assertEqual(fixtures.csv_epochs(os.path.join(run, "log.csv")), [0, 1])
        self.assertEqual(sorted(os.listdir(os.path.join(out, "runs"))), [f".{RUN}.lock", RUN])


class ShippedTablesTest(tf.test.TestCase):
    def test_the_colorization_table_is_redrawn_from_its_json_byte_for_byte(self):
        table = tables.load_table(os.path.join(ROOT, "results", "colorization.json"))
        with open(os.path.join(ROOT, "results", "colorization.md")) as f:
            self.assertEqual(report.markdown(table), f.read())


class CloneTest(fixtures.FixtureImagesTestCase):
    """The README's commands on a fresh clone change no tracked file."""

    def test_quick_runs_and_trials_leave_git_status_clean(self):
        clone = fresh_clone(self.create_tempdir().full_path)

        def script(module, *args):
            return run_script(module, *args, cwd=clone, env={"PYTHONPATH": clone})

        quick = [f"--data_dir={self.data_dir}", "--train_limit=200", "--val_size=50"]
        quick += ["--epochs=1", "--n=1", "--verbose=0"]
        r = script("scripts.question1", *quick)
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertIn(f"model: {os.path.join('.', 'runs', 'question1_resnet8_cifar10')}", r.stdout)
        # A look-alike name: the shipped Question 2 model is not replaced, and
        # the refusal comes before any training.
        r = script("scripts.question1", *quick, "--run_name=resnet_n7_Adam", "--publish")
        self.assertEqual(r.returncode, 2, r.stderr[-2000:])
        self.assertIn(
            "saved_models/resnet_n7_Adam.h5: not replaced (the repository ships it); "
            "pass --replace=saved_models/resnet_n7_Adam.h5",
            r.stderr,
        )
        self.assertFalse(os.path.exists(os.path.join(clone, "runs", "resnet_n7_Adam")))
        # Evaluating a shipped colorizer on a subset writes the user's report only.
        model = os.path.join("saved_models", "colorizer_unet_lab.h5")
        r = script("scripts.colorize", "eval", model, f"--data_dir={self.data_dir}")
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        report = os.path.join(clone, "reports", "colorize", "results", "colorization.md")
        self.assertTrue(os.path.isfile(report))
        # Asked to publish it, the subset row does not replace the full-size one.
        replace = "--replace=results/colorization.json,results/colorization.md"
        r = script(
            "scripts.colorize", "eval", model, f"--data_dir={self.data_dir}", "--publish", replace
        )
        self.assertEqual(r.returncode, 2, r.stderr[-2000:])
        self.assertIn("a subset run (--train_limit, --test_limit) never replaces", r.stderr)
        self.assertEqual(git_status(clone), "")

    def test_report_only_redraws_the_committed_figures_and_tables(self):
        clone = fresh_clone(self.create_tempdir().full_path)
        for module, args, study in (
            ("scripts.resnet_vs_plain", ["--depths=20,32"], "resnet_vs_plain"),
            ("scripts.question2", ["--all"], "question2"),
            (
                "scripts.question3",
                ["--base=saved_models/resnet_cifar10.h5", "--dataset=cifar10"],
                "question3",
            ),
        ):
            r = run_script(module, *args, "--report_only", cwd=clone, env={"PYTHONPATH": clone})
            self.assertEqual(r.returncode, 0, r.stderr[-2000:])
            self.assertNotIn("left out of the report", r.stdout)
            report = os.path.join(clone, "reports", study)
            drawn = publish.report_files(report)
            self.assertNotEmpty(drawn)
            for rel, path in drawn.items():
                with open(path, "rb") as a, open(os.path.join(clone, rel), "rb") as b:
                    self.assertEqual(a.read(), b.read(), f"{study}: {rel}")
        self.assertEqual(git_status(clone), "")


if __name__ == "__main__":
    tf.test.main()
