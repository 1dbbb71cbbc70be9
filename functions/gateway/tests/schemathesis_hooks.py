"""Schemathesis hooks for the gateway's OpenAPI test: the two rules OpenAPI cannot state.

The document is exact except for what the description of openapi.yaml lists: in binary mode the
body must match the data schema of the type in `ce-type` (OpenAPI can only say "one of the
types' schemas"), and `time` may not be more than 5 minutes ahead of the gateway's clock. A
generated request that the document allows is made to follow those rules too (the type that the
body matches is put in `ce-type`, a future year becomes 2000), so "a valid request is accepted"
is checked on every request. A request that breaks the document (negative testing) is left alone:
the hook only touches values that are already valid.

Loaded by `st run` through SCHEMATHESIS_HOOKS=schemathesis_hooks (see test_gateway_openapi.py).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

from ripple_events import load_catalog

PUBLISHABLE = [entry for entry in load_catalog() if entry.publishable]
AHEAD = timedelta(minutes=4)


def _past(value: Any) -> Any:
    """A valid RFC 3339 `time` in the future, moved to the year 2000 (a leap year, so 02-29 stays valid)."""
    if not isinstance(value, str) or len(value) < 20:
        return value
    try:
        moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return value
    return "2000" + value[4:] if moment > datetime.now(UTC) + AHEAD else value


def _fix_event(event: Any) -> None:
    if isinstance(event, dict) and "time" in event:
        event["time"] = _past(event["time"])


def _without_nul(value: Any) -> Any:
    """The same value with NUL characters replaced (the gateway refuses \\u0000: no store can hold it)."""
    if isinstance(value, str):
        return value.replace("\x00", "0")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    if case.operation.path != "/" or case.method.upper() != "POST":
        return case
    # A requests CaseInsensitiveDict: any mutable mapping.
    headers = case.headers if isinstance(case.headers, MutableMapping) else None
    if headers is not None and "ce-time" in headers:
        headers["ce-time"] = _past(headers["ce-time"])
    case.body = _without_nul(case.body)
    media = (case.media_type or "").lower()
    if media == "application/json" and headers is not None:
        if headers.get("ce-type") in {entry.type for entry in PUBLISHABLE}:
            matching = [entry.type for entry in PUBLISHABLE if not entry.schema_errors(case.body)]
            if matching:
                headers["ce-type"] = matching[0]
    elif media == "application/cloudevents+json":
        _fix_event(case.body)
    elif media == "application/cloudevents-batch+json" and isinstance(case.body, list):
        for event in case.body:
            _fix_event(event)
    return case
