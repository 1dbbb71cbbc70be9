"""A Kafka record as the CloudEvent Knative's KafkaSource would deliver for it.

- CloudEvents Kafka binding, binary mode (`ce_specversion` header): the event of the headers,
  data passed through byte for byte.
- Structured mode (`content-type: application/cloudevents+json`): the event of the value.
- Anything else (a "plain" record): built the way eventing-kafka-broker's
  InvalidCloudEventInterceptor does: type dev.knative.kafka.event, source
  /apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>, id partition:<p>/offset:<o>, subject
  partition:<p>#<o>, time = record timestamp, the key as `key` and `partitionkey` extensions,
  record headers as `kafkaheader<name>` extensions, data = the value.

The dispatcher sends `to_http` (HTTP binary-mode headers and body). A binary-mode record with
specversion 1.0 takes a direct path: its `ce_<name>` headers are the `ce-<name>` HTTP headers
one to one, which is what the SDK's from_binary + to_binary produce, without building an event
object per record (that was most of the dispatcher's conversion cost). Everything else goes
through the SDK (`to_cloudevent`); a unit test keeps the two paths' output identical.

Kafka headers carry attribute values as raw UTF-8 (Kafka binding); HTTP headers carry them
percent-encoded (HTTP binding 3.1.3.2), as Knative's dispatcher sends them through the Go and Java
SDKs' writers. An HttpEvent's `ce-*` values are therefore always in that encoded, ASCII form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cloudevents import exceptions as ce_exceptions
from cloudevents.http import CloudEvent
from cloudevents.kafka import KafkaMessage, from_binary, from_structured

from ripple_cloudevents import encode_headers, encode_value, to_binary_request

from ..delivery.errors import error_extensions

PLAIN_EVENT_TYPE = "dev.knative.kafka.event"
STRUCTURED_CONTENT_TYPE = "application/cloudevents"
REQUIRED_BINARY_HEADERS = ("ce_specversion", "ce_id", "ce_source", "ce_type")


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


@dataclass(frozen=True, slots=True)
class HttpEvent:
    """A CloudEvent as an HTTP binary-mode request: `ce-*` (percent-encoded) and content-type
    headers, and the body."""

    headers: dict[str, str]
    body: bytes | None

    @property
    def id(self) -> str:
        return self.headers.get("ce-id", "")

    @property
    def source(self) -> str:
        return self.headers.get("ce-source", "")


def _http_event(event: CloudEvent) -> HttpEvent:
    headers, body = to_binary_request(event)
    return HttpEvent(headers, body if body else None)


def _http_name(kafka_name: str) -> str:
    """The binary-mode HTTP header of a Kafka header: `ce_<x>` -> `ce-<x>`, `content-type`
    itself, "" for any other (not an attribute, not sent)."""
    name = kafka_name.lower()
    if name.startswith("ce_"):
        return "ce-" + name[3:]
    return name if name == "content-type" else ""


# Kafka header name -> _http_name, filled as names are met: a topic carries a handful, and the
# lookup saves lowering, testing and joining each header of every record (a tenth of the
# dispatcher's CPU after the HTTP client went lean, loadtest/dispatcher/profiles/README.md).
_HTTP_NAMES: dict[str, str] = {}
MAX_HTTP_NAMES = 4096  # a safeguard against records with ever new header names


def _binary_headers(record: Record) -> dict[str, str] | None:
    """HTTP headers of a binary-mode 1.0 record, or None when it needs the SDK's judgement."""
    headers: dict[str, str] = {}
    names = _HTTP_NAMES
    try:
        for kafka_name, value in record.headers:
            name = names.get(kafka_name)
            if name is None:
                name = _http_name(kafka_name)
                if len(names) < MAX_HTTP_NAMES:
                    names[kafka_name] = name
            if not name:
                continue
            if name == "content-type":
                if value and value[:23].lower() == b"application/cloudevents":
                    return None  # structured mode
                headers["content-type"] = value.decode() if value else ""
            else:
                headers[name] = encode_value(value.decode()) if value else ""
    except UnicodeDecodeError:
        return None
    if headers.get("ce-specversion") != "1.0":
        return None
    if not (headers.get("ce-id") and headers.get("ce-source") and headers.get("ce-type")):
        return None
    return headers


def to_http(record: Record, namespace: str, source_name: str, overrides: dict[str, str]) -> HttpEvent:
    """The HTTP request delivering a record's CloudEvent, with the KafkaSource's ceOverrides."""
    headers = _binary_headers(record)
    if headers is None:
        event = to_cloudevent(record, namespace, source_name)
        for name, value in overrides.items():
            event[name] = value
        return _http_event(event)
    for name, value in overrides.items():
        headers["content-type" if name == "datacontenttype" else "ce-" + name] = (
            value if name == "datacontenttype" else encode_value(value)
        )
    return HttpEvent(headers, record.value or None)


def with_error_headers(
    event: HttpEvent, destination: str, status: int | None, body: bytes | None
) -> HttpEvent:
    """The request for the dead-letter sink: the event plus Knative's error extensions."""
    extra = encode_headers(error_extensions(destination, status, body))
    return HttpEvent({**event.headers, **extra}, event.body)
