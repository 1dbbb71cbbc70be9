"""Settings of the real-Knative cluster, read from the environment in one place.

Kept apart from the local stack's settings (infra/local/ripple_stack/settings.py) on purpose: the
cluster is a room of its own and shares only RIPPLE_HOME with the stack (state goes under
``$RIPPLE_HOME/cluster``). Every variable has a documented default; the README's table lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CLUSTER_SRC = REPO / "infra" / "cluster"

# Versions built from their Go modules (the README explains each choice).
KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
CONTAINERD_VERSION = "v2.2.9"
RUNC_VERSION = "v1.4.4"
CNI_PLUGINS_VERSION = "v1.9.1"
COREDNS_VERSION = "v1.14.7"
CRANE_VERSION = "v0.22.1"
KO_VERSION = "v0.18.1"
SERVING_VERSION = "v0.42.2"
EVENTING_VERSION = "v0.42.3"


def env_int(name: str, default: int) -> int:
    """An integer setting from the environment; a wrong one stops with what to do."""
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(
            f"ripple-cluster: {name}={raw!r} is not an integer; unset it or give a number"
        ) from None


def _str(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with its default."""

    home: Path  # RIPPLE_HOME/cluster
    netns: str  # RIPPLE_CLUSTER_NETNS
    node_name: str  # RIPPLE_CLUSTER_NODE_NAME
    node_ip: str  # RIPPLE_CLUSTER_NODE_IP: on ripple0 inside the namespace
    pod_cidr: str  # RIPPLE_CLUSTER_POD_CIDR: the node's pod range (CNI bridge)
    service_cidr: str  # RIPPLE_CLUSTER_SERVICE_CIDR
    api_port: int  # RIPPLE_CLUSTER_API_PORT: host loopback port forwarded to the apiserver
    ingress_port: int  # RIPPLE_CLUSTER_INGRESS_PORT: host loopback port forwarded to the KIngress
    registry_port: int  # RIPPLE_CLUSTER_REGISTRY_PORT: the cluster's registry (same port both sides)
    ready_timeout: int  # RIPPLE_CLUSTER_READY_TIMEOUT: seconds a component may take to be ready
    ingress_class: str = "ripple.ingress.networking.knative.dev"
    domain: str = "ripple.test"

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def pki(self) -> Path:
        return self.home / "pki"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig for the host: the apiserver through the loopback forward."""
        return self.home / "kubeconfig"

    @property
    def registry(self) -> str:
        return f"localhost:{self.registry_port}"

    @property
    def cluster_dns(self) -> str:
        return _nth_ip(self.service_cidr, 10)

    @property
    def kubernetes_service_ip(self) -> str:
        return _nth_ip(self.service_cidr, 1)

    @property
    def pod_gateway(self) -> str:
        return _nth_ip(self.pod_cidr, 1)


def _nth_ip(cidr: str, n: int) -> str:
    import ipaddress

    return str(ipaddress.ip_network(cidr, strict=False).network_address + n)


def load() -> Settings:
    ripple_home = Path(_str("RIPPLE_HOME", str(REPO / ".ripple")))
    if not ripple_home.is_absolute():
        ripple_home = REPO / ripple_home
    return Settings(
        home=ripple_home / "cluster",
        netns=_str("RIPPLE_CLUSTER_NETNS", "ripple-cluster"),
        node_name=_str("RIPPLE_CLUSTER_NODE_NAME", "ripple-node"),
        node_ip=_str("RIPPLE_CLUSTER_NODE_IP", "10.211.0.1"),
        pod_cidr=_str("RIPPLE_CLUSTER_POD_CIDR", "10.212.0.0/24"),
        service_cidr=_str("RIPPLE_CLUSTER_SERVICE_CIDR", "10.213.0.0/16"),
        api_port=env_int("RIPPLE_CLUSTER_API_PORT", 16443),
        ingress_port=env_int("RIPPLE_CLUSTER_INGRESS_PORT", 17880),
        registry_port=env_int("RIPPLE_CLUSTER_REGISTRY_PORT", 15005),
        ready_timeout=env_int("RIPPLE_CLUSTER_READY_TIMEOUT", 180),
    )
