"""loadtest.cli and the two commands built on it: the options a command line gives a run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from loadtest.autoscale import __main__ as autoscale_main
from loadtest.autoscale.demo import DemoOptions
from loadtest.scenarios import __main__ as scenarios_main
from loadtest.scenarios.runner import Options


def test_the_demo_gets_every_option_of_its_command_line(monkeypatch):
    seen = {}

    def run_demo(config, options, *args, **kwargs):
        seen["options"] = options
        return Path("/nowhere"), "PASS"

    stack = SimpleNamespace(
        prometheus_url="http://p",
        home=Path("/h"),
        kafka_bootstrap="k:9092",
        host="127.0.0.1",  # the activators' /status, for the instances' memory
        ports={"serving_admin": 18700},
    )
    monkeypatch.setattr(autoscale_main, "run_demo", run_demo)
    monkeypatch.setattr(autoscale_main, "load_config", lambda: SimpleNamespace(stack=stack, postgres_dsn="d"))
    argv = ["--step", "10", "--spike", "5", "--zero-timeout", "7", "--drain-timeout", "8", "--batch", "3"]
    assert autoscale_main.main([*argv, "--memory-every", "2"]) == 0
    assert seen["options"] == DemoOptions(
        batch=3, step_s=10, spike_s=5, zero_timeout_s=7, drain_timeout_s=8, memory_every_s=2
    )


def test_a_scenario_gets_its_options_and_the_default_failure_when_none_is_given(monkeypatch):
    seen = {}

    def run_scenario(name, config, options):
        seen["options"] = options
        return None, "verdict: PASS"

    monkeypatch.setattr(scenarios_main, "run_scenario", run_scenario)
    monkeypatch.setattr(scenarios_main, "load_config", lambda: None)
    monkeypatch.setattr(scenarios_main, "push_run", lambda *args, **kwargs: None)
    assert (
        scenarios_main.main(["baseline", "--rate", "3", "--before", "1", "--after", "2", "--workers", "4"])
        == 0
    )
    assert seen["options"] == Options(rate=3, before_s=1, after_s=2, workers=4)
