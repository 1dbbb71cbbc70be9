"""Batch runs push their result to the Pushgateway and Prometheus keeps the last one of each job.

The helper is ripple_stack.batch_runs; load runs, scenarios, benchmarks, dead-letter replays and
Flink savepoints/upgrades call it. A Pushgateway that does not answer must never fail a run.
"""

from __future__ import annotations

import importlib.util
import json
import time
import urllib.parse
import urllib.request
import uuid

import pytest
import yaml

from ripple_stack.batch_runs import push_run, pushed_run
from ripple_stack.settings import REPO_ROOT

DEAD_LETTERS = REPO_ROOT / "functions" / "dead-letters"
OVERVIEW = REPO_ROOT / "infra" / "grafana" / "ripple-overview.yaml"


def pushed_groups(stack) -> dict[str, dict]:
    """job label -> the Pushgateway's group of that job."""
    with urllib.request.urlopen(f"{stack.pushgateway_url}/api/v1/metrics", timeout=10) as response:
        groups = json.load(response)["data"]
    return {group["labels"]["job"]: group for group in groups}


def value(group: dict, metric: str, **labels: str) -> float:
    for sample in group[metric]["metrics"]:
        if all(sample["labels"].get(k) == v for k, v in labels.items()):
            return float(sample["value"])
    raise AssertionError(f"no {metric} {labels} in {group[metric]}")


def prometheus_value(stack, query: str) -> float | None:
    url = f"{stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def batch_row_queries() -> list[str]:
    """The queries of the overview dashboard's "Batch runs" row."""
    panels = json.loads(yaml.safe_load(OVERVIEW.read_text())["spec"]["json"])["panels"]
    start = next(i for i, panel in enumerate(panels) if panel["title"] == "Batch runs")
    end = next((i for i in range(start + 1, len(panels)) if panels[i]["type"] == "row"), len(panels))
    return [target["expr"] for panel in panels[start + 1 : end] for target in panel.get("targets", [])]


def prometheus_jobs(stack, query: str) -> set[str]:
    url = f"{stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        return {series["metric"].get("job") for series in json.load(response)["data"]["result"]}


def test_an_unreachable_pushgateway_is_a_warning_not_a_failure(monkeypatch, capsys):
    monkeypatch.setenv("RIPPLE_PUSHGATEWAY_URL", "http://127.0.0.1:1")
    assert push_run("unit-test", duration_s=1.0, passed=True, counts={"events": 3}) is False
    with pytest.raises(SystemExit) as exited, pushed_run("unit-test"):
        raise SystemExit(0)  # what `sys.exit(main())` does inside the block
    assert exited.value.code == 0
    assert "warning: could not push the unit-test run's result" in capsys.readouterr().err


@pytest.mark.integration
def test_a_run_pushes_and_prometheus_shows_its_last_result(stack, monkeypatch):
    monkeypatch.delenv("RIPPLE_PUSHGATEWAY_URL", raising=False)
    job = f"test-batch-{uuid.uuid4().hex[:8]}"
    try:
        began = time.monotonic()
        with pytest.raises(RuntimeError), pushed_run(job) as counts:
            counts["events"] = 7
            time.sleep(0.3)
            raise RuntimeError("the run failed")
        elapsed = time.monotonic() - began
        group = pushed_groups(stack)[job]
        assert value(group, "ripple_batch_success") == 0
        assert value(group, "ripple_batch_count", what="events") == 7
        # The run's own duration: at least the work inside the block, at most the whole block.
        assert 0.3 <= value(group, "ripple_batch_duration_seconds") <= elapsed

        with pushed_run(job) as counts:  # the next run replaces the last one
            counts["events"] = 9
        assert value(pushed_groups(stack)[job], "ripple_batch_success") == 1

        # Prometheus scrapes the Pushgateway (honor_labels: the run's own job label is kept).
        deadline = time.monotonic() + 60
        while prometheus_value(stack, f'ripple_batch_count{{job="{job}",what="events"}}') != 9:
            assert time.monotonic() < deadline, "Prometheus does not show the pushed run"
            time.sleep(2)
        assert prometheus_value(stack, f'ripple_batch_success{{job="{job}"}}') == 1
        # The Grafana row shows it: every query of the "Batch runs" row has a series of this job.
        queries = batch_row_queries()
        assert queries
        for query in queries:
            assert job in prometheus_jobs(stack, query), query
    finally:  # keep the Grafana row to real jobs
        urllib.request.urlopen(
            urllib.request.Request(f"{stack.pushgateway_url}/metrics/job/{job}", method="DELETE"), timeout=10
        )


@pytest.mark.integration
def test_a_dead_letter_replay_pushes_its_counts(stack, monkeypatch):
    # replay.py pushes with prometheus-client itself (it runs in the function's image, in a
    # cluster Job too), where RIPPLE_PUSHGATEWAY_URL says.
    monkeypatch.setenv("RIPPLE_PUSHGATEWAY_URL", stack.pushgateway_url)
    for variable, setting in stack.postgres_env.items():
        monkeypatch.setenv(variable, setting)
    monkeypatch.chdir(DEAD_LETTERS)
    monkeypatch.syspath_prepend(str(DEAD_LETTERS))
    spec = importlib.util.spec_from_file_location("dead_letters_replay_push", DEAD_LETTERS / "replay.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    before = time.time()
    # A source with no dead letters: a real replay run that sends nothing.
    assert replay.main(["--source", f"/test/batch-runs/{uuid.uuid4()}"]) == 0
    group = pushed_groups(stack)["dead-letter-replay"]
    assert value(group, "ripple_batch_last_run_timestamp_seconds") >= before - 1
    assert value(group, "ripple_batch_success") == 1
    assert value(group, "ripple_batch_count", what="dead_letters") == 0


def test_flink_savepoint_and_upgrade_push_their_runs(monkeypatch):
    from contextlib import nullcontext
    from pathlib import Path

    from ripple_stack import batch_runs, flink_job

    pushed = []
    monkeypatch.setattr(batch_runs, "push_run", lambda job, **result: pushed.append((job, result["passed"])))
    monkeypatch.setattr(flink_job, "_stop_with_savepoint", lambda settings, say, timeout_s: Path("/sp"))
    monkeypatch.setattr(flink_job, "apply_schema", lambda settings, secrets: None)
    monkeypatch.setattr(flink_job, "exclusive", lambda settings: nullcontext())
    monkeypatch.setattr(flink_job, "submit", lambda settings, secrets, savepoint: "job-2")
    assert flink_job.upgrade(None, {}, print) == "job-2"
    assert pushed == [("flink-savepoint", True), ("flink-upgrade", True)]

    def refused(settings, say, timeout_s):
        raise flink_job.PrerequisiteError("not RUNNING")

    monkeypatch.setattr(flink_job, "_stop_with_savepoint", refused)
    with pytest.raises(flink_job.PrerequisiteError):
        flink_job.stop_with_savepoint(None, print)
    assert pushed[-1] == ("flink-savepoint", False)
