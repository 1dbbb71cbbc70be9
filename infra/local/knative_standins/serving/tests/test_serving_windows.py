"""windows.TimedBuckets: the per-second buckets behind the autoscaler's stable and panic averages."""

from __future__ import annotations

from knative_standins.serving.windows import TimedBuckets


def test_window_average_over_the_data_it_has() -> None:
    buckets = TimedBuckets(keep_s=60)
    for second in range(10):
        buckets.record(100 + second + 0.5, 4.0 if second < 5 else 0.0)
    assert buckets.average(109.9, 60) == 2.0  # 10 seconds of data, not 60
    assert buckets.average(109.9, 5) == 0.0
    assert buckets.average(109.9, 6) == 4.0 / 6
    buckets.record(109.9, 3.0)  # same second: summed (activator poke + report)
    assert buckets.average(109.9, 1) == 3.0
