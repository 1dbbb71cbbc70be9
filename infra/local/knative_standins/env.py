"""Settings from the environment, read the same way by every stand-in: a bad value stops the
process with a ConfigError that names the variable and what to set it to."""

from __future__ import annotations

import os
from collections.abc import Mapping

from . import ConfigError


def whole_number(name: str, default: int, minimum: int, env: Mapping[str, str] = os.environ) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number: set it to {minimum} or more.") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small: set it to {minimum} or more.")
    return value


def required(name: str, what: str, env: Mapping[str, str] = os.environ) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: give {what} (the stack runner sets it in make up).")
    return value
