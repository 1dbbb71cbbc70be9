"""Settings from the environment, read the same way by every stand-in: a bad value stops the
process with a ConfigError that names the variable and what to set it to.

Numbers are read as the functions read theirs (ripple_settings, a package of the functions the
stand-ins share as they share ripple_cloudevents); the error is re-raised as the stand-ins' own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import ripple_settings

from . import ConfigError


def whole_number(name: str, default: int, minimum: int, env: Mapping[str, str] = os.environ) -> int:
    try:
        return ripple_settings.env_int(name, default, minimum, env)
    except ripple_settings.ConfigError as error:
        raise ConfigError(str(error)) from None


def required(name: str, what: str, env: Mapping[str, str] = os.environ) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set: give {what} (the stack runner sets it in make up).")
    return value
