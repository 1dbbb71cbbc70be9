"""The activator's and autoscaler's metrics, under Knative's names, and the cold-start log.

Knative exports these through OpenCensus' Prometheus exporter, which names a counter without a
`_total` suffix (`activator_request_count`); prometheus_client would add one, and its locks cost
on the hot path, so the few series are plain numbers here and rendered on scrape. Labels are
Knative's revision keys (namespace_name, service_name, configuration_name, revision_name).
ripple's own `ripple_serving_cold_start*` series and `$RIPPLE_HOME/logs/cold-starts.jsonl` record
what Knative does not: every instance start, exec -> ready, and the wait of the request that
caused it.
"""

from __future__ import annotations

import bisect
import json
import time
from pathlib import Path

# Knative's activator latency distribution (ms), pkg/activator/handler/metrics.go.
LATENCY_BUCKETS_MS = (
    5,
    10,
    20,
    40,
    60,
    80,
    100,
    150,
    200,
    250,
    300,
    350,
    400,
    450,
    500,
    600,
    700,
    800,
    900,
    1000,
    2000,
    5000,
    10000,
    20000,
    50000,
    100000,
)
COLD_START_BUCKETS_S = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 30.0, 60.0)


class Histogram:
    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def render(self, name: str, labels: str) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            cumulative += count
            lines.append(f'{name}_bucket{{{labels},le="{bound:g}"}} {cumulative}')
        lines.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum{{{labels}}} {self.total:.6f}")
        lines.append(f"{name}_count{{{labels}}} {self.count}")
        return lines


class ServingMetrics:
    """Every series one activator exports; the activator and scaler update the fields."""

    def __init__(self, namespace: str, function: str, cold_start_log: Path) -> None:
        self.labels = (
            f'namespace_name="{namespace}",service_name="{function}",'
            f'configuration_name="{function}",revision_name="{function}-local"'
        )
        self.function = function
        self.cold_start_log = cold_start_log
        # activator
        self.request_concurrency = 0
        self.request_count: dict[int, int] = {}
        self.request_latencies_ms = Histogram(LATENCY_BUCKETS_MS)
        self.queued = 0  # held for lack of a ready instance with a free slot
        # autoscaler (last decision)
        self.desired_pods = 0
        self.actual_pods = 0
        self.not_ready_pods = 0
        self.terminating_pods = 0
        self.stable = 0.0
        self.panic = 0.0
        self.target = 0.0
        self.metric = "concurrency"
        self.panic_mode = 0
        self.max_scale = 0
        # ripple
        self.cold_starts = 0
        self.cold_start_seconds = Histogram(COLD_START_BUCKETS_S)
        self.cold_start_request_wait_seconds = Histogram(COLD_START_BUCKETS_S)
        self.instance_failures = 0

    def request_done(self, status: int, seconds: float) -> None:
        self.request_count[status] = self.request_count.get(status, 0) + 1
        self.request_latencies_ms.observe(seconds * 1000.0)

    def cold_start(
        self, instance: str, started_at: float, ready_s: float, request_wait_s: float | None, reason: str
    ) -> None:
        """One instance became ready: count it and append it to cold-starts.jsonl."""
        self.cold_starts += 1
        self.cold_start_seconds.observe(ready_s)
        if request_wait_s is not None:
            self.cold_start_request_wait_seconds.observe(request_wait_s)
        record = {
            "function": self.function,
            "instance": instance,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started_at))
            + f".{int(started_at % 1 * 1000):03d}Z",
            "ready_s": round(ready_s, 3),
            "first_request_wait_s": None if request_wait_s is None else round(request_wait_s, 3),
            "reason": reason,
        }
        try:
            with self.cold_start_log.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError:
            pass  # the log is for people; the metrics above still count it

    def render(self) -> str:
        labels = self.labels
        out: list[str] = []

        def gauge(name: str, help_text: str, value: float) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name}{{{labels}}} {value:g}")

        gauge(
            "activator_request_concurrency",
            "Concurrent requests that are routed to Activator",
            self.request_concurrency,
        )
        out += [
            "# HELP activator_request_count The number of requests that are routed to Activator",
            "# TYPE activator_request_count counter",
        ]
        for status, count in sorted(self.request_count.items()):
            out.append(
                f'activator_request_count{{{labels},response_code="{status}",'
                f'response_code_class="{status // 100}xx"}} {count}'
            )
        out += [
            "# HELP activator_request_latencies The response time in millisecond",
            "# TYPE activator_request_latencies histogram",
        ]
        out += self.request_latencies_ms.render("activator_request_latencies", labels)
        gauge("autoscaler_desired_pods", "Number of pods autoscaler wants to allocate", self.desired_pods)
        gauge("autoscaler_actual_pods", "Number of pods that are allocated currently", self.actual_pods)
        gauge("autoscaler_not_ready_pods", "Number of pods that are not ready currently", self.not_ready_pods)
        gauge(
            "autoscaler_terminating_pods",
            "Number of pods that are terminating currently",
            self.terminating_pods,
        )
        if self.metric == "rps":
            gauge(
                "autoscaler_stable_requests_per_second",
                "Average requests-per-second over the stable window",
                self.stable,
            )
            gauge(
                "autoscaler_panic_requests_per_second",
                "Average requests-per-second over the panic window",
                self.panic,
            )
            gauge(
                "autoscaler_target_requests_per_second",
                "The desired requests-per-second for each pod",
                self.target,
            )
        else:
            gauge(
                "autoscaler_stable_request_concurrency",
                "Average of requests count over the stable window",
                self.stable,
            )
            gauge(
                "autoscaler_panic_request_concurrency",
                "Average of requests count over the panic window",
                self.panic,
            )
            gauge(
                "autoscaler_target_concurrency_per_pod",
                "The desired number of concurrent requests for each pod",
                self.target,
            )
        gauge("autoscaler_panic_mode", "1 if autoscaler is in panic mode, 0 otherwise", self.panic_mode)
        gauge(
            "ripple_serving_queued_requests",
            "Requests held by the activator for lack of a ready instance with a free slot",
            self.queued,
        )
        gauge(
            "ripple_serving_max_scale", "The revision's max-scale (local cap when unbounded)", self.max_scale
        )
        out += [
            "# HELP ripple_serving_cold_starts_total Instance starts that became ready",
            "# TYPE ripple_serving_cold_starts_total counter",
            f"ripple_serving_cold_starts_total{{{labels}}} {self.cold_starts}",
            "# HELP ripple_serving_instance_failures_total Instances that exited without being asked",
            "# TYPE ripple_serving_instance_failures_total counter",
            f"ripple_serving_instance_failures_total{{{labels}}} {self.instance_failures}",
            "# HELP ripple_serving_cold_start_seconds Instance start: exec to ready",
            "# TYPE ripple_serving_cold_start_seconds histogram",
        ]
        out += self.cold_start_seconds.render("ripple_serving_cold_start_seconds", labels)
        out += [
            "# HELP ripple_serving_cold_start_request_wait_seconds "
            "Wait of the request that caused a start from zero",
            "# TYPE ripple_serving_cold_start_request_wait_seconds histogram",
        ]
        wait = self.cold_start_request_wait_seconds
        out += wait.render("ripple_serving_cold_start_request_wait_seconds", labels)
        return "\n".join(out) + "\n"


def merge_expositions(pages: list[tuple[str, str]]) -> str:
    """Several instances' /metrics pages as one, each sample labelled pod="<instance>".

    Prometheus scrapes the function through this one stable target (the instances come and go
    on their own ports); HELP/TYPE appear once per family and the samples of a family together.
    """
    families: dict[str, list[str]] = {}
    headers: dict[str, list[str]] = {}
    for pod, text in pages:
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    headers.setdefault(family, [])
                    if len(headers[family]) < 2 and line not in headers[family]:
                        headers[family].append(line)
                    families.setdefault(family, [])
                continue
            name_end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
            if name_end < 0:
                continue
            if line[name_end] == "{":
                sample = f'{line[:name_end]}{{pod="{pod}",{line[name_end + 1 :]}'.replace(",}", "}")
            else:
                sample = f'{line[:name_end]}{{pod="{pod}"}}{line[name_end:]}'
            families.setdefault(family, []).append(sample)
    out: list[str] = []
    for family, samples in families.items():
        out.extend(headers.get(family, []))
        out.extend(samples)
    return "\n".join(out) + ("\n" if out else "")
