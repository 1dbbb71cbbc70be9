"""The autoscale demo's pure rules: peaks, settling, back-to-zero, cold-start tables, checks."""

from __future__ import annotations

import json

import pytest

from loadtest.autoscale.analysis import (
    ColdStart,
    check_back_to_zero,
    check_cold_starts_ready,
    check_scaled,
    cold_start_summary,
    first_zero_after,
    peak,
    settle_s,
)
from loadtest.autoscale.demo import BatchShop
from loadtest.autoscale.observe import read_cold_starts
from loadtest.scenarios.stats import FAIL, PASS, SKIP, Phase

STEP = Phase("step", 100.0, 160.0)
# ready instances of one function: 0 before the step, 1 at 105, 2 at 120, 3 at 130, then steady
SERIES = [(95.0, 0.0), (105.0, 1.0), (120.0, 2.0), (130.0, 3.0), (150.0, 3.0), (170.0, 1.0), (200.0, 0.0)]


@pytest.mark.parametrize(
    ("label", "series", "phase", "want"),
    [
        ("follows the step", SERIES, STEP, 30.0),
        ("no change in phase", [(101.0, 2.0), (150.0, 2.0)], STEP, None),
        ("change right at start counts", [(95.0, 0.0), (100.0, 1.0)], STEP, 0.0),
        ("no readings", [], STEP, None),
    ],
)
def test_settle_s(label: str, series, phase: Phase, want: float | None) -> None:
    assert settle_s(series, phase) == want, label


def test_peak_and_zero() -> None:
    assert peak(SERIES, STEP) == 3.0
    assert peak(SERIES, Phase("later", 300.0, 400.0)) is None
    assert first_zero_after(SERIES, 160.0) == 40.0
    assert first_zero_after(SERIES[:-1], 160.0) is None


def test_checks() -> None:
    scaled = check_scaled({"event-store": SERIES}, STEP, ("event-store", "gateway"))
    assert [c.result for c in scaled] == [PASS, SKIP]
    assert [c.result for c in check_back_to_zero({"event-store": SERIES}, 160.0, ("event-store",))] == [PASS]
    assert check_back_to_zero({"x": SERIES[:-1]}, 160.0, ("x",))[0].result == FAIL
    broken = [ColdStart("gateway", 1.0, None, 0.5), ColdStart("gateway", 2.0, 0.8, None)]
    assert check_cold_starts_ready(broken).result == FAIL
    assert check_cold_starts_ready(broken[1:]).result == PASS


def test_cold_start_summary_counts_waits() -> None:
    table = cold_start_summary([ColdStart("query", 1.0, 0.6, 0.7), ColdStart("query", 5.0, 0.8, None)])
    assert "| query | 2 | 700 | 800 | 1 | 700 | 700 | NOT met |" in table
    assert "goal < 500 ms" in table


def test_cold_start_summary_judges_the_wait_else_the_ready_time() -> None:
    assert "| 1 | 400 | 400 | met |" in cold_start_summary([ColdStart("gateway", 1.0, 0.3, 0.4)])
    assert "| 0 | - | - | met |" in cold_start_summary([ColdStart("query", 1.0, 0.45, None)])


def test_read_cold_starts_filters_and_parses(tmp_path) -> None:
    log = tmp_path / "cold-starts.jsonl"
    lines = [
        {"function": "gateway", "started_at": 150.0, "ready_s": 0.9, "first_request_wait_s": 1.1},
        {"function": "query", "started_at": "1970-01-01T00:02:40Z", "ready_s": None},
        {"function": "old", "started_at": 10.0, "ready_s": 1.0},
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    starts = read_cold_starts(log, 100.0, 200.0)
    assert [(s.function, s.started_at, s.ready_s) for s in starts] == [
        ("gateway", 150.0, 0.9),
        ("query", 160.0, None),
    ]


def test_batch_shop_sizes() -> None:
    shop = BatchShop("as-test", 10)
    batch = shop.checkout()
    assert len(batch) == 10
    assert len({event.id for event in batch}) == 10
