"""Crash-safe training, NaN stops, determinism, distribution, and bad input.

Every case runs the real script in a subprocess, as a user would, except
most rows of the bad-input table: those run in this process through the
scripts' own entry (question1_test.run_in_process).
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import unittest.mock

import tensorflow as tf

from tests import fixtures
from tests.question1_test import ROOT, run_in_process, run_script

HAVE_DATA = os.path.isdir(fixtures.REAL_CIFAR10)


def _free_ports(count):
    import socket

    socks = [socket.socket() for _ in range(count)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _popen(module, *args, env=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, **(env or {}))
    # A shell that starts jobs in the background (CI under nohup) ignores
    # SIGINT, and Python keeps it ignored: give the child the default back,
    # as a terminal would.
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _csv_epochs(path):
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


class CrashSafeTest(tf.test.TestCase):
    def test_sigkill_mid_epoch_then_resume_logs_every_epoch_once(self):
        root = tempfile.mkdtemp()
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
        proc = _popen("scripts.question1", *args)
        deadline = time.time() + 300
        while len(_csv_epochs(log)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(0.5)  # into the next epoch (45 steps of batch 8)
        self.assertIsNone(proc.poll(), "the run finished before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = len(_csv_epochs(log))
        self.assertBetween(done, 2, 5)
        self.assertFalse(os.path.exists(os.path.join(out, "saved_models", "resnet_cifar10.h5")))

        # Another optimizer may not pick up this run's resume state (reliability, 2).
        before = _tree_hashes(out)
        r = run_script("scripts.question1", *args, "--opt=sgd", "--lr=0.05")
        self.assertEqual(r.returncode, 2, r.stderr[-3000:])
        self.assertRegex(
            r.stderr,
            r"holds an interrupted run \(\d epochs done\) made with other "
            r"settings \(lr 0.001 -> 0.05, opt adam -> sgd\); run its own",
        )
        self.assertEqual(_tree_hashes(out), before)

        r = run_script("scripts.question1", *args)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(_csv_epochs(log), [0, 1, 2, 3, 4, 5])
        with open(os.path.join(os.path.dirname(log), "history.json")) as f:
            history = json.load(f)
        self.assertLen(history["loss"], 6)
        with open(os.path.join(os.path.dirname(log), "metrics.json")) as f:
            self.assertEqual(json.load(f)["epochs"], 6)
        self.assertTrue(os.path.isfile(os.path.join(out, "saved_models", "resnet_cifar10.h5")))
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(log), "backup")))

    def test_ctrl_c_says_how_to_resume(self):
        root = tempfile.mkdtemp()
        fixtures.write_cifar10_python(root, per_batch=80, test=40)
        out = os.path.join(root, "out")
        proc = _popen(
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
        while not _csv_epochs(log) and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 130, err[-2000:])
        self.assertIn("run the same command again to resume", err)
        self.assertNotIn("Traceback", err)

    def test_nan_loss_names_epoch_batch_and_learning_rate(self):
        root = tempfile.mkdtemp()
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
        self.assertFalse(os.path.exists(os.path.join(root, "out", "saved_models")))


class RunFolderTest(tf.test.TestCase):
    def test_retrain_replaces_the_finished_run_only_once_it_has_finished(self):
        root = self.create_tempdir().full_path
        _, out, args = _finished_run(root, "--seed=3")
        run = os.path.join(out, "runs", "question1_resnet8_cifar10")
        before = _tree_hashes(out)
        staging = os.path.join(out, "runs", ".question1_resnet8_cifar10.retrain")
        # Another seed: with the same one the retrain can pick the same best
        # epoch and save a byte-identical model, proving nothing below.
        retrain = [a for a in args if a != "--seed=3"] + ["--seed=4", "--epochs=4", "--retrain"]
        proc = _popen("scripts.question1", *retrain)
        deadline = time.time() + 300
        while not _csv_epochs(os.path.join(staging, "log.csv")) and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Killed while retraining: the finished run and its model are as they were.
        self.assertNotEmpty(os.listdir(staging))
        now = _tree_hashes(out)
        self.assertEqual({k: v for k, v in now.items() if ".retrain" not in k}, before)

        r = run_script("scripts.question1", *retrain)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(_csv_epochs(os.path.join(run, "log.csv")), [0, 1, 2, 3])
        with open(os.path.join(run, "metrics.json")) as f:
            self.assertEqual(json.load(f)["epochs"], 4)
        self.assertEqual(
            sorted(os.listdir(os.path.join(out, "runs"))),
            [".question1_resnet8_cifar10.lock", "question1_resnet8_cifar10"],
        )
        model = os.path.join("saved_models", "resnet_cifar10.h5")
        self.assertNotEqual(_tree_hashes(out)[model], before[model])

    def test_a_named_trial_run_leaves_the_default_runs_model_alone(self):
        root = self.create_tempdir().full_path
        _, out, args = _finished_run(root)
        before = _tree_hashes(out)
        r = run_script("scripts.question1", *args, "--epochs=1", "--run_name=trial")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        now = _tree_hashes(out)
        self.assertEqual({k: now[k] for k in before}, before)  # nothing of the first run changed
        self.assertIn(os.path.join("saved_models", "trial.h5"), now)
        self.assertIn(os.path.join("plots", "trial.png"), now)

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
        first = _popen("scripts.question1", *args, "--epochs=200")
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


class DeterminismTest(tf.test.TestCase):
    def test_same_seed_gives_bit_identical_weights(self):
        root = tempfile.mkdtemp()
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
        paths = []
        for k in range(2):
            out = os.path.join(root, f"out{k}")
            r = run_script(
                "scripts.question1",
                f"--data_dir={root}",
                "--n=1",
                "--epochs=2",
                "--val_size=20",
                "--batch_size=16",
                f"--output_dir={out}",
                "--verbose=0",
                "--deterministic",
                "--seed=7",
            )
            self.assertEqual(r.returncode, 0, r.stderr[-3000:])
            paths.append(os.path.join(out, "runs", "question1_resnet8_cifar10", "best.weights.h5"))
        import h5py
        import numpy as np

        def arrays(path):
            found = []
            with h5py.File(path, "r") as f:
                f.visititems(
                    lambda n, o: found.append((n, o[()])) if isinstance(o, h5py.Dataset) else None
                )
            return found

        a, b = arrays(paths[0]), arrays(paths[1])
        self.assertEqual([n for n, _ in a], [n for n, _ in b])
        self.assertNotEmpty(a)
        for (name, x), (_, y) in zip(a, b):
            self.assertTrue(np.array_equal(x, y), name)


MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from resnet_keras import distribute, models, training
    x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")
    y = np.arange(16) % 10
    out = {}
    for name in ("one_device", "mirrored"):
        strategy = distribute.make_strategy(name)
        with strategy.scope():
            keras.utils.set_random_seed(1)
            m = models.build_resnet(1, sync_bn=strategy.num_replicas_in_sync > 1)
            training.compile_classifier(m, training.make_optimizer("sgd", 0.1))
        h = m.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        out[name] = {"replicas": strategy.num_replicas_in_sync, "loss": h.history["loss"][0],
                     "w": m.get_layer("stem_conv").kernel.numpy().ravel()[:50].tolist()}
    json.dump(out, sys.stdout)
""")


class StrategyTest(tf.test.TestCase):
    def test_mirrored_over_two_cpus_matches_one_device(self):
        # GPUs hidden: "mirrored" would otherwise mirror over them, not the two CPUs.
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT, CUDA_VISIBLE_DEVICES="-1")
        r = subprocess.run(
            [sys.executable, "-c", MIRRORED], env=env, capture_output=True, text=True, timeout=600
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertEqual((out["one_device"]["replicas"], out["mirrored"]["replicas"]), (1, 2))
        self.assertAllClose(out["mirrored"]["loss"], out["one_device"]["loss"], rtol=1e-4)
        self.assertAllClose(out["mirrored"]["w"], out["one_device"]["w"], atol=1e-5)

    def test_unknown_strategy_and_missing_tf_config(self):
        for args, message in [
            (["--strategy=horovod"], "Unknown strategy 'horovod'"),
            (["--strategy=multi_worker"], "needs TF_CONFIG"),
        ]:
            env_backup = os.environ.pop("TF_CONFIG", None)
            try:
                r = run_script(
                    "scripts.question1",
                    *args,
                    "--data_dir=/nonexistent",
                    f"--output_dir={tempfile.mkdtemp()}",
                )
            finally:
                if env_backup is not None:
                    os.environ["TF_CONFIG"] = env_backup
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(message, r.stderr)

    def test_multi_worker_two_local_processes_train_and_only_the_chief_writes(self):
        root = tempfile.mkdtemp()
        fixtures.write_cifar10_python(root, per_batch=20, test=20)
        ports = _free_ports(2)
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        outs, procs = [], []
        for index in range(2):
            # Each worker its own output folder, so what a non-chief writes shows.
            outs.append(os.path.join(root, f"out{index}"))
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            procs.append(
                _popen(
                    "scripts.question1",
                    "--strategy=multi_worker",
                    f"--data_dir={root}",
                    "--n=1",
                    "--epochs=2",
                    "--val_size=20",
                    "--batch_size=16",
                    f"--output_dir={outs[index]}",
                    "--verbose=0",
                    "--seed=1",
                    env={"TF_CONFIG": config},
                )
            )
        try:
            results = [p.communicate(timeout=400) for p in procs]
        finally:
            for p in procs:  # a hung collective must not outlive the test
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, (_, err) in zip(procs, results):
            self.assertEqual(p.returncode, 0, err[-3000:])
        chief_model = os.path.join(outs[0], "saved_models", "resnet_cifar10.h5")
        import keras

        model = keras.models.load_model(chief_model)
        self.assertEqual(model.output_shape, (None, 10))
        run = os.path.join(outs[0], "runs", "question1_resnet8_cifar10")
        with open(os.path.join(run, "metrics.json")) as f:
            self.assertEqual(json.load(f)["epochs"], 2)
        with open(os.path.join(run, "flags.json")) as f:
            self.assertEqual(json.load(f)["replicas"], 2)
        # Worker 1 kept only its resume state, in a folder of its own.
        written = sorted(
            os.path.relpath(os.path.join(d, f), outs[1])
            for d, _, files in os.walk(outs[1])
            for f in files
        )
        self.assertTrue(written, "worker 1 should have a run folder")
        for path in written:
            self.assertTrue(
                path.startswith(os.path.join("runs", "question1_resnet8_cifar10", "worker1")), path
            )

    def test_chief_is_worker_0_without_a_chief_task(self):
        from resnet_keras import distribute

        cases = [
            (None, True),
            (
                '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}',
                True,
            ),
            (
                '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}',
                False,
            ),
            (
                '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
                False,
            ),
            (
                '{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
                True,
            ),
        ]
        for config, chief in cases:
            env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
            if config:
                env["TF_CONFIG"] = config
            with unittest.mock.patch.dict(os.environ, env, clear=True):
                self.assertEqual(distribute.is_chief(), chief, config)


def _write_bad_data(root):
    """Each bad data folder of the table, built here."""
    cases = {}
    cases["empty"] = os.path.join(root, "empty")
    os.makedirs(cases["empty"])
    no_test = os.path.join(root, "no_test")
    fixtures.write_image_folder(no_test)
    shutil.rmtree(os.path.join(no_test, "test"))
    cases["no_test"] = no_test
    missing = os.path.join(root, "missing_class")
    fixtures.write_image_folder(missing)
    shutil.rmtree(os.path.join(missing, "test", "cat"))
    cases["missing_class"] = missing
    truncated = os.path.join(root, "truncated")
    fixtures.write_image_folder(truncated)
    src = os.path.join(fixtures.REAL_CIFAR10, "train", "cat")
    jpg = sorted(os.listdir(src))[0] if os.path.isdir(src) else None
    with open(os.path.join(truncated, "train", "cat", "cut.jpg"), "wb") as f:
        if jpg:
            with open(os.path.join(src, jpg), "rb") as g:
                f.write(g.read()[:200])
        else:
            f.write(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    cases["truncated"] = truncated
    text = os.path.join(root, "text_jpg")
    fixtures.write_image_folder(text)
    with open(os.path.join(text, "test", "dog", "notes.jpg"), "w") as f:
        f.write("just text")
    cases["text_jpg"] = text
    pickle_dir = os.path.join(root, "not_pickle")
    fixtures.write_cifar10_python(pickle_dir, per_batch=4, test=4)
    with open(os.path.join(pickle_dir, "cifar-10-batches-py", "test_batch"), "wb") as f:
        f.write(b"\x00\x01 definitely not a pickle")
    cases["not_pickle"] = pickle_dir
    latin1 = os.path.join(root, "latin1_name")
    fixtures.write_image_folder(latin1)
    shutil.copy(
        os.path.join(latin1, "train", "cat", "0000.png"),
        os.path.join(os.fsencode(latin1), b"train", b"cat", b"caf\xe9.png"),
    )
    cases["latin1_name"] = latin1
    return cases


def _tree_hashes(root):
    """{relative path: sha256} of every file under `root`, lock files aside
    (each process that takes a run's lock writes its pid there)."""
    import hashlib

    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith(".lock"):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _finished_run(root, *extra):
    """Trains question1 for 2 epochs on a python-format fixture; returns (data, out, args)."""
    data = os.path.join(root, "data")
    fixtures.write_cifar10_python(data, per_batch=20, test=20)
    out = os.path.join(root, "out")
    args = [
        f"--data_dir={data}",
        "--n=1",
        "--val_size=20",
        "--batch_size=16",
        f"--output_dir={out}",
        "--verbose=0",
        *extra,
    ]
    r = run_script("scripts.question1", *args, "--epochs=2")
    assert r.returncode == 0, r.stderr[-3000:]
    return data, out, args


class BadInputTableTest(tf.test.TestCase):
    """One line on stderr, exit 2, no traceback, and every file under the
    output folder (a finished run and its model among them) byte for byte
    as it was.

    The rows run in this process, through each script's command line and
    scripts/common.py `run`, as a user's run does; those of END_TO_END also
    in a subprocess of their own, so the real exit status and all of stderr
    are checked for each kind of refusal: by absl's parser, by an enum absl
    checks, and by a ValueError from the script beside a finished run."""

    END_TO_END = [
        "unknown flag --epochz (did you mean --epochs?)",
        "Unknown optimizer 'adagrad'; expected one of adam, rmsprop, sgd",
        "holds a finished run made with other settings (epochs 2 -> 1); pass --retrain",
    ]

    def test_table(self):
        root = self.create_tempdir().full_path
        data, out, finished = _finished_run(root)
        # A finished resnet_vs_plain run made with other settings (question1's).
        shutil.copytree(
            os.path.join(out, "runs", "question1_resnet8_cifar10"),
            os.path.join(out, "runs", "resnet-8"),
        )
        before = _tree_hashes(out)
        self.assertIn(os.path.join("saved_models", "resnet_cifar10.h5"), before)
        bad = _write_bad_data(root)
        fixtures.write_image_folder(os.path.join(root, "small"))  # 12 training images
        not_h5 = os.path.join(root, "model.h5")
        with open(not_h5, "w") as f:
            f.write("not hdf5")
        q1 = "scripts.question1"
        cases = [
            (
                q1,
                ["--opt=adagrad"],
                "Unknown optimizer 'adagrad'; expected one of adam, rmsprop, sgd",
            ),
            (q1, ["--n=0"], "--n must be at least 1"),
            (q1, ["--n=-3"], "--n must be at least 1"),
            (q1, ["--dataset=svhn"], "Unknown dataset 'svhn'"),
            ("scripts.resnet_vs_plain", ["--depths=21"], "depth must be 6n+2"),
            (q1, ["--epochs=0"], "--epochs must be at least 1"),
            (q1, ["--batch_size=-8"], "--batch_size must be at least 1"),
            (
                q1,
                [f"--data_dir={root}/small", "--train_limit=100"],
                "--train_limit 100 is larger than the training split (12)",
            ),
            (q1, [f"--data_dir={root}/nope"], "no such file or folder"),
            (q1, [f"--data_dir={bad['empty']}"], "found neither CIFAR python-format files"),
            (q1, [f"--data_dir={bad['no_test']}"], "has train/ but no test/"),
            (q1, [f"--data_dir={bad['missing_class']}"], "class folder(s) cat missing"),
            (q1, [f"--data_dir={bad['truncated']}"], "cut.jpg: unreadable image"),
            (q1, [f"--data_dir={bad['text_jpg']}"], "notes.jpg: unreadable image"),
            (q1, [f"--data_dir={bad['not_pickle']}"], "test_batch"),
            # A file name that is not UTF-8 is named (reliability, 8).
            (
                q1,
                [f"--data_dir={bad['latin1_name']}"],
                "caf\\xe9.png: file name is not valid UTF-8",
            ),
            # A finished run is never replaced by a run with other settings,
            # nor trained again without --retrain (issue: reliability, 1).
            (
                q1,
                [*finished, "--epochs=1"],
                "holds a finished run made with other settings (epochs 2 -> 1); pass --retrain",
            ),
            (q1, [*finished, "--epochs=2"], "holds a finished run of these settings"),
            # ... and a study refuses before it reads any data.
            (
                "scripts.resnet_vs_plain",
                ["--depths=8", "--models=resnet", "--data_dir=/nonexistent", "--epochs=1"],
                "runs/resnet-8 holds a finished run made",
            ),
            # Options checked before data is read or a file written (4, 5).
            (q1, [*finished, "--epochs=3", "--formats=h5,pdf"], "Unknown format 'pdf'"),
            (q1, ["--lr=nan"], "--lr must be a finite number; got nan"),
            (q1, ["--label_smoothing=nan"], "--label_smoothing must be a finite number"),
            (q1, ["--weight_decay=inf"], "--weight_decay must be a finite number; got inf"),
            # A flag a script does not use is refused, not ignored (6).
            (
                q1,
                ["--model=plain"],
                "--model is not used by scripts.question1; it is taken by scripts.colorize, "
                "scripts.benchmark",
            ),
            ("scripts.question2", ["--model=plain"], "--model is not used by scripts.question2"),
            ("scripts.question3", ["--recompute"], "--recompute is not used by scripts.question3"),
            ("scripts.resnet_vs_plain", ["--n=5"], "--n is not used by scripts.resnet_vs_plain"),
            ("scripts.question2", ["--all", "--opt=sgd"], "--all runs the original three"),
            ("scripts.colorize", ["eval", not_h5, "--retrain"], "--retrain is for train"),
            # A run name that would point outside runs/ (a --retrain would replace it).
            (q1, ["--run_name=../saved_models", "--retrain"], "give a plain folder name"),
            # Depths Keras cannot build or load (9).
            (q1, ["--n=1000"], "--n must be at most 40 (ResNet-242)"),
            ("scripts.resnet_vs_plain", ["--depths=6002"], "depth 6002 is deeper than the 242"),
            # Flags absl cannot parse (10).
            (q1, ["--epochz=3"], "unknown flag --epochz (did you mean --epochs?)"),
            (q1, ["--epochs=abc"], "flag --epochs=abc: invalid literal"),
            ("scripts.evaluate", [not_h5], "model.h5: cannot load model"),
        ]
        self.assertContainsSubset(self.END_TO_END, [message for _, _, message in cases])
        # The subprocesses first: a run folder's lock is held for the life of
        # the process that claimed it, and this one lives on.
        end_to_end = [(run_script, case) for case in cases if case[2] in self.END_TO_END]
        for run, (module, args, message) in end_to_end + [(run_in_process, c) for c in cases]:
            if module != "scripts.evaluate":  # it writes nothing, so takes no --output_dir
                args = [*args, f"--output_dir={out}"]
            r = run(module, *args)
            self.assertEqual(
                r.returncode, 2, (run, module, args, r.stdout[-500:], r.stderr[-2000:])
            )
            self.assertIn(message, r.stderr, args)
            self.assertNotIn("Traceback", r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1, (args, r.stderr))
            self.assertEqual(_tree_hashes(out), before, (run, module, args))

    def test_skip_bad_images_reports_and_trains(self):
        root = tempfile.mkdtemp()
        bad = _write_bad_data(root)
        r = run_script(
            "scripts.question1",
            f"--data_dir={bad['truncated']}",
            "--skip_bad_images",
            "--n=1",
            "--epochs=1",
            "--val_size=3",
            "--batch_size=4",
            f"--output_dir={root}/out",
            "--verbose=0",
        )
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertIn("skipped 1 unreadable images (--skip_bad_images)", r.stdout)

    def test_unwritable_output_dir_fails_before_training(self):
        if os.geteuid() == 0:
            target = "/proc/forbidden"  # root can write anywhere else
        else:
            target = os.path.join(tempfile.mkdtemp(), "ro")
            os.makedirs(target)
            os.chmod(target, 0o500)
        r = run_script("scripts.question1", f"--output_dir={target}", "--data_dir=/nonexistent")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("not writable", r.stderr)


if __name__ == "__main__":
    unittest.main()
