"""What this CPU computes natively, and the oneDNN setting that follows from it.

Nothing here imports TensorFlow: `scripts/_env.py` calls `default_onednn()`
before the first `import tensorflow`, when TensorFlow's oneDNN switch can
still be set, and `distribute.precision_decision` asks `native_bfloat16`.

Benchmarking and emulation only: RESNET_KERAS_CPU_FLAGS, a space-separated
list of /proc/cpuinfo flags, replaces this CPU's own, so the project decides
as it would on that CPU (`benchmarks/compare.sh --isa avx2` sets an AVX2
CPU's, together with ONEDNN_MAX_CPU_ISA=AVX2 for the kernels themselves):

    RESNET_KERAS_CPU_FLAGS="sse4_2 avx avx2 fma" ONEDNN_MAX_CPU_ISA=AVX2 \\
        python -m scripts.benchmark --mixed_precision
"""

import os
import platform

CPUINFO = "/proc/cpuinfo"
FLAGS_VAR = "RESNET_KERAS_CPU_FLAGS"
# Flags of a CPU that computes bfloat16 in hardware. Without them bfloat16 is
# emulated in float32 arithmetic plus conversions: slower than float32 itself.
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")
# TensorFlow 2.21 on Linux turns its oneDNN kernels on by default only where
# one of these is present (tensorflow/core/util/port.cc, DefaultOneDnnPolicy);
# elsewhere, AVX2-only CPUs included, it runs Eigen's kernels.
TF_ONEDNN_FLAGS = ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")
# What the benchmark reports: enough to tell the CPU classes apart.
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni")
ONEDNN_VAR = "TF_ENABLE_ONEDNN_OPTS"
# Holds the value `default_onednn` set, so a reader (and a child process) can
# tell the project's default from a value the user chose.
ONEDNN_MARK = "RESNET_KERAS_ONEDNN_DEFAULT"


def _cpuinfo(key, path=None):
    """The value of the first `key` line of `path` (default CPUINFO), or None
    without the file (not Linux) or the line."""
    try:
        with open(path or CPUINFO) as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model(path=None):
    """The CPU's name ("model name" in /proc/cpuinfo), or what Python's
    `platform` knows of it where the file has none."""
    return _cpuinfo("model name", path) or platform.processor() or platform.machine()


def cpu_flags(path=None, environ=None):
    """The CPU's feature flags (lower case), as the first "flags" line of
    `path` (default CPUINFO, /proc/cpuinfo) lists them.

    RESNET_KERAS_CPU_FLAGS in `environ` (default os.environ), if set and not
    empty, replaces them. Without the file (not Linux) or without a "flags"
    line (not x86) the set is empty, so every question asked of it answers no.
    """
    environ = os.environ if environ is None else environ
    if environ.get(FLAGS_VAR, "").strip():
        return frozenset(environ[FLAGS_VAR].lower().split())
    return frozenset((_cpuinfo("flags", path) or "").lower().split())


def flags_source(environ=None):
    """Where `cpu_flags` reads from: the override variable's name, or the file."""
    environ = os.environ if environ is None else environ
    return FLAGS_VAR if environ.get(FLAGS_VAR, "").strip() else CPUINFO


def native_bfloat16(flags):
    """Whether a CPU with these flags computes bfloat16 in hardware."""
    return any(f in flags for f in BFLOAT16_FLAGS)


def reported_flags(flags):
    """ "avx2,avx512f,avx512_bf16": the REPORTED_FLAGS present, or "none"."""
    return ",".join(f for f in REPORTED_FLAGS if f in flags) or "none"


def default_onednn(environ=None):
    """Turns TensorFlow's oneDNN kernels on, unless the user set TF_ENABLE_ONEDNN_OPTS.

    TensorFlow enables them by default only on CPUs with TF_ONEDNN_FLAGS; on
    an AVX2-only CPU it runs Eigen's kernels, much slower for this project's
    training (docs/performance.md, "Both CPU classes"). On CPUs where TensorFlow enables oneDNN anyway, "1"
    changes nothing. Must run before TensorFlow is imported: it reads the
    variable once. A value the user set is never overridden.

    Returns:
        Whether it set the variable.
    """
    environ = os.environ if environ is None else environ
    if ONEDNN_VAR in environ:
        return False
    environ[ONEDNN_VAR] = environ[ONEDNN_MARK] = "1"
    return True


def onednn_state(environ=None, path=None):
    """TensorFlow's oneDNN switch and who chose it, for a key=value report:
    "on(default-set)" (`default_onednn` set it), "off(user)", "on(user)", or
    "on(tf-default)" / "off(tf-default)" where the variable is unset (or not
    a boolean TensorFlow reads: it then warns and keeps its default).
    """
    environ = os.environ if environ is None else environ
    value = environ.get(ONEDNN_VAR)
    on = {"1": "on", "true": "on", "0": "off", "false": "off"}.get((value or "").strip().lower())
    if on is None:
        # TensorFlow tests the real CPU, never RESNET_KERAS_CPU_FLAGS.
        real = cpu_flags(path, environ={})
        default = "on" if any(f in real for f in TF_ONEDNN_FLAGS) else "off"
        return f"{default}(tf-default)" if value is None else f"{default}(tf-default,bad-value)"
    return f"{on}(default-set)" if environ.get(ONEDNN_MARK) == value else f"{on}(user)"
