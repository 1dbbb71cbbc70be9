"""Knative's error extensions on a dead letter: which sink failed, its status and its answer.

As eventing-kafka-broker's RecordDispatcherImpl and eventing-rabbitmq's dispatcher set them:
knativeerrordest is the sink that failed; knativeerrorcode its last HTTP status and
knativeerrordata its response body, truncated to 1 KiB and base64-encoded; both are absent when
there was no response (timeout, connection refused).
"""

from __future__ import annotations

import base64

from cloudevents.http import CloudEvent

ERROR_DATA_MAX_BYTES = 1024


def error_extensions(destination: str, status: int | None, body: bytes | None) -> dict[str, str]:
    """Knative's error extensions for an event the sink did not take."""
    extensions = {"knativeerrordest": destination}
    if status is not None:
        extensions["knativeerrorcode"] = str(status)
        if body:
            extensions["knativeerrordata"] = base64.b64encode(body[:ERROR_DATA_MAX_BYTES]).decode("ascii")
    return extensions


def with_error_extensions(
    event: CloudEvent, destination: str, status: int | None, body: bytes | None
) -> CloudEvent:
    """A copy of the event carrying Knative's error extensions, for the dead-letter sink."""
    attributes = {**event.get_attributes(), **error_extensions(destination, status, body)}
    return CloudEvent(attributes, event.get_data())
