"""Knative Eventing on the cluster, built with ko from its Go module, and ripple's event sources.

Knative Eventing v0.42.3 (Knative 1.15, the line of the cluster's Serving v0.42.2; both require the
same knative.dev/pkg) is built the way ``addons.py`` builds Serving: ``ko resolve`` of the module's
``config/core`` (CRDs, controller, webhook, PingSource adapter, JobSink),
``config/channels/in-memory-channel`` and ``config/brokers/mt-channel-broker`` in the wrapper
module ``infra/cluster/build/eventing``, onto the project's static base, pushed to the cluster's
registry. Every symlink of those three folders in the eventing repository points inside them
(checked against the v0.42.3 tag), so unlike Serving nothing is missing from the module zip; the
zip's two stray ``*.yaml~cd5b396a2 (...)`` files (symlink leftovers committed as text) are not
YAML to ko and are skipped.

**Broker class: a deviation.** ripple's notifications Broker is a RabbitMQ Broker
(``eventing.knative.dev/broker.class: RabbitMQBroker``), but knative.dev/eventing-rabbitmq is not
served by the Go module proxy (403 for its version list and for v0.42.x), so it cannot be built
here. The cluster applies ripple's Broker with the class Eventing ships, ``MTChannelBasedBroker``
over ``InMemoryChannel`` (the annotation is the only field changed, as the chart would template
it); what differs from RabbitMQ's (no durable queue: events in flight are lost when the dispatcher
restarts; retries are the channel dispatcher's) is listed in the stand-ins' README.

**KafkaSource: a deviation too.** knative.dev/eventing-kafka-broker is not served either, so each
``knative/<name>/kafkasource.yaml`` runs as a ``ContainerSource`` whose container is ripple's own
KafkaSource dispatcher (the local stand-in's code, image built by ``sources.py``); real Eventing's
SinkBinding resolves the KafkaSource's ``sink`` (a Knative Service) into ``K_SINK``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from .addons import (
    _ko_env,
    deployment,
    ko_resolve,
    kubectl,
    module_dir,
    restricted_security_context,
    wait_deployments,
)
from .settings import CLUSTER_SRC, EVENTING_VERSION, REPO, Settings

WRAPPER = CLUSTER_SRC / "build" / "eventing"
NAMESPACE = "knative-eventing"
# Deployments that must be Available before Brokers, Triggers and sources work.
DEPLOYMENTS = [
    "eventing-controller",
    "eventing-webhook",
    "imc-controller",
    "imc-dispatcher",
    "mt-broker-controller",
    "mt-broker-ingress",
    "mt-broker-filter",
]


def eventing_sources(s: Settings) -> list[Path]:
    root = module_dir(s, "knative.dev/eventing", WRAPPER) / "config"
    return [
        root / "core",
        root / "channels" / "in-memory-channel",
        root / "brokers" / "mt-channel-broker",
    ]


def resolved_manifest(s: Settings) -> Path:
    return s.home / "knative" / f"eventing-{EVENTING_VERSION}.yaml"


def build_eventing(s: Settings) -> Path:
    """ko resolve the three folders into one manifest; skipped while its images are in the registry."""
    out = resolved_manifest(s)
    env = _ko_env(s) | {"KO_DOCKER_REPO": f"{s.registry}/knative-eventing"}
    took = ko_resolve(
        s, f"Eventing {EVENTING_VERSION}", "eventing", eventing_sources(s), out, WRAPPER, env, 19
    )
    if took is not None:
        _record_time(s, "eventing-images", took)
    return out


def _record_time(s: Settings, step: str, seconds: float) -> None:
    path = s.home / "build-times.json"
    times = json.loads(path.read_text()) if path.exists() else {}
    times[step] = round(seconds, 1)
    path.write_text(json.dumps(times, indent=2) + "\n")


# CPU requests of Eventing's containers on this 2-core node (upstream: 100-125m each, 725m in all,
# beside Serving's 650m, so ripple's functions could not be scheduled when they scaled out). A
# request is a scheduling reservation, not a cap: limits stay upstream's.
CPU_REQUEST = "10m"


def configure(manifest: str) -> str:
    """Drop the ``_example`` blocks of Eventing's ConfigMaps and lower its CPU requests to
    ``CPU_REQUEST``. Nothing else is changed: the default Broker class is already
    ``MTChannelBasedBroker`` over ``InMemoryChannel``."""
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    for d in docs:
        if d.get("kind") == "ConfigMap" and isinstance(d.get("data"), dict):
            d["data"].pop("_example", None)
        if d.get("kind") == "Deployment":
            for c in d["spec"]["template"]["spec"].get("containers", []):
                requests = c.get("resources", {}).get("requests", {})
                if "cpu" in requests:
                    requests["cpu"] = CPU_REQUEST
    return yaml.safe_dump_all(docs, sort_keys=False)


def install_eventing(s: Settings) -> None:
    manifest = configure(build_eventing(s).read_text())
    applied = s.home / "knative" / "eventing-applied.yaml"
    applied.write_text(manifest)
    # CRDs first (the rest has objects of those kinds), then everything; the webhook configurations
    # may be refused until Eventing's webhook answers, so a failed second apply is retried once it runs.
    kubectl(s, "apply", "--server-side", "--force-conflicts", "-f", str(applied),
            "-l", "knative.dev/crd-install=true", check=False)  # fmt: skip
    r = kubectl(s, "apply", "--server-side", "--force-conflicts", "-f", str(applied), check=False)
    if r.returncode != 0:
        print(
            "  eventing    first apply incomplete (expected while the webhook starts); retrying…", flush=True
        )
        wait_deployments(s, NAMESPACE, ["eventing-webhook"], timeout=max(s.ready_timeout, 300))
        kubectl(s, "apply", "--server-side", "--force-conflicts", "-f", str(applied))


def up(s: Settings) -> float:
    """Install Eventing and wait for it; when ripple's functions are deployed, (re)wire their Broker,
    Triggers and KafkaSources too (after ``cluster-down`` the registry has lost the dispatcher's
    image: crane's registry keeps manifests in memory). Returns the seconds it took."""
    t0 = time.monotonic()
    install_eventing(s)
    wait_deployments(s, NAMESPACE, DEPLOYMENTS, max(s.ready_timeout, 300))
    print(f"  eventing    Available ({time.monotonic() - t0:.0f} s)", flush=True)
    if ripple_deployed(s):
        try:
            wire_ripple(s)
        except SystemExit as error:  # the cluster is up; only ripple's wiring is behind
            print(
                f"  eventing    {error}\n"
                "  eventing    run `make cluster-eventing` once ripple's functions are Ready"
            )
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# ripple's Broker and Triggers on the channel-based Broker

CHANNEL_BROKER_CLASS = "MTChannelBasedBroker"
RABBITMQ_BROKER_CLASS = "RabbitMQBroker"


def localize(text: str, namespace: str) -> str:
    """What the Helm chart's ``ripple.localize`` does to a manifest for a release namespace
    (``infra/helm/ripple/templates/_helpers.tpl``): its namespace and in-cluster addresses."""
    return text.replace("namespace: ripple\n", f"namespace: {namespace}\n").replace(
        ".ripple.svc", f".{namespace}.svc"
    )


def ripple_broker_docs(namespace: str = "ripple") -> list[dict]:
    """ripple's ``knative/notifications/broker.yaml`` for this cluster: the chart's changes, plus
    the one deviation (module docstring): class ``MTChannelBasedBroker`` instead of
    ``RabbitMQBroker``, so the ``RabbitmqBrokerConfig`` document and the Broker's ``spec.config``
    that names it are left out (the channel-based Broker's config is the default
    ``config-br-default-channel``: InMemoryChannel)."""
    path = REPO / "knative" / "notifications" / "broker.yaml"
    docs = [d for d in yaml.safe_load_all(localize(path.read_text(), namespace)) if d]
    out = []
    for d in docs:
        if d.get("kind") != "Broker":
            continue
        annotations = d["metadata"].setdefault("annotations", {})
        if annotations.get("eventing.knative.dev/broker.class") == RABBITMQ_BROKER_CLASS:
            annotations["eventing.knative.dev/broker.class"] = CHANNEL_BROKER_CLASS
            d["spec"].pop("config", None)
        out.append(d)
    return out


def ripple_trigger_docs(namespace: str = "ripple") -> list[dict]:
    """Every ``knative/*/trigger*.yaml`` and ``knative/notifications/triggers.yaml``, localized only.
    Their ``rabbitmq.eventing.knative.dev/parallelism`` annotations mean nothing to the
    channel-based Broker (its filter sends as the IMC dispatcher delivers)."""
    paths = sorted(set((REPO / "knative").glob("*/trigger*.yaml")))
    docs: list[dict] = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(localize(path.read_text(), namespace)) if d]
    return [d for d in docs if d.get("kind") == "Trigger"]


def apply_docs(s: Settings, docs: list[dict], *extra: str) -> subprocess.CompletedProcess[str]:
    return kubectl(
        s, "apply", *extra, "-f", "-", stdin=yaml.safe_dump_all(docs, sort_keys=False), check=False
    )


# ---------------------------------------------------------------------------------------------
# ripple's own release: its Broker, Triggers and KafkaSources wired to its functions and Kafka


def broker_alias_docs(s: Settings, namespace: str, broker: str, target: str) -> list[dict]:
    """The Service ``<broker>-broker-ingress`` (eventing-rabbitmq's name for a Broker's ingress,
    the one order-alerts' BROKER_URL names) as a reverse proxy to the channel-based Broker's
    address (``infra/cluster/images/brokeralias``)."""
    name = f"{broker}-broker-ingress"
    labels = {"app": name, "ripple.dev/broker-alias": broker}
    return [
        deployment(
            name,
            namespace,
            labels,
            {
                "containers": [
                    {
                        "name": "proxy",
                        "image": f"{s.registry}/ripple/brokeralias:latest",
                        "env": [{"name": "TARGET", "value": target}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "16Mi"},
                            "limits": {"memory": "64Mi"},
                        },
                        "securityContext": restricted_security_context(),
                    }
                ]
            },
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    ]


def _ready(s: Settings, kind: str, name: str, namespace: str) -> bool:
    r = kubectl(s, "get", kind, name, "-n", namespace, "-o", "json", check=False)
    if r.returncode != 0:
        return False
    conds = json.loads(r.stdout).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _wait_ready(s: Settings, kind: str, name: str, namespace: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not _ready(s, kind, name, namespace):
        if time.monotonic() > deadline:
            r = kubectl(s, "get", kind, name, "-n", namespace, "-o", "yaml", check=False)
            raise SystemExit(
                f"ripple-cluster: {kind} {namespace}/{name} not Ready after {timeout:.0f} s:\n"
                f"{r.stdout[-1500:]}\nsee `kubectl -n {namespace} describe {kind} {name}`"
            )
        time.sleep(2)


def ripple_namespace() -> str:
    return os.environ.get("RIPPLE_CLUSTER_RIPPLE_NAMESPACE") or "ripple"


def ripple_deployed(s: Settings, namespace: str | None = None) -> bool:
    ns = namespace or ripple_namespace()
    return kubectl(s, "get", "ksvc", "order-alerts", "-n", ns, check=False).returncode == 0


def wire_ripple(s: Settings, namespace: str | None = None) -> dict[str, Any]:
    """ripple's notifications Broker (channel-based), its Triggers, the Broker's RabbitMQ-style
    ingress name, and every KafkaSource as a ContainerSource, in the namespace where ripple's
    functions run (``make cluster-deploy``); returns what was applied and how long it took."""
    from . import sources

    namespace = namespace or ripple_namespace()
    t0 = time.monotonic()
    missing = [
        n
        for n in ("notifier", "event-store", "order-alerts", "dead-letters")
        if kubectl(s, "get", "ksvc", n, "-n", namespace, check=False).returncode != 0
    ]
    if missing:
        raise SystemExit(
            f"ripple-cluster: ripple's functions {missing} are not deployed in namespace {namespace}; "
            "run `make cluster-deploy` first"
        )
    brokers = ripple_broker_docs(namespace)
    r = apply_docs(s, brokers + ripple_trigger_docs(namespace))
    if r.returncode != 0:
        raise SystemExit(f"ripple-cluster: applying ripple's Broker and Triggers failed: {r.stderr.strip()}")
    for b in brokers:
        name = b["metadata"]["name"]
        _wait_ready(s, "broker", name, namespace, 180)
        url = json.loads(kubectl(s, "get", "broker", name, "-n", namespace, "-o", "json").stdout)["status"][
            "address"
        ]["url"]
        r = apply_docs(s, broker_alias_docs(s, namespace, name, url))
        if r.returncode != 0:
            raise SystemExit(f"ripple-cluster: the ingress alias of Broker {name} failed: {r.stderr.strip()}")
    for t in ripple_trigger_docs(namespace):
        _wait_ready(s, "trigger", t["metadata"]["name"], namespace, 180)
    image = sources.build_image(s)
    names = []
    for path in sources.ripple_kafkasources():
        manifest = yaml.safe_load(localize(path.read_text(), namespace))
        names.append(sources.apply(s, manifest, image))
    for name in names:
        _wait_ready(s, "containersource", name, namespace, 240)
    took = time.monotonic() - t0
    print(
        f"  eventing    ripple's Broker, {len(ripple_trigger_docs(namespace))} Triggers and "
        f"{len(names)} KafkaSources (as ContainerSources) Ready in {namespace} ({took:.0f} s)",
        flush=True,
    )
    return {"namespace": namespace, "brokers": [b["metadata"]["name"] for b in brokers], "sources": names}
