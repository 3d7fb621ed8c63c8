"""resnet_keras.run.fit: resume after a kill, the run's log, best weights, NaN and plateau stops."""

import contextlib
import io
import json
import os
import signal
import time
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from resnet_keras import files
from resnet_keras.classification import models
from resnet_keras.classification.config import TrainConfig
from resnet_keras.run import fit, folders, optim
from tests import fixtures
from tests.fixtures import csv_epochs, popen_script, run_script, tree_hashes


class ResumeTest(tf.test.TestCase):
    def test_a_first_backup_cut_off_mid_write_is_discarded_not_loaded(self):
        config = TrainConfig(output_dir=self.create_tempdir().full_path, run_name="r")
        run = config.run_dir
        os.makedirs(os.path.join(run, "backup"))
        with open(os.path.join(run, "backup", "latest.weights.h5"), "w") as f:
            f.write("half an HDF5 file")  # no training_metadata.json: no epoch finished
        model = models.build_resnet(1)
        optim.compile_classifier(model, optim.make_optimizer("sgd", 0.1))
        callbacks = fit.callbacks_for_run(run, 8, has_validation=False)
        self.assertFalse(os.path.exists(os.path.join(run, "backup")))
        x, y = fixtures.random_images(8), np.arange(8)
        model.fit(x, y, batch_size=8, epochs=1, callbacks=callbacks, verbose=0)
        # The resume state outlives the last epoch (a kill before the test
        # resumes there) and goes only when the run is finished.
        self.assertEqual(fit.resume_epoch(run), 1)
        folders.clear_backup(run)
        self.assertFalse(os.path.exists(os.path.join(run, "backup")))


class FilesTest(tf.test.TestCase):
    def test_csv_history_and_atomic_json(self):
        d = self.create_tempdir().full_path
        path = os.path.join(d, "log.csv")
        with open(path, "w") as f:
            f.write("epoch,accuracy,loss\n0,0.5,1.5\n1,0.6,1.2\n")
        self.assertEqual(fit.read_csv_history(path), {"accuracy": [0.5, 0.6], "loss": [1.5, 1.2]})
        # A run without validation: CSVLogger writes NA in every val_ column.
        na = os.path.join(self.create_tempdir().full_path, "log.csv")
        with open(na, "w") as f:
            f.write("epoch,accuracy,val_accuracy\n0,0.5,NA\n1,0.6,NA\n")
        self.assertEqual(fit.read_csv_history(na), {"accuracy": [0.5, 0.6]})
        files.write_json(os.path.join(d, "h.json"), {"a": np.float32(1.5), "b": np.arange(2)})
        self.assertEqual(sorted(os.listdir(d)), ["h.json", "log.csv"])
        with open(os.path.join(d, "h.json")) as f:
            self.assertEqual(json.load(f), {"a": 1.5, "b": [0, 1]})  # NumPy values as JSON


class CrashSafeTest(tf.test.TestCase):
    def test_sigkill_mid_epoch_then_resume_logs_every_epoch_once(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(root, per_batch=80, test=40)
        out = os.path.join(root, "out")
        args = [
            f"--data_dir={root}",
            "--n=1",
            "--epochs=6",
            "--val_size=40",
            "--batch_size=8",
            f"--output_dir={out}",
            "--verbose=0",
            "--seed=3",
        ]
        log = os.path.join(out, "runs", "question1_resnet8_cifar10", "log.csv")
        proc = popen_script("scripts.question1", *args)
        deadline = time.time() + 300
        while len(csv_epochs(log)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(0.5)  # into the next epoch (45 steps of batch 8)
        self.assertIsNone(proc.poll(), "the run finished before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = len(csv_epochs(log))
        self.assertBetween(done, 2, 5)
        model = os.path.join(os.path.dirname(log), "resnet8_cifar10.h5")
        self.assertFalse(os.path.exists(model))

        # Another optimizer may not pick up this run's resume state (reliability, 2).
        before = tree_hashes(out)
        r = run_script("scripts.question1", *args, "--opt=sgd", "--lr=0.05")
        self.assertEqual(r.returncode, 2, r.stderr[-3000:])
        self.assertRegex(
            r.stderr,
            r"holds an interrupted run \(\d epochs done\) made with other "
            r"settings \(lr 0.001 -> 0.05, opt adam -> sgd\); run its own",
        )
        self.assertEqual(tree_hashes(out), before)

        r = run_script("scripts.question1", *args)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(csv_epochs(log), [0, 1, 2, 3, 4, 5])
        with open(os.path.join(os.path.dirname(log), "history.json")) as f:
            history = json.load(f)
        self.assertLen(history["loss"], 6)
        with open(os.path.join(os.path.dirname(log), "metrics.json")) as f:
            self.assertEqual(json.load(f)["epochs"], 6)
        self.assertTrue(os.path.isfile(model))
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(log), "backup")))

    def test_ctrl_c_and_sigterm_say_how_to_resume(self):
        # SIGTERM is what `kill` and a cluster's time limit send.
        for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            root = self.create_tempdir().full_path
            fixtures.write_cifar10_python(root, per_batch=80, test=40)
            out = os.path.join(root, "out")
            proc = popen_script(
                "scripts.question1",
                f"--data_dir={root}",
                "--n=1",
                "--epochs=100000",  # never done before the signal, however slow the test machine
                "--val_size=40",
                "--batch_size=8",
                f"--output_dir={out}",
                "--verbose=0",
            )
            log = os.path.join(out, "runs", "question1_resnet8_cifar10", "log.csv")
            deadline = time.time() + 300
            while not csv_epochs(log) and time.time() < deadline:
                time.sleep(0.2)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, status, err[-2000:])
            self.assertEqual(
                err.strip().splitlines(),
                ["stopped: run the same command again to resume from the last finished epoch"],
            )

    def test_nan_loss_names_epoch_batch_and_learning_rate(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
        r = run_script(
            "scripts.question1",
            f"--data_dir={root}",
            "--n=1",
            "--epochs=2",
            "--opt=sgd",
            "--lr=1e30",
            "--val_size=20",
            "--batch_size=16",
            f"--output_dir={root}/out",
            "--verbose=0",
        )
        self.assertEqual(r.returncode, 2, r.stderr[-2000:])
        self.assertRegex(
            r.stderr, r"loss became NaN at epoch 1, batch \d+ \(learning rate 1e\+30\)"
        )
        # No model, no resume state: the advice (a smaller --lr) is a new run.
        self.assertEqual(os.listdir(os.path.join(root, "out", "runs")), [])


class FitWithResumeTest(tf.test.TestCase):
    def fit(self, run_dir, epochs=3, lr=0.05, val=True, log=print, verbose=0, test=False, **stop):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        optim.compile_classifier(model, optim.make_optimizer("sgd", lr))
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(16, 4)).astype("float32"), np.arange(16) % 3
        data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
        history, seconds = fit.fit_with_resume(
            model,
            data,
            data.take(1) if val else None,
            run_dir,
            epochs,
            16,
            verbose=verbose,
            log=log,
            test_data=data.skip(1) if test else None,
            **stop,
        )
        return model, history, seconds

    def test_the_test_set_is_scored_after_the_epoch_timer_and_before_the_log(self):
        run = self.create_tempdir().full_path
        cbs = fit.callbacks_for_run(run, 16, has_validation=False, test_data=object())
        kinds = [type(c) for c in cbs]
        # EpochTimer ends the epoch's clock before the test pass; CSVLogger
        # writes after it, so the column is in the epoch's row.
        self.assertLess(kinds.index(fit.EpochTimer), kinds.index(fit.TestMonitor))
        self.assertLess(kinds.index(fit.TestMonitor), kinds.index(keras.callbacks.CSVLogger))
        self.assertNotIn(fit.TestMonitor, [type(c) for c in fit.callbacks_for_run(run, 16, False)])

    def test_a_run_without_held_out_images_watches_the_test_set(self):
        run = self.create_tempdir().full_path
        model, history, _ = self.fit(run, val=False, test=True, epochs=2)
        self.assertLen(history["test_accuracy"], 2)
        self.assertNotIn("val_accuracy", history)
        # The last epoch's entry is the final weights' score on those batches.
        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(16, 4)).astype("float32"), np.arange(16) % 3
        scores = model.evaluate(x[8:], y[8:], verbose=0, return_dict=True)
        self.assertAllClose(history["test_accuracy"][-1], scores["accuracy"])
        self.assertAllClose(history["test_loss"][-1], scores["loss"])
        # Resumed by the same command, the column goes on.
        _, history, _ = self.fit(run, val=False, test=True, epochs=3)
        self.assertLen(history["test_accuracy"], 3)
        # A log begun without the column is resumed without it: CSVLogger
        # appends under the file's header, and a new column would shift the rest.
        old = self.create_tempdir().full_path
        self.fit(old, val=False, epochs=1)
        _, history, _ = self.fit(old, val=False, test=True, epochs=2)
        self.assertLen(history["loss"], 2)
        self.assertNotIn("test_accuracy", history)
        self.assertAllEqual(np.isfinite(history["img_per_s"]), [True, True])

    def test_history_read_back_and_the_best_weights_loaded(self):
        run = os.path.join(self.create_tempdir().full_path, "new")  # made if missing
        model, history, seconds = self.fit(run)
        self.assertLen(history["loss"], 3)
        self.assertLen(history["val_accuracy"], 3)
        self.assertAllClose(seconds, sum(history["epoch_time_s"]))
        best = keras.models.clone_model(model)
        best.load_weights(os.path.join(run, "best.weights.h5"))
        for got, want in zip(model.get_weights(), best.get_weights()):
            self.assertAllEqual(got, want)
        # The resume state stays until the run is finished (publish.finish).
        self.assertEqual(fit.resume_epoch(run), 3)

    def test_an_unreadable_best_weights_file_leaves_the_last_weights(self):
        lines = []
        truncated = OSError("Unable to open file (truncated file)")
        with mock.patch.object(keras.Model, "load_weights", side_effect=truncated):
            self.fit(self.create_tempdir().full_path, epochs=1, log=lines.append)
        self.assertLen(lines, 1)
        self.assertRegex(lines[0], r"^warning: .*best.weights.h5 is unreadable \(Unable to open")

    def test_a_plateau_stops_the_run_at_the_same_epoch_when_resumed(self):
        # lr 0: the validation loss never improves after the first epoch.
        stop = dict(lr=0.0, monitor="val_loss", mode="min", patience=2)
        run = self.create_tempdir().full_path
        lines = []
        _, history, _ = self.fit(run, epochs=10, min_epochs=4, log=lines.append, **stop)
        self.assertLen(history["loss"], 4)  # not before min_epochs
        self.assertEqual(
            lines, ["stopped after epoch 4 of 10: val_loss has not improved for 2 epochs "
                    f"(best {history['val_loss'][0]:.6g}, epoch 1)"]
        )  # fmt: skip
        # Cut at 2 epochs, then resumed: one more epoch, as without the cut.
        # (Keras' EarlyStopping counts afresh after a resume and trains 3.)
        cut = self.create_tempdir().full_path
        self.fit(cut, epochs=2, **stop)
        _, history, _ = self.fit(cut, epochs=10, **stop)
        self.assertLen(history["loss"], 3)
        # A run that has stopped trains no further epoch when run again, and
        # its model gets the best weights and optimizer state all the same.
        best = os.path.join(cut, "best.weights.h5")
        before = os.path.getmtime(best)
        model, history, _ = self.fit(cut, epochs=10, **stop)
        self.assertLen(history["loss"], 3)
        self.assertEqual(os.path.getmtime(best), before)
        want = keras.models.clone_model(model)
        want.compile(optimizer=optim.make_optimizer("sgd", 0.0), loss="mse")
        want.optimizer.build(want.trainable_variables)
        want.load_weights(best)
        self.assertEqual(int(model.optimizer.iterations), 2)  # the best epoch's, of batch 8
        self.assertLen(model.optimizer.variables, len(want.optimizer.variables))
        for got, saved in zip(model.optimizer.variables, want.optimizer.variables):
            self.assertAllEqual(got, saved)
        with self.assertRaisesRegex(ValueError, "needs validation data"):
            self.fit(self.create_tempdir().full_path, val=False, patience=2)

    def test_resume_weights_keras_cannot_read_are_named_with_the_way_out(self):
        run = self.create_tempdir().full_path
        self.fit(run, epochs=2)
        import h5py

        for suffix in ("", ".bkp"):  # an HDF5 file, but no weights in it
            h5py.File(os.path.join(run, "backup", "latest.weights.h5" + suffix), "w").close()
        fit.check_resume_state(run)  # readable files: only loading them tells
        with self.assertRaisesRegex(
            ValueError,
            r"backup/latest.weights.h5: the resume weights .* start the run over with --retrain",
        ):
            self.fit(run, epochs=3)

    def test_progress_bar_only_on_a_terminal(self):
        class Terminal(io.StringIO):
            def isatty(self):
                return True

        self.assertEqual(fit.progress_verbosity(1, io.StringIO()), 2)
        self.assertEqual(fit.progress_verbosity(1, Terminal()), 1)
        self.assertEqual(fit.progress_verbosity(0, io.StringIO()), 0)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.fit(self.create_tempdir().full_path, epochs=1, verbose=1)
        self.assertNotIn("\x1b", out.getvalue())  # Keras' bar is drawn with ANSI codes

    def test_plateaued(self):
        for values, mode, patience, min_epochs, want in [
            ([3, 2, 1], "min", 2, 0, False),
            ([1, 2, 3], "min", 2, 0, True),
            ([1, 1, 1], "min", 2, 0, True),  # equal is no improvement
            ([1, 2, 3], "min", 2, 4, False),  # fewer than min_epochs
            ([1, 2, 3], "max", 2, 0, False),
            ([1, float("nan"), 2], "min", 2, 0, True),  # a NaN is never a best
            ([1, 2, 3], "min", 0, 0, False),  # patience 0: never
            ([1, 2], "min", 2, 0, False),  # patience + 1 values at least
            ([1, 2, 3], "min", 2, 3, True),  # as many values as min_epochs: may stop
            ([1, 2, 3, 0.5, 2, 2], "min", 2, 0, True),  # a later best restarts the count
            ([1, 2, 3, 0.5, 2], "min", 2, 0, False),
            ([float("nan")] * 4, "min", 2, 0, False),  # no best at all: run on
        ]:
            self.assertEqual(fit.plateaued(values, mode, patience, min_epochs), want, values)

    def test_a_stopped_run_without_its_best_weights_is_refused_not_tested_untrained(self):
        run = self.create_tempdir().full_path
        stop = dict(lr=0.0, monitor="val_loss", mode="min", patience=1)
        self.fit(run, epochs=10, **stop)
        os.remove(os.path.join(run, "best.weights.h5"))
        with self.assertRaisesRegex(RuntimeError, "stopped training but has no .*--retrain"):
            self.fit(run, epochs=10, **stop)

    def test_nan_loss_stops_with_its_place(self):
        with self.assertRaisesRegex(
            FloatingPointError, r"NaN at epoch \d, batch \d \(learning rate 1e\+38\)"
        ):
            self.fit(self.create_tempdir().full_path, lr=1e38, val=False)


if __name__ == "__main__":
    tf.test.main()
