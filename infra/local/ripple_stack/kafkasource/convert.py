"""A Kafka record as the CloudEvent Knative's KafkaSource would deliver for it.

- CloudEvents Kafka binding, binary mode (`ce_specversion` header): the event of the headers,
  data passed through byte for byte.
- Structured mode (`content-type: application/cloudevents+json`): the event of the value.
- Anything else (a "plain" record): built the way eventing-kafka-broker's
  InvalidCloudEventInterceptor does: type dev.knative.kafka.event, source
  /apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>, id partition:<p>/offset:<o>, subject
  partition:<p>#<o>, time = record timestamp, the key as `key` and `partitionkey` extensions,
  record headers as `kafkaheader<name>` extensions, data = the value.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cloudevents import exceptions as ce_exceptions
from cloudevents.http import CloudEvent
from cloudevents.kafka import KafkaMessage, from_binary, from_structured

PLAIN_EVENT_TYPE = "dev.knative.kafka.event"
STRUCTURED_CONTENT_TYPE = "application/cloudevents"
REQUIRED_BINARY_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type")
ERROR_DATA_MAX_BYTES = 1024


@dataclass(frozen=True)
class Record:
    """What the dispatcher needs of a consumed record (kafka-python's ConsumerRecord fits)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


def _headers(record: Record) -> dict[str, bytes]:
    return {name.lower(): value or b"" for name, value in record.headers}


def _identity(value: object) -> object:
    return value


def _without_added_time(event: CloudEvent, had_time: bool) -> CloudEvent:
    # The SDK stamps a `time` on events that have none; Knative passes events through unchanged.
    if not had_time and "time" in event:
        del event["time"]
    return event


def plain_event(record: Record, namespace: str, source_name: str) -> CloudEvent:
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": f"partition:{record.partition}/offset:{record.offset}",
        "source": f"/apis/v1/namespaces/{namespace}/kafkasources/{source_name}#{record.topic}",
        "type": PLAIN_EVENT_TYPE,
        "subject": f"partition:{record.partition}#{record.offset}",
        "time": datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z"),
    }
    if record.key is not None:
        key = record.key.decode("utf-8", errors="replace")  # key-type "string", Knative's default
        attributes["partitionkey"] = key
        attributes["key"] = key
    for name, value in record.headers:
        if name.lower() == "content-type":
            attributes["datacontenttype"] = (value or b"").decode("utf-8", errors="replace").lower()
            continue
        extension = "kafkaheader" + re.sub(r"[^a-z0-9]", "", name.lower())
        attributes[extension] = (value or b"").decode("utf-8", errors="replace")
    return CloudEvent(attributes, record.value)


def to_cloudevent(record: Record, namespace: str, source_name: str) -> CloudEvent:
    """The CloudEvent for a record; never raises: what is not a valid CloudEvent is plain."""
    headers = _headers(record)
    content_type = headers.get("content-type", b"").decode("latin-1").lower()
    try:
        if content_type.startswith(STRUCTURED_CONTENT_TYPE) and record.value:
            # The record key is not an event attribute in Knative's reader: pass key=None.
            message = KafkaMessage(
                {k: v for k, v in headers.items() if k != "content-type"}, None, record.value
            )
            event = from_structured(message)
            return _without_added_time(event, had_time=b'"time"' in record.value)
        if all(name in headers for name in REQUIRED_BINARY_HEADERS):
            message = KafkaMessage(headers, None, record.value if record.value is not None else b"")
            event = from_binary(message, data_unmarshaller=_identity)
            if record.value is None or record.value == b"":
                event.data = None
            return _without_added_time(event, had_time="ce_time" in headers)
    except (ce_exceptions.GenericException, ValueError, TypeError, UnicodeDecodeError):
        pass  # an invalid CloudEvent is delivered as a plain record, as Knative does
    return plain_event(record, namespace, source_name)


def with_error_extensions(
    event: CloudEvent, destination: str, status: int | None, body: bytes | None
) -> CloudEvent:
    """A copy of the event carrying Knative's error extensions, for the dead-letter sink.

    knativeerrordest is the sink that failed; knativeerrorcode its last HTTP status and
    knativeerrordata its response body, truncated to 1 KiB and base64-encoded (as the Java data
    plane does); both are absent when there was no response (timeout, connection refused).
    """
    attributes = dict(event.get_attributes())
    attributes["knativeerrordest"] = destination
    if status is not None:
        attributes["knativeerrorcode"] = str(status)
        if body:
            attributes["knativeerrordata"] = base64.b64encode(body[:ERROR_DATA_MAX_BYTES]).decode("ascii")
    return CloudEvent(attributes, event.get_data())
