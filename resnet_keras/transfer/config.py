"""What a transfer run adds to a classification run's settings: `TransferOptions`."""

import dataclasses
import os
from typing import ClassVar

from resnet_keras.checks import check_minimums
from resnet_keras.classification.pretrained import PRESETS
from resnet_keras.transfer.models import (
    APPLICATIONS,
    MIN_IMAGE_SIZE,
    base_label,
    is_saved_model,
    model_file,
    stages_of,
)


@dataclasses.dataclass(frozen=True)
class TransferOptions:
    """What a transfer run adds to `classification.config.TrainConfig`; scripts fill it from flags."""

    # Features cached or computed every step give the same head (`TrainConfig.NO_EFFECT`).
    NO_EFFECT: ClassVar[frozenset] = frozenset({"cache_features"})
    # The phases after the head's, each trained in runs/<run>/<phase>/ with its
    # own log and resume state (`fit.phase_dirs` finds them there).
    PHASES: ClassVar[tuple] = ("fine_tune",)

    base: str = "resnet50"
    weights: str | None = None  # None: imagenet, or a model file's own weights
    image_size: int = 32
    head_units: int = 256
    train_base: bool = False
    fine_tune_epochs: int = 0
    unfreeze: int = 1
    fine_tune_lr: float | None = None  # None: the head's lr / 10
    cache_features: bool | None = None  # None: whenever the base is frozen and images fixed

    def validate(self, augment=False):
        """Refuses bad values before any data is read or any file written."""
        if is_saved_model(self.base):
            if not os.path.isfile(model_file(self.base)):
                raise ValueError(f"--base {self.base}: no such model file")
            if self.weights not in (None, "none"):
                raise ValueError(
                    f"--weights {self.weights}: a saved-model base brings its own weights; "
                    "leave --weights unset, or --weights none for random ones"
                )
        elif self.base not in APPLICATIONS:
            raise ValueError(
                f"Unknown base {self.base!r}; expected one of {', '.join(APPLICATIONS)}, "
                f"{', '.join(PRESETS)}, or a saved model file (.h5 or .keras)"
            )
        check_minimums(
            self,
            [
                ("image_size", MIN_IMAGE_SIZE),
                ("head_units", 1),
                ("fine_tune_epochs", 0),
                ("unfreeze", 1),
            ],
        )
        if self.unfreeze > len(stages_of(self.base)):
            raise ValueError(
                f"--unfreeze must be at most {len(stages_of(self.base))} "
                f"(the stages of {base_label(self.base)}); got {self.unfreeze}"
            )
        if self.fine_tune_lr is not None and self.fine_tune_lr <= 0:
            raise ValueError(f"--fine_tune_lr must be positive; got {self.fine_tune_lr}")
        if self.train_base and self.fine_tune_epochs:
            raise ValueError("--fine_tune_epochs needs a frozen base; --train_base trains it all")
        if self.cache_features and (augment or self.train_base):
            raise ValueError(
                "--cache_features needs a frozen base and fixed images; drop --augment "
                "and --train_base, or pass --nocache_features"
            )

    def caches(self, augment):
        """Whether the run trains its head on cached features."""
        if self.cache_features is None:
            return not (augment or self.train_base)
        return self.cache_features

    @property
    def weights_label(self):
        if self.weights == "none":
            return "random"
        if self.weights is None:
            return "own" if is_saved_model(self.base) else "imagenet"
        return self.weights if self.weights == "imagenet" else os.path.basename(self.weights)

    @property
    def mode(self):
        """transfer, transfer_ft<K> (fine-tuned), scratch (random, all trained) or full."""
        if self.train_base:
            return "scratch" if self.weights == "none" else "full"
        return f"transfer_ft{self.fine_tune_epochs}" if self.fine_tune_epochs else "transfer"

    def stem(self, dataset, opt):
        """File stem of the run's model: e.g. resnet50_transfer_cifar10_adam."""
        label = base_label(self.base)
        if self.weights == "none" and not self.train_base:
            label += "_random"
        return f"{label}_{self.mode}_{dataset}_{opt}"
