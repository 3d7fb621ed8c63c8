"""Bad input to every script: one line on stderr, exit 2, no traceback, and
the files already there untouched; bad images skipped on request.

Every case runs the real script in a subprocess, as a user would, except
most rows of the bad-input table: those run in this process through the
scripts' own entry (fixtures.run_in_process).
"""

import json
import os
import pickle
import shutil
import unittest

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from resnet_keras.run import saving
from tests import fixtures
from tests.fixtures import finished_run as _finished_run
from tests.fixtures import run_in_process, run_script
from tests.fixtures import tree_hashes as _tree_hashes


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
    for name, change in LABEL_CASES.items():
        folder = os.path.join(root, name)
        fixtures.write_cifar10_python(folder, per_batch=4, test=4)
        batches = os.path.join(folder, "cifar-10-batches-py")
        change(batches)
        cases[name] = folder
    one = os.path.join(root, "one_class")
    fixtures.write_image_folder(one, classes=("cat",))
    cases["one_class"] = one
    huge = os.path.join(root, "huge_png")
    fixtures.write_image_folder(huge)
    write_huge_png(os.path.join(huge, "train", "cat", "huge.png"))
    cases["huge_png"] = huge
    link = os.path.join(root, "dangling_link")
    fixtures.write_image_folder(link)
    os.symlink(os.path.join(root, "gone.png"), os.path.join(link, "train", "dog", "gone.png"))
    cases["dangling_link"] = link
    text_tar = os.path.join(root, "text.tar.gz")
    with open(text_tar, "w") as f:
        f.write("just text\n")
    cases["text_tar"] = text_tar
    return cases


def write_huge_png(path):
    """A PNG one row above image_folders.MAX_PIXELS (4097x4096): 16 MB as
    pixels, a few KB as a file, and never decoded by the checks."""
    from resnet_keras.data import image_folders

    side = int(image_folders.MAX_PIXELS**0.5)
    Image.new("L", (side + 1, side)).save(path)


def _relabel(labels, batch="data_batch_1"):
    """Rewrites one batch's labels (keeping its images), as a damaged file would hold them."""

    def change(folder):
        path = os.path.join(folder, batch)
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        d[b"labels"] = labels(d[b"labels"])
        with open(path, "wb") as f:
            pickle.dump(d, f, protocol=4)

    return change


def _fewer_names(folder):
    with open(os.path.join(folder, "batches.meta"), "wb") as f:
        pickle.dump({b"label_names": [b"cat", b"dog"]}, f, protocol=4)


# CIFAR python-format labels a damaged or foreign file holds (issue 28, 1).
LABEL_CASES = {
    "label_300": _relabel(lambda y: [300] + y[1:]),
    "label_10": _relabel(lambda y: [10] + y[1:]),
    "label_minus_1": _relabel(lambda y: [-1] + y[1:]),
    "labels_short": _relabel(lambda y: y[:-1]),
    "labels_float": _relabel(lambda y: [0.5] + [float(v) for v in y[1:]]),
    "fewer_names": _fewer_names,
}


def _resume_state(out, source, name, epoch, weights):
    """runs/<name>: a copy of the finished run `source` made interrupted,
    with the given resume record and weights bytes (both files and their
    earlier copies): what a user's damaged or forged backup/ holds."""
    run = os.path.join(out, "runs", name)
    shutil.copytree(os.path.join(out, "runs", source), run)
    os.remove(os.path.join(run, "metrics.json"))
    with open(os.path.join(run, "flags.json")) as f:
        flags = json.load(f)
    with open(os.path.join(run, "flags.json"), "w") as f:
        json.dump(flags | {"run_name": name}, f)
    backup = os.path.join(run, "backup")
    os.makedirs(backup)
    for suffix in ("", ".bkp"):
        with open(os.path.join(backup, "training_metadata.json" + suffix), "w") as f:
            json.dump({"epoch": epoch}, f)
        with open(os.path.join(backup, "latest.weights.h5" + suffix), "wb") as f:
            f.write(weights)


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
        run = os.path.join("runs", "question1_resnet8_cifar10")
        self.assertIn(os.path.join(run, "resnet8_cifar10.h5"), before)
        bad = _write_bad_data(root)
        fixtures.write_image_folder(os.path.join(root, "small"))  # 12 training images
        not_h5 = os.path.join(root, "model.h5")
        with open(not_h5, "w") as f:
            f.write("not hdf5")
        unbuilt = os.path.join(root, "unbuilt.keras")
        keras.Sequential([keras.layers.Dense(3)]).save(unbuilt)
        custom = _custom_class_model(os.path.join(root, "custom.keras"))
        q1_run = "question1_resnet8_cifar10"
        noise = np.random.default_rng(0).bytes(4096)
        _resume_state(out, q1_run, "corrupt", 1, noise)
        _resume_state(out, q1_run, "forged", 99, noise)
        # colorize apply: a model, a picture, its output already there.
        colorizer = saving.save_model(
            fixtures.small_colorizer("unet", "lab"), os.path.join(root, "colorizer.h5")
        )
        picture = os.path.join(root, "photo.png")
        Image.fromarray(fixtures.random_images(1, size=16)[0]).save(picture)
        colorized = os.path.join(out, "colorized")
        os.makedirs(colorized)
        Image.new("RGB", (16, 16)).save(os.path.join(colorized, "photo_colorized.png"))
        huge = os.path.join(root, "huge.png")
        write_huge_png(huge)
        before = _tree_hashes(out)
        listed = sorted(os.listdir(os.path.join(out, "runs")))
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
            # A missing data folder is named as such, not as other settings (7).
            (q1, [*finished, f"--data_dir={root}/nope"], "nope: no such file or folder"),
            (q1, [*finished, "--formats="], "--formats is empty"),
            # ... and a study refuses before it reads any data.
            (
                "scripts.resnet_vs_plain",
                ["--depths=8", "--models=resnet", f"--data_dir={root}/small", "--epochs=1"],
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
            # Issue 28: CIFAR labels checked when they are read (1).
            (q1, [f"--data_dir={bad['label_300']}"], "data_batch_1: label 300 is not a class"),
            (q1, [f"--data_dir={bad['label_10']}"], "data_batch_1: label 10 is not a class"),
            (q1, [f"--data_dir={bad['label_minus_1']}"], "data_batch_1: label -1 is not a"),
            (q1, [f"--data_dir={bad['labels_short']}"], "data_batch_1: 3 labels for 4 images"),
            (q1, [f"--data_dir={bad['labels_float']}"], "labels must be whole numbers"),
            (
                q1,
                [f"--data_dir={bad['fewer_names']}"],
                "batches.meta names 2 classes); the files are damaged",
            ),
            # A picture over the pixel limit, in an image folder and to apply (2).
            (q1, [f"--data_dir={bad['huge_png']}"], "huge.png: 4097x4096 pixels, more than"),
            (
                "scripts.colorize",
                ["apply", colorizer, huge, f"--out={colorized}"],
                "huge.png: 4097x4096 pixels, more than the 16.8 megapixels",
            ),
            # Models that cannot be classifiers of this project (3, 10).
            ("scripts.evaluate", [unbuilt], "unbuilt.keras: the model was saved unbuilt"),
            ("scripts.evaluate", [custom], "custom class 'MadeUpLayer', which is no Keras layer"),
            # A link to nothing, without --skip_bad_images (5).
            (q1, [f"--data_dir={bad['dangling_link']}"], "gone.png: not a readable file"),
            # Resume state that is damaged or not the run's own (6, 11).
            (
                q1,
                [*finished, "--run_name=corrupt", "--epochs=2"],
                "corrupt/backup/latest.weights.h5: the resume weights (and their earlier copy) "
                "are no readable HDF5 file; start the run over with --retrain",
            ),
            (
                q1,
                [*finished, "--run_name=forged", "--epochs=2"],
                "training_metadata.json records 99 finished epochs but",
            ),
            # Seeds NumPy and Keras cannot take, named before any folder exists (9).
            (q1, ["--seed=99999999999999999999"], "--seed must be at most 4294967295"),
            (q1, ["--seed=-1"], "--seed must be at least 0; got -1"),
            # Unclear answers made clear (10, 11).
            (q1, [f"--data_dir={bad['one_class']}"], "one class (cat); a classifier needs two"),
            (q1, [f"--data_dir={bad['text_tar']}"], "neither a tar file nor a gzip, bz2 or xz"),
            (
                "scripts.resnet_vs_plain",
                ["--depths=8", "--models=resnet", f"--data_dir={data}", "--epochs=1"],
                "pass --retrain to replace it once the new run has finished, or use another "
                "--output_dir",
            ),
            (q1, ["--run_name=bad\udcff"], "--run_name bad\\xff: not valid UTF-8"),
            # An output picture already there (12).
            (
                "scripts.colorize",
                ["apply", colorizer, picture, f"--out={colorized}"],
                "photo_colorized.png: already exists; pass --overwrite to replace it",
            ),
            # A --base that is no model: refused before any run folder or lock (7).
            ("scripts.question3", [f"--base={not_h5}"], "model.h5: cannot load model"),
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
            # No folder is left behind by a refused or failed run, nor a lock
            # file but beside a run folder there was (a conflict was found under it).
            now = os.listdir(os.path.join(out, "runs"))
            locks = {f".{name}.lock" for name in listed}
            self.assertEqual(sorted(set(now) - locks), sorted(set(listed) - locks), args)


def _custom_class_model(path):
    """A .keras file naming a layer class that no Keras has (a user's own
    layer, saved elsewhere): a Dense layer renamed in the file's config."""
    import zipfile

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(path + ".tmp.keras")
    with zipfile.ZipFile(path + ".tmp.keras") as z:
        parts = {name: z.read(name) for name in z.namelist()}
    config = json.loads(parts["config.json"])
    for layer in config["config"]["layers"]:
        if layer["class_name"] == "Dense":
            layer.update(class_name="MadeUpLayer", module="my_layers", registered_name=None)
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as z:
        for name, content in parts.items():
            z.writestr(name, content)
    os.remove(path + ".tmp.keras")
    return path

    def test_skip_bad_images_reports_and_trains(self):
        root = self.create_tempdir().full_path
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
            target = os.path.join(self.create_tempdir().full_path, "ro")
            os.makedirs(target)
            os.chmod(target, 0o500)
        data = self.create_tempdir().full_path  # exists: the output folder is checked first
        r = run_script("scripts.question1", f"--output_dir={target}", f"--data_dir={data}")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("not writable", r.stderr)


class PlainOutputTest(tf.test.TestCase):
    """Training output sent to a file reads as text (issue 28, 13)."""

    def test_redirected_run_prints_plain_short_lines_in_one_path_form(self):
        root = self.create_tempdir().full_path
        fixtures.write_cifar10_python(os.path.join(root, "data"), per_batch=16, test=16)
        r = run_script(
            "scripts.question1",
            "--data_dir=data",
            "--n=1",
            "--epochs=1",
            "--val_size=16",
            "--batch_size=16",
            "--output_dir=out",
            "--verbose=1",  # the progress bar, where a terminal shows one
            "--formats=h5,savedmodel",
            "--tensorboard",
            cwd=root,
        )
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertNotIn("\x1b", r.stdout)  # no ANSI colour codes
        self.assertNotIn("\b", r.stdout)
        lines = r.stdout.splitlines()
        self.assertLess(max(len(line) for line in lines), 300, r.stdout)
        self.assertIn("config: out/runs/question1_resnet8_cifar10/flags.json", lines)
        wrote = [line[len("wrote ") :] for line in lines if line.startswith("wrote ")]
        self.assertEqual(
            wrote,
            [
                "out/runs/question1_resnet8_cifar10/history.json",
                "out/runs/question1_resnet8_cifar10/history.png",
                "out/runs/question1_resnet8_cifar10/resnet8_cifar10.h5",
                "out/runs/question1_resnet8_cifar10/resnet8_cifar10_savedmodel",
            ],
        )
        self.assertEqual(r.stderr, "")  # no INFO lines from the SavedModel writer
        events = os.path.join(root, "out", "runs", "question1_resnet8_cifar10", "tensorboard")
        tags = {
            value.tag
            for folder, _, names in os.walk(events)
            for name in names
            for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name))
            for value in event.summary.value
        }
        self.assertIn("epoch_time_s", tags)
        self.assertNotIn("epoch_epoch_time_s", tags)


if __name__ == "__main__":
    unittest.main()
