"""A classification run's settings: `TrainConfig`, the fields every run has and a classifier's."""

import dataclasses
import os

from resnet_keras.checks import check_choice, check_minimums
from resnet_keras.classification import models, pretrained
from resnet_keras.run import folders, optim
from resnet_keras.run.config import RunConfig

MODELS = ("resnet", "plain")


@dataclasses.dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Everything a classification run depends on; scripts fill it from flags."""

    # The fused BatchNorm kernel and recomputed blocks compute the same thing.
    NO_EFFECT = RunConfig.NO_EFFECT | {"fused_bn", "recompute"}

    model: str = "resnet"
    n: int = 3
    opt: str = "adam"
    lr: float | None = None  # None: the optimizer's default (`learning_rate`)
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = models.PAPER_WEIGHT_DECAY
    shortcut: str = "projection"
    normalization: str = "per_channel"
    fused_bn: bool = True  # TensorFlow's fused BatchNorm kernel (speedups.fuse_batch_norm)
    recompute: bool = False  # less memory, slower steps (speedups.recompute_blocks)
    augment: bool = True
    label_smoothing: float = 0.0  # > 0: one-hot targets (1 - e) + e / classes
    nesterov: bool = False  # SGD only
    # Also test on the mirrored test images, averaging the two softmaxes
    # (metrics test_accuracy_tta); test_accuracy stays the saved model's own.
    tta: bool = False
    # Six views: that pair plus the pair moved one pixel up-left and one
    # down-right (metrics test_accuracy_tta_shifts; predict_with_shifts).
    tta_shifts: bool = False
    # "random" (he_normal), or a `pretrained` name: start from that trained
    # network (its weights and its input normalisation), e.g. to fine-tune it.
    init: str = "random"
    run_name: str = "run"

    def validate(self):
        super().validate()
        check_choice("model", self.model, MODELS)
        check_choice("optimizer", self.opt, optim.OPTIMIZERS)
        check_choice("schedule", self.schedule, optim.SCHEDULES)
        check_choice("shortcut", self.shortcut, models.SHORTCUTS)
        check_choice("normalization", self.normalization, models.NORMALIZATIONS)
        check_minimums(self, [("n", 1), ("weight_decay", 0), ("label_smoothing", 0)])
        if self.n > models.MAX_N:
            raise ValueError(
                f"--n must be at most {models.MAX_N} (ResNet-{models.n_to_depth(models.MAX_N)}): "
                "Keras cannot build or load deeper networks at Python's default "
                f"recursion limit; got {self.n}"
            )
        if self.label_smoothing >= 1:
            raise ValueError(f"--label_smoothing must be below 1; got {self.label_smoothing}")
        if self.recompute and not self.fused_bn:
            raise ValueError(
                "--recompute needs --fused_bn (its BatchNorm skips the second "
                "moving-average update)"
            )
        optim.check_nesterov(self.opt, self.nesterov)
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--lr must be positive; got {self.lr}")
        folders.check_name(self.run_name)
        self._check_init()

    def _check_init(self):
        check_choice("init", self.init, ("random",) + tuple(pretrained.PRESETS))
        if self.init == "random":
            return
        n = pretrained.PRESETS[self.init].n
        # The normalisation too: the network brings the one it was trained with.
        wanted = dict(
            model="resnet", n=n, shortcut="identity", dataset="cifar10", normalization="per_channel"
        )
        got = {k: getattr(self, k) for k in wanted}
        if got != wanted:
            expected = ", ".join(f"--{k} {v}" for k, v in wanted.items())
            raise ValueError(
                f"--init {self.init} is ResNet-{models.n_to_depth(n)} with option-A shortcuts on CIFAR-10: "
                f"it needs {expected}; got " + ", ".join(f"--{k} {v}" for k, v in got.items())
            )

    @property
    def learning_rate(self):
        """The base learning rate the run trains with: `lr`, or the optimizer's default."""
        return optim.base_learning_rate(self.opt, self.lr)

    def settings(self):
        # The rate in force, so that a run made before a default changed is not reused.
        return super().settings() | {"lr": self.learning_rate}

    @property
    def depth(self):
        return models.n_to_depth(self.n)

    @property
    def run_dir(self):
        return os.path.join(self.output_dir, "runs", self.run_name)
