"""Unit tests of the bench-peers table: ratios, goal verdicts, rows that were not measured."""

from __future__ import annotations

from loadtest.peers.report import Measurement, comparison


def measurement(key: str, rate: float, events: float | None = None, disturbed: bool = False) -> Measurement:
    return Measurement(
        key=key,
        what=f"{key} of 100" if key.endswith("batch") else key,
        rate=rate,
        events_per_s=rate if events is None else events,
        p50_ms=10.0,
        p99_ms=50.0,
        errors=0,
        cpu_ms_per_event=None,
        load="1.00 / 1.00 / 1.00",
        disturbed=disturbed,
    )


def row(rows: list[str], start: str) -> list[str]:
    line = next(r for r in rows if r.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_ratios_and_goals() -> None:
    rows = comparison(
        [
            measurement("gateway-single", 1600),
            measurement("knative-single", 3200),
            measurement("bridge-single", 400),
            measurement("gateway-batch", 160, 16000),
            measurement("bridge-batch", 150, 15000),
            measurement("ripple-unordered", 900),
            measurement("knative-unordered", 2000),
        ]
    )
    knative = row(rows, "| single events (wrk) vs **Knative")
    assert knative[3] == "0.50x"
    assert knative[5] == "**yes**"  # 1,600 >= 1,500 req/s and 0.5 >= 0.4
    assert row(rows, "| single events (wrk) vs **Strimzi")[3] == "4.00x"
    batch = row(rows, "| batches of 100")
    assert batch[3] == "1.07x"
    assert batch[5] == "**yes**"
    unordered = row(rows, "| dispatch → nginx `return 202`, unordered")
    assert unordered[3] == "0.45x"
    assert unordered[5] == "no"


def test_absolute_goal_fails_even_when_the_ratio_is_met() -> None:
    rows = comparison([measurement("gateway-single", 1200), measurement("knative-single", 2000)])
    assert row(rows, "| single events (wrk) vs **Knative")[5] == "no"


def test_missing_and_disturbed_measurements() -> None:
    rows = comparison([measurement("gateway-single", 1200, disturbed=True)])
    knative = row(rows, "| single events (wrk) vs **Knative")
    assert "Kafka restarted" in knative[1]
    assert knative[2] == "not measured"
    assert knative[3] == "—"
    assert knative[5] == "—"
