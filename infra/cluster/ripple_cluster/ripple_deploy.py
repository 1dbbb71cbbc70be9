"""ripple's functions on the real cluster, through the project's own delivery path.

For other code (e.g. the Eventing tests): ``deploy_ripple(settings)`` makes ripple's six Knative
Services run on the cluster and returns a ``Deployment`` (namespace, hosts, where Kafka,
PostgreSQL and Keycloak listen, timings). It is idempotent: a second call finds everything in
place and returns in seconds. ``token(settings)`` gives a publisher's access token from the
cluster's Keycloak; ``edge_url(settings)`` is nginx in front of the gateway. ``make
cluster-deploy`` calls ``deploy_ripple``; ``make cluster-down`` stops what it started.

What ``deploy_ripple`` does, in order:

1. Kafka, PostgreSQL and Keycloak inside the cluster's network namespace (``backing.py``: a
   second instance of each, never the local stack's), topics and database created.
2. Namespace ``ripple``; the Secret ``ripple-postgres`` from the cluster's generated secrets
   (``$RIPPLE_HOME/cluster/secrets.env``, never committed); the Services the manifests name
   (``ripple-kafka-bootstrap``, ``ripple-db-rw``, ``keycloak-service``, ``smtp``) without selectors, with an
   EndpointSlice each pointing at the node IP, where the servers of step 1 listen.
3. Images: ``make images-functions`` and ``make push`` with ``IMAGE_REGISTRY`` = the cluster's
   registry (skipped when the last push already put this build there).
4. The Helm chart (``infra/helm``) assembled as ``make chart`` does, images pinned by digest as
   ``make chart-registry`` does, ``helm upgrade --install`` with the cluster's values: the
   operators' parts off (step 1 stands in for Strimzi, CloudNativePG and the Keycloak operator),
   the notifications Broker off (needs a RabbitMQ Broker), KafkaSources only when the cluster has
   the KafkaSource CRD, and the functions' CPU requests sized for this 2-core node
   (``RIPPLE_CLUSTER_FUNCTION_CPU``, 10m; why: ``cpu_requests``).
5. Every Service Ready through Knative's webhook and controller.
6. nginx (the project's ``nginx/`` template and limit profile) on the host's loopback
   (``RIPPLE_CLUSTER_EDGE_PORT``), proxying to the KIngress's loopback relay with the Host header
   of the gateway's and the query function's Knative routes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import backing, node
from .addons import kubectl, node_service_docs
from .settings import REPO, Settings, env_int

FUNCTIONS = ("gateway", "query", "event-store", "order-alerts", "dead-letters", "notifier")
# Processes deploy_ripple starts (pid files under $RIPPLE_HOME/cluster/run; cluster-status lists them).
PROCESSES = (*backing.NAMES, "edge-nginx")
HELM = REPO / ".ripple" / "dist" / "bin" / "helm"


def edge_port() -> int:
    return env_int("RIPPLE_CLUSTER_EDGE_PORT", 17881)


def edge_status_port() -> int:
    return env_int("RIPPLE_CLUSTER_EDGE_STATUS_PORT", 17882)


def edge_url(s: Settings) -> str:
    return f"http://127.0.0.1:{edge_port()}"


def cpu_requests() -> dict[str, str]:
    """The functions' CPU requests on this node (chart value ``cpuRequest``).

    Knative Serving (650m) and Eventing (725m) request 1,375m of the node's 2 CPUs; the manifests'
    own requests (gateway 1 CPU, the others 50-100m, plus 25m per queue-proxy: 1,600m for one pod
    each) do not fit beside them, let alone a rollout's second gateway pod or event-store scaled
    out by a KafkaSource backlog. A pod that does not fit waits Pending ("Insufficient cpu") while
    the activator holds its request (76 s measured), and a new revision whose pod cannot be
    scheduled fails (``RevisionFailed``). Requests are a scheduling reservation, not a cap: the
    limits stay the manifests' (the gateway and query have none).
    """
    request = os.environ.get("RIPPLE_CLUSTER_FUNCTION_CPU") or "10m"
    return dict.fromkeys(FUNCTIONS, request)


@dataclass
class Deployment:
    namespace: str
    hosts: dict[str, str]  # function -> Host header of its Knative route
    backing: backing.Backing
    edge_url: str
    timings: dict[str, float] = field(default_factory=dict)


def host_of(s: Settings, function: str, namespace: str = "ripple") -> str:
    return f"{function}.{namespace}.{s.domain}"


# ---------------------------------------------------------------------------------------------
# step 2: namespace, Secret, Services for the servers on the node IP


def _apply(s: Settings, docs: list[dict]) -> None:
    kubectl(s, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def cluster_objects(s: Settings, b: backing.Backing, secrets: dict[str, str]) -> list[dict]:
    ns = b.namespace
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "ripple-postgres", "namespace": ns},
            "type": "Opaque",
            "stringData": {"RIPPLE_POSTGRES_PASSWORD": secrets["RIPPLE_POSTGRES_PASSWORD"]},
        },
    ]
    for name, port_name, port in (
        ("ripple-kafka-bootstrap", "kafka", b.kafka_port),
        ("ripple-db-rw", "postgres", b.postgres_port),
        ("keycloak-service", "http", b.keycloak_port),
        ("smtp", "smtp", b.smtp_port),
    ):
        labels = {"app.kubernetes.io/part-of": "ripple", "app.kubernetes.io/managed-by": "ripple-cluster"}
        docs += node_service_docs(name, ns, port_name, port, b.ip, labels=labels)
    return docs


# ---------------------------------------------------------------------------------------------
# step 3: images, by the project's make targets


def _delivery_env(s: Settings) -> dict[str, str]:
    # RIPPLE_IMAGE_SOURCE=head: the images are built from the last commit (git archive HEAD), never
    # from the shared working tree, where other sessions' uncommitted work once reached the cluster
    # (the 10:25 run of 2026-12-03 ran an order-alerts/notifier outbox nobody had committed).
    return {
        **os.environ,
        "IMAGE_REGISTRY": s.registry,
        "RIPPLE_REGISTRY_PORT": str(s.registry_port),
        "RIPPLE_IMAGE_SOURCE": "head",
        "RIPPLE_IMAGE_TAG": "",  # the tag is the commit the images are built from
    }


def pushed_references(s: Settings) -> dict[str, str] | None:
    """{function: reference by digest} when the last `make push` put every function's image, built
    from the current commit (and only it: not a working tree with changes), into the cluster's
    registry and the registry still has them.

    The commit matters: the chart is rendered from the working tree, so images of an older commit
    can meet manifests that start them differently (seen 2026-12-03: every manifest moved to
    ``python -m ripple_server`` while the pushed images predated it, and the new gateway and query
    revisions crashed with "No module named ripple_server")."""
    pushed = REPO / ".ripple" / "containers" / "pushed.json"
    if not pushed.exists():
        return None
    refs = json.loads(pushed.read_text())
    from ripple_delivery.config import head_sha, is_head_build

    if not is_head_build(str(refs.get("_tag", "")), head_sha()):
        return None
    prefix = f"{s.registry}/ripple/"
    if not all(str(refs.get(f, "")).startswith(prefix) for f in FUNCTIONS):
        return None
    for f in FUNCTIONS:
        r = subprocess.run([str(s.bin / "crane"), "digest", refs[f]], capture_output=True)
        if r.returncode != 0:
            return None
    return {f: refs[f] for f in FUNCTIONS}


def ensure_images(s: Settings, say=print) -> tuple[dict[str, str], dict[str, float]]:
    refs = pushed_references(s)
    if refs is not None:
        return refs, {}
    times: dict[str, float] = {}
    for target in ("images-functions", "push"):
        say(f"  images      make {target} (IMAGE_REGISTRY={s.registry})…")
        t0 = time.monotonic()
        r = subprocess.run(["nice", "-n", "19", "make", "-s", target], cwd=REPO, env=_delivery_env(s))
        times[f"make {target} s"] = round(time.monotonic() - t0, 1)
        if r.returncode != 0:
            raise SystemExit(
                f"ripple-cluster: `make {target}` failed (above); fix it and rerun make cluster-deploy"
            )
    refs = pushed_references(s)
    if refs is None:
        raise SystemExit(
            f"ripple-cluster: after `make push` the registry {s.registry} lacks a function image"
        )
    return refs, times


# ---------------------------------------------------------------------------------------------
# step 4: the chart


def _has_crd(s: Settings, name: str) -> bool:
    return kubectl(s, "get", "crd", name, check=False).returncode == 0


def chart_values(s: Settings) -> dict:
    sys.path.insert(0, str(REPO / "infra" / "helm"))
    import build_chart

    infra_folders = sorted(
        {p.relative_to(REPO / "infra").parts[0] for p in build_chart.manifest_files() if "infra" in p.parts}
    )
    return {
        "image": {"prefix": f"{s.registry}/ripple"},
        # Kafka, PostgreSQL and Keycloak run beside the cluster (backing.py); no operators here.
        "infra": {folder: False for folder in infra_folders},
        # The notifications Broker needs Knative's RabbitMQ Broker, which this cluster lacks.
        "functions": {"notifications": False},
        "kafkaSources": _has_crd(s, "kafkasources.sources.knative.dev"),
        "cpuRequest": cpu_requests(),
    }


def install_chart(s: Settings, refs: dict[str, str], namespace: str) -> Path:
    sys.path.insert(0, str(REPO / "infra" / "helm"))
    import build_chart

    if not HELM.exists():
        raise SystemExit("ripple-cluster: helm is missing: run `make helm` (go install, ~2 min) and rerun")
    out = s.home / "chart"
    chart = build_chart.assemble(out)
    build_chart.pin_images(chart, refs)
    values = s.home / "ripple-values.yaml"
    values.write_text(yaml.safe_dump(chart_values(s)))
    cmd = [
        str(HELM),
        "upgrade",
        "--install",
        "ripple",
        str(chart),
        "--namespace",
        namespace,
        "--values",
        str(values),
        "--kubeconfig",
        str(s.kubeconfig),
    ]
    r = subprocess.run(cmd, text=True, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"ripple-cluster: helm upgrade --install failed:\n{r.stderr.strip()}")
    # helm leaves a field changed outside it (e.g. `kn service update --image`) alone when the chart
    # did not change it: put the pinned image back, so the cluster runs what was pushed.
    for function, ref in refs.items():
        live = ksvc_status(s, namespace).get(function, {})
        containers = live.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        if containers and containers[0].get("image") != ref:
            patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": ref}]
            kubectl(s, "patch", "ksvc", function, "-n", namespace, "--type", "json", "-p", json.dumps(patch))
    return chart


# ---------------------------------------------------------------------------------------------
# step 5: Ready


def ksvc_status(s: Settings, namespace: str) -> dict[str, dict]:
    r = kubectl(s, "get", "ksvc", "-n", namespace, "-o", "json", check=False)
    if r.returncode != 0:
        return {}
    return {item["metadata"]["name"]: item for item in json.loads(r.stdout)["items"]}


def _ready(obj: dict) -> bool:
    """Ready for the current spec: the controller saw this generation and its newest revision is
    the one serving (Ready stays True from the old revision for a moment after an upgrade)."""
    status = obj.get("status", {})
    return (
        status.get("observedGeneration") == obj.get("metadata", {}).get("generation")
        and status.get("latestReadyRevisionName") == status.get("latestCreatedRevisionName")
        and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    )


def reroll_failed(s: Settings, namespace: str) -> list[str]:
    """Roll a new revision of every function whose latest one Knative keeps failed.

    Knative 1.15 marks a revision ``ContainerHealthy=False`` when its container exits (here: the
    pods of a restarted node starting before PostgreSQL), and never back to True once its pods are
    healthy again (``revision_lifecycle.go``: ``MarkContainerHealthyTrue`` only while the condition
    is not False): the Service stays ``Ready=False`` (``RevisionMissing``) although it serves. A new
    revision (an annotation with the time in the template) starts clean.
    """
    rolled = []
    for function, ksvc in ksvc_status(s, namespace).items():
        if function not in FUNCTIONS:
            continue
        name = ksvc.get("status", {}).get("latestCreatedRevisionName")
        if not name:
            continue
        r = kubectl(s, "get", "revision", name, "-n", namespace, "-o", "json", check=False)
        if r.returncode != 0:
            continue
        conds = {c["type"]: c["status"] for c in json.loads(r.stdout).get("status", {}).get("conditions", [])}
        if conds.get("ContainerHealthy") == "False" or conds.get("ResourcesAvailable") == "False":
            patch = {
                "spec": {
                    "template": {
                        "metadata": {"annotations": {"ripple.dev/rerolled-at": str(int(time.time()))}}
                    }
                }
            }
            kubectl(s, "patch", "ksvc", function, "-n", namespace, "--type", "merge", "-p", json.dumps(patch))
            rolled.append(function)
    return rolled


def wait_ready(s: Settings, namespace: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        found = ksvc_status(s, namespace)
        last = {}
        for f in FUNCTIONS:
            obj = found.get(f, {})
            if not _ready(obj):
                conds = {
                    c["type"]: c.get("message") or c.get("reason")
                    for c in obj.get("status", {}).get("conditions", [])
                }
                last[f] = conds.get("Ready") or conds.get("ConfigurationsReady") or "not created"
        if not last:
            return
        time.sleep(3)
    detail = "; ".join(f"{k}: {v}" for k, v in last.items())
    raise SystemExit(
        f"ripple-cluster: Services not Ready after {timeout:.0f} s ({detail}). "
        f"Look at `kubectl get pods -n {namespace}` and the pods' logs."
    )


# ---------------------------------------------------------------------------------------------
# step 6: nginx in front


def _edge_values(s: Settings, run_dir: Path) -> dict[str, str]:
    from ripple_stack.components import nginx

    _, profile = nginx.selected_profile()
    upstream = f"127.0.0.1:{s.ingress_port}"
    values = {
        **profile,
        **nginx.local_values(
            run_dir,
            listen=f"127.0.0.1:{edge_port()}",
            status_listen=f"127.0.0.1:{edge_status_port()}",
            gateway=upstream,
            query=upstream,
            access_log=str(s.logs / "edge-access.log"),
        ),
    }
    # The KIngress routes by Host: the Knative routes' names, not the relay's address.
    values["GATEWAY_HOST"] = host_of(s, "gateway")
    values["QUERY_HOST"] = host_of(s, "query")
    return values


def edge_up(s: Settings) -> str:
    from ripple_stack.components import nginx

    run_dir = s.home / "edge"
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)
    config = nginx.write_config(run_dir, _edge_values(s, run_dir))
    nginx.check_config(config)
    pid = node.pid_of(s, "edge-nginx")
    if pid:
        subprocess.run([*nginx.nginx_command(config), "-s", "reload"], check=False, capture_output=True)
    else:
        node.start(s, node.Proc("edge-nginx", [*nginx.nginx_command(config), "-g", "daemon off;"], host=True))
    url = edge_url(s)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            import urllib.request

            with urllib.request.urlopen(url + "/nginx-health", timeout=1) as resp:
                if resp.status == 200:
                    return url
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"ripple-cluster: nginx did not start on {url}; see {s.logs}/edge-nginx.log")


def edge_down(s: Settings) -> None:
    import contextlib
    import signal

    pid = node.pid_of(s, "edge-nginx")
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGQUIT)
    node.stop_many(s, ["edge-nginx"], timeout=15)


# ---------------------------------------------------------------------------------------------


def deploy_ripple(s: Settings, say=print) -> Deployment:
    """Everything above, idempotent; returns where things are and how long each step took."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    b = backing.up(s)
    timings["backing s"] = round(time.monotonic() - t0, 1)
    say(f"  backing     Kafka, PostgreSQL, Keycloak on {b.ip} ({timings['backing s']:.0f} s)")
    secrets = backing.load_secrets(b)
    _apply(s, cluster_objects(s, b, secrets))
    t1 = time.monotonic()
    refs, image_times = ensure_images(s, say)
    timings.update(image_times)
    timings["images s"] = round(time.monotonic() - t1, 1)
    t2 = time.monotonic()
    install_chart(s, refs, b.namespace)
    say("  chart       helm upgrade --install ripple")
    rolled = reroll_failed(s, b.namespace)
    if rolled:
        say(f"  revisions   new revision for {', '.join(rolled)} (the last one stayed failed)")
    wait_ready(s, b.namespace, max(s.ready_timeout, 300))
    timings["ready s"] = round(time.monotonic() - t2, 1)
    say(f"  functions   {len(FUNCTIONS)} Services Ready ({timings['ready s']:.0f} s)")
    url = edge_up(s)
    timings["total s"] = round(time.monotonic() - t0, 1)
    (s.home / "deploy-times.json").write_text(json.dumps(timings, indent=2) + "\n")
    say(f"ripple-cluster: ripple deployed in {timings['total s']:.0f} s; events: POST {url}/ (nginx)")
    return Deployment(
        namespace=b.namespace,
        hosts={f: host_of(s, f, b.namespace) for f in FUNCTIONS},
        backing=b,
        edge_url=url,
        timings=timings,
    )


def down(s: Settings) -> None:
    """Stop nginx and the three servers (the Services go with the cluster's state)."""
    edge_down(s)
    backing.down(s)


TOKEN = """
import json, sys, urllib.parse, urllib.request
url, secret = sys.argv[1:3]
body = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": "ripple-publisher",
                               "client_secret": secret}).encode()
with urllib.request.urlopen(url, body, timeout=30) as resp:
    print(json.load(resp)["access_token"])
"""


def token(s: Settings) -> str:
    """An access token of the ``ripple-publisher`` client (tenant acme) from the cluster's
    Keycloak, fetched inside the namespace; its ``iss`` is the address the pods use."""
    b = backing.load(s)
    secret = backing.load_secrets(b)["RIPPLE_PUBLISHER_CLIENT_SECRET"]
    url = f"{b.keycloak_url}/realms/ripple/protocol/openid-connect/token"
    code = f"import sys; sys.argv = ['t', {url!r}, {secret!r}]; exec({TOKEN!r})"
    r = backing.ns_python(s, code, 60)
    if r.returncode != 0:
        raise SystemExit(f"ripple-cluster: no token from the cluster's Keycloak: {r.stderr.strip()[-500:]}")
    return r.stdout.strip()


def main(argv: list[str]) -> int:
    from .settings import load

    s = load()
    cmd = argv[0] if argv else "up"
    if cmd == "up":
        deploy_ripple(s)
        return 0
    if cmd == "down":
        down(s)
        return 0
    if cmd == "token":
        print(token(s))
        return 0
    print("usage: python -m ripple_cluster.ripple_deploy [up|down|token]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
