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

CONTENT_TYPE_HEADER = "content-type"
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


def from_message(headers: Mapping[str, Any] | None, body: bytes) -> CloudEvent:
    attributes: dict[str, str] = {}
    for name, value in (headers or {}).items():
        key = name.lower()
        if key.startswith("x-") or key in ("traceparent", "tracestate"):
            continue
        attributes["datacontenttype" if key == CONTENT_TYPE_HEADER else key] = _text(value)
    missing = [name for name in ("specversion", "id", "source", "type") if name not in attributes]
    if missing:
        raise NotACloudEvent(f"the message lacks the CloudEvent attributes {', '.join(missing)}")
    had_time = "time" in attributes
    event = CloudEvent(attributes, body if body else None)
    if not had_time and "time" in event:
        del event["time"]  # the SDK stamps a time; the Broker passes events through unchanged
    return event
