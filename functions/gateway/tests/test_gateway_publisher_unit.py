"""The publisher with a stand-in producer: topics (KAFKA_TOPIC_PREFIX), acks, failures -> 503."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest
from confluent_kafka import KafkaError

from ripple_auth import Problem
from ripple_gateway.config import load_config
from ripple_gateway.events import KafkaRecord
from ripple_gateway.publisher import Publisher


class StandInProducer:
    """Records what was produced; its poll() delivers every pending record (or fails them)."""

    def __init__(self, options: dict) -> None:
        self.options = options
        self.produced: list[tuple[str, bytes]] = []
        self.pending: list = []
        self.fail_with: KafkaError | None = None

    def produce(self, topic, value, key, headers, on_delivery) -> None:
        self.produced.append((topic, key))
        self.pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        pending, self.pending = self.pending, []
        for report in pending:
            report(self.fail_with, None)
        if not pending:
            time.sleep(0.001)  # the report thread polls in a loop: keep it cheap while idle
        return len(pending)


def record(topic: str = "ripple.shop.orders") -> KafkaRecord:
    return KafkaRecord(topic=topic, key=b"acme/o-1", value=b"{}", headers=[], event_type="t", event_id="e-1")


def publisher(prefix: str = "") -> tuple[Publisher, list[StandInProducer]]:
    made: list[StandInProducer] = []

    def factory(options: dict) -> StandInProducer:
        made.append(StandInProducer(options))
        return made[-1]

    return Publisher(replace(load_config(), kafka_topic_prefix=prefix), factory=factory), made


def test_records_go_to_the_catalog_topic_without_a_prefix():
    pub, made = publisher()
    asyncio.run(pub.publish([record(), record("ripple.shop.payments")]))
    assert [topic for topic, _ in made[0].produced] == ["ripple.shop.orders", "ripple.shop.payments"]


def test_a_prefix_goes_before_every_topic():
    pub, made = publisher("bench.run1.")
    asyncio.run(pub.publish([record(), record("ripple.shop.pageviews")]))
    assert [topic for topic, _ in made[0].produced] == [
        "bench.run1.ripple.shop.orders",
        "bench.run1.ripple.shop.pageviews",
    ]
    assert pub.topic("ripple.shop.orders") == "bench.run1.ripple.shop.orders"


def test_a_failed_delivery_is_503_with_retry_after():
    pub, _ = publisher()
    pub._get().producer.fail_with = KafkaError(KafkaError._MSG_TIMED_OUT, "timed out")
    with pytest.raises(Problem) as raised:
        asyncio.run(pub.publish([record()]))
    assert raised.value.status == 503 and raised.value.headers["Retry-After"] == "5"
