"""Per-second buckets and their window averages: the stable and panic views of one metric.

Knative's metric collector (pkg/autoscaler/aggregation) keeps one bucket per second, sums the
reports that land in the same second (several pods, or the activator's poke), and averages over
the last `window` seconds. Until a full window of data exists it averages over what it has, so a
revision that just started is not judged on seconds it did not live.
"""

from __future__ import annotations

import math


class TimedBuckets:
    """Sum of values per whole second; `average(now, window)` over the seconds that have data."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.buckets: dict[int, float] = {}
        self.first: int | None = None

    def record(self, now: float, value: float) -> None:
        second = math.floor(now)
        self.buckets[second] = self.buckets.get(second, 0.0) + value
        if self.first is None:
            self.first = second
        # Drop what no window can see any more (bounded memory, cheap: once per record).
        oldest = second - int(self.keep_s) - 1
        for stale in [s for s in self.buckets if s < oldest]:
            del self.buckets[stale]

    def average(self, now: float, window_s: float) -> float:
        if self.first is None:
            return 0.0
        end = math.floor(now)
        start = max(end - int(window_s) + 1, self.first)
        if start > end:
            return 0.0
        total = sum(self.buckets.get(second, 0.0) for second in range(start, end + 1))
        return total / (end - start + 1)
