"""The local KafkaSource dispatcher against the real Kafka: retries, dead letters, plain records,
ordering, and a dispatcher killed mid-stream. Each test has its own topic, consumer group,
manifest and dispatcher process, so it stays out of the shared stack's way."""

from __future__ import annotations

import base64
import random
import time
import uuid
from collections import defaultdict

import pytest
from kafka import KafkaProducer
from kafkasource_helpers import (
    Sink,
    dispatching,
    order_event,
    produce,
    running_sink,
    temporary_topic,
    wait_until,
    write_manifest,
)

pytestmark = pytest.mark.integration


def test_sink_failing_n_times_gets_the_event_after_n_retries(stack, tmp_path):
    failures = 3

    def flaky(delivery, attempt):
        return (503, b"not yet") if attempt <= failures else (202, b"")

    with (
        temporary_topic(stack.kafka_bootstrap) as topic,
        running_sink(Sink(flaky)) as sink,
        running_sink(Sink()) as dead_letters,
    ):
        manifest = write_manifest(tmp_path, topic, sink.url, dead_letter_uri=dead_letters.url, retry=5)
        with dispatching(manifest, tmp_path / "dispatcher.log") as dispatcher:
            event_id = f"retry-{uuid.uuid4()}"
            produce(stack.kafka_bootstrap, topic, [order_event("/test/retry", event_id, "o-1")])
            wait_until(lambda: sink.attempts(event_id) == failures + 1, "the fourth attempt to succeed")
            wait_until(lambda: "ripple_dispatcher_events_delivered_total" in dispatcher.metrics(), "metrics")
            metrics = dispatcher.metrics()
            assert (
                f'ripple_dispatcher_events_retried_total{{kafkasource="{manifest.stem}",topic="{topic}"}} 3.0'
                in (metrics)
            )
            last = sink.received[-1]
            assert last.ce["id"] == event_id
            assert last.ce["source"] == "/test/retry"
            assert last.ce["type"] == "dev.ripple.shop.order.placed"
            assert last.ce["tenant"] == "acme"
            assert last.headers["content-type"] == "application/json"
            assert dead_letters.received == []
        assert sink.attempts(event_id) == failures + 1


def test_failing_sink_dead_letters_with_knative_error_extensions(stack, tmp_path):
    def failing(delivery, attempt):
        # 500 is retried; 400 is not (an event that can never succeed).
        return (400, b"bad order") if delivery.ce["id"].startswith("bad-") else (500, b"boom")

    with (
        temporary_topic(stack.kafka_bootstrap) as topic,
        running_sink(Sink(failing)) as sink,
        running_sink(Sink()) as dead_letters,
    ):
        manifest = write_manifest(tmp_path, topic, sink.url, dead_letter_uri=dead_letters.url, retry=2)
        with dispatching(manifest, tmp_path / "dispatcher.log"):
            broken, bad = f"broken-{uuid.uuid4()}", f"bad-{uuid.uuid4()}"
            produce(
                stack.kafka_bootstrap,
                topic,
                [order_event("/test/dlq", broken, "o-1"), order_event("/test/dlq", bad, "o-2")],
            )
            wait_until(lambda: len(dead_letters.received) == 2, "both events in the dead-letter sink")
        by_id = {d.ce["id"]: d for d in dead_letters.received}
        assert sink.attempts(broken) == 3  # first attempt + retry: 2
        assert sink.attempts(bad) == 1
        assert by_id[broken].ce["knativeerrorcode"] == "500"
        assert by_id[broken].ce["knativeerrordest"] == sink.url
        assert base64.b64decode(by_id[broken].ce["knativeerrordata"]) == b"boom"
        assert by_id[bad].ce["knativeerrorcode"] == "400"
        assert base64.b64decode(by_id[bad].ce["knativeerrordata"]) == b"bad order"
        # The event itself is unchanged apart from the extensions.
        assert by_id[broken].ce["source"] == "/test/dlq"
        assert b'"orderId": "o-1"' in by_id[broken].body


def test_dead_letter_sink_down_blocks_instead_of_dropping(stack, tmp_path):
    dead_letter_up = False

    def dead_letter(delivery, attempt):
        return (202, b"") if dead_letter_up else (503, b"down")

    with (
        temporary_topic(stack.kafka_bootstrap, partitions=1) as topic,
        running_sink(Sink(lambda d, n: (500, b"no"))) as sink,
        running_sink(Sink(dead_letter)) as dead_letters,
    ):
        manifest = write_manifest(tmp_path, topic, sink.url, dead_letter_uri=dead_letters.url, retry=0)
        with dispatching(manifest, tmp_path / "dispatcher.log"):
            first, second = f"first-{uuid.uuid4()}", f"second-{uuid.uuid4()}"
            produce(
                stack.kafka_bootstrap, topic, [order_event("/t", first, "a"), order_event("/t", second, "a")]
            )
            wait_until(lambda: dead_letters.attempts(first) >= 3, "repeated attempts at the dead-letter sink")
            # Ordered: the partition waits on the first event; the second is not even tried.
            assert sink.attempts(second) == 0
            dead_letter_up = True
            wait_until(lambda: dead_letters.attempts(second) >= 1, "both dead-lettered once the DLQ is back")


def test_plain_record_becomes_a_knative_kafka_event(stack, tmp_path):
    with temporary_topic(stack.kafka_bootstrap, partitions=1) as topic, running_sink(Sink()) as sink:
        manifest = write_manifest(tmp_path, topic, sink.url)
        with dispatching(manifest, tmp_path / "dispatcher.log"):
            producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
            producer.send(topic, key=b"k-1", value=b'{"hello": "world"}', headers=[("X-Trace", b"t-1")])
            producer.flush(30)
            producer.close()
            wait_until(lambda: len(sink.received) == 1, "the plain record delivered")
        delivery = sink.received[0]
        assert delivery.ce["type"] == "dev.knative.kafka.event"
        assert delivery.ce["source"] == f"/apis/v1/namespaces/ripple/kafkasources/{manifest.stem}#{topic}"
        assert delivery.ce["id"] == "partition:0/offset:0"
        assert delivery.ce["subject"] == "partition:0#0"
        assert delivery.ce["key"] == "k-1"
        assert delivery.ce["kafkaheaderxtrace"] == "t-1"
        assert delivery.body == b'{"hello": "world"}'


@pytest.mark.parametrize("keys", [4])
def test_ordered_mode_keeps_per_key_order(stack, tmp_path, keys):
    per_key = 50
    rng = random.Random(7)

    def slow_sometimes(delivery, attempt):
        time.sleep(rng.choice((0, 0, 0.01, 0.03)))
        return (202, b"")

    with temporary_topic(stack.kafka_bootstrap) as topic, running_sink(Sink(slow_sometimes)) as sink:
        manifest = write_manifest(tmp_path, topic, sink.url, ordering="ordered")
        events = [
            order_event("/test/order", f"k{k}-{n:03d}", f"k{k}") for n in range(per_key) for k in range(keys)
        ]
        produce(stack.kafka_bootstrap, topic, events)
        # A small bound: the dispatcher often waits for room, and must never stall or reorder.
        with dispatching(manifest, tmp_path / "dispatcher.log", max_in_flight=5):
            wait_until(lambda: len(set(sink.ids())) == len(events), "every event delivered")
        sequences: dict[str, list[str]] = defaultdict(list)
        for event_id in sink.ids():
            sequences[event_id.split("-")[0]].append(event_id)
        for key, ids in sequences.items():
            assert ids == sorted(ids), f"key {key} delivered out of order"


def slow_accept(delivery, attempt):
    time.sleep(0.02)  # long enough that deliveries overlap when the dispatcher sends them together
    return 202, b""


def test_unordered_mode_delivers_concurrently_and_completely(stack, tmp_path):
    with temporary_topic(stack.kafka_bootstrap) as topic, running_sink(Sink(respond=slow_accept)) as sink:
        manifest = write_manifest(tmp_path, topic, sink.url, ordering="unordered")
        events = [order_event("/test/unordered", f"u-{n}", f"k{n % 7}") for n in range(300)]
        produce(stack.kafka_bootstrap, topic, events)
        with dispatching(manifest, tmp_path / "dispatcher.log", max_in_flight=16):
            wait_until(lambda: len(set(sink.ids())) == len(events), "every event delivered")
        assert sink.most_in_flight > 1, "unordered delivery never had two events in flight at once"
        assert sink.most_in_flight <= 16  # RIPPLE_DISPATCHER_MAX_IN_FLIGHT
