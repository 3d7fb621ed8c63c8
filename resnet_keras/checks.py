"""Argument checks shared by the modules: bad names fail early, listing the
accepted values (keras-hub's "Received: ..." habit)."""


def check_choice(name, value, accepted):
    """Raises ValueError("Unknown optimizer 'x'; expected one of adam, ...")."""
    if value not in accepted:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(accepted)}")


def check_minimums(config, minimums):
    """Raises ValueError("--epochs must be at least 1; got 0") for the first
    `(attribute, lowest value)` pair that `config` falls below."""
    for name, low in minimums:
        if getattr(config, name) < low:
            raise ValueError(f"--{name} must be at least {low}; got {getattr(config, name)}")
