"""`run`, the entry every script goes through: a setting's value resolved
from the script's defaults, the presets and the flags given (`resolve`), and
bad input of any kind answered in one line on stderr, exit status 2.

A setting's value is, from lowest to highest: the config dataclass's field
default, the script's DEFAULTS (`resnet_keras.configs`), a named preset
(`configs.presets.PRESETS`: `--schedule fast`, `--paper`), the flag as given.
The flags and which script takes which are in `_flags`.
"""

import dataclasses
import difflib
import math
import os
import signal
import sys
import threading

from scripts import _env  # noqa: F401, I001 (TensorFlow's environment, first)

from absl import app, flags

from resnet_keras.checks import check_bounds, check_choice
from resnet_keras.configs import presets
from resnet_keras.configs.presets import PRESETS
from scripts._flags import (
    DEFINED_HERE,
    FLAGS,
    NOUNS,
    PRESET_FLAGS,
    SHARED,
    SHARED_HELP,
    SWITCHES,
    USES,
)

_running = {}  # the running script's key in USES and its DEFAULTS, set by `run`


def own_flags(defaults):
    """The flags a script defines itself and names in its DEFAULTS: `resolve`
    treats them as the shared ones."""
    return [k for k in defaults if k in FLAGS and k not in DEFINED_HERE]


def _prepare_flags(script, module, defaults, configs, help_text):
    """Makes the script's defaults the flags' own, so --help shows them and
    FLAGS[name].present alone tells a flag given from a default; and makes
    the flags --help lists (the main module's key flags, filed by absl under
    sys.argv[0]) exactly the shared ones it uses and those `module` defines."""
    fields = {}
    for config in reversed(configs):  # the first config named wins
        fields.update(
            (f.name, f.default)
            for f in dataclasses.fields(config)
            if f.default is not dataclasses.MISSING
        )
    fields.pop("run_name", None)  # unset, each script names its runs after the experiment
    for name in USES[script] + own_flags(defaults):
        if name in defaults:
            FLAGS.set_default(name, defaults[name])
        elif name in fields:
            FLAGS.set_default(name, fields[name])
        if name in SHARED_HELP:
            FLAGS[name].help = help_text.get(name, SHARED_HELP[name])
    shown = [FLAGS[name] for name in USES[script]] + FLAGS.get_flags_for_module(module)
    FLAGS.key_flags_by_module_dict()[sys.argv[0]] = shown  # set, not added to: tests run many


def check_used(script):
    """Refuses any flag defined here that `script` does not use, naming the
    scripts that take it."""
    for name in DEFINED_HERE:
        if FLAGS[name].present and name not in USES[script]:
            takers = ", ".join(f"scripts.{s}" for s, used in USES.items() if name in used)
            raise ValueError(f"--{name} is not used by scripts.{script}; it is taken by {takers}")
    if FLAGS["replace"].present and not FLAGS.publish:
        raise ValueError("--replace names files --publish may replace; add --publish")


def explicit_flags():
    """The shared flags the user set on the command line."""
    return {name for name in SHARED if FLAGS[name].present}


def file_name(run_name, default):
    """The name a run's model and plot are published under: the run's own
    when --run_name was given, so a trial run never replaces the default
    run's files; else the experiment's `default`."""
    return run_name if FLAGS["run_name"].present else default


def resolve():
    """The run's settings: the script's defaults, the active presets over
    them, the flags given over both.

    Covers the flags defined here that the running script uses (USES, less
    the SWITCHES, which scripts read from FLAGS), the script's own flags that
    its DEFAULTS names, and the keys of its DEFAULTS that are no flag (the
    configs check them all, model formats included, before any data is read).
    """
    script, defaults = _running["script"], _running["defaults"]
    names = [n for n in USES[script] if n not in SWITCHES] + own_flags(defaults)
    out = dict(defaults)
    out.update((name, FLAGS[name].value) for name in names)
    for preset, (flag, value) in PRESET_FLAGS.items():
        if flag in USES[script] and FLAGS[flag].value == value:
            out.update(
                (k, v) for k, v in PRESETS[preset].items() if k in names and not FLAGS[k].present
            )
    if "formats" in out:
        out["formats"] = tuple(out["formats"])
    return presets.for_optimizer(out, out.get("opt"), explicit_flags())


def fail(message):
    """One line on stderr, exit status 2: the answer to every bad input."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _in_words(error):
    """An enum or bounds refusal from absl ("flag --n=0: 0 is not a positive
    integer") in the words of the library's own checks ("--n must be at least
    1; got 0"); None for any other error."""
    text, cause = str(error), error.__context__
    name = text[len("flag --") : text.find("=")] if text.startswith("flag --") else None
    if name not in FLAGS or cause is None or not text.endswith(f": {cause}"):
        return None
    raw, parser = text[len(f"flag --{name}=") : -len(f": {cause}")], FLAGS[name].parser
    try:
        if isinstance(parser, flags.EnumParser):
            check_choice(NOUNS.get(name, name), raw, parser.enum_values)
        elif hasattr(parser, "is_outside_bounds"):
            try:
                value = parser.convert(raw)
            except (TypeError, ValueError, OverflowError):
                return None  # not a number: absl's words say so
            check_bounds(name, value, parser.lower_bound, parser.upper_bound)
    except ValueError as e:
        return str(e)
    return None


def _parse(argv):
    """absl's flag parsing, with its errors answered in one line, exit 2, and
    a help request (--help, --helpshort, --helpfull) answered with status 0:
    absl's help flags print the help and exit with 1, as for an error."""
    try:
        return FLAGS(argv)
    except SystemExit as e:  # only the help flags exit while the flags are parsed
        sys.exit(0 if e.code == 1 else e.code)
    except flags.UnrecognizedFlagError as e:
        close = difflib.get_close_matches(e.flagname, list(FLAGS), n=1)
        hint = f" (did you mean --{close[0]}?)" if close else ""
        fail(f"unknown flag --{e.flagname}{hint}; see --helpshort")
    except flags.Error as e:
        fail(_in_words(e) or f"{str(e).splitlines()[0]}; see --helpshort")


def check_finite():
    """NaN or infinite numbers are refused before they could train."""
    for name in FLAGS:
        value = FLAGS[name].value
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"--{name} must be a finite number; got {value}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a cluster's time limit), stopping a run as Ctrl-C does."""


def _on_sigterm(signum, frame):
    raise Terminated()


STOPPED = "stopped: run the same command again to resume from the last finished epoch"


def run(main, script, defaults, configs=(), help_text=None, positional=False, argv=None):
    """absl's app.run for one script, with bad input answered by one line
    instead of a traceback.

    Args:
        main: called with argv (argv[0] is the program).
        script: the script's key in USES (which shared flags it takes).
        defaults: the script's DEFAULTS. Each key that names a flag becomes
            that flag's default (shown by --help); the others pass through
            `resolve` as they are.
        configs: dataclasses whose field defaults are the defaults of the
            shared flags `defaults` leaves out (e.g. classification.config.TrainConfig).
        help_text: {flag: help} where the script's meaning of a shared flag
            differs from the shared help (e.g. question2's per-optimizer lr).
        positional: whether the script takes positional arguments (model files).
        argv: the command line, program first; None: sys.argv. Tests pass
            theirs and call this again in the same process.

    RESNET_KERAS_TRACEBACK=1 shows the traceback, for debugging the project.
    Ctrl-C and SIGTERM stop a script with one line saying how to resume, and
    exit status 130 and 143 (128 + the signal's number), as the shell reports them.
    """
    _running.update(script=script, defaults=defaults)
    _prepare_flags(script, main.__module__, defaults, configs, help_text or {})

    def wrapped(argv):
        if len(argv) > 1 and not positional:
            fail(f"unexpected arguments {' '.join(argv[1:])!r}; see --helpshort")
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
        try:
            check_used(script)
            check_finite()
            return main(argv)
        except (ValueError, OSError, FloatingPointError) as e:
            if os.environ.get("RESNET_KERAS_TRACEBACK"):
                raise
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
        except KeyboardInterrupt as e:
            print(STOPPED, file=sys.stderr)
            sys.exit(128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT))
        finally:
            if main_thread:  # Python lets only the main thread set handlers
                signal.signal(signal.SIGTERM, previous)

    app.run(wrapped, argv=argv, flags_parser=_parse)
