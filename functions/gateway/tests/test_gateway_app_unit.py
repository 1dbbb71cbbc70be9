"""The gateway's request logic (ripple_gateway.app) with stand-in publisher and authenticator.

The readiness probe: every probe answers, not only the first. A readiness check is probed every
few seconds for the life of the instance; a check that can run once (a coroutine cached and
awaited again) turned every probe after the first into a 500.

POST of a batch: every event produced to its type's topic, the 202 lists the ids, the accepted
events are counted per type, and a batch needs the publish role of every type it holds.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from ripple_auth import Problem
from ripple_gateway.app import Gateway


class Authenticator:
    def __init__(self, keys_loaded: bool, refresh_gives: bool) -> None:
        self.keys_loaded = keys_loaded
        self.refresh_gives = refresh_gives
        self.refreshes = 0

    def refresh(self) -> bool:
        self.refreshes += 1
        return self.refresh_gives


def gateway_with(kafka: tuple[bool, str], auth: Authenticator) -> Gateway:
    gateway = Gateway.__new__(Gateway)  # no Kafka producer, no Keycloak: the probe's logic only
    gateway.publisher = SimpleNamespace(ready=lambda: kafka)
    gateway.auth = auth
    return gateway


@pytest.mark.parametrize(
    ("kafka", "keys_loaded", "refresh_gives", "status", "refreshes"),
    [
        ((True, "ok"), True, False, 200, 0),
        ((True, "ok"), False, True, 200, 3),
        ((True, "ok"), False, False, 503, 3),
        ((False, "no broker answers"), True, True, 503, 0),
    ],
)
def test_every_probe_answers(kafka, keys_loaded, refresh_gives, status, refreshes):
    auth = Authenticator(keys_loaded, refresh_gives)
    gateway = gateway_with(kafka, auth)
    for _ in range(3):
        response = asyncio.run(gateway.readiness())
        assert response.status_code == status
        assert json.loads(response.body)["checks"]["kafka"] == kafka[1]
    assert auth.refreshes == refreshes


class Publisher:
    """Acknowledges every record at once; keeps what it was handed (topic, key, event id)."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes, str]] = []

    async def publish(self, records) -> None:
        self.produced += [(record.topic, record.key, record.event_id) for record in records]


def posting_gateway(roles: set[str]) -> tuple[Gateway, Publisher]:
    from ripple_auth.tokens import Principal
    from ripple_events import load_catalog
    from ripple_gateway.config import load_config

    gateway = Gateway.__new__(Gateway)  # no Kafka producer, no Keycloak: the request flow only
    gateway.config = load_config()
    gateway.catalog = load_catalog()
    principal = Principal(subject="s", client="c", tenant="acme", roles=frozenset(roles))
    gateway.auth = SimpleNamespace(cached=lambda _authorization: principal)
    gateway.publisher = Publisher()
    return gateway, gateway.publisher


def post_batch(gateway: Gateway, documents: list[dict]) -> tuple[int, dict, dict]:
    from starlette.requests import Request

    body = json.dumps(documents).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [
            (b"content-type", b"application/cloudevents-batch+json"),
            (b"authorization", b"Bearer t"),
            (b"content-length", str(len(body)).encode()),
        ],
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    info: dict = {}
    response = asyncio.run(gateway.post_events(Request(scope, receive), info))
    return response.status_code, json.loads(response.body), info


def test_a_mixed_batch_is_produced_answered_and_counted_per_type():
    from ripple_events.samples import order_data
    from ripple_gateway import metrics

    order = "dev.ripple.shop.order.placed"
    page = "dev.ripple.shop.page.viewed"
    documents = [
        {"specversion": "1.0", "id": f"e-{n}", "source": "/s", "type": kind, "data": data}
        for n, (kind, data) in enumerate(
            [
                (order, order_data("o-1")),
                (page, {"sessionId": "s-1", "path": "/"}),
                (order, order_data("o-2")),
            ]
        )
    ]
    before = {kind: metrics.accepted(kind)._value.get() for kind in (order, page)}
    gateway, publisher = posting_gateway({"orders.publish", "pageviews.publish"})
    status, body, info = post_batch(gateway, documents)
    assert status == 202
    assert body == {"accepted": 3, "ids": ["e-0", "e-1", "e-2"]}
    assert info["event_type"] == "mixed" and info["events"] == 3
    assert publisher.produced == [
        ("ripple.shop.orders", b"acme/o-1", "e-0"),
        ("ripple.shop.pageviews", b"acme/s-1", "e-1"),
        ("ripple.shop.orders", b"acme/o-2", "e-2"),
    ]
    assert metrics.accepted(order)._value.get() - before[order] == 2
    assert metrics.accepted(page)._value.get() - before[page] == 1

    status, body, info = post_batch(gateway, documents[::2])
    assert (status, body["accepted"], info["event_type"]) == (202, 2, order)
    assert metrics.accepted(order)._value.get() - before[order] == 4


def test_a_batch_needs_the_role_of_every_type_it_holds():
    from ripple_events.samples import order_data

    documents = [
        {"specversion": "1.0", "id": "e-0", "source": "/s", "type": kind, "data": data}
        for kind, data in [
            ("dev.ripple.shop.order.placed", order_data("o-1")),
            ("dev.ripple.shop.page.viewed", {"sessionId": "s-1", "path": "/"}),
        ]
    ]
    gateway, publisher = posting_gateway({"orders.publish"})
    with pytest.raises(Problem) as refused:
        post_batch(gateway, documents)
    assert refused.value.status == 403 and "pageviews.publish" in refused.value.body()["detail"]
    assert publisher.produced == []
