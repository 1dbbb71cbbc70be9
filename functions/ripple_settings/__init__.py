"""Settings of the functions from their environment, read one way: a missing or unusable value is a
ConfigError that names the variable and says what to set it to (the function stops at start-up
with that sentence, never with a traceback).

Every function reads its settings with these (the gateway's and query's token settings too), and
each variable is documented, with its default, in the function's README and manifest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A setting is missing or wrong; the message says which and what to do."""


def env_int(name: str, default: int, minimum: int = 0, env: Mapping[str, str] = os.environ) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer: set it to a whole number.") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is too small: set it to {minimum} or more.")
    return value


def env_number(env: Mapping[str, str], name: str, default: float, minimum: float = 0) -> float:
    raw = env.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a number (default {default:g}).") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw} must be at least {minimum:g}.")
    return value


def or_exit(function: str, read: Callable[[], T]) -> T:
    """What `read` returns, or the process stops with `<function>: <what to fix>` (exit 1).

    The functions read their settings at import, so that a wrong one stops the start with one
    sentence in the pod's log instead of failing the first request.
    """
    try:
        return read()
    except ConfigError as error:
        raise SystemExit(f"{function}: {error}") from None
