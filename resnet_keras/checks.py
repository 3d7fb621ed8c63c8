"""Argument checks shared by the modules: bad names fail early, listing the
accepted values (keras-hub's "Received: ..." habit)."""


def check_choice(name, value, accepted):
    """Raises ValueError("Unknown optimizer 'x'; expected one of adam, ...")."""
    if value not in accepted:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(accepted)}")
