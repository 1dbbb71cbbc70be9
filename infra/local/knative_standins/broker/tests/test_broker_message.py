"""message.to_binary_request_of: the request of a message, equal to the SDK's path header for header.

The Trigger dispatcher turns each message into its binary-mode request without the SDK's event
objects; what it sends must be exactly what `to_binary_request(from_message(...))` sent: the same
headers, in the same order, the same encoding, the same body, and the same errors.
"""

from __future__ import annotations

import pytest
from cloudevents.exceptions import DataMarshallerError, MissingRequiredFields

from knative_standins.broker.message import NotACloudEvent, from_message, to_binary_request_of
from ripple_cloudevents import to_binary_request

BASE = {"specversion": "1.0", "id": "e-1", "source": "/shop", "type": "dev.ripple.shop.order.flagged"}
BODY = b'{"orderId": "o-1", "amount": 5000}'

MESSAGES = [
    pytest.param(
        {**BASE, "content-type": "application/json", "time": "2026-12-03T17:00:00.123Z"}, BODY, id="ingress"
    ),
    pytest.param({"tenant": "acme", **BASE, "subject": "o 1", "dataschema": "/s"}, BODY, id="order"),
    pytest.param({**BASE, "note": 'caf\u00e9 100% "x"', "subject": "a\tb"}, BODY, id="encoded"),
    pytest.param({**BASE, "note": b"bytes value", "count": 5}, BODY, id="not-str"),
    pytest.param(
        {**BASE, "x-knative-trigger": "n", "traceparent": "00-1", "Tenant": "acme"}, BODY, id="skipped"
    ),
    pytest.param({**BASE, "content-type": ""}, b"", id="empty"),
    pytest.param(
        {**BASE, "knativeerrordest": "http://s/", "knativeerrorcode": "503"}, b"x", id="dead-letter"
    ),
    pytest.param({**BASE, "data": "d"}, BODY, id="sdk-special"),
    pytest.param({**BASE, "specversion": "0.3", "schemaurl": "/s"}, BODY, id="v03"),
]


@pytest.mark.parametrize(("headers", "body"), MESSAGES)
def test_the_request_is_the_sdks(headers, body):
    expected = to_binary_request(from_message(headers, body))
    request = to_binary_request_of(headers, body)
    assert list(request[0].items()) == list(expected[0].items())
    assert request[1] == expected[1]


def test_errors_are_the_sdks():
    with pytest.raises(NotACloudEvent):
        to_binary_request_of({"id": "1", "source": "/s", "type": "t"}, b"")
    with pytest.raises(MissingRequiredFields):  # as from_message, for an unknown specversion
        to_binary_request_of({**BASE, "specversion": "2.0"}, b"")
    with pytest.raises(DataMarshallerError):  # as the SDK's marshaller, for an attribute so named
        to_binary_request_of({**BASE, "extensions": "e"}, b"")
