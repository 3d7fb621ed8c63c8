"""The colorization study: an autoencoder and a U-Net in sRGB and Lab.

`python -m scripts.colorize train` trains one colorizer with `DEFAULTS`, over
`colorization.config.ColorizeConfig`'s field defaults, under the flags given
(`--model autoencoder|unet`, `--color_space rgb|lab`); `make_config` is the
run's config for each command.
"""

from resnet_keras.colorization.config import ColorizeConfig
from resnet_keras.run import optim

DEFAULTS = dict(
    model="autoencoder",
    color_space="rgb",
    image_size=32,
    dataset="cifar10",
    # train to the plateau of the validation MSE: stop after the first epoch,
    # the 30th or later, that ends 10 in a row without a new best; at most 100.
    epochs=100,
    patience=10,
    min_epochs=30,
    probe_epochs=10,
    batch_size=128,
    lr=optim.base_learning_rate("adam"),  # Adam, the original's optimizer, at its default
    val_size=5000,
    output_dir=".",
    formats=["h5"],
    out="colorized",
    verbose=1,
)


def make_config(settings, command, explicit):
    """(ColorizeConfig, the probe's epochs, apply's output folder) of the
    resolved `settings` for `command` (train, eval, apply, probe), checked;
    `explicit`: the flags given."""
    settings = dict(settings)
    pictures, probe_epochs = settings.pop("out"), settings.pop("probe_epochs")
    if command == "probe" and "epochs" in explicit:
        probe_epochs = settings["epochs"]
    if command != "train":  # eval and probe train no colorizer: no stop to check
        settings["patience"] = 0
    if settings["patience"] == 0:  # no stop: --min_epochs means nothing, so it is
        settings["min_epochs"] = 0  # no setting (a run from before the flag resumes)
    config = ColorizeConfig(**settings)
    config.validate()
    return config, probe_epochs, pictures
