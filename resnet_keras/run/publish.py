"""The run contract: a run owns its outputs, and publishing them is a separate step.

Every run (classification, transfer, colorization) ends in `finish`, which
writes everything the run produces into its own folder, runs/<name>/: the
model in each requested format, history.json, the figures, any other file
(test predictions are written by the test itself), and then, last,
metrics.json, the run's completion marker. Only then does its resume state
go and a --retrain run take the old run's place (`folders.promote`). Killed at
any moment before the marker, the run is resumable by the same command
(its resume state is still there); after it, the run is finished with every
output on disk. There is no third state.

The shared places (saved_models/, plots/, results/ under the output folder)
change only through `publish`, on request (the scripts' --publish), from a
finished run or study report:

    publish(out, {"saved_models/resnet_cifar10.h5": "runs/q1/resnet_cifar10.h5"}, owner, replace)

It never replaces a file the repository ships (git-tracked), a file another
owner published or a file of unknown origin, unless `replace` names it; a
file with the same bytes is no replacement. Every file is first copied to a
temporary name beside its target, and the record of where each came from
(published.json under the output folder: owner, source file, its sha256,
the run's settings and commits) is written before the copies are renamed
into place, so a publish cut off half-way is completed by the same command.
"""

import contextlib
import os
import shutil
import subprocess

from resnet_keras import files
from resnet_keras.run import distribute, folders, plots, provenance, saving, tables

RECORD = "published.json"
crash_point = files.crash_point


def finish(
    config,
    run_dir,
    metrics,
    history,
    model=None,
    model_name=None,
    extras=(),
    title=None,
    log=print,
    loss_label="loss",
):
    """Writes a tested run's outputs into `run_dir`, metrics.json last, then
    ends the run: resume state removed, a --retrain run put in place.

    Args:
        config: the run's config (`run_dir` is where a --retrain run goes).
        run_dir: the folder the run trained in (`lifecycle.setup_run`).
        metrics: the run's metrics; its file list and timing are added to it.
        history: {metric: [value per epoch]}, written to history.json.
        model: the model to save, in each of `config.formats`, as
            `model_name`.<format>; None: no model file.
        extras: [(file name, write(path))]: further outputs (figures, per-image
            scores), each written into the run folder by its function.
        title: given, the curves are drawn too, as history.png.
        loss_label: the loss axis' label there (what the loss holds).
        log: where the "wrote" lines go.

    Returns:
        The written files, under the run's final folder.
    """
    if not distribute.is_chief():  # workers keep no outputs; their resume state goes
        folders.clear_backup(run_dir)
        return []
    written = []
    class_names = _class_names(model, run_dir) if model is not None else None
    for fmt in getattr(config, "formats", ()) if model is not None else ():
        path = os.path.join(run_dir, os.path.basename(saving.model_path(model_name, fmt)))
        written.append(saving.save_model(model, path, class_names))
    written.append(files.write_json(os.path.join(run_dir, "history.json"), history))
    if title is not None:
        draw = lambda p: plots.plot_history(history, p, title, loss_label)  # noqa: E731
        extras = [("history.png", draw), *extras]
    for name, write in extras:
        written.append(write(os.path.join(run_dir, name)))
    names = sorted(os.path.relpath(p, run_dir) for p in written)
    metrics.update(outputs=names, **provenance.timing(folders.read_flags(run_dir)))
    files.write_json(os.path.join(run_dir, "metrics.json"), metrics)  # last: finished
    folders.clear_backup(run_dir)
    crash_point("backup removed")
    folders.promote(run_dir, config.run_dir)
    final = [os.path.join(config.run_dir, n) for n in names]
    for p in final:
        log(f"wrote {p}")
    return final


def _class_names(model, run_dir):
    """A classifier's class names as its run recorded them (flags.json), which
    its saved file carries (`saving.save_model`); None for a model with
    another output (a colorizer) or a run that recorded none."""
    names = folders.read_flags(run_dir).get("class_names")
    shape = model.output_shape
    if names and isinstance(shape, tuple) and len(shape) == 2 and shape[-1] == len(names):
        return names
    return None


# --- publish: a finished run's files into the shared places ------------------


def git_tracked(path):
    """Whether `path` (a file, or a folder holding one) is a file the git
    checkout around it ships; False outside a checkout or without git."""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        out = subprocess.run(
            ["git", "-C", folder, "ls-files", "--", os.path.abspath(path)],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def read_record(output_dir):
    """{published path: where it came from} of `output_dir`; {} if none. An
    unreadable record stops the publish, naming it, before it could be replaced."""
    return tables.load_table(os.path.join(output_dir, RECORD))


def _why_not_ours(target, rel, record, owner):
    """Why `owner` may not replace `target` unasked, or None if it may."""
    if git_tracked(target):
        return "the repository ships it"
    entry = record.get(rel)
    if entry is None:
        return f"no entry in {RECORD} says where it came from"
    if entry.get("owner") != owner:
        return f"{entry.get('owner')} published it"
    return None


def check_publish(output_dir, files_map, owner, replace=(), check=None, early=False):
    """Refuses, before anything is copied, what `publish` would refuse; returns
    the targets whose bytes differ from their source (the ones to copy).

    `early`: before the run has made its files (a refusal then comes before
    hours of training, not after): a missing source is no error yet."""
    record = read_record(output_dir)
    named = {os.path.normpath(r) for r in replace}
    changed = []
    for rel, source in files_map.items():
        target = os.path.join(output_dir, rel)
        if not os.path.exists(source):
            if early:
                source = None
            else:
                raise ValueError(f"{source}: missing; nothing to publish as {target}")
        if os.path.exists(target):
            if source is not None and files.sha256(target) == files.sha256(source):
                continue  # the same bytes: no replacement
            why = _why_not_ours(target, rel, record, owner)
            if why and not named & {os.path.normpath(rel), os.path.normpath(target)}:
                raise ValueError(
                    f"{target}: not replaced ({why}); pass --replace={rel} to replace it"
                )
            if check is not None and source is not None:
                check(target, source)
        changed.append(rel)
    return changed


def publish(output_dir, files_map, owner, replace=(), check=None, log=print):
    """Copies finished outputs into the shared places of `output_dir`.

    Args:
        output_dir: the output folder holding saved_models/, plots/, results/.
        files_map: {path relative to output_dir: source file or folder}.
        owner: who publishes (a run folder, "runs/<name>", or a study report),
            recorded with each file; it may replace files it published itself.
        replace: targets the caller named explicitly (--replace): replaced
            whoever published them, the repository's own files included.
        check: called as check(target, source) before a differing file is
            replaced (e.g. a subset row must not replace a full-size row).

    Returns:
        The published paths (those whose bytes changed).

    Raises:
        ValueError: a target that may not be replaced, or a missing source;
            nothing is copied then.
    """
    changed = check_publish(output_dir, files_map, owner, replace, check)
    if not changed:
        log(f"published: the shared files already hold {owner}'s outputs")
        return []
    folders.lock(os.path.join(output_dir, "published"))  # one publish at a time
    record = read_record(output_dir)
    staged = {}
    try:
        for rel in changed:  # copies under temporary names: a full disk stops here
            staged[rel] = _stage(files_map[rel], os.path.join(output_dir, rel))
        for rel in changed:
            record[rel] = _source(files_map[rel], owner, output_dir)
        files.write_json(os.path.join(output_dir, RECORD), record)
        crash_point("publish recorded")
        for rel in changed:
            target = os.path.join(output_dir, rel)
            _swap(staged.pop(rel), target)
            crash_point(f"published {rel}")
            log(f"published {target}")
    finally:
        for tmp in staged.values():
            _remove(tmp)
    return [os.path.join(output_dir, rel) for rel in changed]


def _source(source, owner, output_dir):
    """The record of one published file: who, from which file, settings, commits."""
    run = source if os.path.isdir(source) else os.path.dirname(source)
    flags = folders.read_flags(run)
    invocations = flags.pop("invocations", [])
    return {
        "owner": owner,
        "source": os.path.relpath(source, output_dir),
        "sha256": files.sha256(source),
        "published_utc": provenance.now_utc(),
        "settings": flags or None,
        "commits": sorted({i.get("git_commit") for i in invocations if i.get("git_commit")}),
        "published_by_commit": provenance.git_state()[0],
    }


def _stage(source, target):
    """A complete copy of `source` under a temporary name beside `target`."""
    folder, base = os.path.split(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{base}.tmp-publish-{os.getpid()}")
    _remove(tmp)
    try:
        if os.path.isdir(source):
            shutil.copytree(source, tmp)
        else:
            shutil.copyfile(source, tmp)
            files.usual_mode(tmp, 0o666)
    except OSError as e:
        _remove(tmp)
        raise files.disk_error(e, target, files.size(source)) from None
    return tmp


def _swap(tmp, target):
    if os.path.isdir(tmp) and os.path.exists(target):
        old = f"{tmp}.old"
        os.replace(target, old)
        os.replace(tmp, target)
        _remove(old)
    else:
        os.replace(tmp, target)


def _remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)


@contextlib.contextmanager
def discarded_on_failure(config, run_dir):
    """A run that fails (bad data, a model that cannot be built, Ctrl-C)
    before its first epoch is finished leaves no folder or lock behind. A NaN
    loss also discards the resume state: the advice is another --lr, which
    is a new run, not one the NaN run's state should refuse."""
    try:
        yield
    except BaseException as e:
        if distribute.is_chief():
            if isinstance(e, FloatingPointError):
                folders.clear_backup(run_dir)
            folders.discard_if_unstarted(run_dir, config.run_dir)
        raise


def owner_name(folder, output_dir):
    """How a run or report folder is named in published.json: runs/<name>."""
    return os.path.relpath(folder, output_dir).replace(os.sep, "/")


def run_files(config, model_name, published_name, figures=None):
    """{shared path: file in the run folder} of a run: its model in each of
    its formats as saved_models/<published_name>.<format>, and `figures`
    ({file in the run folder: shared path})."""
    out = {}
    for fmt in config.formats:
        source = os.path.basename(saving.model_path(model_name, fmt))
        target = os.path.basename(saving.model_path(published_name, fmt))
        out[os.path.join("saved_models", target)] = os.path.join(config.run_dir, source)
    for name, rel in (figures or {}).items():
        out[rel] = os.path.join(config.run_dir, name)
    return out


def publish_runs(items, output_dir, replace=(), early=False, log=print):
    """Publishes several finished runs ([(run folder, files map)]), or with
    `early` only checks that nothing would be refused. Only the chief writes."""
    if not distribute.is_chief():
        return []
    done = []
    for folder, files_map in items:
        owner = owner_name(folder, output_dir)
        if early:
            check_publish(output_dir, files_map, owner, replace, early=True)
        else:
            done += publish(output_dir, files_map, owner, replace, log=log)
    return done


# --- study reports: figures and tables drawn from finished runs -------------

REPORTS = "reports"  # <output_dir>/reports/<study>/, laid out as the shared folders


def report_dir(output_dir, study):
    """Where a study draws its figures and tables (plots/..., results/...
    inside it, as under the output folder), so that the shared ones change
    only when the report is published."""
    return os.path.join(output_dir, REPORTS, study)


def find_run(output_dir, name, shipped=False):
    """A finished run's folder: runs/<name>, or with `shipped`, where runs/
    has none, the record the repository ships in results/runs/<name>."""
    path = os.path.join(output_dir, "runs", name)
    if shipped and folders.state(path) != "finished":
        record = os.path.join(output_dir, "results", "runs", name)
        if folders.state(record) == "finished":
            return record
    return path


def start_table(report, output_dir, rel):
    """Starts a report's table (`rel`, e.g. results/question2.json) from the
    published one, so that its rows are kept when the report is published."""
    target, published = os.path.join(report, rel), os.path.join(output_dir, rel)
    if not os.path.exists(target) and os.path.isfile(published):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(published, target)


def report_files(report):
    """{shared path: file} of every file a report holds."""
    out = {}
    for folder, _, names in os.walk(report):
        for name in names:
            if ".tmp" not in name:
                path = os.path.join(folder, name)
                out[os.path.relpath(path, report)] = path
    return out


def publish_study(output_dir, report, trained=(), replace=(), key=(), log=print):
    """Publishes a study: its runs' models (`trained`: [(run folder, files
    map)]), then its report, whose tables never trade a full-size row for a
    subset run's (`tables.check_not_smaller`, rows named by `key`)."""

    def check(published, new):
        if published.endswith(".json"):
            tables.check_not_smaller(published, new, key)

    done = publish_runs(trained, output_dir, replace, log=log)
    return done + publish(
        output_dir, report_files(report), owner_name(report, output_dir), replace, check, log
    )
