"""A CloudEvent as eventing-rabbitmq puts it in an AMQP message, and back.

As upstream's pkg/rabbit/message.go: every context attribute and extension is a message header
named as the attribute (`type`, `source`, `id`, `specversion`, `time`, `subject`, ...; the data
content type as `content-type` and in the content_type property), the data is the body as
given, the message id is the event id and the message is persistent (delivery mode 2). Headers
beginning with `x-` are RabbitMQ's own and never become attributes. Because the attributes are
headers, a Trigger's filter is a headers-exchange binding (topology.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pika
from cloudevents.http import CloudEvent

from ripple_cloudevents import encode_value, to_binary_request

CONTENT_TYPE_HEADER = "content-type"
HEADER_PREFIX = "ce-"
# A 1.0 event's attributes in the order the SDK's binary marshaller writes them as ce-* headers
# (its v1 event's Properties(); datacontenttype is the content-type header, written first).
_CORE_ORDER = ("specversion", "id", "source", "type", "dataschema", "subject", "time")
_CORE = frozenset({*_CORE_ORDER, "datacontenttype"})
# Names the SDK's v1 event holds in fields of their own: such a message takes the SDK's path.
_SDK_SPECIAL = frozenset({"data", "extensions"})
PERSISTENT = pika.DeliveryMode.Persistent


class NotACloudEvent(ValueError):
    """A message without the required attributes (specversion, id, source, type)."""


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def to_message(event: CloudEvent) -> tuple[pika.BasicProperties, bytes]:
    headers: dict[str, str] = {}
    for name, value in event.get_attributes().items():
        if value is None:
            continue
        if name == "datacontenttype":
            headers[CONTENT_TYPE_HEADER] = _text(value)
        else:
            headers[name] = value.isoformat() if hasattr(value, "isoformat") else _text(value)
    data = event.get_data()
    if data is None:
        body = b""
    elif isinstance(data, bytes):
        body = data
    elif isinstance(data, str):
        body = data.encode()
    else:  # structured mode decoded the JSON data: back to its JSON text
        body = json.dumps(data, separators=(",", ":")).encode()
    properties = pika.BasicProperties(
        headers=headers,
        message_id=_text(event["id"]),
        content_type=headers.get(CONTENT_TYPE_HEADER),
        delivery_mode=PERSISTENT,
    )
    return properties, body


def _attributes(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """A message's CloudEvent attributes (NotACloudEvent without the required ones)."""
    attributes: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = name.lower()
        if key.startswith("x-") or key in ("traceparent", "tracestate"):
            continue
        attributes["datacontenttype" if key == CONTENT_TYPE_HEADER else key] = _text(value)
    missing = [name for name in ("specversion", "id", "source", "type") if name not in attributes]
    if missing:
        raise NotACloudEvent(f"the message lacks the CloudEvent attributes {', '.join(missing)}")
    return attributes


def _event(attributes: dict[str, str], body: bytes) -> CloudEvent:
    had_time = "time" in attributes
    event = CloudEvent(attributes, body if body else None)
    if not had_time and "time" in event:
        del event["time"]  # the SDK stamps a time; the Broker passes events through unchanged
    return event


def from_message(headers: Mapping[str, Any] | None, body: bytes) -> CloudEvent:
    return _event(_attributes(headers), body)


def to_binary_request_of(
    headers: Mapping[str, Any] | None, body: bytes
) -> tuple[dict[str, str], bytes | None]:
    """The binary-mode HTTP request of a message: what `to_binary_request(from_message(...))`
    gives, without building the SDK's event objects for a 1.0 event (the SDK's conversion was
    ~10 % of the Trigger dispatcher's CPU per delivery: loadtest/broker/profiles/README.md). The
    same headers in the same order and the same body: tests/test_broker_message.py compares them."""
    attributes = _attributes(headers)
    if attributes["specversion"] != "1.0" or not _SDK_SPECIAL.isdisjoint(attributes):
        return to_binary_request(_event(attributes, body))
    request: dict[str, str] = {}
    content_type = attributes.get("datacontenttype")
    if content_type:
        request[CONTENT_TYPE_HEADER] = content_type
    for name in _CORE_ORDER:
        value = attributes.get(name)
        if value is not None:
            request[HEADER_PREFIX + name] = encode_value(value)
    for name, value in attributes.items():
        if name not in _CORE:
            request[HEADER_PREFIX + name] = encode_value(value)
    return request, body or None
