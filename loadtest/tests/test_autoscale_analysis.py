"""The autoscale demo's pure rules: peaks, settling, back-to-zero, cold-start tables, checks."""

from __future__ import annotations

import json

import pytest

from loadtest.autoscale.analysis import (
    ColdStart,
    MemoryFigures,
    MemorySample,
    check_back_to_zero,
    check_cold_starts_ready,
    check_scaled,
    check_step_admitted,
    cold_start_summary,
    delay_by_minute,
    first_zero_after,
    memory_figures,
    memory_goal,
    memory_table,
    peak,
    settle_s,
)
from loadtest.autoscale.demo import BatchShop
from loadtest.autoscale.observe import read_cold_starts
from loadtest.scenarios.stats import FAIL, PASS, SKIP, Phase, PhaseSummary

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
    assert "| query | 2 | 700 | 800 | - | 1 | 700 | 700 | NOT met |" in table
    assert "goal: first request < 500 ms" in table


def test_cold_start_summary_shows_a_pods_creation_to_ready_beside_exec_to_ready() -> None:
    pods = [ColdStart("gateway", 1.0, 1.0, None, pod_ready_s=6.0), ColdStart("gateway", 9.0, 2.0, None)]
    assert "| gateway | 2 | 1500 | 2000 | 6000 | 0 | - | - | NOT met |" in cold_start_summary(pods)


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


def _samples(*rows: tuple[float, str, str, float]) -> list[MemorySample]:
    return [MemorySample(*row) for row in rows]


@pytest.mark.parametrize(
    ("samples", "idle_from", "want"),
    [
        # two instances: first readings 50 and 60 (p50 55), peak 90, idle readings 70 and 72
        (
            _samples((1, "f", "f-1", 50), (2, "f", "f-2", 60), (5, "f", "f-1", 90), (10, "f", "f-1", 70),
                     (13, "f", "f-1", 72)),
            10,
            MemoryFigures(instances=2, first_p50=55.0, peak=90.0, idle_p50=71.0, idle_samples=2),
        ),
        # gone before the drain ended: no idle reading
        (_samples((1, "f", "f-1", 40)), 10, MemoryFigures(1, 40.0, 40.0, None, 0)),
        # readings out of order still take each instance's earliest as its first
        (_samples((5, "f", "f-1", 99), (1, "f", "f-1", 41)), 10, MemoryFigures(1, 41.0, 99.0, None, 0)),
    ],
)  # fmt: skip
def test_memory_figures_per_function(samples, idle_from, want):
    assert memory_figures(samples, idle_from) == {"f": want}


@pytest.mark.parametrize(
    ("figures", "verdict"),
    [
        (MemoryFigures(1, 60.0, 120.0, 79.9, 3), "met"),  # the idle median decides, not the peak
        (MemoryFigures(1, 60.0, 70.0, 80.0, 3), "NOT met"),
        (MemoryFigures(1, 85.0, 90.0, None, 0), "NOT met"),  # no idle reading: the first one
        (MemoryFigures(0, None, None, None, 0), "-"),
    ],
)
def test_the_memory_goal_is_judged_on_idle_rss(figures, verdict):
    assert memory_goal(figures) == verdict


def test_memory_table_rows_and_an_empty_run():
    table = memory_table({"gateway": MemoryFigures(2, 55.0, 90.0, None, 0)})
    assert "| gateway | 2 | 55 | 90 | - | 0 | met |" in table  # no idle reading: the first one
    assert "goal idle < 80 MiB" in table
    assert memory_table({}) == "_no instance memory was read_"


@pytest.mark.parametrize(
    ("delays", "rows"),
    [
        ([], None),
        # (stored at, delay): events sent at 1000, 1030 (first minute), 1070 (second minute)
        (
            [(1000.5, 0.5), (1032.0, 2.0), (1070.1, 0.1)],
            ["| 0-60 s | 2 | 1250 | 1985 | 2000 |", "| 60-120 s | 1 | 100 | 100 | 100 |"],
        ),
        # the minute is the event's own time, not when it was stored: sent at 1059, stored at 1065
        ([(1000.0, 0.0), (1065.0, 6.0)], ["| 0-60 s | 2 | 3000 | 5940 | 6000 |"]),
    ],
)
def test_delay_by_minute(delays: list[tuple[float, float]], rows: list[str] | None) -> None:
    table = delay_by_minute(delays)
    if rows is None:
        assert table == "no stored events"
        return
    lines = table.splitlines()
    assert lines[0] == "| events sent in | events | p50 ms | p99 ms | max ms |"
    assert lines[2:] == rows


def _step(requests: int, refused: int) -> PhaseSummary:
    accepted = requests - refused
    return PhaseSummary(
        "step", 600.0, requests, requests / 600, accepted, accepted * 56, refused, 0, 0,
        None, None, None, None, None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("requests", "refused", "result"),
    [
        (0, 0, SKIP),
        (5401, 0, PASS),
        (10831, 41, PASS),  # the 2,016 events/s run: a few 429s at second boundaries
        (32118, 20138, FAIL),  # 36 req/s as one client: nginx's 20 r/s measured, not the path
    ],
)
def test_check_step_admitted(requests: int, refused: int, result: str) -> None:
    assert check_step_admitted(_step(requests, refused)).result == result
