"""The process set-up every script needs before TensorFlow is imported: its
C++ log level, oneDNN on AVX2 CPUs too (`cpu.default_onednn`), and the import
itself with its start-up notices silenced. Imported first by `common` and
`_flags`, whatever a script imports next.
"""

import os

from resnet_keras import cpu, files  # import no TensorFlow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
cpu.default_onednn()  # oneDNN on AVX2 CPUs too; TensorFlow reads it once, at import


def _import_tensorflow_quietly():
    """TF 2.2x prints start-up notices from C++ (oneDNN, missing CUDA) that
    TF_CPP_MIN_LOG_LEVEL no longer silences; they would bury the one-line
    answers the scripts give. RESNET_KERAS_TF_LOGS=1 shows them."""
    with files.stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device discovery logs once, here


_import_tensorflow_quietly()
