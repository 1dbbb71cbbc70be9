"""Fixtures of ``make cluster-test``: the running real cluster (``make cluster-up``).

These tests are outside the project's pytest ``testpaths``, so ``make test`` never collects them;
they are marked ``cluster`` too, for anyone running pytest on the whole tree.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ripple_cluster import settings
from ripple_cluster.addons import kubectl


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the real Kubernetes + Knative cluster (make cluster-up)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "infra/cluster/tests" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> settings.Settings:
    s = settings.load()
    if not s.kubeconfig.exists():
        pytest.fail(f"no cluster: {s.kubeconfig} is missing; run `make cluster-up` first")
    r = kubectl(s, "get", "--raw", "/readyz", check=False)
    if r.returncode != 0:
        pytest.fail(f"the cluster's apiserver does not answer ({r.stderr.strip()}); run `make cluster-up`")
    return s
