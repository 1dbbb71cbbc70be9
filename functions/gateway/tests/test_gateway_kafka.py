"""Kafka outage: 503 with Retry-After and nothing acknowledged; afterwards traffic flows by itself."""

from __future__ import annotations

import json
import time

import pytest
import requests
from gateway_testkit import ORDER_TYPE, TopicReader, binary_headers, order, post, structured

pytestmark = pytest.mark.integration

# Bounds (not assertions on speed): a request that hangs fails here instead of at the pytest timeout.
REQUEST_LIMIT_S = 20
RECOVERY_ATTEMPTS = 60


def test_kafka_outage_gives_503_and_recovers(stack, gateway, publisher_token):
    reader = TopicReader(stack.kafka_bootstrap, "ripple.shop.orders")
    rejected: list[str] = []
    try:
        assert post(gateway, json.dumps(order()), binary_headers(publisher_token)).status_code == 202
        with stack.stopped("kafka"):
            for _ in range(2):
                headers = binary_headers(publisher_token)
                response = post(gateway, json.dumps(order()), headers, timeout=REQUEST_LIMIT_S)
                assert response.status_code == 503, response.text
                assert int(response.headers["Retry-After"]) > 0
                assert response.json()["type"] == "https://ripple.dev/problems/kafka-unavailable"
                rejected.append(headers["ce-id"])
            batch = [structured(ORDER_TYPE, order()) for _ in range(3)]
            response = post(
                gateway,
                json.dumps(batch),
                {
                    "Content-Type": "application/cloudevents-batch+json",
                    "Authorization": f"Bearer {publisher_token}",
                },
                timeout=REQUEST_LIMIT_S,
            )
            assert response.status_code == 503, response.text
            rejected.extend(event["id"] for event in batch)
            assert requests.get(gateway + "/readyz", timeout=REQUEST_LIMIT_S).status_code == 503

        # No restart of the gateway, no manual step: the producer reconnects on its own.
        for _ in range(RECOVERY_ATTEMPTS):
            headers = binary_headers(publisher_token)
            response = post(gateway, json.dumps(order()), headers, timeout=REQUEST_LIMIT_S)
            if response.status_code == 202:
                break
            assert response.status_code == 503, response.text
            time.sleep(1)
        assert response.status_code == 202, f"no recovery after Kafka restart: {response.text}"
        reader.records_with_ids([headers["ce-id"]])
        assert requests.get(gateway + "/readyz", timeout=REQUEST_LIMIT_S).status_code == 200

        # What was answered 503 was never written (records expire in the producer, unsent).
        written = {dict(r.headers).get("ce_id", b"").decode() for r in reader.records_since_start()}
        assert not written.intersection(rejected)
    finally:
        reader.close()
