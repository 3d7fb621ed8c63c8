"""The fields every run has, whatever it trains: its data, its length, where its outputs go.

Each family's config adds its own (`classification.config.TrainConfig`,
`transfer.config.TransferOptions`, `colorization.config.ColorizeConfig`).
"""

import dataclasses
import os
from typing import ClassVar

from resnet_keras.checks import check_bounds, check_choice, check_minimums
from resnet_keras.data import cifar
from resnet_keras.run import distribute, saving


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """What every experiment's config holds: the data (the fields
    `prepare_data` reads), the run's length and where its outputs go."""

    # Settings that cannot change a run's result: a command that differs only
    # here resumes or reuses the run (`folders.differences`). The speed options
    # compute the same thing (docs/performance.md); formats and the output
    # folder only name files. Each config adds its own.
    NO_EFFECT: ClassVar[frozenset] = frozenset(
        {"verbose", "tensorboard", "jit_compile", "formats", "output_dir"}
    )

    dataset: str = "cifar10"
    data_dir: str | None = None
    label_mode: str = "fine"
    skip_bad_images: bool = False
    seed: int = 0
    train_limit: int = 0
    test_limit: int = 0
    val_size: int = 5000
    epochs: int = 20
    batch_size: int = 128
    output_dir: str = "."
    verbose: int = 1
    tensorboard: bool = False
    # None: on where a GPU is present, off on the CPU, where XLA is slower and
    # float32 is what the published numbers were made with (docs/performance.md,
    # docs/results.md; distribute.use_xla and precision_policy).
    jit_compile: bool | None = None
    mixed_precision: bool | None = None
    strategy: str = "auto"
    deterministic: bool = False
    formats: tuple = ("h5",)  # the model files the run writes (saving.FORMATS)

    def settings(self):
        """What the run depends on, as its flags.json records it (`folders.run_settings`)."""
        return dataclasses.asdict(self)

    def validate(self):
        """Refuses bad values before any data is read or any file written."""
        check_choice("dataset", self.dataset, cifar.DATASETS)
        check_choice("strategy", self.strategy, distribute.STRATEGIES)
        check_choice("label_mode", self.label_mode, cifar.LABEL_MODES)
        check_minimums(
            self,
            [
                ("epochs", 1),
                ("batch_size", 1),
                ("train_limit", 0),
                ("test_limit", 0),
                ("val_size", 0),
                ("seed", 0),
            ],
        )
        check_bounds("seed", self.seed, upper=2**32 - 1)  # NumPy's and Keras' seeds are 32-bit
        if not self.formats:
            raise ValueError(
                f"--formats is empty: name at least one of {', '.join(saving.FORMATS)}"
            )
        for fmt in self.formats:
            check_choice("format", fmt, saving.FORMATS)
        if self.data_dir is not None and not os.path.exists(self.data_dir):
            raise ValueError(
                f"--data_dir {self.data_dir}: no such file or folder; give a CIFAR download "
                "or an image folder (docs/data.md)"
            )
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ValueError(
                    "--tensorboard needs the tensorboard package " "(pip install tensorboard)"
                ) from None
