"""Real Knative Eventing on the real cluster: ripple's Broker and Triggers through Eventing's webhook
and data plane (the channel-based Broker: ripple's RabbitMQ Broker cannot be built here, see
ripple_cluster/eventing.py), byte for byte, with real retries and dead letters.

The Triggers' subscribers are ``eventlog`` (infra/cluster/images/eventlog), an event_display that
keeps what it received, deployed as Knative Services under the names ripple's manifests refer to
(``notifier``, ``event-store``, ``dead-letters``), so ripple's Broker and Triggers apply with only
what the Helm chart changes (the namespace) plus the documented Broker class. Events are sent from
inside the cluster's network namespace to the Broker ingress's ClusterIP (``ns_http``); what the
subscribers saw is read back through the KIngress on the host's loopback.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
import yaml
from ns_http import request as ns_request
from ripple_cluster import eventing
from ripple_cluster.addons import kubectl
from ripple_cluster.settings import REPO, Settings

NS = "ripple-eventing-test"
SUBSCRIBERS = ("notifier", "event-store", "dead-letters")


def _get(s: Settings, *args: str) -> dict:
    return json.loads(kubectl(s, "get", *args, "-o", "json").stdout)


def _ready(obj: dict) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in obj.get("status", {}).get("conditions", [])
    )


def _wait(what: str, probe, timeout: float, every: float = 2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"{what}: not reached in {timeout:.0f} s (last: {last!r})")


def eventlog_service(s: Settings, name: str, namespace: str) -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "template": {
                "metadata": {
                    # In-memory log: one pod that stays.
                    "annotations": {
                        "autoscaling.knative.dev/min-scale": "1",
                        "autoscaling.knative.dev/max-scale": "1",
                    }
                },
                "spec": {
                    "containers": [
                        {
                            "image": f"{s.registry}/ripple/eventlog:latest",
                            "securityContext": {
                                "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                        }
                    ]
                },
            }
        },
    }


def events(s: Settings, service: str, namespace: str = NS) -> list[dict]:
    """What an eventlog Service recorded, header values and bodies decoded to bytes."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{s.ingress_port}/_events", headers={"Host": f"{service}.{namespace}.{s.domain}"}
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        records = json.load(resp)
    for r in records:
        r["headers"] = {k: [base64.b64decode(v) for v in vs] for k, vs in r["headers"].items()}
        r["body"] = base64.b64decode(r["body"])
    return records


def clear_events(s: Settings, service: str, namespace: str = NS) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{s.ingress_port}/_events",
        method="DELETE",
        headers={"Host": f"{service}.{namespace}.{s.domain}"},
    )
    try:
        urllib.request.urlopen(req, timeout=60).close()
    except urllib.error.HTTPError as e:
        if e.code != 204:
            raise


def with_id(records: list[dict], event_id: str) -> list[dict]:
    return [r for r in records if r["headers"].get("ce-id") == [event_id.encode()]]


def broker_url(s: Settings, namespace: str, broker: str) -> str:
    svc = _get(s, "service", "broker-ingress", "-n", eventing.NAMESPACE)
    return f"http://{svc['spec']['clusterIP']}/{namespace}/{broker}"


def send(s: Settings, url: str, headers: list[tuple[bytes, bytes]], body: bytes) -> dict:
    return ns_request(s.netns, url, headers, body)


@pytest.fixture(scope="module")
def eventing_ready(cluster: Settings) -> Settings:
    r = kubectl(cluster, "get", "deployments", "-n", eventing.NAMESPACE, "-o", "json", check=False)
    available = {
        d["metadata"]["name"]
        for d in (json.loads(r.stdout)["items"] if r.returncode == 0 else [])
        if d.get("status", {}).get("availableReplicas", 0) >= 1
    }
    missing = [d for d in eventing.DEPLOYMENTS if d not in available]
    if missing:
        pytest.fail(f"Knative Eventing is not running ({', '.join(missing)}); run `make cluster-eventing`")
    return cluster


@pytest.fixture(scope="module")
def notifications(eventing_ready: Settings) -> str:
    """ripple's Broker and Triggers in NS, subscribers replaced by eventlog Services; the Broker's URL."""
    s = eventing_ready
    kubectl(s, "create", "namespace", NS, check=False)
    r = eventing.apply_docs(s, [eventlog_service(s, n, NS) for n in SUBSCRIBERS])
    assert r.returncode == 0, r.stderr
    r = eventing.apply_docs(s, eventing.ripple_broker_docs(NS) + eventing.ripple_trigger_docs(NS))
    assert r.returncode == 0, r.stderr
    for name in SUBSCRIBERS:
        _wait(f"Service {name} Ready", lambda n=name: _ready(_get(s, "ksvc", n, "-n", NS)), 240)
    _wait("Broker notifications Ready", lambda: _ready(_get(s, "broker", "notifications", "-n", NS)), 180)
    for t in eventing.ripple_trigger_docs(NS):
        name = t["metadata"]["name"]
        _wait(f"Trigger {name} Ready", lambda n=name: _ready(_get(s, "trigger", n, "-n", NS)), 180)
    for name in SUBSCRIBERS:
        clear_events(s, name)
    return broker_url(s, NS, "notifications")


# ---------------------------------------------------------------------------------------------
# The webhook


def test_ripple_broker_and_triggers_accepted_by_eventing_webhook(eventing_ready: Settings) -> None:
    """ripple's Broker (as written, RabbitMQ class, and as applied here) and Triggers pass
    Eventing's real defaulting and validating webhooks (server-side dry run in namespace ripple)."""
    s = eventing_ready
    kubectl(s, "create", "namespace", "ripple", check=False)
    path = REPO / "knative" / "notifications" / "broker.yaml"
    as_written = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Broker"]
    for docs in (as_written, eventing.ripple_broker_docs(), eventing.ripple_trigger_docs()):
        assert docs
        r = eventing.apply_docs(s, docs, "--dry-run=server")
        assert r.returncode == 0, f"Eventing refused {[d['metadata']['name'] for d in docs]}: {r.stderr}"


def test_ripple_kafkasources_as_container_sources_accepted(eventing_ready: Settings) -> None:
    """Each knative/*/kafkasource*.yaml, as the ContainerSource that runs it here, passes the webhook."""
    from ripple_cluster import sources

    s = eventing_ready
    manifests = sources.ripple_kafkasources()
    assert manifests
    for path in manifests:
        docs = sources.container_source(
            yaml.safe_load(path.read_text()), f"{s.registry}/{sources.IMAGE_NAME}:dry-run"
        )
        r = eventing.apply_docs(s, docs, "--dry-run=server")
        assert r.returncode == 0, f"Eventing refused the ContainerSource of {path}: {r.stderr}"


def test_refused_trigger_reports_eventings_reason(eventing_ready: Settings) -> None:
    s = eventing_ready
    bad = eventing.ripple_trigger_docs()[0]
    bad["metadata"]["name"] = "refused"
    bad["spec"]["delivery"]["backoffDelay"] = "1s"  # not an ISO 8601 duration
    r = eventing.apply_docs(s, [bad], "--dry-run=server")
    assert r.returncode != 0
    assert 'admission webhook "validation.webhook.eventing.knative.dev" denied the request' in r.stderr, (
        r.stderr
    )
    assert "backoffDelay" in r.stderr, r.stderr
