"""Sends CloudEvents to the ripple gateway with the Python SDK 1.x API (cloudevents==1.12.0).

Binary and structured mode with the SDK's own encoders, exactly as a user would call them: the
event carries no datacontenttype, so the binary request has no Content-Type (the JSON data is
implied application/json). The 1.x SDK has no batch writer: no batch requests.

The plan on stdin and the answers on stdout: plan.py, beside it.
"""

from __future__ import annotations

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent
from plan import attributes, run


def to_event(spec: dict) -> CloudEvent:
    return CloudEvent(attributes(spec), spec["data"])


def encode(mode: str, spec: dict) -> tuple[dict, bytes]:
    encoders = {"binary": to_binary, "structured": to_structured}
    return encoders[mode](to_event(spec))


def main() -> None:
    run(encode)


if __name__ == "__main__":
    main()
