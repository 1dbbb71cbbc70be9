"""The Trigger dispatcher's delivery decisions, with a scripted subscriber or a loopback one.

Which answers are retried, how often, how long it waits, and what the dead letter carries: the
Knative rules shared with the KafkaSource stand-in, applied per the Trigger's delivery spec; and a
message's way through the deliveries' event loop and the real sender to a loopback subscriber and
back to its channel (ack, discard, dead letter), with stand-ins for pika's connection and channels.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import threading
from pathlib import Path

import pytest
from broker_testkit import BROKER, load, trigger
from cloudevents.http import CloudEvent

from knative_standins.broker.dispatcher import TriggerDispatcher
from knative_standins.broker.message import from_message, to_message
from knative_standins.broker.metrics import DispatcherMetrics
from knative_standins.delivery.errors import with_error_extensions
from knative_standins.delivery.sender import Response
from ripple_cloudevents import to_binary_request

TRIGGER = trigger('{uri: "http://subscriber.invalid/"}') + (
    "  delivery: {retry: 3, backoffPolicy: linear, backoffDelay: PT0.5S}\n"
)


class Script:
    """A subscriber that answers the given statuses in order (None: no answer)."""

    def __init__(self, statuses: list[int | None]) -> None:
        self.statuses = list(statuses)
        self.calls = 0

    async def post(self, url: str, headers: dict[str, str], body: bytes | None) -> Response:
        self.calls += 1
        status = self.statuses.pop(0)
        return Response(status, b'{"title":"nope"}' if status else None)


@pytest.fixture
def dispatcher(tmp_path: Path):
    notifications = load(tmp_path, BROKER + TRIGGER)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    dispatcher = TriggerDispatcher(
        notifications,
        notifications.triggers[0],
        "amqp://u:p@127.0.0.1:1/%2F",
        "http://subscriber.invalid/",
        None,
        DispatcherMetrics(),
        sleep=sleep,
    )
    dispatcher.waits = waits
    yield dispatcher
    dispatcher.stop_deliveries()


EVENT = CloudEvent({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, b"x")


@pytest.mark.parametrize(
    ("statuses", "final", "calls", "waits"),
    [
        ([202], 202, 1, []),
        ([503, 200], 200, 2, [0.5]),
        ([None, 429, 404, 200], 200, 4, [0.5, 1.0, 1.5]),  # linear: delay * n
        ([503, 503, 503, 503], 503, 4, [0.5, 1.0, 1.5]),  # retry: 3, then give up
        ([400], 400, 1, []),  # not retryable: straight to the dead-letter path
        ([500, 422], 422, 2, [0.5]),
    ],
)
def test_retries_follow_the_delivery_spec(dispatcher, statuses, final, calls, waits):
    script = Script(statuses)
    dispatcher.sender = script
    response = asyncio.run(dispatcher.deliver("http://subscriber.invalid/", {"ce-id": "1"}, b"x"))
    assert response.status == final
    assert script.calls == calls
    assert dispatcher.waits == waits


def test_the_dead_letter_carries_the_knative_error_extensions():
    dead = with_error_extensions(EVENT, "http://subscriber.invalid/", 503, b'{"title":"nope"}')
    assert dead["knativeerrordest"] == "http://subscriber.invalid/"
    assert dead["knativeerrorcode"] == "503"
    assert base64.b64decode(dead["knativeerrordata"]) == b'{"title":"nope"}'


class LostConnection:
    """A pika connection that accepted a settle callback and closed before running it."""

    def add_callback_threadsafe(self, callback) -> None:
        pass


class LiveConnection:
    def add_callback_threadsafe(self, callback) -> None:
        callback()


def test_a_lost_sessions_unsettled_messages_do_not_stay_in_flight(dispatcher):
    """ripple_trigger_in_flight (and the tests' "settled" checks) must not stay above zero
    after RabbitMQ went away with a settle callback queued: the new session counts afresh."""

    async def nothing() -> None:
        pass

    dispatcher.start_deliveries()
    lost, live = LostConnection(), LiveConnection()
    dispatcher._counted = lost
    dispatcher._submit(nothing)
    dispatcher._hand_back(lost, lambda: None)  # queued, never run: the connection closed
    assert dispatcher.in_flight == 1
    dispatcher._counted, dispatcher.in_flight = live, 0  # what _session does on reconnecting
    dispatcher._submit(nothing)
    dispatcher._hand_back(lost, lambda: None)  # a late worker of the lost session
    assert dispatcher.in_flight == 1
    dispatcher._hand_back(live, lambda: None)
    assert dispatcher.in_flight == 0


class Subscriber(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's `status`, keeping (headers, body) of each request."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers.items()), body))
        answer = b'{"title":"nope"}' if self.server.status >= 300 else b""
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *arguments: object) -> None:
        pass


@pytest.fixture
def subscriber():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Subscriber)
    server.received, server.status = [], 202
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


class Channel:
    """What a pika channel is asked to do, and a settled event to wait for."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.settled = threading.Event()

    def basic_ack(self, tag: int) -> None:
        self.calls.append(("ack", tag))
        self.settled.set()

    def basic_nack(self, tag: int, requeue: bool) -> None:
        self.calls.append(("nack", tag, requeue))
        self.settled.set()

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties) -> None:
        self.calls.append(("publish", exchange, properties.headers, body))


def work(dispatcher: TriggerDispatcher, url: str, dead_letter_url: str | None) -> tuple[Channel, Channel]:
    """One message of EVENT through dispatcher._work to `url`: (its channel, the publisher)."""
    dispatcher.subscriber_url, dispatcher.dead_letter_url = url, dead_letter_url
    dispatcher.start_deliveries()
    channel, publisher = Channel(), Channel()
    connection = LiveConnection()
    dispatcher._counted = connection
    properties, body = to_message(EVENT)
    dispatcher._submit(dispatcher._work, connection, channel, publisher, 7, properties.headers, body)
    assert channel.settled.wait(10)
    return channel, publisher


def test_a_2xx_acks_the_message_after_the_binary_mode_post(dispatcher, subscriber):
    url = f"http://127.0.0.1:{subscriber.server_port}/"
    channel, publisher = work(dispatcher, url, None)
    assert channel.calls == [("ack", 7)] and publisher.calls == []
    assert dispatcher.in_flight == 0
    ((headers, body),) = subscriber.received
    properties, message_body = to_message(EVENT)
    expected_headers, expected_body = to_binary_request(from_message(properties.headers, message_body))
    assert {name: headers[name] for name in expected_headers} == expected_headers
    assert body == expected_body
    assert (
        dispatcher.metrics.registry.get_sample_value(
            "ripple_trigger_events_delivered_total", {"trigger": "t"}
        )
        == 1
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"id": "1", "source": "/s", "type": "t"},  # no specversion: not a CloudEvent
        {"specversion": "2.0", "id": "1", "source": "/s", "type": "t"},  # one the SDK refuses
    ],
)
def test_an_undeliverable_message_is_acked_and_counted_discarded_not_left_unsettled(
    dispatcher, subscriber, headers
):
    dispatcher.subscriber_url = f"http://127.0.0.1:{subscriber.server_port}/"
    dispatcher.start_deliveries()
    channel, publisher = Channel(), Channel()
    connection = LiveConnection()
    dispatcher._counted = connection
    dispatcher._submit(dispatcher._work, connection, channel, publisher, 9, headers, b"{}")
    assert channel.settled.wait(10)
    assert channel.calls == [("ack", 9)] and subscriber.received == []
    assert (
        dispatcher.metrics.registry.get_sample_value(
            "ripple_trigger_events_discarded_total", {"trigger": "t", "reason": "not-a-cloudevent"}
        )
        == 1
    )


def test_failed_for_good_without_a_dead_letter_sink_acks_and_counts_it_discarded(dispatcher, subscriber):
    subscriber.status = 400  # not retryable
    channel, _ = work(dispatcher, f"http://127.0.0.1:{subscriber.server_port}/", None)
    assert channel.calls == [("ack", 7)]
    assert (
        dispatcher.metrics.registry.get_sample_value(
            "ripple_trigger_events_discarded_total", {"trigger": "t", "reason": "no-dead-letter-sink"}
        )
        == 1
    )


def test_failed_for_good_publishes_the_dead_letter_with_the_error_extensions_then_acks(
    dispatcher, subscriber
):
    subscriber.status = 400
    url = f"http://127.0.0.1:{subscriber.server_port}/"
    channel, publisher = work(dispatcher, url, "http://dead.invalid/")
    assert channel.calls == [("ack", 7)]
    ((_, exchange, headers, body),) = publisher.calls
    assert exchange == "t.ns.t.dlx"
    assert headers["knativeerrordest"] == url and headers["knativeerrorcode"] == "400"
    assert base64.b64decode(headers["knativeerrordata"]) == b'{"title":"nope"}'
    assert headers["id"] == "1" and body == b"x"
