"""dead_letters/handled.py, the pure part: which function a dead letter's destination is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dead_letters.handled import subscriber_of, subscribers_from_env

from ripple_consumer.database import ConfigError


def test_a_cluster_address_names_its_function():
    assert subscriber_of("http://notifier.ripple.svc.cluster.local", {}) == "notifier"
    assert subscriber_of("http://event-store.ripple.svc/", {}) == "event-store"
    assert subscriber_of("http://order-alerts.ripple.svc", {}) is None  # no check known for it


def test_local_addresses_come_from_replay_subscribers():
    subscribers = subscribers_from_env(
        {"REPLAY_SUBSCRIBERS": "notifier=http://127.0.0.1:18405, event-store=http://127.0.0.1:18401/"}
    )
    assert subscriber_of("http://127.0.0.1:18405", subscribers) == "notifier"
    assert subscriber_of("http://127.0.0.1:18405/", subscribers) == "notifier"
    assert subscriber_of("http://127.0.0.1:18401", subscribers) == "event-store"
    assert subscriber_of("http://127.0.0.1:184050", subscribers) is None
    assert subscribers_from_env({}) == {}


@pytest.mark.parametrize("value", ["notifier", "mailer=http://x", "notifier=127.0.0.1:1"])
def test_a_wrong_replay_subscribers_item_is_refused_with_the_reason(value):
    with pytest.raises(ConfigError, match="REPLAY_SUBSCRIBERS"):
        subscribers_from_env({"REPLAY_SUBSCRIBERS": value})
