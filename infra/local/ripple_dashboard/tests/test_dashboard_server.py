"""The dashboard server against the stack's real Prometheus: proxy, variables, errors, health."""

from __future__ import annotations

import json

import pytest
import requests

from loadtest.measure import free_port

pytestmark = pytest.mark.integration

DASHBOARD = {
    "title": "server test",
    "templating": {
        "list": [
            {"name": "job", "type": "query", "query": "label_values(up, job)"},
            {
                "name": "counted",
                "type": "query",
                "query": "query_result(count by (job) (up))",
                "regex": '/job="([^"]+)"/',
            },
        ]
    },
    "panels": [{"type": "timeseries", "title": "up", "id": 1, "targets": [{"expr": 'up{job="$job"}'}]}],
}


@pytest.fixture
def dashboard_file(tmp_path):
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(DASHBOARD))
    return path


def test_queries_reach_prometheus_with_variables_replaced_and_errors_passed_back(
    stack, start_dashboard, dashboard_file
):
    url = start_dashboard(dashboard_file, stack.prometheus_url)
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    jobs = requests.get(
        f"{stack.prometheus_url}/api/v1/label/job/values", params={"match[]": "up"}, timeout=10
    ).json()["data"]
    options = requests.get(f"{url}/api/variables/job", timeout=10).json()["options"]
    assert [o["value"] for o in options] == sorted(jobs)
    counted = requests.get(f"{url}/api/variables/counted", timeout=10).json()["options"]
    assert [o["value"] for o in counted] == sorted(jobs)

    ours = requests.post(
        f"{url}/api/v1/query", data={"query": 'count(up{job=~"$job"})', "var-job": "prometheus"}, timeout=10
    ).json()
    direct = requests.get(
        f"{stack.prometheus_url}/api/v1/query", params={"query": 'count(up{job=~"prometheus"})'}, timeout=10
    ).json()
    assert (
        ours["status"] == "success"
        and ours["data"]["result"][0]["value"][1] == direct["data"]["result"][0]["value"][1]
    )

    broken = "sum(rate(ripple_gateway_requests_total[1m])"
    answer = requests.post(f"{url}/api/v1/query", data={"query": broken}, timeout=10)
    expected = requests.get(f"{stack.prometheus_url}/api/v1/query", params={"query": broken}, timeout=10)
    assert (answer.status_code, answer.json()) == (expected.status_code, expected.json())
    assert answer.json()["status"] == "error"


def test_without_prometheus_or_uplot_the_answers_say_what_to_do(
    stack, start_dashboard, dashboard_file, tmp_path
):
    url = start_dashboard(dashboard_file, f"http://127.0.0.1:{free_port()}", vendor_dir=tmp_path / "no-npm")
    health = requests.get(f"{url}/healthz", timeout=10)
    assert health.status_code == 503 and "make up" in health.text
    answer = requests.post(
        f"{url}/api/v1/query_range", data={"query": "up", "start": 0, "end": 60, "step": 15}
    )
    assert answer.status_code == 502
    assert answer.json()["errorType"] == "unavailable" and "does not answer" in answer.json()["error"]
    vendor = requests.get(f"{url}/vendor/uPlot.iife.min.js", timeout=10)
    assert vendor.status_code == 503 and "npm ci" in vendor.text
