"""What the cluster tests share: waiting for a condition of the cluster with a deadline that fails
the test with the last thing seen (the cluster is slow and shared: every wait is bounded), reading
objects with kubectl, and the check that a revision at zero is reached through the activator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from ripple_cluster.addons import kubectl
from ripple_cluster.settings import Settings


def wait_until(what: str, probe: Callable[[], Any], timeout: float, every: float = 2) -> Any:
    """The first truthy answer of `probe`, polled every `every` s; fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


def kube_get(s: Settings, *args: str) -> dict:
    """`kubectl get <args> -o json`, parsed."""
    return json.loads(kubectl(s, "get", *args, "-o", "json").stdout)


def ready(obj: dict) -> bool:
    """Whether a Knative object's Ready condition is True."""
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", [])
    )


def assert_reached_through_activator(s: Settings, revision: str, namespace: str) -> None:
    """A revision at zero: its public endpoints are activator pods (Knative's SKS in Proxy mode)."""
    activator_ips = {
        p["status"].get("podIP")
        for p in kube_get(s, "pods", "-n", "knative-serving", "-l", "app=activator")["items"]
    }
    endpoints = kube_get(s, "endpoints", revision, "-n", namespace)
    ips = {a["ip"] for sub in endpoints.get("subsets", []) for a in sub.get("addresses", [])}
    assert ips and ips <= activator_ips, (
        f"{revision}'s endpoints {ips} are not the activator's {activator_ips}"
    )
