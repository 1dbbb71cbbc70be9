"""The cluster demo's pure parts (loadtest/autoscale/cluster.py): where a container's memory
cgroup is, whose processes count, and a pod read as a cold start. No cluster needed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loadtest.autoscale.cluster import (
    PodTimes,
    cgroup_rss_mib,
    container_cgroups,
    container_id_of,
    pod_cold_start,
    process_rss_mib,
)


def test_container_cgroups_follow_kubelets_cgroupfs_layout():
    root = Path("/sys/fs/cgroup/memory/kubepods")
    assert container_cgroups(root, "u1", "c1") == [
        root / "burstable" / "podu1" / "c1",
        root / "besteffort" / "podu1" / "c1",
        root / "podu1" / "c1",  # Guaranteed pods sit at the top
    ]


@pytest.mark.parametrize(
    ("value", "want"), [("containerd://abc123", "abc123"), ("abc123", "abc123"), ("", "")]
)
def test_container_id_without_the_runtime(value, want):
    assert container_id_of(value) == want


def test_a_cgroups_rss_is_its_processes_vmrss(tmp_path):
    mine = process_rss_mib(os.getpid())
    assert mine > 0
    (tmp_path / "cgroup.procs").write_text(f"{os.getpid()}\n999999999\n")  # the second is gone: 0
    assert cgroup_rss_mib(tmp_path) == pytest.approx(mine, rel=0.2)
    assert cgroup_rss_mib(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("pod", "ready_s", "pod_ready_s"),
    [
        (PodTimes("gateway", created=100.0, started=103.0, ready=104.0), 1.0, 4.0),
        (PodTimes("gateway", created=100.0, started=None, ready=104.0), 4.0, 4.0),  # no exec time seen
        (PodTimes("gateway", created=100.0, started=103.0, ready=None), None, None),  # never Ready
        # whole-second timestamps: Ready stamped before the exec's second can give < 0; counted as 0
        (PodTimes("gateway", created=100.0, started=104.0, ready=103.0), 0.0, 3.0),
    ],
)
def test_a_pod_as_a_cold_start(pod, ready_s, pod_ready_s):
    start = pod_cold_start(pod)
    assert (start.ready_s, start.pod_ready_s, start.started_at) == (ready_s, pod_ready_s, 100.0)
