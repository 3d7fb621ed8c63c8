"""Result tables: `results/<name>.json` (rows) and `results/<name>.md` (the same
rows as a Markdown table, with the command and hardware that produced them).

Every table is written by `write_table`: both files atomically, and never over
a JSON file that cannot be read back (`load_table` refuses it), so one bad
file cannot cost the rows of earlier runs. `write_results` merges rows into a
table of `{"rows": [...]}`; colorization's table has sections of its own
(`colorization.task`).
"""

import json
import os


from resnet_keras import files


def hardware():
    """One line naming the machine a number was measured on."""
    import tensorflow as tf

    from resnet_keras import cpu as cpu_lib

    cpu = cpu_lib.cpu_model()

    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    flags = cpu_lib.reported_flags(cpu_lib.cpu_flags())  # the CPU class: avx2 only, or AVX-512
    return f"{cpu} ({flags}), {os.cpu_count()} cores, {device}, TensorFlow {tf.__version__}"


def run_line(name, epochs, minutes, hardware, more=""):
    """'- <name>: <epochs>, <minutes>, <hardware><more>': the line that names
    what a results row's run was, how long it took and on what."""
    return f"- {name}: {epochs}, {minutes}, {hardware}{more}"


def run_lines(rows, names):
    """One Markdown line per row: what ran, how long, on what, from which code.

    rows: result rows with "epochs", "train_time_min" and "hardware", and
    where recorded "wall_time_min", "starts" and "commit" (`record_fields`);
    names: the label of each row.
    """
    lines = []
    for name, r in zip(names, rows):
        hardware = r.get("hardware") or "hardware not recorded"
        if "(" not in hardware:  # records from before the CPU flags were kept
            hardware += " (CPU flags not recorded)"
        wall = ""
        if r.get("wall_time_min") is not None:  # interruptions and waits included
            starts = f" over {r['starts']} starts" if r.get("starts", 1) > 1 else ""
            wall = f", {r['wall_time_min']} min from first start to finish{starts}"
        commit = f", commit {r['commit']}" if r.get("commit") else ", commit not recorded"
        minutes = f"{r['train_time_min']} min of training{wall}"
        lines.append(run_line(name, f"{r['epochs']} epochs", minutes, hardware, commit))
    return "\n".join(lines)


def record_fields(flags, metrics):
    """What a results row names of its run record: the first invocation's short
    commit (marked "+changes" where its work tree had uncommitted changes), the
    wall time (first start to finish) and how many times it was started, where
    the record holds them (runs/<run>/flags.json and
    metrics.json; `provenance`)."""
    out = {}
    first = (flags.get("invocations") or [{}])[0]
    if first.get("git_commit"):
        out["commit"] = first["git_commit"][:7] + ("+changes" if first.get("git_dirty") else "")
    if metrics.get("wall_time_s") is not None:
        out["wall_time_min"] = round(metrics["wall_time_s"] / 60, 1)
        out["starts"] = len(flags.get("invocations") or [None])
    return out


def _refusal(json_path, why):
    return ValueError(f"{json_path}: not a results table ({why}); move it aside")


def load_table(json_path):
    """The JSON object a results file holds; {} if there is none. A file that
    is not one stops the run with its name, before it could be overwritten."""
    if not os.path.isfile(json_path):
        return {}
    try:
        with open(json_path) as f:
            table = json.load(f)
    except ValueError as e:
        raise _refusal(json_path, e) from None
    if not isinstance(table, dict):
        raise _refusal(json_path, "not a JSON object")
    return table


def load_rows(json_path):
    """The rows of a `write_results` table; [] if there is none. A file that is
    not one stops the run with its name, before it could be overwritten."""
    if not os.path.isfile(json_path):
        return []
    rows = load_table(json_path).get("rows")
    if not isinstance(rows, list):
        raise _refusal(json_path, "no list of rows")
    return rows


def merge_rows(old, new, key):
    """New rows replace old rows with the same key; other old rows stay."""
    new_keys = {tuple(r[k] for k in key) for r in new}
    return [r for r in old if tuple(r.get(k) for k in key) not in new_keys] + list(new)


def _cell(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return "" if v is None else str(v)


def markdown_table(rows, columns):
    """columns: [(key, header)]; missing values print empty."""
    lines = [
        "| " + " | ".join(h for _, h in columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)


def write_results(stem, rows, columns, key, title, notes="", run_name=None):
    """Merges `rows` into results/<stem>.json and rewrites results/<stem>.md.

    Args:
        stem: path without extension, e.g. "results/resnet_vs_plain".
        rows: list of dicts.
        columns: [(key, header)] for the Markdown table.
        key: the fields that identify a row (a rerun replaces its old row).
        title: the Markdown heading.
        notes: Markdown text under the table (commands, hardware, caveats).
        run_name: row -> its run's label, or None for a row that is no run
            (an ensemble); given, the notes end with a line per run of the
            merged table (`run_lines`).
    """
    merged = merge_rows(load_rows(f"{stem}.json"), rows, key)
    if run_name is not None:
        named = [(r, run_name(r)) for r in merged]
        named = [(r, n) for r, n in named if n is not None]
        runs = run_lines([r for r, _ in named], [n for _, n in named])
        notes = f"{notes.strip()}\n\nThe runs:\n\n{runs}"
    text = f"# {title}\n\n{markdown_table(merged, columns)}\n\n{notes.strip()}\n"
    write_table(stem, {"rows": merged}, text)
    return merged


def write_table(stem, table, markdown):
    """Writes `table` to <stem>.json and `markdown` to <stem>.md, each atomically.

    Args:
        stem: path without extension, e.g. "results/colorization"; its folder
            is made if missing.
        table: the JSON object (read back by `load_table`).
        markdown: the same results as text.
    """
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    files.write_json(f"{stem}.json", table)
    files.write_text(f"{stem}.md", markdown)


SIZES = ("train_images", "test_images")  # a row measured on fewer images is a subset run's


def _identified(table, key):
    """{identity: row} of a `write_results` table (rows named by `key`'s
    fields) or of a table of sections ({section: {name: row}})."""
    if isinstance(table.get("rows"), list):
        return {tuple(r.get(k) for k in key): r for r in table["rows"] if isinstance(r, dict)}
    return {
        (section, name): row
        for section, rows in table.items()
        if isinstance(rows, dict)
        for name, row in rows.items()
        if isinstance(row, dict)
    }


def check_not_smaller(published, new, key=()):
    """Refuses to replace the table file `published` with `new` (JSON paths)
    when a row of both is measured on fewer training or test images in
    `new`: a subset run (--train_limit, --test_limit) never replaces a
    full-size row."""
    old_rows, new_rows = _identified(load_table(published), key), _identified(load_table(new), key)
    for ident in old_rows.keys() & new_rows.keys():
        for size in SIZES:
            was, now = old_rows[ident].get(size), new_rows[ident].get(size)
            if isinstance(was, int) and isinstance(now, int) and now < was:
                name = " ".join(str(part) for part in ident)
                raise ValueError(
                    f"{published}: not replaced: its row {name} has {was} {size.replace('_', ' ')}, "
                    f"the new one {now}; a subset run (--train_limit, --test_limit) never "
                    "replaces a full-size row"
                )
