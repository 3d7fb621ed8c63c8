"""Run folders: one process at a time, and a finished run is never lost or mixed.

`runs/<name>/` holds one run: flags.json (its settings), log.csv, best and
resume weights (`backup/`) while it trains, then every output it makes (the
model files, history.json, figures; `publish.finish`) and last metrics.json,
its completion marker. Before any data is read, `claim` decides what a new
command may do with the folder:

    empty, or no epoch finished yet           -> train in it (what is there goes)
    interrupted (backup/), same settings       -> resume in it
    interrupted, other settings                -> refused
    finished, same settings                    -> reused (nothing is trained)
    finished, other settings                   -> refused
    --retrain                                  -> train in runs/.<name>.retrain/,
                                                  which replaces runs/<name> only
                                                  once it has finished (`promote`)

Refusals are `RunConflict` errors: one line naming the folder and the ways
forward. Each claimed folder is locked (`fcntl.flock` on runs/.<name>.lock)
for the life of the process; the kernel drops the lock when the process
ends, however it ends, so a killed run never blocks the next one.

Study scripts reuse a finished run made with the same settings instead of
training it again (`claim_runs`; the settings are `run_settings`), say so
(`reused_line`) and read its files back with `load_run`.
"""

import dataclasses
import json
import math
import os
import shutil
import sys

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; runs are then not guarded
    fcntl = None

import numpy as np

from resnet_keras import files
from resnet_keras.run import distribute, fit
from resnet_keras.run.config import RunConfig

# Settings that name a folder: the same folder spelt another way (relative or
# absolute, through a symlink) is the same setting. A relative path in a
# flags.json is read from the current folder, where the run's command is run.
PATHS = {"data_dir"}

# The ways to another run folder that a refusal names; a script that names
# its runs itself (resnet_vs_plain) offers only the second.
OTHER_FOLDER = "use another --run_name or --output_dir"

_held = {}  # lock path -> open file, flock'ed until the process ends


class RunConflict(ValueError):
    """A command that would lose or mix a run; the message says what to do instead."""


def _sibling(run_dir, suffix):
    parent, name = os.path.split(os.path.normpath(run_dir))
    # A folder in the working directory ("published" under --output_dir .)
    # has parent "": "." keeps the lock's own folder a real path.
    return os.path.join(parent or ".", f".{name}.{suffix}")


def staging_dir(run_dir):
    """Where a --retrain run trains until it replaces `run_dir`."""
    return _sibling(run_dir, "retrain")


def check_name(name):
    """Refuses a --run_name that is not one plain folder name under runs/
    (empty, a path, or hidden), which could name a folder outside it, or
    that is not valid UTF-8 (flags.json and the logs could not hold it)."""
    try:
        name.encode("utf-8")  # undecodable bytes of argv arrive as lone surrogates
    except UnicodeEncodeError:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        raise ValueError(f"--run_name {shown}: not valid UTF-8; give a plain folder name") from None
    if not name or name != os.path.basename(name) or name.startswith(".") or "\\" in name:
        raise ValueError(f"--run_name {name!r}: give a plain folder name (no path, not hidden)")


def lock(run_dir, inside=False):
    """Takes the run folder's lock for the rest of the process (re-entrant).

    `inside`: keep the lock file in the folder rather than beside it (a
    worker's folder inside the chief's run, which the worker may not touch).

    Raises:
        RunConflict: another live process holds it; the message names it.
    """
    path = os.path.join(run_dir, ".lock") if inside else _sibling(run_dir, "lock")
    if fcntl is None or path in _held:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunConflict(
            f"{run_dir} is in use by {holder}; wait for it to end, or {OTHER_FOLDER}"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"process {os.getpid()} ({os.path.basename(sys.argv[0]) or 'python'})\n")
    f.flush()
    _held[path] = f


def has_backup(run_dir):
    """Whether an interrupted run left resume state (a fine-tuning phase's too):
    BackupAndRestore's record of a finished epoch. A backup folder without it
    was cut off in the first epoch's save and holds nothing to resume."""
    return any(
        os.path.isfile(os.path.join(phase, "backup", "training_metadata.json"))
        for phase in fit.phase_dirs(run_dir)
    )


def state(run_dir):
    """ "empty", "started" (no epoch finished), "interrupted" or "finished".

    metrics.json is written after every other output (`publish.finish`), so
    its presence alone says finished, even if the run was killed before its
    resume state was removed."""
    if not os.path.isdir(run_dir) or not os.listdir(run_dir):
        return "empty"
    if os.path.isfile(os.path.join(run_dir, "metrics.json")):
        return "finished"
    if has_backup(run_dir):
        return "interrupted"
    return "started"


def clear_backup(run_dir):
    """Removes the resume state of every phase of a run."""
    for phase in fit.phase_dirs(run_dir):
        shutil.rmtree(os.path.join(phase, "backup"), ignore_errors=True)


def _empty(run_dir):
    """Empties a folder that holds no finished epoch (a run killed in its
    first epoch, or one that failed before it): nothing there is worth keeping."""
    for name in os.listdir(run_dir) if os.path.isdir(run_dir) else ():
        path = os.path.join(run_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def discard_if_unstarted(run_dir, config_run_dir):
    """After a run failed: removes its folder (and lock file) if it holds no
    finished epoch, so a failure before any training leaves nothing behind."""
    if state(run_dir) not in ("empty", "started"):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    lock_path = _sibling(config_run_dir, "lock")
    held = _held.pop(lock_path, None)
    if held is not None:
        os.remove(lock_path)
        held.close()


def read_flags(run_dir):
    """The run's recorded settings ({} if unreadable)."""
    try:
        with open(os.path.join(run_dir, "flags.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _plain(value):
    """Tuples and lists compare equal, as JSON keeps both as lists."""
    return json.loads(json.dumps(value))


def differences(wanted, recorded, defaults, no_effect=RunConfig.NO_EFFECT):
    """["epochs 2 -> 1", ...]: the settings in `wanted` that `recorded` (a
    flags.json) holds otherwise, but for those in `no_effect` (the configs'
    NO_EFFECT, `no_effect_of`). A setting the file lacks was added after the
    run was made, which then ran with what is now its default."""
    out = []
    for name in sorted(wanted):
        if name in no_effect:
            continue
        old, new = _plain(recorded.get(name, defaults.get(name))), _plain(wanted[name])
        if name in PATHS and old and new and os.path.realpath(old) == os.path.realpath(new):
            continue
        if old != new and not (_is_nan(old) and _is_nan(new)):
            out.append(f"{name} {old} -> {new}")
    return out


def _is_nan(v):
    return isinstance(v, float) and math.isnan(v)


def _clear(folder):
    if os.path.isdir(folder):
        shutil.rmtree(folder)


def _recover(run_dir):
    """Finishes a `promote` cut off between its two renames; True if the
    --retrain run it put in place is the one now in `run_dir`."""
    old, staging = _sibling(run_dir, "replaced"), staging_dir(run_dir)
    promoted = False
    if os.path.isdir(old) and os.path.isdir(run_dir) and not os.listdir(run_dir):
        os.rmdir(run_dir)  # made again since, empty (an older version's writability probe)
    if os.path.isdir(old) and not os.path.exists(run_dir):
        promoted = state(staging) == "finished"
        os.rename(staging if promoted else old, run_dir)
    if os.path.isdir(old):
        shutil.rmtree(old)
    return promoted


# What a model file of each --formats value ends with (saving.model_path).
FORMAT_SUFFIX = {"h5": ".h5", "keras": ".keras", "savedmodel": "_savedmodel"}


def missing_formats(run_dir, formats):
    """The formats in `formats` of which the finished run in `run_dir` wrote no
    model file (its metrics.json lists its outputs); [] for a run whose
    record lists none (made before outputs were listed) or no model at all."""
    try:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            outputs = json.load(f).get("outputs")
    except (OSError, ValueError, AttributeError):
        return []
    models = [o for o in outputs or () if o.endswith(tuple(FORMAT_SUFFIX.values()))]
    if not models:
        return []
    return [f for f in formats if not any(o.endswith(FORMAT_SUFFIX[f]) for o in models)]


def claim(run_dir, settings, defaults, retrain=False, reuse=False, no_effect=RunConfig.NO_EFFECT):
    """Locks `run_dir` and decides where this run writes, before any work.

    Args:
        run_dir: the run's folder, runs/<name>.
        settings: what the run depends on ({name: value}), as flags.json records it.
        defaults: each setting's default, for flags.json files older than it.
        retrain: train anew in a staging folder that replaces `run_dir` once finished.
        reuse: a finished run with the same settings is reused (study scripts).
        no_effect: settings that cannot change the result (`no_effect_of`).

    Returns:
        (folder to write in, action): "train", "resume" or "reuse".

    Raises:
        RunConflict: the folder is locked, or holds a finished run (with
            other settings, or with `reuse` off) or an interrupted run with
            other settings, and `retrain` is off.
    """
    lock(run_dir)
    promoted = _recover(run_dir)
    if retrain:
        staging = staging_dir(run_dir)
        same = not differences(settings, read_flags(staging), defaults, no_effect)
        if state(staging) == "interrupted" and same:
            fit.check_resume_state(staging)
            return staging, "resume"
        if state(staging) == "finished" and same:  # killed before its promote
            clear_backup(staging)
            promote(staging, run_dir)
            promoted = True
        if (
            promoted
            and reuse
            and not differences(settings, read_flags(run_dir), defaults, no_effect)
        ):
            return run_dir, "reuse"  # the --retrain run finished: not trained a third time
        _clear(staging)
        return staging, "train"
    now = state(run_dir)
    changed = differences(settings, read_flags(run_dir), defaults, no_effect)
    ways = OTHER_FOLDER
    if now == "finished":
        if reuse and not changed:
            lacking = missing_formats(run_dir, settings.get("formats") or ())
            if lacking:  # formats name files only, but a finished run writes no more
                raise RunConflict(
                    f"{run_dir} holds a finished run with no {', '.join(lacking)} model file; "
                    "pass --retrain to train it again with these --formats, or ask for the "
                    "formats it was saved in"
                )
            clear_backup(run_dir)  # killed after its marker, before this went
            return run_dir, "reuse"
        made = (
            f"made with other settings ({', '.join(changed)})" if changed else "of these settings"
        )
        raise RunConflict(
            f"{run_dir} holds a finished run {made}; pass --retrain to replace it "
            f"once the new run has finished, or {ways}"
        )
    if now == "interrupted":
        if changed:
            raise RunConflict(
                f"{run_dir} holds an interrupted run ({fit.resume_epoch(run_dir)} epochs done) made "
                f"with other settings ({', '.join(changed)}); run its own command to resume it, "
                f"pass --retrain to replace it once the new run has finished, or {ways}"
            )
        fit.check_resume_state(run_dir)
        return run_dir, "resume"
    _empty(run_dir)
    return run_dir, "train"


def promote(written, run_dir):
    """Puts a finished --retrain run (`written`) in place of `run_dir`.

    Two renames, then the old run is removed; `claim` completes the swap if
    a process dies between the renames. A no-op when the run trained in place.
    """
    if os.path.normpath(written) == os.path.normpath(run_dir):
        return
    old = _sibling(run_dir, "replaced")
    _clear(old)
    if os.path.exists(run_dir):
        os.rename(run_dir, old)
        files.crash_point("promote: old run moved aside")
    os.rename(written, run_dir)
    files.crash_point("promote: new run in place")
    _clear(old)


# --- reuse: what a run depends on, and studies that reuse finished runs --------


def run_settings(config, **extra):
    """What a run depends on, as its flags.json records it: the config's
    `settings()` (its fields, with what it resolves, e.g. a classifier's
    default learning rate) and `extra`."""
    return config.settings() | extra


def no_effect_of(config, extra=None):
    """The settings of `config` (and `extra`) that cannot change a run's
    result: the union of what each declares as NO_EFFECT."""
    return frozenset().union(*(getattr(c, "NO_EFFECT", ()) for c in (config, extra) if c))


def settings_and_defaults(config, extra=None):
    """`run_settings` with `extra`'s fields, and each setting's default (for
    runs whose flags.json predates it)."""
    parts = [config] + ([extra] if extra is not None else [])
    defaults = {f.name: f.default for c in parts for f in dataclasses.fields(c)}
    return run_settings(config, **(dataclasses.asdict(extra) if extra else {})), defaults


def claim_runs(configs, retrain=False, extra=None):
    """Checks every run of a study before any is trained, so that a conflict
    (`RunConflict`) stops the study before hours of work, not after.

    Returns one bool per config: whether its finished run, made with the same
    settings (`extra`: a dataclass of further ones), is reused. Other workers
    of a cluster decide the same from the files, without locking the chief's
    folders.
    """
    reused = []
    for c in configs:
        wanted, defaults = settings_and_defaults(c, extra)
        no_effect = no_effect_of(c, extra)
        if distribute.is_chief():
            action = claim(c.run_dir, wanted, defaults, retrain, True, no_effect)[1]
            reused.append(action == "reuse")
        else:
            finished = state(c.run_dir) == "finished"
            reused.append(
                finished
                and not retrain
                and not differences(wanted, read_flags(c.run_dir), defaults, no_effect)
            )
    return reused


def reused_line(run_dir):
    """What every run function and study says of a finished run it reuses."""
    name = os.path.basename(os.path.normpath(run_dir))
    return f"{name}: finished run in {run_dir} reused (--retrain to train again)"


def load_run(run_dir):
    """(history, metrics, flags, test predictions) of a finished run, or None."""
    try:
        loaded = []
        for name in ("history.json", "metrics.json", "flags.json"):
            with open(os.path.join(run_dir, name)) as f:
                loaded.append(json.load(f))
    except (OSError, ValueError):
        return None
    preds_path = os.path.join(run_dir, "test_predictions.npz")
    preds = dict(np.load(preds_path)) if os.path.isfile(preds_path) else None
    return (*loaded, preds)
