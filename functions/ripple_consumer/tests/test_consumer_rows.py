"""ripple_consumer.rows: the envelope columns event-store and dead-letters store alike."""

from __future__ import annotations

from ripple_consumer.rows import envelope_columns


def test_the_envelope_and_every_extension_tenant_included():
    attributes = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/s",
        "type": "t",
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "tenant": "acme",
        "partitionkey": "acme/o-1",
    }
    assert envelope_columns(attributes) == {
        "id": "e-1",
        "source": "/s",
        "type": "t",
        "subject": None,
        "tenant": "acme",
        "extensions": {"tenant": "acme", "partitionkey": "acme/o-1"},
    }
