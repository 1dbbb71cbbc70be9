"""Benchmarks' isolation from the stack's topics (loadtest/isolation.py), without servers."""

from __future__ import annotations

import shutil

import pytest

from loadtest import isolation
from ripple_stack.settings import REPO_ROOT, load_settings

SECRETS = {"RIPPLE_GATEWAY_CLIENT_SECRET": "x", "RIPPLE_PUBLISHER_CLIENT_SECRET": "x"}


def test_grown_names_only_the_topics_that_moved():
    before = {"ripple.shop.orders": 10, "ripple.shop.payments": 5}
    after = {"ripple.shop.orders": 10, "ripple.shop.payments": 7, "ripple.shop.alerts": 1}
    assert isolation.grown(before, after) == {"ripple.shop.alerts": 1, "ripple.shop.payments": 2}
    assert isolation.grown(before, dict(before)) == {}


def test_the_guarded_topics_are_the_stacks_and_private_ones_never_match_them():
    topics = isolation.stack_topic_names()
    assert "ripple.shop.orders" in topics and "ripple.shop.alerts" in topics
    assert not isolation.PRIVATE_PREFIX.startswith("ripple.")


def test_private_gateway_runs_the_manifest_command_with_its_own_prefix_and_port(tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_HOME", str(tmp_path))
    gateway = isolation.PrivateGateway(load_settings(), SECRETS, name="after", port=23456, run="r1")
    try:
        command, env = gateway.command_and_env()
    finally:
        shutil.rmtree(gateway.log_dir, ignore_errors=True)
    assert "-m ripple_server --target=handle --source=main.py" in " ".join(command)
    assert env["PORT"] == "23456"
    assert env["KAFKA_TOPIC_PREFIX"] == "bench.r1.after."
    assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")  # the manifest's, rewritten
    assert gateway.topic_names() == [f"bench.r1.after.{t}" for t in isolation.stack_topic_names()]


@pytest.mark.parametrize(
    ("concurrency", "target", "utilization", "max_scale", "instances"),
    [
        (32, 24, 70, 10, 2),  # wrk -c32 against the gateway's manifest: 32 / 16.8
        (16, 24, 70, 10, 1),  # one instance holds 16.8
        (17, 24, 70, 10, 2),
        (0, 24, 70, 10, 1),  # never fewer than one
        (500, 24, 70, 10, 10),  # capped at max-scale
        (500, 24, 70, 0, 30),  # no cap
        (100, 100, 100, 0, 1),
    ],
)
def test_kpa_instances_follow_knatives_desired_pods(concurrency, target, utilization, max_scale, instances):
    assert isolation.kpa_instances(concurrency, target, utilization, max_scale) == instances


def test_gateway_instances_read_the_manifest_and_a_gunicorn_build_runs_one(tmp_path):
    assert isolation.gateway_instances(32) == 2
    old = tmp_path / "knative" / "gateway"
    old.mkdir(parents=True)
    manifest = (REPO_ROOT / "knative" / "gateway" / "service.yaml").read_text()
    (old / "service.yaml").write_text(manifest.replace('"-m", "ripple_server"', '"-m", "gunicorn"'))
    assert isolation.gateway_instances(32, tmp_path) == 1


def test_private_gateway_refuses_a_build_without_the_topic_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_HOME", str(tmp_path))
    old = tmp_path / "old"
    shutil.copytree(REPO_ROOT / "functions" / "gateway", old / "functions" / "gateway")
    config = old / "functions" / "gateway" / "ripple_gateway" / "config.py"
    config.write_text(config.read_text().replace("KAFKA_TOPIC_PREFIX", "SOMETHING_ELSE"))
    gateway = isolation.PrivateGateway(load_settings(), SECRETS, source=old)
    with pytest.raises(isolation.IsolationError, match="predates KAFKA_TOPIC_PREFIX"):
        gateway.start()
    shutil.rmtree(gateway.log_dir, ignore_errors=True)


@pytest.mark.parametrize(
    "module", ["loadtest/gateway/run.py", "loadtest/edge/bench.py", "loadtest/peers/ingress.py"]
)
def test_benchmarks_measure_a_private_gateway_never_the_stacks(module):
    """The stack's gateway writes into the stack's topics: no benchmark may send to it."""
    source = (REPO_ROOT / module).read_text()
    assert "PrivateGateway" in source or "private_gateways" in source
    assert "settings.gateway_url" not in source and "ports['gateway']" not in source


@pytest.mark.parametrize(
    "module", ["loadtest/gateway/run.py", "loadtest/edge/bench.py", "loadtest/peers/__main__.py"]
)
def test_benchmarks_end_with_the_stack_topics_check(module):
    source = (REPO_ROOT / module).read_text()
    assert "StackTopics(" in source and ("finish(" in source or ".check()" in source)
