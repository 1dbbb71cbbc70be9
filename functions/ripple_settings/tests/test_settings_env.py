"""ripple_settings: a setting read from the environment, or a ConfigError that says what to set."""

from __future__ import annotations

import pytest

from ripple_settings import ConfigError, env_int, env_number


@pytest.mark.parametrize(
    ("env", "expected"), [({}, 5), ({"N": ""}, 5), ({"N": "7"}, 7), ({"N": "2"}, 2)], ids=str
)
def test_an_integer_or_its_default(env, expected):
    assert env_int("N", 5, minimum=2, env=env) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x", "N='x' is not an integer: set it to a whole number."),
        ("1", "N=1 is too small: set it to 2 or more."),
    ],
)
def test_a_bad_integer_says_what_to_set(raw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        env_int("N", 5, minimum=2, env={"N": raw})


def test_a_number_with_a_minimum():
    assert env_number({"T": "0.5"}, "T", 10) == 0.5
    assert env_number({}, "T", 10) == 10
    with pytest.raises(ConfigError, match="T='soon' must be a number"):
        env_number({"T": "soon"}, "T", 10)
    with pytest.raises(ConfigError, match="T=-1 must be at least 0"):
        env_number({"T": "-1"}, "T", 10)
