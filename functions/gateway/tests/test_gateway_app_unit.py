"""The gateway's readiness probe (ripple_gateway.app): every probe answers, not only the first.

A readiness check is probed every few seconds for the life of the instance; a check that can
run once (a coroutine cached and awaited again) turned every probe after the first into a 500.
The publisher and the authenticator are stand-ins here: what is tested is the probe's own logic.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

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
