"""The KPA decision, tick by tick, in the style of knative/serving's autoscaler_test.go."""

from __future__ import annotations

from dataclasses import replace

import pytest

from knative_standins.serving.config import RevisionSpec
from knative_standins.serving.decider import DeciderState, decide

BASE = RevisionSpec(
    metric="concurrency",
    target_value=10.0,
    total_value=100.0,
    min_scale=0,
    max_scale=0,
    initial_scale=1,
    stable_window_s=60.0,
    panic_window_s=6.0,
    panic_threshold=2.0,
    max_scale_up_rate=1000.0,
    max_scale_down_rate=2.0,
    scale_down_delay_s=0.0,
    enable_scale_to_zero=True,
    scale_to_zero_grace_period_s=30.0,
    scale_to_zero_pod_retention_period_s=0.0,
    tick_interval_s=2.0,
    container_concurrency=0,
    timeout_s=300.0,
)
# A revision that has been up for a while: initial scale reached, active long ago.
SETTLED = DeciderState(initial_reached=True, active_since=-1000.0)


@pytest.mark.parametrize(
    ("name", "spec_changes", "stable", "panic", "ready", "want", "want_panic"),
    [
        ("stable mode, at target", {}, 50, 50, 5, 5, False),
        ("stable mode, scale up", {}, 100, 100, 8, 10, False),
        ("panic: panic window needs twice the ready pods", {}, 20, 50, 1, 5, True),
        ("scale down is rate limited to N/2", {}, 0.5, 0.5, 10, 5, False),
        (
            "scale up rate 1.1 still grows by one pod",
            {"max_scale_up_rate": 1.1, "target_value": 1},
            3,
            3,
            2,
            3,
            False,
        ),
        ("scale up rate caps a big jump", {"max_scale_up_rate": 2.0}, 1000, 1000, 2, 4, True),
        ("from zero: any load wants one instance", {}, 0.01, 0.01, 0, 1, False),
        ("min-scale holds with no load", {"min_scale": 2}, 0, 0, 2, 2, False),
        ("max-scale caps the answer", {"max_scale": 3}, 100, 100, 3, 3, True),
        ("unbounded max-scale is capped locally", {}, 10_000, 10_000, 32, 32, True),
        ("rps target", {"metric": "rps", "target_value": 140.0}, 300, 300, 3, 3, False),
        # TestAutoscalerActivationScale: no load stays at zero, any load wants activation-scale.
        ("activation-scale, no load", {"activation_scale": 2}, 0, 0, 0, 0, False),
        ("activation-scale, from zero", {"activation_scale": 2}, 1, 1, 0, 2, False),
        ("activation-scale below the need", {"activation_scale": 2}, 50, 50, 5, 5, False),
        ("activation-scale floors a scale down", {"activation_scale": 3}, 5, 5, 4, 3, False),
    ],
)
def test_single_tick(name, spec_changes, stable, panic, ready, want, want_panic) -> None:
    spec = replace(BASE, **spec_changes)
    decision = decide(spec, stable, panic, ready, 0.0, SETTLED)
    assert (decision.desired, decision.panic) == (want, want_panic), name


def run(spec: RevisionSpec, ticks: list[tuple[float, float, float, int]], state=SETTLED) -> list[int]:
    """(now, stable, panic, ready) per tick -> the desired count of each tick."""
    answers = []
    for now, stable, panic, ready in ticks:
        decision = decide(spec, stable, panic, ready, now, state)
        state = decision.state
        answers.append(decision.desired)
    return answers


def test_panic_mode_never_scales_down_and_ends_after_a_stable_window() -> None:
    answers = run(
        BASE,
        [
            (0, 10, 80, 1),  # surge: panic, 8 pods
            (2, 10, 10, 8),  # calmer panic window: still 8 (no scale down while panicking)
            (40, 10, 10, 8),  # within a stable window of the last over-threshold tick: 8
            (61, 10, 10, 8),  # a stable window later: back to stable mode, rate-limited to 4
        ],
    )
    assert answers == [8, 8, 8, 4]


def test_scale_down_delay_keeps_the_largest_recent_decision() -> None:
    spec = replace(BASE, scale_down_delay_s=10.0)
    answers = run(spec, [(0, 50, 50, 5), (5, 10, 10, 5), (9, 10, 10, 5), (11, 10, 10, 5)])
    # Without the delay t=5 would answer max(ceil(10/10), floor(5/2)) = 2; the t=0 decision (5)
    # holds until it leaves the 10 s window.
    assert answers == [5, 5, 5, 2]


def test_scale_to_zero_waits_for_the_grace_period_after_going_inactive() -> None:
    answers = run(BASE, [(100, 0, 0, 1), (120, 0, 0, 1), (129.9, 0, 0, 1), (130, 0, 0, 1), (132, 0, 0, 0)])
    assert answers == [1, 1, 1, 0, 0]


def test_retention_period_longer_than_grace_wins() -> None:
    spec = replace(BASE, scale_to_zero_pod_retention_period_s=60.0)
    assert run(spec, [(100, 0, 0, 1), (130, 0, 0, 1), (159, 0, 0, 1), (160, 0, 0, 1)]) == [1, 1, 1, 0]


FRESH = DeciderState(initial_reached=True)


@pytest.mark.parametrize(
    ("name", "spec_changes", "state", "ticks", "want"),
    [
        # Knative marks the PA inactive and, the activator having been in the path for the grace
        # period, scales to zero in the reconcile that this status update enqueues at once
        # (handleScaleToZero's "fast path"): the same autoscaler tick, 60 s after becoming
        # active, as the cluster's 60.1-60.6 s after event-store's last request.
        (
            "fast path: zero in the tick that marks the PA inactive",
            {},
            FRESH,
            [(0, 0, 0, 1), (58, 0, 0, 1), (60, 0, 0, 1), (62, 0, 0, 0)],
            [1, 1, 0, 0],
        ),
        (
            "an instance stays at least a stable window after becoming active",
            {},
            FRESH,
            [(0, 0, 0, 1), (59, 0, 0, 1), (60, 0, 0, 1)],
            [1, 1, 0],
        ),
        # Load came back at 120 (PA active again); idle at 150: marked inactive and, the activator
        # in the path since 100, zero in that same tick.
        (
            "load while inactive cancels, the next idle tick goes at once",
            {},
            SETTLED,
            [(100, 0, 0, 1), (120, 0.5, 0.5, 1), (150, 0, 0, 1), (152, 0, 0, 0)],
            [1, 1, 0, 0],
        ),
        # A retention period: inactive for it first (counted from the marking), then the fast path.
        (
            "retention shorter than grace: zero once inactive for the retention",
            {"scale_to_zero_pod_retention_period_s": 10.0},
            FRESH,
            [(0, 0, 0, 1), (60, 0, 0, 1), (68, 0, 0, 1), (70, 0, 0, 1)],
            [1, 1, 1, 0],
        ),
    ],
)
def test_scale_to_zero_timing(name, spec_changes, state, ticks, want) -> None:
    assert run(replace(BASE, **spec_changes), ticks, state) == want, name


def test_a_grace_period_longer_than_the_activator_has_been_in_the_path_is_waited_out() -> None:
    # The fast path needs the activator in the path for the grace period (SKS ProxyFor).
    spec = replace(BASE, scale_to_zero_grace_period_s=120.0)
    answers = run(spec, [(0, 0, 0, 1), (60, 0, 0, 1), (62, 0, 0, 1), (119, 0, 0, 1), (120, 0, 0, 1)], FRESH)
    assert answers == [1, 1, 1, 1, 0]


def test_scale_to_zero_disabled_keeps_one() -> None:
    spec = replace(BASE, enable_scale_to_zero=False)
    assert run(spec, [(0, 0, 0, 1), (1000, 0, 0, 1)]) == [1, 1]


def test_initial_scale_holds_until_reached_once() -> None:
    spec = replace(BASE, initial_scale=3)
    fresh = DeciderState()
    answers = run(spec, [(0, 0, 0, 0), (1, 0, 0, 2), (2, 0, 0, 3), (3, 0, 0, 3)], fresh)
    # Reached at t=2; then the autoscaler decides: no load -> rate-limited scale down to 1.
    assert answers == [3, 3, 1, 1]


def test_at_zero_with_no_load_stays_at_zero() -> None:
    assert run(BASE, [(0, 0, 0, 0), (100, 0, 0, 0)], DeciderState(initial_reached=True)) == [0, 0]
