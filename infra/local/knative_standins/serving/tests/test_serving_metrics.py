"""The activator's metric names and labels (Knative's), the cold-start log, the merged pages."""

from __future__ import annotations

import json

from knative_standins.serving.metrics import ServingMetrics, merge_expositions

KNATIVE_LABELS = 'namespace_name="ripple",service_name="gateway",configuration_name="gateway",revision_name='


def test_knative_names_and_revision_labels(tmp_path) -> None:
    metrics = ServingMetrics("ripple", "gateway", tmp_path / "cold-starts.jsonl")
    metrics.request_done(202, 0.012)
    metrics.request_done(503, 1.5)
    page = metrics.render()
    for name in (
        "activator_request_concurrency",
        "activator_request_latencies_bucket",
        "autoscaler_desired_pods",
        "autoscaler_actual_pods",
        "autoscaler_stable_request_concurrency",
        "autoscaler_panic_request_concurrency",
        "autoscaler_panic_mode",
        "ripple_serving_cold_starts_total",
        "ripple_serving_cold_start_seconds_bucket",
        "ripple_serving_cold_start_request_wait_seconds_count",
    ):
        assert f"\n{name}{{{KNATIVE_LABELS}" in page, name
    assert (
        "activator_request_count{"
        + KNATIVE_LABELS
        + '"gateway-local",response_code="503",response_code_class="5xx"} 1'
        in page
    )
    assert "activator_request_count_total" not in page  # OpenCensus names, no _total


def test_every_cold_start_is_one_json_line(tmp_path) -> None:
    log = tmp_path / "cold-starts.jsonl"
    metrics = ServingMetrics("ripple", "query", log)
    metrics.cold_start("query-1", 1_800_000_000.25, 1.2345, 1.3, "request")
    metrics.cold_start("query-2", 1_800_000_001.0, 2.0, None, "scale-out")
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert first == {
        "function": "query",
        "instance": "query-1",
        "started_at": "2027-01-15T08:00:00.250Z",
        "ready_s": 1.234,
        "first_request_wait_s": 1.3,
        "reason": "request",
    }
    assert second["first_request_wait_s"] is None
    assert "ripple_serving_cold_starts_total{" in metrics.render() and metrics.cold_starts == 2


def test_instance_pages_merge_with_a_pod_label_and_one_header_per_family() -> None:
    page = '# HELP x_total X\n# TYPE x_total counter\nx_total 1\n# TYPE h histogram\nh_bucket{le="1"} 3\n'
    merged = merge_expositions([("fn-1", page), ("fn-2", page)])
    assert merged.count("# TYPE x_total counter") == 1
    assert 'x_total{pod="fn-1"} 1' in merged and 'x_total{pod="fn-2"} 1' in merged
    assert 'h_bucket{pod="fn-2",le="1"} 3' in merged
    assert merge_expositions([]) == ""
