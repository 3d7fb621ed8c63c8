"""One file per experiment: its defaults in one dict and every run it trains.

A setting's value is, from lowest to highest: the config dataclass's field
default (`classification.config.TrainConfig`, `transfer.config.TransferOptions`,
`colorization.config.ColorizeConfig`), the experiment's `DEFAULTS` here, a
named preset (`presets.PRESETS`: `--schedule fast`, `--paper`), the flag as
given. The scripts turn flags into these; a config module reads no flags.
"""
