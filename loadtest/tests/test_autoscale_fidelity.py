"""The fidelity report's pure rules (loadtest/autoscale/analysis.py): histogram quantiles,
bucket increases, the ±1 agreement of desired instances per tick, panic episodes."""

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
