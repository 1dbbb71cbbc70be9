"""The fidelity report's pure rules (loadtest/autoscale/analysis.py, fidelity.py): histogram
quantiles, bucket increases, the ±1 agreement of desired instances per tick and the ticks off by
more than one, panic episodes, the drain and how often a run's gauges were read."""

from __future__ import annotations

import math

import pytest

from loadtest.autoscale.analysis import (
    bucket_increase,
    episodes,
    histogram_quantile,
    step_value,
    within_one_share,
)

INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {10: 0, 20: 10, INF: 10}, 15.0),  # inside the 10-20 bucket, halfway
        (0.99, {10: 5, 20: 10, INF: 10}, 19.8),
        (0.5, {10: 10, INF: 10}, 5.0),  # first bucket: from 0
        (0.99, {10: 1, INF: 100}, 10.0),  # +Inf answers its lower bound
        (0.5, {10: 0, INF: 0}, None),  # no observations
        (0.5, {}, None),
    ],
)
def test_histogram_quantile_interpolates_like_prometheus(q, buckets, expected):
    got = histogram_quantile(q, buckets)
    assert got == (None if expected is None else pytest.approx(expected))


def test_bucket_increase_and_a_counter_reset():
    assert bucket_increase({10: 2, INF: 3}, {10: 5, INF: 9}) == {10: 3, INF: 6}
    assert bucket_increase({10: 7, INF: 9}, {10: 1, INF: 2}) == {10: 1, INF: 2}  # restarted: from zero
    assert bucket_increase({}, {10: 4}) == {10: 4}


@pytest.mark.parametrize(
    ("standin", "knative", "share", "ticks"),
    [
        ([(0, 1), (10, 3)], [(0, 1), (10, 3)], 1.0, 4),  # identical
        ([(0, 1), (10, 5)], [(0, 1), (10, 3)], 0.5, 4),  # off by 2 in the second half
        ([(0, 2)], [(0, 1)], 1.0, 4),  # off by one counts as close
        ([(12, 2)], [(0, 2)], 1.0, 1),  # ticks before the stand-in's first reading are not counted
        ([], [(0, 2)], None, 0),
    ],
)
def test_desired_within_one_per_tick(standin, knative, share, ticks):
    assert within_one_share(standin, knative, 0, 20, tick_s=5) == (share, ticks)


def test_step_value_is_the_last_reading_at_or_before():
    series = [(0, 1), (5, 2), (9, 0)]
    assert [step_value(series, t) for t in (-1, 0, 4.9, 5, 8, 20)] == [None, 1, 1, 2, 2, 0]


def test_episodes_of_panic_mode():
    assert episodes([(0, 0), (2, 1), (4, 1), (6, 0), (8, 1)]) == [(2, 6), (8, 8)]
    assert episodes([(0, 0), (2, 0)]) == []


def test_memory_and_cold_start_rows_of_a_run():
    from loadtest.autoscale.fidelity import cold_start_text, memory_text

    run = {
        "memory": {"gateway": {"instances": 2, "first_p50": 55.0, "peak": 90.5, "idle_p50": 61.2}},
        "cold_starts": [
            {"function": "gateway", "ready_s": 0.4, "pod_ready_s": 3.0, "first_request_wait_s": None},
            {"function": "gateway", "ready_s": 0.6, "pod_ready_s": 5.0, "first_request_wait_s": 0.7},
        ],
    }
    assert memory_text(run, "gateway") == "55 / 90.5 / 61.2 (2 inst.)"
    assert memory_text(run, "query") == "no reading"
    assert memory_text({}, "gateway") == "not read (older run)"
    assert cold_start_text(run, "gateway", "pod_ready_s") == "4000 (2)"
    assert cold_start_text(run, "gateway", "first_request_wait_s") == "700 (1)"
    assert cold_start_text(run, "query", "ready_s") == "-"


@pytest.mark.parametrize(
    ("standin", "knative", "expected"),
    [
        ([(0, 1), (10, 3)], [(0, 1), (10, 3)], []),  # identical
        ([(0, 0), (7, 2)], [(0, 0), (4, 2), (6, 3)], [(5, 0, 2)]),  # late by one tick: 0 vs 2 at 5 s
        ([(0, 1)], [(0, 2)], []),  # off by one is close
        ([(12, 0)], [(0, 3)], [(15, 0, 3)]),  # ticks before the stand-in's first reading do not count
        ([(0, 5)], [(0, 1), (10, 4)], [(0, 5, 1), (5, 5, 1)]),
    ],
)
def test_ticks_off_by_more_than_one(standin, knative, expected):
    from loadtest.autoscale.fidelity import off_ticks

    assert off_ticks(standin, knative, 0, 20, tick_s=5) == expected


def test_drain_and_reading_interval_of_a_run():
    from loadtest.autoscale.fidelity import drain_s, reading_interval_s

    run = {
        "phases": [
            {"name": "step", "start": 0.0, "end": 60.2},
            {"name": "spike", "start": 60.2, "end": 90.2},
            {"name": "drain", "start": 90.2, "end": 124.94},
        ],
        "desired": {"gateway": [(0, 0), (2, 1), (4, 1)], "event-store": [(0.5, 0), (2.5, 1), (7.5, 2)]},
    }
    assert drain_s(run) == 34.7
    assert reading_interval_s(run) == 2.0  # gaps 2, 2, 2, 5: the median
    assert reading_interval_s({"desired": {"gateway": [(0, 0)]}}) is None


def _run(desired: list[tuple[float, float]], drain_end: float) -> dict:
    """A run.json with what compare() reads, event-store's desired series given."""
    phases = [("step", 0.0, 60.0), ("spike", 60.0, 90.0), ("drain", 90.0, drain_end)]
    return {
        "phases": [{"name": n, "start": a, "end": b} for n, a, b in phases],
        "desired": {"event-store": desired},
        "ready": {"event-store": [(0.0, 0.0), (drain_end + 60, 0.0)]},
        "panic": {},
        "cold_starts": [],
        "activator_ms": {},
        "checks": [],
        "accepted": 0,
    }


def test_compare_names_the_ticks_off_and_the_drain():
    from loadtest.autoscale.fidelity import compare

    standin = _run([(0.0, 0.0), (7.0, 1.0), (9.0, 2.0), (12.0, 3.0)], drain_end=96.6)
    knative = _run([(0.0, 0.0), (2.0, 1.0), (4.0, 2.0), (6.0, 3.0)], drain_end=124.9)
    rows, verdicts = compare(standin, knative)
    assert verdicts[2] == (
        "event-store: desired within ±1 in the step: 92% of 12 ticks "
        "(off by more than one at 5 s: 0 vs 2) -> PASS"
    )
    assert ["all", "drain: load end -> every accepted event stored (s)", 6.6, 34.9] in rows
    many = _run([(0.0, 0.0)], drain_end=96.6)
    _, verdicts = compare(many, knative)
    assert "(off by more than one at 5 s: 0 vs 2, 10 s: 0 vs 3, 15 s: 0 vs 3, 8 more) -> FAIL" in verdicts[2]
