"""Result tables: `results/<name>.json` (rows) and `results/<name>.md` (the same
rows as a Markdown table, with the command and hardware that produced them)."""

import json
import os
import platform

from resnet_keras import training


def hardware():
    """One line naming the machine a number was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import tensorflow as tf

    from resnet_keras import cpu as cpu_lib

    gpus = tf.config.list_physical_devices("GPU")
    device = f"{len(gpus)} GPU(s)" if gpus else "no GPU"
    flags = cpu_lib.reported_flags(cpu_lib.cpu_flags())  # the CPU class: avx2 only, or AVX-512
    return f"{cpu} ({flags}), {os.cpu_count()} cores, {device}, TensorFlow {tf.__version__}"


def run_lines(rows, names):
    """One Markdown line per row: what ran, how long, on what.

    rows: result rows with "epochs", "train_time_min" and "hardware";
    names: the label of each row.
    """
    return "\n".join(
        f"- {name}: {r['epochs']} epochs, {r['train_time_min']} min of training, "
        f"{r.get('hardware') or 'hardware not recorded'}"
        for name, r in zip(names, rows)
    )


def load_rows(json_path):
    """The rows of a results file; [] if there is none. A file that is not one
    stops the run with its name, before it could be overwritten."""
    if not os.path.isfile(json_path):
        return []
    try:
        with open(json_path) as f:
            return json.load(f)["rows"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{json_path}: not a results table ({e}); move it aside") from None


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


def write_results(stem, rows, columns, key, title, notes=""):
    """Merges `rows` into results/<stem>.json and rewrites results/<stem>.md.

    Args:
        stem: path without extension, e.g. "results/resnet_vs_plain".
        rows: list of dicts.
        columns: [(key, header)] for the Markdown table.
        key: the fields that identify a row (a rerun replaces its old row).
        title: the Markdown heading.
        notes: Markdown text under the table (commands, hardware, caveats).
    """
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    merged = merge_rows(load_rows(f"{stem}.json"), rows, key)
    training.write_json(f"{stem}.json", {"rows": merged})
    text = f"# {title}\n\n{markdown_table(merged, columns)}\n\n{notes.strip()}\n"
    tmp = f"{stem}.md.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, f"{stem}.md")
    return merged
