"""What runs on the cluster: CoreDNS, and Knative Serving built with ko from its Go module.

Knative Serving v0.42.2 (Knative 1.15) is the newest release whose dependencies the Go proxy serves.
Its module zip carries ``config/core`` with ``ko://`` image references, but not the files that are
symlinks in the serving repository (the networking CRDs, ``config-network``, the caching ``Image``
CRD): those come from the knative.dev/networking and knative.dev/caching modules serving requires.
``ko resolve`` builds the five images (controller, webhook, activator, autoscaler, queue-proxy) in
the wrapper module ``infra/cluster/build/knative`` onto the project's own static base and pushes
them to the cluster's registry. Three ConfigMaps are set before applying:

- ``config-network``: ``ingress-class`` = ripple's KIngress (``infra/cluster/kingress``);
- ``config-domain``: the external domain (``RIPPLE_CLUSTER_DOMAIN``'s default ``ripple.test``);
- ``config-deployment``: the cluster's registry is in ``registries-skipping-tag-resolving``, since
  the controller's pod cannot reach ``localhost:PORT`` (that is the pod's own loopback).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from . import images
from .settings import CLUSTER_SRC, SERVING_VERSION, Settings


def kubectl(
    s: Settings, *args: str, stdin: str | None = None, check: bool = True, capture: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [str(s.bin / "kubectl"), "--kubeconfig", str(s.kubeconfig), *args],
        input=stdin,
        text=True,
        capture_output=capture,
    )
    if check and r.returncode != 0:
        raise SystemExit(f"ripple-cluster: kubectl {' '.join(args)} failed:\n{r.stderr.strip()}")
    return r


def module_dir(s: Settings, module: str, cwd: Path) -> Path:
    """Where the Go module cache holds ``module`` (as the wrapper module at ``cwd`` resolves it)."""
    r = subprocess.run(
        ["go", "list", "-m", "-json", module],
        cwd=cwd,
        text=True,
        capture_output=True,
        env=dict(os.environ, GOFLAGS="-mod=mod"),
    )
    if r.returncode != 0:
        raise SystemExit(f"ripple-cluster: go list -m {module} failed in {cwd}: {r.stderr.strip()}")
    return Path(json.loads(r.stdout)["Dir"])


# ---------------------------------------------------------------------------------------------
# CoreDNS


def coredns_manifest(s: Settings, image: str) -> str:
    labels = {"k8s-app": "kube-dns"}
    corefile = """.:1053 {
    errors
    health :8080
    ready :8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
}
"""
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "ripple:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "ripple:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "ripple:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": "kube-system"},
            "data": {"Corefile": corefile},
        },
        deployment(
            "coredns",
            "kube-system",
            labels,
            {
                "serviceAccountName": "coredns",
                "dnsPolicy": "Default",
                "containers": [
                    {
                        "name": "coredns",
                        "image": image,
                        "args": ["-conf", "/etc/coredns/Corefile"],
                        "ports": [
                            {"containerPort": 1053, "protocol": "UDP", "name": "dns"},
                            {"containerPort": 1053, "protocol": "TCP", "name": "dns-tcp"},
                        ],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                        "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "40Mi"},
                            "limits": {"memory": "128Mi"},
                        },
                        "securityContext": {
                            "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]},
                        },
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                    }
                ],
                "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": s.cluster_dns,
                "selector": labels,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": 1053, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": 1053, "protocol": "TCP"},
                ],
            },
        },
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


def install_coredns(s: Settings, image: str) -> None:
    kubectl(s, "apply", "-f", "-", stdin=coredns_manifest(s, image))


# ---------------------------------------------------------------------------------------------
# Knative Serving


def _ko_env(s: Settings) -> dict[str, str]:
    return dict(
        os.environ,
        KO_DOCKER_REPO=f"{s.registry}/knative",
        KO_DEFAULTBASEIMAGE=images.base_ref(s),
        GOFLAGS="-mod=mod -buildvcs=false",
        GOCACHE=str(s.home / "cache" / "go-build"),
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",
        KOCACHE=str(s.home / "cache" / "ko"),
    )


def serving_sources(s: Settings) -> list[Path]:
    wrapper = CLUSTER_SRC / "build" / "knative"
    serving = module_dir(s, "knative.dev/serving", wrapper)
    networking = module_dir(s, "knative.dev/networking", wrapper)
    caching = module_dir(s, "knative.dev/caching", wrapper)
    return [serving / "config" / "core", networking / "config", caching / "config" / "image.yaml"]


def resolved_manifest(s: Settings) -> Path:
    return s.home / "knative" / f"serving-{SERVING_VERSION}.yaml"


def ko_resolve(
    s: Settings,
    what: str,
    label: str,
    sources: list[Path],
    out: Path,
    cwd: Path,
    env: dict[str, str],
    nice: int,
) -> float | None:
    """`ko resolve` of `sources` into one manifest at `out`, its images pushed to the cluster's
    registry: None when `out` exists and every image it names is still there (the registry keeps
    them in memory only), else the seconds it took."""
    if out.exists() and all(images.exists(s, ref) for ref in _image_refs(out.read_text())):
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [str(s.bin / "ko"), "resolve", "--base-import-paths", "--platform=linux/amd64", "--recursive"]
    for src in sources:
        args += ["-f", str(src)]
    log = s.logs / f"ko-{what.split()[0].lower()}.log"
    print(f"  {label:<12}building {what} images with ko (log {log})…", flush=True)
    start = time.monotonic()
    tmp = out.with_suffix(".tmp")
    with log.open("w") as err, tmp.open("w") as dst:
        rc = subprocess.call(["nice", "-n", str(nice), *args], cwd=cwd, env=env, stdout=dst, stderr=err)
    if rc != 0:
        raise SystemExit(f"ripple-cluster: ko resolve of {what.split()[0]} failed (exit {rc}); see {log}")
    tmp.rename(out)
    took = time.monotonic() - start
    print(f"  {label:<12}images built and pushed in {took:.0f} s", flush=True)
    return took


def build_serving(s: Settings) -> Path:
    """ko resolve config/core (+ the networking and caching CRDs) into one manifest; cached."""
    out = resolved_manifest(s)
    ko_resolve(
        s,
        f"Serving {SERVING_VERSION}",
        "knative",
        serving_sources(s),
        out,
        CLUSTER_SRC / "build" / "knative",
        _ko_env(s),
        10,
    )
    return out


def _image_refs(manifest: str) -> list[str]:
    refs = []
    for line in manifest.splitlines():
        line = line.strip()
        for key in ("image:", "queue-sidecar-image:"):
            if line.startswith(key) and "@sha256:" in line:
                refs.append(line.split(":", 1)[1].strip().strip('"'))
    return sorted(set(refs))


def configure(s: Settings, manifest: str) -> str:
    """Set the three ConfigMaps (module docstring) in the resolved manifest."""
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    settings = {
        "config-network": {"ingress-class": s.ingress_class, "ingress.class": s.ingress_class},
        "config-domain": {s.domain: ""},
        "config-deployment": {
            "registries-skipping-tag-resolving": f"kind.local,ko.local,dev.local,{s.registry}"
        },
    }
    for d in docs:
        name = d.get("metadata", {}).get("name")
        if d.get("kind") == "ConfigMap" and name in settings:
            d["data"] = {k: v for k, v in (d.get("data") or {}).items() if k != "_example"} | settings[name]
    return yaml.safe_dump_all(docs, sort_keys=False)


def install_serving(s: Settings) -> None:
    manifest = configure(s, build_serving(s).read_text())
    applied = s.home / "knative" / "serving-applied.yaml"
    applied.write_text(manifest)
    # CRDs first: the rest of the manifest has objects of those kinds.
    kubectl(
        s,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(applied),
        "-l",
        "knative.dev/crd-install=true",
        check=False,
    )
    r = kubectl(s, "apply", "--server-side", "--force-conflicts", "-f", str(applied), check=False)
    if r.returncode != 0:
        # Webhook configurations may be refused until the webhook answers: retry once it runs.
        print(
            "  knative     first apply incomplete (expected while the webhook starts); retrying…", flush=True
        )
        wait_deployments(s, "knative-serving", ["webhook"], timeout=s.ready_timeout)
        kubectl(s, "apply", "--server-side", "--force-conflicts", "-f", str(applied))


def deployment(name: str, namespace: str, labels: dict[str, str], pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A one-replica Deployment of `pod_spec`, its pods labelled and selected by `labels`."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def restricted_security_context() -> dict[str, Any]:
    """A container's securityContext under the `restricted` Pod Security profile (a fresh dict:
    one object shared by two documents would be written as a YAML alias)."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def node_service_docs(
    name: str,
    ns: str,
    port_name: str,
    port: int,
    ip: str,
    target_port: int | None = None,
    labels: dict[str, str] | None = None,
) -> list[dict]:
    """A Service with no selector and its one EndpointSlice at `ip`: how pods reach a process that
    runs on the node (inside the cluster's namespace) under a Service name."""
    target = port if target_port is None else target_port
    metadata: dict[str, Any] = {"name": name, "namespace": ns}
    if labels is not None:
        metadata["labels"] = labels
    service_port: dict[str, Any] = {"name": port_name, "port": port, "targetPort": target}
    if target_port is None:
        service_port["protocol"] = "TCP"
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {"ports": [service_port]}},
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-node",
                "namespace": ns,
                "labels": {
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": "ripple-cluster",
                },
            },
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": target, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        },
    ]


def install_kingress_service(s: Settings) -> None:
    """The Service (no selector, one EndpointSlice at the node IP) behind the KIngress's private
    load balancer name, so pods resolving a cluster-local route reach its private listener."""
    from .components import KINGRESS_PRIVATE_PORT

    docs = node_service_docs(
        "kingress-private", "knative-serving", "http", 80, s.node_ip, target_port=KINGRESS_PRIVATE_PORT
    )
    kubectl(s, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs, sort_keys=False))


def wait_deployments(s: Settings, namespace: str, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        r = kubectl(s, "get", "deployments", "-n", namespace, "-o", "json", check=False)
        if r.returncode == 0:
            ready = {
                d["metadata"]["name"]
                for d in json.loads(r.stdout)["items"]
                if d.get("status", {}).get("availableReplicas", 0) >= 1
            }
            pending = [n for n in names if n not in ready]
        if pending:
            time.sleep(2)
    if pending:
        print(kubectl(s, "get", "pods", "-n", namespace, "-o", "wide", check=False).stdout, file=sys.stderr)
        raise SystemExit(
            f"ripple-cluster: deployments {pending} in {namespace} not available after {timeout:.0f} s; "
            f"see `kubectl --kubeconfig {s.kubeconfig} -n {namespace} describe pods` and {s.logs}/kubelet.log"
        )
