"""Argument checks shared by the modules: bad names fail early, listing the
accepted values (keras-hub's "Received: ..." habit); and `DataError`, which
every data source raises (data/cifar.py, data/image_folders.py, data/pipeline.py), kept here
so those modules need not import one another for it."""


class DataError(ValueError):
    """A data set that cannot be used as given; the message names path and fix.

    A ValueError, so the scripts' error wrapper prints it as one line."""


def check_choice(name, value, accepted):
    """Raises ValueError("Unknown optimizer 'x'; expected one of adam, ...")."""
    if value not in accepted:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(accepted)}")


def check_bounds(name, value, lower=None, upper=None):
    """Raises ValueError("--epochs must be at least 1; got 0") when `value`
    is below `lower` or above `upper` (either may be None: no bound)."""
    if lower is not None and value < lower:
        raise ValueError(f"--{name} must be at least {lower}; got {value}")
    if upper is not None and value > upper:
        raise ValueError(f"--{name} must be at most {upper}; got {value}")


def check_minimums(config, minimums):
    """`check_bounds` for the first `(attribute, lowest value)` pair that
    `config` falls below."""
    for name, low in minimums:
        check_bounds(name, getattr(config, name), lower=low)
