"""Unit tests of the bench-peers table: ratios, issue 22's goal verdicts, rows that were not measured."""

from __future__ import annotations

import pytest

from loadtest.peers.report import Measurement, at_least, comparison, ratio_met, single_met


def measurement(
    key: str,
    rate: float,
    events: float | None = None,
    disturbed: bool = False,
    p99_ms: float | None = 50.0,
) -> Measurement:
    return Measurement(
        key=key,
        what=f"{key} of 100" if key.endswith("batch") else key,
        rate=rate,
        events_per_s=rate if events is None else events,
        p50_ms=None if p99_ms is None else 10.0,
        p99_ms=p99_ms,
        errors=0,
        cpu_ms_per_event=None,
        load="1.00 / 1.00 / 1.00",
        disturbed=disturbed,
    )


def row(rows: list[str], start: str) -> list[str]:
    line = next(r for r in rows if r.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


KNATIVE_ROW = "| single binary events (wrk) vs **Knative"


def test_ratios_and_goals() -> None:
    rows = comparison(
        [
            measurement("gateway-single", 4000, p99_ms=20.0),
            measurement("knative-single", 4800, p99_ms=11.0),
            measurement("bridge-single", 400),
            measurement("gateway-batch", 400, 40000),
            measurement("bridge-batch", 150, 15000),
            measurement("ripple-unordered", 900),
            measurement("knative-unordered", 2000),
            measurement("ripple-ordered", 1100, p99_ms=None),
            measurement("knative-ordered", 250, p99_ms=None),
            measurement("ripple-store", 3900, p99_ms=None),
        ]
    )
    knative = row(rows, KNATIVE_ROW)
    assert knative[3] == "0.83x, p99 1.82x"
    assert knative[4] == "≥ 0.8x and p99 ≤ 2x the receiver's"
    assert knative[5] == "**yes**"  # 0.83 >= 0.8 and 20 ms <= 2 x 11 ms
    assert row(rows, "| single binary events (wrk) vs **Strimzi")[3] == "10.00x"
    batch = row(rows, "| batches of 100")
    assert batch[3] == "2.67x"
    assert (batch[4], batch[5]) == ("≥ 2x", "**yes**")
    unordered = row(rows, "| KafkaSource dispatcher → nginx `return 202`, unordered")
    assert unordered[3] == "0.45x"
    assert "issue 22 sets no new goal" in unordered[4]
    assert unordered[5] == "no"
    ordered = row(rows, "| KafkaSource dispatcher → nginx `return 202`, ordered")
    assert (ordered[3], ordered[4], ordered[5]) == ("4.40x", "keep ≥ 1,000 events/s", "**yes**")
    store = row(rows, "| Kafka → dispatcher → event-store → PostgreSQL")
    assert store[1].startswith("3,900 events/s")
    assert (store[2], store[3], store[4], store[5]) == ("— (no peer)", "—", "≥ 4,000 events/s", "no")


def test_the_load_is_named_in_the_rows() -> None:
    rows = comparison([measurement("gateway-single", 1000)], "wrk -t2 -c32")
    assert row(rows, "| single binary events (wrk -t2 -c32) vs **Knative")[1].startswith("1,000 req/s")


@pytest.mark.parametrize(
    ("gateway", "receiver", "met"),
    [
        ((4000, 20.0), (4800, 11.0), True),
        ((3800, 20.0), (4800, 11.0), False),  # 0.79x: the rate misses
        ((4000, 23.0), (4800, 11.0), False),  # p99 2.09x the receiver's: the tail misses
        ((4800, 22.0), (4800, 11.0), True),  # exactly 2x is within
        ((4000, None), (4800, 11.0), None),  # no p99 to compare
        ((4000, 20.0), (0, 11.0), None),  # the receiver served nothing: no ratio
    ],
)
def test_single_goal_needs_the_rate_and_the_tail(
    gateway: tuple[float, float | None], receiver: tuple[float, float | None], met: bool | None
) -> None:
    ours = measurement("gateway-single", gateway[0], p99_ms=gateway[1])
    theirs = measurement("knative-single", receiver[0], p99_ms=receiver[1])
    assert single_met(ours, theirs) is met


@pytest.mark.parametrize(
    ("ours", "theirs", "minimum", "met"),
    [(30000, 15000, 2.0, True), (29999, 15000, 2.0, False), (None, 15000, 2.0, None), (30000, 0, 2.0, None)],
)
def test_ratio_goal(ours: float | None, theirs: float | None, minimum: float, met: bool | None) -> None:
    assert ratio_met(ours, theirs, minimum) is met


@pytest.mark.parametrize(("value", "met"), [(4000.0, True), (3999.0, False), (None, None)])
def test_absolute_goal(value: float | None, met: bool | None) -> None:
    assert at_least(value, 4000.0) is met


def test_missing_and_disturbed_measurements() -> None:
    rows = comparison([measurement("gateway-single", 1200, disturbed=True)])
    knative = row(rows, KNATIVE_ROW)
    assert "Kafka restarted" in knative[1]
    assert knative[2] == "not measured"
    assert knative[3] == "—"
    assert knative[5] == "—"
    store = row(rows, "| Kafka → dispatcher → event-store → PostgreSQL")
    assert (store[1], store[5]) == ("not measured", "—")
