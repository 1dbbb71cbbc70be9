"""The Trigger dispatcher's delivery decisions, with a scripted subscriber (no server).

Which answers are retried, how often, how long it waits, and what the dead letter carries: the
Knative rules shared with the KafkaSource stand-in, applied per the Trigger's delivery spec.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from broker_testkit import BROKER, load, trigger
from cloudevents.http import CloudEvent

from knative_standins.broker.dispatcher import Outcome, TriggerDispatcher
from knative_standins.broker.metrics import DispatcherMetrics
from knative_standins.delivery.errors import with_error_extensions

TRIGGER = trigger('{uri: "http://subscriber.invalid/"}') + (
    "  delivery: {retry: 3, backoffPolicy: linear, backoffDelay: PT0.5S}\n"
)


class Script:
    """A subscriber that answers the given statuses in order (None: no answer)."""

    def __init__(self, statuses: list[int | None]) -> None:
        self.statuses = list(statuses)
        self.calls = 0

    def post(self, url: str, event: CloudEvent) -> Outcome:
        self.calls += 1
        status = self.statuses.pop(0)
        return Outcome(status, b'{"title":"nope"}' if status else None)


@pytest.fixture
def dispatcher(tmp_path: Path):
    notifications = load(tmp_path, BROKER + TRIGGER)
    waits: list[float] = []
    dispatcher = TriggerDispatcher(
        notifications,
        notifications.triggers[0],
        "amqp://u:p@127.0.0.1:1/%2F",
        "http://subscriber.invalid/",
        None,
        DispatcherMetrics(),
        sleep=waits.append,
    )
    dispatcher.waits = waits
    yield dispatcher
    dispatcher.pool.shutdown()


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
    assert dispatcher.deliver("http://subscriber.invalid/", EVENT).status == final
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
    lost, live = LostConnection(), LiveConnection()
    dispatcher._counted = lost
    dispatcher._submit(lambda: None)
    dispatcher._hand_back(lost, lambda: None)  # queued, never run: the connection closed
    assert dispatcher.in_flight == 1
    dispatcher._counted, dispatcher.in_flight = live, 0  # what _session does on reconnecting
    dispatcher._submit(lambda: None)
    dispatcher._hand_back(lost, lambda: None)  # a late worker of the lost session
    assert dispatcher.in_flight == 1
    dispatcher._hand_back(live, lambda: None)
    assert dispatcher.in_flight == 0
