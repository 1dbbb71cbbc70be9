"""delivery.errors: the knativeerror* extensions a dead letter carries."""

from __future__ import annotations

import base64

from cloudevents.http import CloudEvent

from knative_standins.delivery.errors import with_error_extensions


def test_error_extensions():
    event = CloudEvent({"specversion": "1.0", "id": "e-1", "source": "/s", "type": "t"}, b'{"a": 1}')
    dead = with_error_extensions(event, "http://sink/", 500, b"x" * 2000)
    assert dead["knativeerrordest"] == "http://sink/"
    assert dead["knativeerrorcode"] == "500"
    assert base64.b64decode(dead["knativeerrordata"]) == b"x" * 1024
    assert dead["id"] == event["id"] and dead.get_data() == event.get_data()
    no_answer = with_error_extensions(event, "http://sink/", None, None)
    assert "knativeerrorcode" not in no_answer and "knativeerrordata" not in no_answer
