"""What a run record says about where a number came from.

Every run's flags.json keeps, beside its settings, one `invocation` per
process that trained it (the first start and every resume): the command line
as typed, the folder it was run from, the git commit of the code and whether
the work tree had uncommitted changes, the Python, TensorFlow, Keras and
NumPy versions, the CPU and the flags that decide its kernels, and when it
started (UTC). Its metrics.json adds `wall_time_s`, from the first start to
the end of the test, which includes any time the run lay stopped between
sessions; `train_time_s` stays the sum of the epoch times.

Nothing here imports TensorFlow at module level: the record is also written
by the PyTorch yardstick (benchmarks/torch_recipe.py), which must not load it.
"""

import datetime
import os
import platform
import subprocess
import sys

from resnet_keras import cpu

# Environment variables that change which kernels run (docs/performance.md).
KERNEL_VARS = (
    cpu.ONEDNN_VAR,
    "ONEDNN_MAX_CPU_ISA",
    "ATEN_CPU_CAPABILITY",
    cpu.FLAGS_VAR,
    "TF_XLA_FLAGS",
    "OMP_NUM_THREADS",
)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def now_utc():
    """The time as an ISO 8601 UTC string to the second."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )


def command_line():
    """The command as typed: `python -m scripts.question1 --epochs 2` keeps its
    `-m scripts.question1` (sys.argv would hold the module's file path)."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if argv and os.path.basename(argv[0]).startswith("python"):
        argv[0] = "python"
    return argv


def git_changes(root=_ROOT):
    """(commit, changed) of the checkout the code runs from: the tracked files
    that differ from the commit ([] for a clean tree), so a record tells code
    changes from, say, a table an earlier command published; (None, None)
    where it is no git checkout (an installed wheel) or git is missing."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=20, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        # Tracked files only: runs/ and caches are ignored, new files are not code that ran.
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit, [line[3:] for line in status.splitlines() if line.strip()]


def git_state(root=_ROOT):
    """(commit, dirty) of the checkout the code runs from (`git_changes`)."""
    commit, changed = git_changes(root)
    return commit, None if changed is None else bool(changed)


def versions():
    """The versions of what computed the numbers (only those already imported
    or importable without side effects: TensorFlow is read if loaded)."""
    out = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "numpy", "torch"):
        module = sys.modules.get(name)
        if module is not None:
            out[name] = getattr(module, "__version__", None)
    return out


def invocation():
    """One process's record: what ran, from where, with which code, on what."""
    commit, changed = git_changes()
    flags = cpu.cpu_flags()
    return {
        "argv": command_line(),
        "cwd": os.getcwd(),
        "git_commit": commit,
        "git_dirty": None if changed is None else bool(changed),
        "git_changed_files": changed,
        "versions": versions(),
        "cpu": cpu.cpu_model(),
        "cpu_flags": cpu.reported_flags(flags),
        "cpu_flags_source": cpu.flags_source(),
        "cores": os.cpu_count(),
        "onednn": cpu.onednn_state(),
        "kernel_env": {k: os.environ[k] for k in KERNEL_VARS if k in os.environ},
        "started_utc": now_utc(),
    }


def add_invocation(previous):
    """The `invocations` list of a run's flags.json with this process's record
    appended to those of the processes before it (`previous`: the old
    flags.json, {} for a new run)."""
    earlier = previous.get("invocations") if isinstance(previous, dict) else None
    return [*(earlier if isinstance(earlier, list) else []), invocation()]


def timing(flags, finished=None):
    """{"started_utc", "finished_utc", "wall_time_s"} of a run whose flags.json
    is `flags`: from its first invocation's start to `finished` (now)."""
    finished = finished or now_utc()
    invocations = flags.get("invocations") or []
    out = {"finished_utc": finished}
    if invocations and invocations[0].get("started_utc"):
        start = invocations[0]["started_utc"]
        out["started_utc"] = start
        out["wall_time_s"] = (parse_utc(finished) - parse_utc(start)).total_seconds()
    return out
