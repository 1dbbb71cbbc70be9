"""Real Knative Serving on the real cluster: ripple's manifests through the webhook, a function
Ready through the controller, routed by ripple's KIngress, scaled to zero and woken through the
activator.

The function here is ``infra/cluster/images/hello`` (an image the cluster build makes), not one
of ripple's functions: those need their Python images and Kafka/PostgreSQL/Keycloak reachable from
pods (README, "What remains"). ripple's own ``knative/*/service.yaml`` are checked by Knative's real
admission webhooks with a server-side dry run (defaulting and validation, nothing created).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from cluster_testkit import assert_reached_through_activator, kube_get, ready, wait_until
from ripple_cluster.addons import kubectl
from ripple_cluster.settings import REPO, Settings

NS = "ripple-cluster-test"
RIPPLE_NS = "ripple"


def _ensure_namespace(s: Settings, name: str) -> None:
    kubectl(s, "create", "namespace", name, check=False)


def _apply(s: Settings, doc: dict, *extra: str):
    return kubectl(s, "apply", *extra, "-f", "-", stdin=yaml.safe_dump(doc), check=False)


def _request(s: Settings, host: str, timeout: float = 120) -> tuple[int, dict, float]:
    req = urllib.request.Request(f"http://127.0.0.1:{s.ingress_port}/", headers={"Host": host})
    start = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
            return resp.status, json.loads(body or b"{}"), time.monotonic() - start
    except urllib.error.HTTPError as e:
        return e.code, {"error": e.read().decode(errors="replace")}, time.monotonic() - start


def hello_service(s: Settings, message: str = "one") -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "hello", "namespace": NS},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {
                        # The shortest stable window Knative allows, to keep the test short; the
                        # scale-to-zero grace period stays Knative's default (30 s).
                        "autoscaling.knative.dev/window": "6s",
                        "autoscaling.knative.dev/min-scale": "0",
                    }
                },
                "spec": {
                    "containers": [
                        {
                            "image": f"{s.registry}/ripple/hello:latest",
                            "env": [{"name": "MESSAGE", "value": message}],
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


@pytest.mark.parametrize(
    "manifest", sorted((REPO / "knative").glob("*/service.yaml")), ids=lambda p: p.parent.name
)
def test_ripple_service_accepted_by_knative_webhook(cluster: Settings, manifest: Path) -> None:
    """Each of ripple's Services passes Knative's real defaulting and validating webhooks."""
    _ensure_namespace(cluster, RIPPLE_NS)
    r = kubectl(cluster, "apply", "--dry-run=server", "-f", str(manifest), check=False)
    assert r.returncode == 0, f"Knative refused {manifest.relative_to(REPO)}: {r.stderr.strip()}"


def test_refused_manifest_reports_knatives_reason(cluster: Settings) -> None:
    _ensure_namespace(cluster, NS)
    bad = hello_service(cluster)
    bad["metadata"]["name"] = "refused"
    bad["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "-1"
    r = _apply(cluster, bad, "--dry-run=server")
    assert r.returncode != 0
    assert 'admission webhook "validation.webhook.serving.knative.dev" denied the request' in r.stderr, (
        r.stderr
    )
    assert "min-scale" in r.stderr, r.stderr


def test_service_ready_and_routed_by_kingress(cluster: Settings) -> None:
    # Start from no Service, so revision names are known (hello-00001, then hello-00002).
    kubectl(cluster, "delete", "ksvc", "hello", "-n", NS, "--ignore-not-found", "--wait=true", check=False)
    _ensure_namespace(cluster, NS)
    r = _apply(cluster, hello_service(cluster))
    assert r.returncode == 0, r.stderr
    ksvc = wait_until(
        "Service hello Ready",
        lambda: (o := kube_get(cluster, "ksvc", "hello", "-n", NS)) and ready(o) and o,
        240,
    )
    assert ksvc["status"]["url"] == f"http://hello.{NS}.{cluster.domain}"
    ing = kube_get(cluster, "ingresses.networking.internal.knative.dev", "hello", "-n", NS)
    assert ing["metadata"]["annotations"]["networking.knative.dev/ingress.class"] == cluster.ingress_class
    assert ready(ing)
    status, body, _ = _request(cluster, f"hello.{NS}.{cluster.domain}")
    assert status == 200, body
    # The revision that answered; the Knative-Serving-* headers the KIngress appends are consumed
    # on the way (the activator routes by them), so the function does not see them.
    assert body["revision"] == "hello-00001" and body["message"] == "one", body


def test_scales_to_zero_then_activator_holds_a_request(cluster: Settings) -> None:
    revision = kube_get(cluster, "ksvc", "hello", "-n", NS)["status"]["latestReadyRevisionName"]
    deployment = f"{revision}-deployment"

    def at_zero():
        d = kube_get(cluster, "deployment", deployment, "-n", NS)
        pods = kube_get(cluster, "pods", "-n", NS, "-l", f"serving.knative.dev/revision={revision}")["items"]
        return d["spec"].get("replicas") == 0 and not pods

    wait_until(f"{deployment} at zero", at_zero, 240, every=5)
    sks = kube_get(cluster, "sks", revision, "-n", NS)
    assert sks["spec"]["mode"] == "Proxy", "at zero the revision's traffic must go through the activator"
    assert_reached_through_activator(cluster, revision, NS)

    status, body, took = _request(cluster, f"hello.{NS}.{cluster.domain}")
    assert status == 200, body
    assert body["uptime_s"] < took + 1, "the answering pod must have been started by this request"
    d = kube_get(cluster, "deployment", deployment, "-n", NS)
    assert d["spec"]["replicas"] >= 1
    print(f"cold start through the activator: {took:.2f} s")


def test_new_revision_splits_and_rolls(cluster: Settings) -> None:
    r = _apply(cluster, hello_service(cluster, message="two"))
    assert r.returncode == 0, r.stderr

    def second_ready():
        o = kube_get(cluster, "ksvc", "hello", "-n", NS)
        return ready(o) and o["status"].get("latestReadyRevisionName") == "hello-00002" and o

    wait_until("revision hello-00002 Ready", second_ready, 240)
    status, body, _ = _request(cluster, f"hello.{NS}.{cluster.domain}")
    assert status == 200 and body["message"] == "two" and body["revision"] == "hello-00002", body
