"""Runs every script of a checkout on a tiny seeded data set and writes a
manifest of what they produced, so that a refactor can show it changed no
output (issue 30: "a seeded run of every script gives byte-identical metrics
and files before and after the move").

    python tools/script_outputs.py --tree /path/to/checkout --out /tmp/so \\
        --manifest before.json
    python tools/script_outputs.py --compare before.json after.json

The tool imports nothing of the project: each script runs as
`python -m scripts.X` with the checkout given by --tree as its working folder
and PYTHONPATH, with this Python (sys.executable). The steps (`steps` below)
train, report, evaluate, export and convert with the smallest settings that
still take each script's real path, each into its own folder under --out; the
stdout of each step is kept as <step>.stdout.txt beside them, since the
metrics a script prints are part of its output.

Data: a 10-class image folder (12 training and 4 test 32x32 PNG images a
class, a flat colour per class under noise from a fixed NumPy seed) written
into a temporary folder; the akamaster ResNet-20 checkpoint for
scripts.convert, where there is one (--checkpoint; the step is skipped and
the manifest says so otherwise). scripts.benchmark is not run: it measures
only time and memory.

Determinism: every training step passes --deterministic (the scripts' own
flag: TensorFlow op determinism) and --seed=0, and the processes run on the
CPU (CUDA_VISIBLE_DEVICES=-1) with the CPU classes fixed
(RESNET_KERAS_CPU_FLAGS, as the tests do), so that the precision policy and
kernels do not depend on the host's flags. PYTHONHASHSEED=0 is a precaution
(string sets iterate in one order), not shown to be needed.

The manifest (JSON, keys sorted) maps each file's path under --out to the
sha256 of its bytes, or of its normalised content where the bytes hold
something that differs from run to run of the same tree. What is treated as
volatile, and why (two runs of the tool on one tree differed in exactly
these, and were equal after):
- The temporary data folder, the --out folder, the --tree folder and the
  checkpoint's folder, wherever they appear in text (JSON, Markdown, CSV,
  stdout: a run's flags, the invocations' argv and cwd, printed paths):
  replaced by <TMP>, <OUT>, <TREE>, <CHECKPOINTS>; another run has others.
- JSON keys VOLATILE_KEYS, at any depth: times and speeds (epoch, training,
  feature, process and wall times, img_per_s, started / finished / published
  dates, a .keras file's date_saved); and the checkout's commit and dirty
  state, which a refactor's tree necessarily changes. The sha256 that
  published.json records of a .keras, JSON, Markdown or CSV file goes too:
  those bytes hold the dates and times removed here.
- CSV logs: the columns VOLATILE_COLUMNS (epoch_time_s, img_per_s).
- Markdown and stdout: table cells under a header naming a time or a speed
  (VOLATILE_HEADER), and in the text durations ("2 s", "0.1 min"), dates and
  "commit <hash>" (VOLATILE_TEXT).
- .keras files (zips): hashed by their members' contents, normalised as
  here, not by the zip's bytes, which hold member dates.
- A SavedModel folder: one entry, hashed by its variables as a multiset, its
  signatures' input specs and each signature's outputs on the test images
  (`savedmodel_digest`): Keras writes its variables in an order that changes
  from run to run.
- A .keras config's shared_object_id values, Python id()s (memory
  addresses): renumbered 0, 1, 2... in order of appearance.
Every other file (.h5 models and weights, PNG figures, .npz predictions,
.tflite, converted weights) is hashed by its bytes: they were identical run
to run.
"""

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

# CIFAR-10's class names, as the folder's classes (resnet_keras.data has them,
# but the tool imports nothing of the tree it checks: a move must not move them).
CLASSES = "airplane automobile bird cat deer dog frog horse ship truck".split()
TRAIN_PER_CLASS, TEST_PER_CLASS, SIZE = 12, 4, 32

# JSON keys removed at any depth (the module docstring says why).
VOLATILE_KEYS = {
    # Times and speeds (seen to differ between two runs of one tree).
    "epoch_time_s",
    "feature_time_s",
    "finished_utc",
    "img_per_s",
    "process_time_s",
    "published_utc",
    "started_utc",
    "train_time_min",
    "train_time_s",
    "wall_time_min",
    "wall_time_s",
    "date_saved",  # a .keras file's metadata.json
    # The checkout's commit and state: the tree after a refactor is another commit.
    "commit",
    "commits",
    "git_commit",
    "git_dirty",
    "git_changed_files",
    "published_by_commit",
}
# Times and speeds inside text (Markdown tables, logs, stdout).
VOLATILE_TEXT = [
    (re.compile(r"\d+(\.\d+)? ?(min|s|ms|img/s)\b"), "<TIME>"),
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?"), "<DATE>"),
    (re.compile(r"commit [0-9a-f]{7,40}(\+dirty| \(dirty\))?"), "commit <COMMIT>"),
]
# CSV columns (log.csv) and Markdown table columns (by their header) of times and speeds.
VOLATILE_COLUMNS = {"epoch_time_s", "img_per_s"}
VOLATILE_HEADER = re.compile(r"time|images/s|img/s|\((s|min)\)", re.IGNORECASE)
TEXT_EXTENSIONS = (".md", ".txt", ".csv", ".json", ".log")
NORMALISED = (".keras", *TEXT_EXTENSIONS)  # files `digest` does not hash by their bytes


def write_images(root, seed=0):
    """train/<class>/NNNN.png and test/<class>/NNNN.png: each class a flat
    colour under Gaussian noise, so a classifier and a colorizer learn something.

    Returns the test images, (N, 32, 32, 3) uint8.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 226, (len(CLASSES), 3))
    test = []
    for split, k in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for c, colour in zip(CLASSES, colours):
            folder = os.path.join(root, split, c)
            os.makedirs(folder)
            noise = rng.normal(0, 20, (k, SIZE, SIZE, 3))
            images = np.clip(np.round(colour + noise), 0, 255).astype(np.uint8)
            for i, im in enumerate(images):
                Image.fromarray(im).save(os.path.join(folder, f"{i:04d}.png"))
            if split == "test":
                test.append(images)
    return np.concatenate(test)


def steps(data, out, checkpoint):
    """(name, script, args[, (runs to copy, where)]) in order; a step may use files an
    earlier one wrote. A --report_only step draws in its own --output_dir from
    a copy of the training step's runs/, so the manifest holds both reports."""
    d = lambda name: os.path.join(out, name)  # noqa: E731
    # resnet_vs_plain takes --seeds, the others --seed.
    unseeded = [f"--data_dir={data}", "--deterministic", "--verbose=0"]
    tiny = ["--val_size=20", "--batch_size=32", "--epochs=1"]
    common = [*unseeded, "--seed=0"]
    small = [*common, *tiny]
    q1_model = os.path.join(d("question1"), "saved_models", "resnet8_cifar10.h5")
    colorizer = os.path.join(d("colorize"), "runs", "colorizer_unet_lab", "colorizer_unet_lab.h5")
    apply_inputs = [os.path.join(data, "test", c, "0000.png") for c in CLASSES[:3]]
    out_steps = [
        (
            "question1",
            "scripts.question1",
            [*small, "--n=1", "--formats=h5,keras", "--publish", f"--output_dir={d('question1')}"],
        ),
        (
            "question2",
            "scripts.question2",
            [*small, "--n=1", "--opt=adam", f"--output_dir={d('question2')}"],
        ),
        (
            "question2_all",
            "scripts.question2",
            [*small, "--all", "--publish", f"--output_dir={d('question2_all')}"],
        ),
        (
            "question2_report",
            "scripts.question2",
            [
                f"--data_dir={data}",
                "--all",
                "--report_only",
                f"--output_dir={d('question2_report')}",
            ],
            (os.path.join(d("question2_all"), "runs"), os.path.join(d("question2_report"), "runs")),
        ),
        (
            "question3",
            "scripts.question3",
            [
                *small,
                f"--base={q1_model}",
                "--fine_tune_epochs=1",
                "--publish",
                f"--output_dir={d('question3')}",
            ],
        ),
        (
            "resnet_vs_plain",
            "scripts.resnet_vs_plain",
            [
                *unseeded,
                *tiny,
                "--seeds=0",
                "--depths=8",
                "--models=resnet,plain",
                "--publish",
                f"--output_dir={d('resnet_vs_plain')}",
            ],
        ),
        (
            "resnet_vs_plain_report",
            "scripts.resnet_vs_plain",
            [
                f"--data_dir={data}",
                "--depths=8",
                "--models=resnet,plain",
                "--report_only",
                f"--output_dir={d('resnet_vs_plain_report')}",
            ],
            (
                os.path.join(d("resnet_vs_plain"), "runs"),
                os.path.join(d("resnet_vs_plain_report"), "runs"),
            ),
        ),
        (
            "colorize_train",
            "scripts.colorize",
            [
                "train",
                *small,
                "--model=unet",
                "--color_space=lab",
                "--formats=h5,keras",
                "--publish",
                f"--output_dir={d('colorize')}",
            ],
        ),
        (
            "colorize_eval",
            "scripts.colorize",
            ["eval", colorizer, *common, "--val_size=20", f"--output_dir={d('colorize')}"],
        ),
        (
            "colorize_apply",
            "scripts.colorize",
            ["apply", colorizer, *apply_inputs, f"--out={d('colorize_apply')}"],
        ),
        (
            "colorize_probe",
            "scripts.colorize",
            [
                "probe",
                colorizer,
                *common,
                "--val_size=20",
                "--epochs=1",
                f"--output_dir={d('colorize')}",
            ],
        ),
        (
            "evaluate",
            "scripts.evaluate",
            [
                q1_model,
                f"--data_dir={data}",
                "--tta",
                f"--predictions_out={os.path.join(d('evaluate'), 'predictions.npz')}",
            ],
        ),
        (
            "export_savedmodel",
            "scripts.export",
            [q1_model, "--to=savedmodel", f"--out={os.path.join(d('export'), 'savedmodel')}"],
        ),
        (
            "export_tflite",
            "scripts.export",
            [q1_model, "--to=tflite", f"--out={os.path.join(d('export'), 'model.tflite')}"],
        ),
    ]
    if checkpoint:
        out_steps.append(
            ("convert", "scripts.convert", [checkpoint, f"--output_dir={d('convert')}"])
        )
    return out_steps


def run_steps(tree, out, checkpoint):
    """Runs every step; returns {step: seconds} and writes <step>.stdout.txt under `out`."""
    tree, out = os.path.abspath(tree), os.path.abspath(out)
    tmp = tempfile.mkdtemp(prefix="script_outputs-")
    try:
        data = os.path.join(tmp, "cifar10")
        np.save(os.path.join(tmp, "test_images.npy"), write_images(data))
        env = {
            **os.environ,
            "PYTHONPATH": tree,
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "-1",
            "RESNET_KERAS_CACHE": os.path.join(tmp, "cache"),
            "RESNET_KERAS_CPU_FLAGS": CPU_FLAGS,
            "PYTHONHASHSEED": "0",
        }
        times = {}
        for name, module, args, *copy in steps(data, out, checkpoint):
            for source, target in copy:
                shutil.copytree(source, target)
            start = time.time()
            r = subprocess.run(
                [sys.executable, "-m", module, *args],
                cwd=tree,
                env=env,
                capture_output=True,
                text=True,
            )
            times[name] = round(time.time() - start, 1)
            print(f"{name}: exit {r.returncode}, {times[name]} s", flush=True)
            if r.returncode != 0:
                sys.exit(f"error: {name} failed ({module} {' '.join(args)}):\n{r.stderr[-3000:]}")
            with open(os.path.join(out, f"{name}.stdout.txt"), "w") as f:
                f.write(r.stdout)
        return times, tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# The AVX-512 + BF16 classes of tests/fixtures.py BF16_FLAGS: the same kernels
# and precision policy whatever the host (a refactor is compared on one host).
CPU_FLAGS = (
    "fpu sse sse2 ssse3 sse4_1 sse4_2 popcnt avx f16c fma bmi1 bmi2 avx2 "
    "avx512f avx512bw avx512vl avx512_vnni avx512_bf16"
)


def normalise_text(text, roots):
    for root, name in roots:
        text = text.replace(root, name)
    text = "\n".join(drop_table_columns(text.split("\n")))
    for pattern, repl in VOLATILE_TEXT:
        text = pattern.sub(repl, text)
    return text


def drop_table_columns(lines):
    """Markdown tables: the cells under a header of a time or a speed become <TIME>."""
    out, volatile, in_table = [], set(), False
    for line in lines:
        if not line.startswith("|"):
            in_table = False
            out.append(line)
            continue
        cells = line.split("|")
        if not in_table:  # the header row
            in_table = True
            volatile = {i for i, c in enumerate(cells) if VOLATILE_HEADER.search(c)}
        elif not set(line) <= set("|-: "):
            cells = ["<TIME>" if i in volatile else c for i, c in enumerate(cells)]
        out.append("|".join(cells))
    return out


def strip_keys(obj, parent=""):
    """`obj` without VOLATILE_KEYS; the sha256 that published.json records of
    a file this tool normalises (a .keras zip, a table) goes too: those bytes
    hold dates or times, and the file's own entry in the manifest covers it."""
    if isinstance(obj, dict):
        return {
            k: strip_keys(v, k)
            for k, v in obj.items()
            if k not in VOLATILE_KEYS and not (k == "sha256" and parent.endswith(NORMALISED))
        }
    if isinstance(obj, list):
        return [strip_keys(v, parent) for v in obj]
    return obj


def renumber_shared_objects(obj, ids):
    """A .keras config's shared_object_id values (Python id()s, memory
    addresses) as 0, 1, 2... in order of appearance, so sharing still shows."""
    if isinstance(obj, dict):
        return {
            k: (
                ids.setdefault(v, len(ids))
                if k == "shared_object_id"
                else renumber_shared_objects(v, ids)
            )
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [renumber_shared_objects(v, ids) for v in obj]
    return obj


def replace_roots(obj, roots):
    if isinstance(obj, dict):
        return {replace_roots(k, roots): replace_roots(v, roots) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_roots(v, roots) for v in obj]
    if isinstance(obj, str):
        for root, name in roots:
            obj = obj.replace(root, name)
    return obj


def digest(path, data, roots):
    """sha256 of a file's bytes, or of its normalised content (module docstring)."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".keras":
        h = hashlib.sha256()
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for name in sorted(z.namelist()):
                h.update(name.encode() + digest(name, z.read(name), roots).encode())
        return "zip:" + h.hexdigest()
    if ext == ".json":
        try:
            obj = json.loads(data)
        except ValueError:
            pass
        else:
            obj = replace_roots(renumber_shared_objects(strip_keys(obj), {}), roots)
            text = normalise_text(json.dumps(obj, sort_keys=True), [])
            return "json:" + hashlib.sha256(text.encode()).hexdigest()
    if ext == ".csv":
        rows = list(csv.reader(io.StringIO(data.decode())))
        if rows:
            keep = [i for i, c in enumerate(rows[0]) if c not in VOLATILE_COLUMNS]
            rows = [[r[i] for i in keep if i < len(r)] for r in rows]
        text = normalise_text(json.dumps(rows), roots)
        return "csv:" + hashlib.sha256(text.encode()).hexdigest()
    if ext in TEXT_EXTENSIONS:
        text = normalise_text(data.decode(errors="replace"), roots)
        return "text:" + hashlib.sha256(text.encode()).hexdigest()
    return hashlib.sha256(data).hexdigest()


# Run in a fresh Python (the tool itself imports no TensorFlow): a SavedModel's
# variables as a multiset (name order aside), its signatures' specs, and what
# each signature returns for the images given.
SAVEDMODEL_DIGEST = """
import hashlib, json, sys
import numpy as np, tensorflow as tf
path, images = sys.argv[1], np.load(sys.argv[2])
reader = tf.train.load_checkpoint(path + "/variables/variables")
h = hashlib.sha256()
for t in sorted(
    (str(t.dtype), t.shape, t.tobytes())
    for t in map(reader.get_tensor, reader.get_variable_to_shape_map())
    if isinstance(t, np.ndarray) and t.dtype != object
):
    h.update(repr(t[:2]).encode() + t[2])
loaded = tf.saved_model.load(path)
for name in sorted(loaded.signatures):
    fn = loaded.signatures[name]
    (spec,) = fn.structured_input_signature[1].values()
    h.update(name.encode() + repr(fn.structured_input_signature).encode())
    out = fn(tf.constant(images.astype(spec.dtype.as_numpy_dtype)))
    for k in sorted(out):
        a = out[k].numpy()  # class names are strings: an object array
        h.update(k.encode() + (repr(a.tolist()).encode() if a.dtype == object else a.tobytes()))
print(h.hexdigest())
"""


def savedmodel_digest(path, images):
    """The SavedModel folder's digest (SAVEDMODEL_DIGEST): its bytes are not
    reproducible, as Keras' ExportArchive lists the variables in the order
    TensorFlow's FuncGraph watched them, an identity set (memory addresses)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
    r = subprocess.run(
        [sys.executable, "-c", SAVEDMODEL_DIGEST, path, images],
        capture_output=True,
        text=True,
        env=env,
    )
    if r.returncode != 0:
        sys.exit(f"error: could not read the SavedModel {path}:\n{r.stderr[-3000:]}")
    return "savedmodel:" + r.stdout.split()[-1]


def manifest(out, roots, images):
    files = {}
    for folder, subfolders, names in os.walk(out):
        if "saved_model.pb" in names:
            files[os.path.relpath(folder, out) + "/"] = savedmodel_digest(folder, images)
            subfolders[:] = []
            continue
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".lock"):  # a run's lock holds the pid that took it
                continue
            with open(path, "rb") as f:
                files[os.path.relpath(path, out)] = digest(path, f.read(), roots)
    return dict(sorted(files.items()))


def compare(a_path, b_path):
    with open(a_path) as f:
        a = json.load(f)["files"]
    with open(b_path) as f:
        b = json.load(f)["files"]
    differ = sorted(k for k in a.keys() & b.keys() if a[k] != b[k])
    missing = sorted(a.keys() - b.keys())
    new = sorted(b.keys() - a.keys())
    for label, names in (("differs", differ), ("missing", missing), ("new", new)):
        for name in names:
            print(f"{label}: {name}")
    same = len(a.keys() & b.keys()) - len(differ)
    print(f"{same} files identical, {len(differ)} differ, {len(missing)} missing, {len(new)} new")
    return 1 if differ or missing or new else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", help="The checkout whose scripts run.")
    parser.add_argument("--out", help="A new or empty folder for the scripts' outputs.")
    parser.add_argument("--manifest", help="The manifest to write (JSON).")
    parser.add_argument(
        "--checkpoint",
        default=os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            "..",
            "shared",
            "reference",
            "akamaster",
            "resnet20-12fca82f.th",
        ),
        help="The akamaster ResNet-20 checkpoint scripts.convert converts "
        "(default: the reference copy beside the checkout; skipped if absent).",
    )
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="Compare two manifests.")
    args = parser.parse_args()
    if args.compare:
        sys.exit(compare(*args.compare))
    if not (args.tree and args.out and args.manifest):
        parser.error("give --tree, --out and --manifest (or --compare A B)")
    if not os.path.isdir(os.path.join(args.tree, "scripts")):
        parser.error(f"--tree {args.tree}: no scripts/ folder there")
    if os.path.exists(args.out) and os.listdir(args.out):
        parser.error(f"--out {args.out}: not empty; give a new folder")
    os.makedirs(args.out, exist_ok=True)
    checkpoint = os.path.abspath(args.checkpoint) if os.path.isfile(args.checkpoint) else None
    times, tmp = run_steps(args.tree, args.out, checkpoint)
    try:
        roots = [
            (os.path.realpath(tmp), "<TMP>"),
            (tmp, "<TMP>"),
            (os.path.abspath(args.out), "<OUT>"),
            (os.path.abspath(args.tree), "<TREE>"),
        ]
        if checkpoint:
            roots.append((os.path.dirname(checkpoint), "<CHECKPOINTS>"))
        files = manifest(args.out, roots, os.path.join(tmp, "test_images.npy"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    record = {
        "files": files,
        "skipped": {
            "benchmark": "measures only time and memory",
            **({} if checkpoint else {"convert": f"no checkpoint at {args.checkpoint}"}),
        },
        "seconds": times,
    }
    with open(args.manifest, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"{len(files)} files in {args.manifest}, {sum(times.values()):.0f} s of scripts")


if __name__ == "__main__":
    main()
