"""Sends CloudEvents to the ripple gateway with the Python SDK 2.x and its v1 API.

The 2.x package (`pip install cloudevents`, what PyPI serves today) has a new API:
`cloudevents.core.v1.event.CloudEvent` and the HTTP binding of `cloudevents.core.bindings.http`
(binary and structured mode; it percent-encodes header values as the HTTP binding asks). It has no
batch writer: no batch requests. It runs in its own virtualenv (the project pins 1.12.0).

The plan on stdin and the answers on stdout: plan.py, beside it.
"""

from __future__ import annotations

from datetime import datetime

from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from plan import attributes, run


def to_event(spec: dict) -> CloudEvent:
    # The 2.x event takes time as a datetime.
    time = datetime.fromisoformat(spec["time"].replace("Z", "+00:00"))
    return CloudEvent(attributes(spec, time=time, datacontenttype="application/json"), spec["data"])


def encode(mode: str, spec: dict) -> tuple[dict, bytes]:
    encoders = {"binary": to_binary_event, "structured": to_structured_event}
    message = encoders[mode](to_event(spec))
    return dict(message.headers), message.body


def main() -> None:
    run(encode)


if __name__ == "__main__":
    main()
