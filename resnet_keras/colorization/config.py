"""A colorization run's settings: `ColorizeConfig`, the fields every run has and a colorizer's."""

import dataclasses
import os

from resnet_keras.checks import check_choice, check_minimums
from resnet_keras.colorization import color, models
from resnet_keras.run import folders, optim
from resnet_keras.run.config import RunConfig


@dataclasses.dataclass(frozen=True)
class ColorizeConfig(RunConfig):
    """Everything a colorization run depends on; the script fills it from flags.

    The data fields come from `run.config.RunConfig`, so
    `lifecycle.prepare_data` loads, limits and splits as for classification.
    """

    model: str = "autoencoder"
    color_space: str = "rgb"
    image_size: int = 32
    lr: float = optim.base_learning_rate("adam")  # Adam, the original's optimizer
    # Stop after the first epoch, `min_epochs` or later, that ends `patience`
    # epochs in a row without a new best validation MSE (0: train all
    # `epochs`; `fit.StopOnPlateau`); the script's defaults train to the plateau.
    patience: int = 0
    min_epochs: int = 0
    run_name: str | None = None  # None: the model's name

    def validate(self):
        super().validate()
        check_choice("model", self.model, models.MODELS)
        check_choice("color space", self.color_space, color.COLOR_SPACES)
        if self.run_name is not None:
            folders.check_name(self.run_name)
        check_minimums(self, [("image_size", 8), ("patience", 0), ("min_epochs", 0)])
        if self.patience and not self.val_size:
            raise ValueError(
                f"--patience {self.patience} stops when the validation MSE stops improving, "
                "and --val_size 0 holds out no validation images; give --patience 0 to "
                "train all --epochs"
            )
        step = 2 ** len(models.DEFAULT_FILTERS)
        if self.image_size % step:
            raise ValueError(
                f"--image_size must be a multiple of {step} (the models halve it "
                f"{len(models.DEFAULT_FILTERS)} times); got {self.image_size}"
            )
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive; got {self.lr}")

    @property
    def name(self):
        return f"colorizer_{self.model}_{self.color_space}"

    @property
    def run_dir(self):
        return os.path.join(self.output_dir, "runs", self.run_name or self.name)
