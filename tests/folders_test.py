"""resnet_keras.run.folders: what a new command may do with an existing run folder.

These cases build the folders by hand; RunFolderTest runs the scripts on
them (killed mid-retrain, a named trial run beside a finished one, two
processes at once). SettingsTest checks what a run's reuse is decided on.
Bad input's one line and exit status are in robustness_test.py.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import tensorflow as tf

from resnet_keras.classification.config import TrainConfig
from resnet_keras.run import fit, folders
from resnet_keras.run.config import RunConfig
from resnet_keras.transfer.config import TransferOptions
from tests import fixtures
from tests.fixtures import csv_epochs, finished_run, popen_script, run_script, tree_hashes

DEFAULTS = {"epochs": 20, "opt": "adam", "lr": None, "label_smoothing": 0.0, "recompute": False}


def _write(folder, name, text="x"):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)


def _run(folder, finished=True, backup=False, **flags):
    _write(
        folder, "flags.json", json.dumps(dict({"epochs": 20, "opt": "adam", "lr": 0.001}, **flags))
    )
    _write(folder, "log.csv", "epoch,loss\n0,1.0\n")
    if finished:
        _write(folder, "metrics.json", "{}")
    if backup:
        _write(os.path.join(folder, "backup"), "training_metadata.json", '{"epoch": 1}')


class DifferencesTest(tf.test.TestCase):
    def test_settings_added_later_count_as_their_default(self):
        old_run = {"epochs": 20, "opt": "sgd"}  # flags.json from before label smoothing existed
        self.assertEqual(
            folders.differences({"epochs": 20, "label_smoothing": 0.0}, old_run, DEFAULTS), []
        )
        self.assertEqual(
            folders.differences({"epochs": 20, "label_smoothing": 0.1}, old_run, DEFAULTS),
            ["label_smoothing 0.0 -> 0.1"],
        )
        self.assertEqual(
            folders.differences(
                {"epochs": 30, "recompute": True}, old_run, DEFAULTS, TrainConfig.NO_EFFECT
            ),
            ["epochs 20 -> 30"],
        )  # recompute computes the same thing
        self.assertEqual(
            folders.differences({"unknown": 1}, old_run, DEFAULTS), ["unknown None -> 1"]
        )
        self.assertEqual(folders.differences({"formats": ("h5",)}, {"formats": ["keras"]}, {}), [])
        self.assertEqual(folders.differences({"crop": (1, 2)}, {"crop": [1, 2]}, {}), [])

    def test_a_folder_spelt_another_way_is_the_same_data(self):
        here = self.create_tempdir().full_path
        os.makedirs(os.path.join(here, "data"))
        os.makedirs(os.path.join(here, "other"))
        os.symlink(os.path.join(here, "data"), os.path.join(here, "link"))
        recorded = {"data_dir": "data"}  # relative, as given on the command line
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(here)
        for same in ["./data", os.path.join(here, "data"), os.path.join(here, "link")]:
            self.assertEqual(folders.differences({"data_dir": same}, recorded, {}), [], same)
        other = os.path.join(here, "other")
        self.assertEqual(
            folders.differences({"data_dir": other}, recorded, {}), [f"data_dir data -> {other}"]
        )
        self.assertEqual(
            folders.differences({"data_dir": None}, recorded, {}), ["data_dir data -> None"]
        )


class ClaimTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.runs = self.create_tempdir().full_path
        self.run = os.path.join(self.runs, "r")
        self.wanted = {"epochs": 20, "opt": "adam", "lr": 0.001}

    def claim(self, **kwargs):
        return folders.claim(
            self.run, dict(self.wanted, **kwargs.pop("settings", {})), DEFAULTS, **kwargs
        )

    def test_states(self):
        self.assertEqual(folders.state(self.run), "empty")
        _run(self.run, finished=False)
        self.assertEqual(folders.state(self.run), "started")
        _run(self.run, finished=False, backup=True)
        self.assertEqual(folders.state(self.run), "interrupted")
        # metrics.json is written after every other output: finished, even if
        # killed before its resume state went (which a reuse then removes).
        _run(self.run)
        self.assertEqual(folders.state(self.run), "finished")
        self.assertEqual(self.claim(reuse=True), (self.run, "reuse"))
        self.assertFalse(os.path.exists(os.path.join(self.run, "backup")))
        # A fine-tuning phase's resume state makes an unfinished run interrupted too.
        os.remove(os.path.join(self.run, "metrics.json"))
        _write(os.path.join(self.run, "fine_tune", "backup"), "training_metadata.json", "{}")
        self.assertEqual(folders.state(self.run), "interrupted")
        folders.clear_backup(self.run)  # every phase's resume state goes
        self.assertFalse(os.path.exists(os.path.join(self.run, "fine_tune", "backup")))

    def test_phases_are_the_folders_a_run_trained_in(self):
        # A later phase is found by what fit_with_resume leaves (log.csv, backup/),
        # not by a name the run code lists; a cluster worker's folder is no phase.
        _write(os.path.join(self.run, "fine_tune"), "log.csv", "epoch\n")
        _write(os.path.join(self.run, "worker1", "backup"), "training_metadata.json", "{}")
        _write(os.path.join(self.run, "plots"), "history.png", "")
        self.assertEqual(fit.phase_dirs(self.run), [self.run, os.path.join(self.run, "fine_tune")])
        self.assertEqual(folders.state(self.run), "started")  # the worker's state is its own

    def test_empty_and_started_folders_train_in_place(self):
        self.assertEqual(self.claim(), (self.run, "train"))
        _run(self.run, finished=False)
        self.assertEqual(self.claim(settings={"epochs": 5}), (self.run, "train"))
        self.assertEqual(os.listdir(self.run), [])  # nothing of the unstarted run stays
        # Killed while the first epoch's backup was written: half a weights
        # file and no epoch record, nothing to resume.
        _write(os.path.join(self.run, "backup"), "latest.weights.h5", "half an HDF5 file")
        self.assertEqual(folders.state(self.run), "started")
        self.assertEqual(self.claim(settings={"epochs": 5}), (self.run, "train"))

    def test_finished_run_is_refused_or_reused(self):
        _run(self.run)
        with self.assertRaisesRegex(
            folders.RunConflict,
            r"finished run made with other settings " r"\(epochs 20 -> 5\); pass --retrain",
        ):
            self.claim(settings={"epochs": 5})
        with self.assertRaisesRegex(folders.RunConflict, "finished run of these settings"):
            self.claim()
        self.assertEqual(self.claim(reuse=True), (self.run, "reuse"))
        with self.assertRaisesRegex(folders.RunConflict, "other settings"):
            self.claim(settings={"epochs": 5}, reuse=True)

    def test_interrupted_run_resumes_only_with_its_settings(self):
        _run(self.run, finished=False, backup=True)
        self.assertEqual(self.claim(), (self.run, "resume"))
        with self.assertRaisesRegex(
            folders.RunConflict,
            r"interrupted run \(1 epochs done\) made "
            r"with other settings \(lr 0.001 -> 0.05, opt adam -> sgd\)",
        ):
            self.claim(settings={"opt": "sgd", "lr": 0.05})

    def test_retrain_stages_and_promote_replaces_at_the_end(self):
        _run(self.run)
        folder, action = self.claim(settings={"epochs": 5}, retrain=True)
        self.assertEqual((folder, action), (folders.staging_dir(self.run), "train"))
        self.assertEqual(folders.state(self.run), "finished")  # untouched until the new one ends
        _run(folder, finished=False, backup=True, epochs=5)
        # Killed and started again with the same command: it resumes the staging folder.
        self.assertEqual(self.claim(settings={"epochs": 5}, retrain=True), (folder, "resume"))
        _run(folder, epochs=5)
        os.remove(os.path.join(folder, "backup", "training_metadata.json"))
        os.rmdir(os.path.join(folder, "backup"))
        folders.promote(folder, self.run)
        self.assertEqual(folders.read_flags(self.run)["epochs"], 5)
        self.assertEqual(sorted(os.listdir(self.runs)), [".r.lock", "r"])
        folders.promote(self.run, self.run)  # trained in place: nothing to do
        self.assertEqual(folders.state(self.run), "finished")

    def test_a_promote_cut_between_its_renames_is_completed(self):
        _run(self.run)
        staging = folders.staging_dir(self.run)
        _run(staging, epochs=5)
        os.rename(self.run, os.path.join(self.runs, ".r.replaced"))  # killed here
        os.makedirs(self.run)  # and made again, empty, by an older writability probe
        self.assertEqual(self.claim(settings={"epochs": 5}, reuse=True), (self.run, "reuse"))
        self.assertEqual(sorted(os.listdir(self.runs)), [".r.lock", "r"])

    def test_the_lock_names_its_holder_and_dies_with_it(self):
        code = (
            "import sys, time; from resnet_keras.run import folders; folders.lock(sys.argv[1]); "
            "print('locked', flush=True); time.sleep(60)"
        )
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        holder = subprocess.Popen(
            [sys.executable, "-c", code, self.run], cwd=root, stdout=subprocess.PIPE, text=True
        )
        try:
            self.assertEqual(holder.stdout.readline().strip(), "locked")
            with self.assertRaisesRegex(folders.RunConflict, f"is in use by process {holder.pid} "):
                self.claim()
        finally:
            holder.kill()
            holder.wait()
        self.assertEqual(self.claim(), (self.run, "train"))  # the lock went with the process


class NameTest(tf.test.TestCase):
    def test_run_names_stay_inside_runs(self):
        for bad in ("", ".", "..", "../saved_models", "/tmp/x", "a/b", ".hidden", "a\\b"):
            with self.assertRaisesRegex(ValueError, "give a plain folder name"):
                folders.check_name(bad)
        folders.check_name("question1_resnet20_cifar10")


class NoEffectTest(tf.test.TestCase):
    def test_each_config_declares_what_cannot_change_its_result(self):
        self.assertLessEqual(RunConfig.NO_EFFECT, TrainConfig.NO_EFFECT)
        self.assertIn("recompute", TrainConfig.NO_EFFECT)
        self.assertNotIn("recompute", RunConfig.NO_EFFECT)
        self.assertEqual(
            folders.no_effect_of(TrainConfig(), TransferOptions()),
            TrainConfig.NO_EFFECT | {"cache_features"},
        )
        old = {"epochs": 1, "cache_features": False}
        wanted = {"epochs": 1, "cache_features": True}
        self.assertEqual(folders.differences(wanted, old, {}), ["cache_features False -> True"])
        no_effect = folders.no_effect_of(TrainConfig(), TransferOptions())
        self.assertEqual(folders.differences(wanted, old, {}, no_effect), [])


class SettingsTest(tf.test.TestCase):
    def test_default_learning_rate_is_filled_in(self):
        settings = folders.run_settings(TrainConfig(opt="sgd"))
        self.assertEqual(settings["lr"], 0.1)
        self.assertEqual(folders.run_settings(TrainConfig(lr=0.5))["lr"], 0.5)

    def test_settings_and_defaults_cover_the_extra_options(self):
        @dataclasses.dataclass(frozen=True)
        class Extra:
            head_units: int = 256

        config = TrainConfig(opt="adam", epochs=3)
        settings, defaults = folders.settings_and_defaults(config, Extra(head_units=8))
        self.assertEqual((settings["epochs"], settings["lr"], settings["head_units"]), (3, 1e-3, 8))
        self.assertEqual(
            (defaults["epochs"], defaults["lr"], defaults["head_units"]), (20, None, 256)
        )


class RunFolderTest(tf.test.TestCase):
    def test_retrain_replaces_the_finished_run_only_once_it_has_finished(self):
        root = self.create_tempdir().full_path
        _, out, args = finished_run(root, "--seed=3")
        run = os.path.join(out, "runs", "question1_resnet8_cifar10")
        before = tree_hashes(out)
        model = os.path.join("runs", "question1_resnet8_cifar10", "resnet8_cifar10.h5")
        old_model = os.stat(os.path.join(out, model)).st_ino
        staging = os.path.join(out, "runs", ".question1_resnet8_cifar10.retrain")
        # Another seed: with the same one the retrain repeats the first two
        # epochs, and where one of them stays the best on validation it saves a
        # byte-identical model, proving nothing below.
        retrain = [a for a in args if a != "--seed=3"] + ["--seed=4", "--epochs=4", "--retrain"]
        proc = popen_script("scripts.question1", *retrain)
        deadline = time.time() + 300
        while not csv_epochs(os.path.join(staging, "log.csv")) and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Killed while retraining: the finished run and its model are as they were.
        self.assertNotEmpty(os.listdir(staging))
        now = tree_hashes(out)
        self.assertEqual({k: v for k, v in now.items() if ".retrain" not in k}, before)

        r = run_script("scripts.question1", *retrain)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(csv_epochs(os.path.join(run, "log.csv")), [0, 1, 2, 3])
        with open(os.path.join(run, "metrics.json")) as f:
            self.assertEqual(json.load(f)["epochs"], 4)
        self.assertEqual(
            sorted(os.listdir(os.path.join(out, "runs"))),
            [".question1_resnet8_cifar10.lock", "question1_resnet8_cifar10"],
        )
        # A new file in its place, holding the other seed's model.
        self.assertNotEqual(os.stat(os.path.join(out, model)).st_ino, old_model)
        self.assertNotEqual(tree_hashes(out)[model], before[model])

    def test_a_second_process_is_refused_and_a_dead_ones_lock_is_not_in_the_way(self):
        root = self.create_tempdir().full_path
        data = os.path.join(root, "data")
        fixtures.write_cifar10_python(data, per_batch=20, test=20)
        args = [
            f"--data_dir={data}",
            "--n=1",
            "--val_size=20",
            "--batch_size=16",
            f"--output_dir={root}/out",
            "--verbose=0",
            "--run_name=shared",
        ]
        lock = os.path.join(root, "out", "runs", ".shared.lock")
        first = popen_script("scripts.question1", *args, "--epochs=200")
        try:
            deadline = time.time() + 300
            while time.time() < deadline and first.poll() is None:
                if os.path.isfile(lock) and f"process {first.pid}" in open(lock).read():
                    break
                time.sleep(0.2)
            r = run_script("scripts.question1", *args, "--epochs=200")
            self.assertEqual(r.returncode, 2, r.stderr[-3000:])
            self.assertIn(f"runs/shared is in use by process {first.pid} ", r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, r.stderr)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        # The killed process left its lock file; the kernel dropped its lock.
        r = run_script("scripts.question1", *args, "--epochs=1", "--retrain")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])


class MissingFormatsTest(tf.test.TestCase):
    def test_a_reused_run_must_hold_the_formats_asked_for(self):
        root = self.create_tempdir().full_path
        run = os.path.join(root, "runs", "r")
        os.makedirs(run)
        with open(os.path.join(run, "flags.json"), "w") as f:
            json.dump({"formats": ["h5"], "epochs": 1}, f)
        with open(os.path.join(run, "metrics.json"), "w") as f:
            json.dump({"outputs": ["history.json", "r.h5"]}, f)
        self.assertEqual(folders.missing_formats(run, ["h5"]), [])
        self.assertEqual(folders.missing_formats(run, ["h5", "keras"]), ["keras"])
        settings = {"formats": ["keras"], "epochs": 1}
        with self.assertRaisesRegex(folders.RunConflict, "no keras model file; pass --retrain"):
            folders.claim(run, settings, {}, reuse=True)
        self.assertEqual(
            folders.claim(run, {"formats": ["h5"], "epochs": 1}, {}, reuse=True)[1], "reuse"
        )
        # A record from before outputs were listed says nothing: no refusal.
        with open(os.path.join(run, "metrics.json"), "w") as f:
            json.dump({}, f)
        self.assertEqual(folders.missing_formats(run, ["keras"]), [])


if __name__ == "__main__":
    tf.test.main()
