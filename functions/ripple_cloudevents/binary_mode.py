"""A binary-mode CloudEvent read from its (decoded) headers and body, as the pinned SDK reads it.

The SDK's `cloudevents.http.from_http` builds a legacy marshaller, a v1 event object of option
holders, sets every header on it one by one and copies the result into a CloudEvent: ~20 % of a
consumer instance's CPU per event under load (event-store, py-spy --gil, issue 22;
loadtest/consumers/profiles/). `read_binary_event` builds the same CloudEvent directly for the
case every hop of ripple delivers (a 1.0 binary-mode request), and `is_plain_binary` says when
that case applies; anything else (structured mode, batched, 0.3, a header named `ce-data` or
`ce-extensions`, a data unmarshaller of the caller's) stays with the SDK. The two agree on every
attribute, its order, the data and the errors: tests/test_cloudevents_binary_mode.py compares them
case by case and on generated requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cloudevents.exceptions import DataUnmarshallerError
from cloudevents.http import CloudEvent

__all__ = ["is_plain_binary", "read_binary_event"]

_REQUIRED = ("ce-specversion", "ce-id", "ce-source", "ce-type")
# The v1 event's own attributes, in the order the SDK lists them (its Properties()).
_CORE = ("specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time")
_CORE_SET = frozenset(_CORE)
_STRUCTURED = "application/cloudevents+json"  # the SDK's structured converter takes these


def is_plain_binary(headers: Mapping[str, str]) -> bool:
    """A 1.0 binary-mode request the SDK would read with its binary converter (lower-cased names)."""
    return (
        headers.get("ce-specversion") == "1.0"
        and all(name in headers for name in _REQUIRED)
        and not headers.get("content-type", "").startswith(_STRUCTURED)
        and "ce-data" not in headers
        and "ce-extensions" not in headers
    )


def read_binary_event(headers: Mapping[str, str], body: bytes | str | None) -> CloudEvent:
    """The CloudEvent of a request that `is_plain_binary`: what `from_http(headers, body)` returns."""
    core: dict[str, Any] = {}
    extensions: dict[str, Any] = {}
    for name, value in headers.items():
        if name == "content-type":
            core["datacontenttype"] = value
        elif name.startswith("ce-"):
            attribute = name[3:]
            (core if attribute in _CORE_SET else extensions)[attribute] = value
    attributes = {name: core[name] for name in _CORE if name in core}
    attributes.update(extensions)
    return CloudEvent(attributes, _data(body))


def _data(body: bytes | str | None) -> Any:
    """The SDK's default unmarshalling (JSON when it parses, else the body as it is; empty is None)."""
    if body is None or body == b"" or body == "":
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError):
        return body
    except Exception as error:  # e.g. RecursionError: the SDK wraps what its unmarshaller raises
        raise DataUnmarshallerError(
            f"Failed to unmarshall data with error: {type(error).__name__}('{error}')"
        ) from None
