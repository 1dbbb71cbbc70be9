"""What the cluster tests share: waiting for a condition of the cluster with a deadline that fails
the test with the last thing seen (the cluster is slow and shared: every wait is bounded)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_until(what: str, probe: Callable[[], Any], timeout: float, every: float = 2) -> Any:
    """The first truthy answer of `probe`, polled every `every` s; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")
