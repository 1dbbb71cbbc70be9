"""The event loop the stand-ins' data paths run on: uvloop's when installed, else asyncio's.

The activator and both dispatchers sit on every event's path, and uvloop's loop costs less CPU per
request than the stdlib's (loadtest/dispatcher/profiles/README.md); an image without uvloop runs
the stdlib loop with the same behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on new_event_loop()."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)
