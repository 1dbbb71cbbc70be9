"""Sends CloudEvents to the ripple gateway with the Python SDK 1.x API (cloudevents==1.12.0).

Binary and structured mode with the SDK's own encoders, exactly as a user would call them: the
event carries no datacontenttype, so the binary request has no Content-Type (the JSON data is
implied application/json). The 1.x SDK has no batch writer: no batch requests.

Reads a plan on stdin ({"url", "token", "requests": [{"mode", "events": [...]}]}) and prints one
JSON line per request: {"mode", "status", "body"} (plan.py, beside it). Standard library only
besides the SDK.
"""

from __future__ import annotations

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from plan import run


def to_event(spec: dict) -> CloudEvent:
    attributes = {
        "id": spec["id"],
        "source": spec["source"],
        "type": spec["type"],
        "subject": spec["subject"],
        "time": spec["time"],
        "channel": spec["channel"],
        "priority": spec["priority"],
    }
    return CloudEvent(attributes, spec["data"])


def encode(mode: str, spec: dict) -> tuple[dict, bytes]:
    encoders = {"binary": to_binary, "structured": to_structured}
    return encoders[mode](to_event(spec))


def main() -> None:
    run(encode)


if __name__ == "__main__":
    main()
