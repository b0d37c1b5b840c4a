"""Numbers a deployment tunes through the environment (intervals, sizes), read one way: a number
> 0, or one line naming the variable (a typo must not silently mean "checkpoint every minute")."""

from __future__ import annotations

import os

from invarlock_provider.errors import BadInputError


def positive_from_env(name: str, default: float, unit: str = "seconds") -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInputError(f"{name}: expected {unit}, got {raw!r}") from None
    if not value > 0:
        raise BadInputError(f"{name}: expected {unit} > 0, got {raw!r}")
    return value
