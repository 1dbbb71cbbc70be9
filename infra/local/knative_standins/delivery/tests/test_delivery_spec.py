"""delivery.spec: the ISO 8601 durations of a DeliverySpec."""

from __future__ import annotations

import pytest

from knative_standins.delivery.spec import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT0.2S", 0.2), ("PT1M30S", 90), ("PT2H", 7200), ("P1D", 86400), ("P1W", 604800)]
)
def test_iso8601_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["P", "PT", "P1Y", "P1M", "1S", "PT1.S", "", "PT-1S"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
