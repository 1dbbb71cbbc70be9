"""kafkasource.__main__: where the dispatcher sends, from the manifest and the environment; K_SINK
(a cluster's SinkBinding, Knative's source contract) wins over the local table of functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from knative_standins import ConfigError
from knative_standins.kafkasource.__main__ import dispatcher_config

REPO = Path(__file__).resolve().parents[5]
MANIFEST = REPO / "knative" / "event-store" / "kafkasource.yaml"
LOCAL = {"RIPPLE_KNATIVE_SERVICES": "event-store=http://127.0.0.1:18401,dead-letters=http://127.0.0.1:18402"}


def test_local_sink_from_the_table_of_functions():
    config = dispatcher_config(MANIFEST, LOCAL)
    assert config.sink_url == "http://127.0.0.1:18401"
    assert config.dead_letter_url == "http://127.0.0.1:18402"


def test_k_sink_wins_and_needs_no_entry_for_the_sink():
    env = {
        "K_SINK": "http://event-store.ripple.svc.cluster.local",
        "RIPPLE_KNATIVE_SERVICES": "dead-letters=http://dead-letters.ripple.svc.cluster.local",
    }
    config = dispatcher_config(MANIFEST, env)
    assert config.sink_url == "http://event-store.ripple.svc.cluster.local"
    assert config.dead_letter_url == "http://dead-letters.ripple.svc.cluster.local"
    assert config.bootstrap_servers == ("ripple-kafka-bootstrap.ripple.svc:9092",)


def test_without_k_sink_an_unknown_sink_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"spec\.sink"):
        dispatcher_config(MANIFEST, {"RIPPLE_KNATIVE_SERVICES": "dead-letters=http://x"})
