"""The autoscale demo's run as a table of phases, walked with fakes: no stack, no waiting.

Checks the phases come out in order and back to back, the report is written with the checks
the run earned, and the load's rates follow the table (step, then spike, then none).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from loadtest.autoscale import demo as demo_module
from loadtest.autoscale.__main__ import check_under_client_limit, per_client_limit
from loadtest.autoscale.demo import DemoOptions, run_demo
from loadtest.autoscale.observe import InstanceReader
from loadtest.scenarios.config import LoadConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeInstances(InstanceReader):
    """At zero before and after; one event-store instance while the load ran."""

    def current(self) -> dict[str, float]:
        return {"event-store": 0.0, "order-alerts": 0.0}

    def series(self, t0, t_end):
        ready = {"event-store": [(t0, 0.0), (t0 + 20, 1.0), (t_end - 5, 0.0)], "gateway": [(t0 + 20, 1.0)]}
        return ready, {}

    def instance_memory(self):
        return [("event-store", "event-store-1", 52.5)]


class FakeDriver:
    def __init__(self, *args, rate: float, **kwargs) -> None:
        self.rates = [rate]
        self.accepted: set[str] = set()
        self.sent: set[str] = set()
        self.workers = kwargs["workers"]

    def start(self) -> None:
        self.rates.append("start")

    def set_rate(self, rate: float) -> None:
        self.rates.append(rate)

    def stop(self) -> None:
        self.rates.append("stop")

    def snapshot(self) -> list:
        return []


@pytest.fixture
def walked(monkeypatch, tmp_path: Path):
    clock = FakeClock()
    for name in ("time", "monotonic", "sleep"):
        monkeypatch.setattr(demo_module.time, name, getattr(clock, name))
    drivers: list[FakeDriver] = []

    def driver(*args, **kwargs) -> FakeDriver:
        drivers.append(FakeDriver(*args, **kwargs))
        return drivers[-1]

    monkeypatch.setattr(demo_module, "LoadDriver", driver)
    monkeypatch.setattr(demo_module, "TokenSource", lambda *args: None)
    # The picture needs matplotlib (the `load` extra, not in CI's `dev`); this test is about the phases.
    # Without it the picture is stood in for by an empty file where the demo writes it.
    if importlib.util.find_spec("matplotlib") is None:
        monkeypatch.setattr(demo_module, "plot_demo", lambda path, *args: path.touch())
    config = LoadConfig(None, "http://edge/", "http://token/", "c", "s", "p", tmp_path)  # type: ignore[arg-type]
    options = DemoOptions(step_s=60, spike_s=30)
    directory, result = run_demo(config, options, FakeInstances(), None, None, None, mode="cluster")
    return directory, result, drivers[0], options


def test_the_phases_follow_the_table_back_to_back(walked):
    directory, _, driver, options = walked
    assert driver.rates == [options.step_rate, "start", options.spike_rate, 0, "stop", "stop"]
    report = (directory / "report.md").read_text()
    for name in ("step", "spike", "drain", "to zero"):
        assert f"| {name} |" in report
    assert (directory / "autoscale.png").exists()


def test_the_report_carries_the_checks_the_run_earned(walked):
    directory, result, _, _ = walked
    report = (directory / "report.md").read_text()
    assert "every 202 event stored" in report and "not checked: no --postgres-dsn" in report
    assert "event-store scaled up under load" in report
    assert "event-store back at zero" in report
    assert "cold starts: Knative logs none as events" in report
    assert result in ("PASS", "FAIL")


def test_the_report_shows_memory_per_instance_against_the_goal(walked):
    import json

    directory, _, _, _ = walked
    report = (directory / "report.md").read_text()
    assert "## Memory per instance" in report and "goal idle < 80 MiB" in report
    assert "| event-store | 1 | 52.5 | 52.5 |" in report
    run = json.loads((directory / "run.json").read_text())
    assert run["memory"]["event-store"]["peak"] == 52.5
    assert run["memory_samples"][0][1:] == ["event-store", "event-store-1", 52.5]


@pytest.mark.parametrize(
    ("rate", "per_second"),
    [("20r/s", 20.0), ("600r/m", 10.0), (" 2.5r/s ", 2.5), ("fast", None), ("", None)],
)
def test_per_client_limit(rate: str, per_second: float | None) -> None:
    assert per_client_limit(rate) == per_second


def test_check_under_client_limit_stops_a_load_one_client_cannot_send() -> None:
    check_under_client_limit(18.0, {})  # strict: 20 r/s per client
    with pytest.raises(SystemExit, match=r"36 req/s is at or above nginx's per-client limit \(20r/s"):
        check_under_client_limit(36.0, {})
    check_under_client_limit(36.0, {"RIPPLE_NGINX_RATE_PER_CLIENT": "40r/s"})
