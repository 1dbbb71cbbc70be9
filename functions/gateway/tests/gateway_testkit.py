"""Helpers shared by the gateway's integration tests: events to send, Kafka read-back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import requests
from kafka import KafkaConsumer, TopicPartition

from ripple_events.samples import order_data

ORDER_TYPE = "dev.ripple.shop.order.placed"
PAGE_TYPE = "dev.ripple.shop.page.viewed"
PAYMENT_TYPE = "dev.ripple.shop.payment.captured"
# Bounds the wait for records to show up; a record that never arrives fails the test.
READ_BACK_LIMIT_S = 30.0


# The smallest valid order.placed data, for the unit tests of parsing and interop.
ORDER = {
    "orderId": "o-1",
    "customerId": "c-1",
    "items": [{"sku": "s", "quantity": 1, "unitPrice": 2}],
    "amount": 2,
    "currency": "EUR",
}


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4()}"


def order(order_id: str | None = None, amount: float = 25.0) -> dict[str, Any]:
    return order_data(order_id or new_id("o"), amount)


def record_headers(event_id: str, event: dict[str, Any], tenant: str, **attributes: str) -> dict[str, str]:
    """The headers of the Kafka record the gateway writes for an order event (binary mode, JSON data):
    its envelope, the given other attributes, the tenant from the token and the partition key."""
    return {
        "content-type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": event_id,
        "ce_source": event["source"],
        "ce_type": ORDER_TYPE,
        "ce_subject": event["subject"],
        **{f"ce_{name}": value for name, value in attributes.items()},
        "ce_tenant": tenant,
        "ce_partitionkey": f"{tenant}/{event['data']['orderId']}",
    }


def structured(event_type: str, data: Any, **attributes: Any) -> dict[str, Any]:
    envelope = {"specversion": "1.0", "id": new_id(), "source": "/tests/gateway", "type": event_type}
    return envelope | {"data": data} | attributes


def binary_headers(token: str | None, event_type: str = ORDER_TYPE, **attributes: str) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": new_id(),
        "ce-source": "/tests/gateway",
        "ce-type": event_type,
    }
    headers.update({f"ce-{name}": value for name, value in attributes.items()})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def post(url: str, body: bytes | str, headers: dict[str, str], timeout: float = 30) -> requests.Response:
    return requests.post(url + "/", data=body, headers=headers, timeout=timeout)


class TopicReader:
    """Remembers the end of a topic's partitions, then reads what was written after that."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        partitions = self.consumer.partitions_for_topic(topic) or set()
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        self.consumer.assign(self.partitions)
        self.start = self.consumer.end_offsets(self.partitions)
        for tp, offset in self.start.items():
            self.consumer.seek(tp, offset)

    def records_with_ids(self, ids: Iterable[str]) -> dict[str, Any]:
        """ce_id -> ConsumerRecord for every wanted id (fails if one does not arrive)."""
        wanted = set(ids)
        found: dict[str, Any] = {}
        deadline = time.monotonic() + READ_BACK_LIMIT_S
        while wanted - found.keys() and time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=500).values():
                for record in batch:
                    event_id = dict(record.headers).get("ce_id", b"").decode()
                    if event_id in wanted:
                        found[event_id] = record
        missing = wanted - found.keys()
        assert not missing, f"records never arrived in {self.topic}: {sorted(missing)}"
        return found

    def records_since_start(self) -> list[Any]:
        """Everything written since this reader was created (up to the current end)."""
        end = self.consumer.end_offsets(self.partitions)
        records: list[Any] = []
        for tp in self.partitions:
            self.consumer.seek(tp, self.start[tp])
        deadline = time.monotonic() + READ_BACK_LIMIT_S
        while time.monotonic() < deadline and any(
            self.consumer.position(tp) < end[tp] for tp in self.partitions
        ):
            for batch in self.consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records

    def close(self) -> None:
        self.consumer.close()
