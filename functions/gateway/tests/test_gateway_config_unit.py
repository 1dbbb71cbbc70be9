"""The gateway's configuration: wrong settings stop it with a message naming the variable."""

from __future__ import annotations

import pytest

from ripple_gateway.config import ConfigError, load_config


@pytest.mark.parametrize("value", ["HS256", "RS256,none"])
def test_symmetric_or_no_algorithm_is_a_config_error(monkeypatch, value):
    monkeypatch.setenv("TOKEN_ALGORITHMS", value)
    with pytest.raises(ConfigError, match="TOKEN_ALGORITHMS"):
        load_config()


def test_config_names_the_bad_variable(monkeypatch):
    monkeypatch.setenv("MAX_BODY_BYTES", "lots")
    with pytest.raises(ConfigError, match="MAX_BODY_BYTES"):
        load_config()


def test_topic_prefix_defaults_to_empty(monkeypatch):
    monkeypatch.delenv("KAFKA_TOPIC_PREFIX", raising=False)
    assert load_config().kafka_topic_prefix == ""


@pytest.mark.parametrize("value", ["bench run.", "bench/x.", "é.", "bench.\n"])
def test_topic_prefix_must_be_topic_characters(monkeypatch, value):
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", value)
    with pytest.raises(ConfigError, match="KAFKA_TOPIC_PREFIX"):
        load_config()


def test_gc_is_tuned_off_the_request_path(monkeypatch):
    import gc

    from ripple_gateway import app

    monkeypatch.delenv("GC_GEN0_THRESHOLD", raising=False)
    assert load_config().gc_gen0_threshold == 10000
    threshold = gc.get_threshold()
    try:
        app._tune_gc(12345)
        assert gc.get_threshold()[0] == 12345 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
