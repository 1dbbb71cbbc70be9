"""pod_cpu: kubelet's arithmetic (table tests) and, where this machine allows, a real cgroup."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from knative_standins.pod_cpu import (
    CpuQuantityError,
    PodCgroups,
    PodCpu,
    _base,
    applied,
    join,
    millicores,
    quota_us,
    shares,
    weight_v2,
)


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("100m", 100),
        ("1", 1000),
        (1, 1000),
        ("0.5", 500),
        ("1.5", 1500),
        (" 250m ", 250),
        ("0.0001", 1),
        ("0", 0),
    ],
)
def test_millicores_reads_kubernetes_quantities_rounding_up(quantity, expected):
    assert millicores(quantity) == expected


@pytest.mark.parametrize("quantity", ["", "one", "1Gi", "-1", "m"])
def test_millicores_refuses_what_is_not_a_cpu_quantity(quantity):
    with pytest.raises(CpuQuantityError, match=r"CPU quantity|negative"):
        millicores(quantity, "service.yaml resources")


@pytest.mark.parametrize(
    ("request_milli", "expected"),
    # kubelet: none -> 2 (BestEffort), 1 -> 2 (the minimum), 100m -> 102, 1 CPU -> 1024.
    [(0, 2), (1, 2), (100, 102), (250, 256), (1000, 1024), (2000, 2048), (10**6, 262144)],
)
def test_shares_follow_kubelet(request_milli, expected):
    assert shares(request_milli) == expected


@pytest.mark.parametrize(
    ("limit_milli", "expected"), [(1000, 100_000), (500, 50_000), (2, 1000), (2000, 200_000)]
)
def test_quota_follows_kubelet(limit_milli, expected):
    assert quota_us(limit_milli) == expected


@pytest.mark.parametrize(("cpu_shares", "expected"), [(2, 1), (1024, 39), (262144, 10000)])
def test_v2_weight_follows_runc(cpu_shares, expected):
    assert weight_v2(cpu_shares) == expected


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        (None, PodCpu(0, None)),
        ({"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}}, PodCpu(100, 1000)),
        ({"requests": {"cpu": "250m"}}, PodCpu(250, None)),
        # The API server defaults a missing request to the limit.
        ({"limits": {"cpu": "500m"}}, PodCpu(500, 500)),
        ({"requests": {"memory": "96Mi"}}, PodCpu(0, None)),
    ],
)
def test_pod_cpu_from_a_containers_resources(resources, expected):
    assert PodCpu.from_resources(resources, "x") == expected


@pytest.mark.parametrize(
    ("own", "expected"),
    [("", ""), ("user.slice", "user.slice"), ("ripple/activator", ""), ("ci/ripple/activator", "ci")],
)
def test_a_process_in_a_pod_puts_new_pods_beside_its_own(own, expected):
    assert _base(own, "ripple") == expected


def test_switched_off_applies_nothing_but_still_cleans_up(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.shares").write_text("1024")
    left = tmp_path / "cpu" / "ripple" / "notifier-1-1"  # from a stack that ran with it on
    left.mkdir(parents=True)
    pods = PodCgroups(mount=tmp_path, env={"RIPPLE_POD_CPU": "off"})
    assert pods.unavailable == "RIPPLE_POD_CPU=off"
    assert pods.prepare("notifier-1", PodCpu(250)) is None
    pods.remove_all()
    assert not (tmp_path / "cpu" / "ripple").exists()


def test_no_cpu_controller_says_so(tmp_path):
    pods = PodCgroups(mount=tmp_path, env={})
    assert pods.unavailable and "no cgroup cpu controller" in pods.unavailable
    assert pods.prepare("notifier-1", PodCpu(250)) is None


def test_a_process_joins_its_pods_cgroup_with_the_requests_weight():
    """On the machine's own cgroups (root and cgroup v1 or v2 with the cpu controller)."""
    pods = PodCgroups(parent=f"ripple-test-{os.getpid()}", env={})
    if pods.unavailable:
        pytest.skip(f"cgroups not usable here: {pods.unavailable}")
    try:
        procs = pods.prepare("notifier-1", PodCpu(250, 1000))
        assert procs is not None
        pod = procs.parent
        if pods.version == 1:
            assert (pod / "cpu.shares").read_text().strip() == "256"
            assert (pod / "cpu.cfs_quota_us").read_text().strip() == "100000"
        else:
            assert (pod / "cpu.weight").read_text().strip() == str(weight_v2(256))
            assert (pod / "cpu.max").read_text().split() == ["100000", "100000"]
        child = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: join(procs))
        try:
            assert str(child.pid) in (pod / "cgroup.procs").read_text().split()
        finally:
            child.kill()
            child.wait()
        pods.remove("notifier-1")
        assert not pod.exists()
    finally:
        pods.remove_all()
    assert not pods.parent.exists()


def test_a_report_says_whether_the_pods_cpu_was_applied(tmp_path: Path):
    assert "not applied" in applied(tmp_path)
    (tmp_path / "cpu" / "ripple" / "kafka").mkdir(parents=True)
    (tmp_path / "cpu" / "ripple" / "kafka" / "cgroup.procs").write_text("")
    assert "not applied" in applied(tmp_path)  # left behind, empty
    (tmp_path / "cpu" / "ripple" / "kafka" / "cgroup.procs").write_text("4242\n")
    assert applied(tmp_path).startswith("the pods' CPU requests applied as cgroup weights (1 pods")


def test_a_report_finds_the_pods_beside_its_own_nested_cgroup(tmp_path: Path):
    (tmp_path / "cgroup.controllers").write_text("cpuset cpu io memory\n")
    pod = tmp_path / "session" / "shell" / "ripple" / "kafka"
    pod.mkdir(parents=True)
    (pod / "cgroup.procs").write_text("4242\n")
    own = "0::/session/shell\n"
    assert "not applied" in applied(tmp_path)  # not where a process at the top would put them
    assert applied(tmp_path, own=own).startswith("the pods' CPU requests applied as cgroup weights (1 pods")


def test_join_reports_a_refusal(tmp_path: Path):
    assert join(tmp_path / "missing" / "cgroup.procs") is False
