"""Issue 18's loss check on the real cluster: every event the gateway accepted (202) is stored by
event-store exactly once, while the load runs through nginx and, one after another, the gateway's
and event-store's pods are deleted with force, the activator's pod is deleted, and the cluster's
Kafka is stopped and started again.

The load is the autoscale demo's (`loadtest.autoscale`: checkout batches through nginx with a
token of the cluster's Keycloak); storage is read from the cluster's PostgreSQL inside the
namespace. A refused request (503 or no answer while Kafka is away) is not "accepted" and so not
owed; the figures (accepted, refused, seconds to drain) are printed and kept in
``$RIPPLE_HOME/cluster/loss-test-figures.json``.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
from cluster_testkit import wait_until
from ripple_cluster import backing, node, ripple_deploy
from ripple_cluster.addons import kubectl
from ripple_cluster.settings import REPO, Settings

NS = "ripple"

STORED = """
import json, sys, psycopg2
host, port, password, source = sys.argv[1:5]
c = psycopg2.connect(host=host, port=int(port), user="ripple", password=password, dbname="ripple")
cur = c.cursor()
cur.execute("SELECT id, count(*) FROM events WHERE source = %s GROUP BY id", (source,))
print(json.dumps(dict(cur.fetchall())))
"""


def _stored(s: Settings, source: str) -> dict[str, int]:
    b = backing.load(s)
    password = backing.load_secrets(b)["RIPPLE_POSTGRES_PASSWORD"]
    code = f"import sys; sys.argv = ['x', {b.ip!r}, {str(b.postgres_port)!r}, {password!r}, {source!r}]; "
    r = backing.ns_python(s, code + f"exec({STORED!r})", 90)
    assert r.returncode == 0, f"reading the stored events failed: {r.stderr[-800:]}"
    return json.loads(r.stdout)


def _delete_pods(s: Settings, namespace: str, selector: str, force: bool) -> int:
    pods = json.loads(kubectl(s, "get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)[
        "items"
    ]
    names = [p["metadata"]["name"] for p in pods]
    if names:
        extra = ["--force", "--grace-period=0"] if force else []
        kubectl(s, "delete", "pod", "-n", namespace, *names, *extra, "--wait=false", check=False)
    return len(names)


@pytest.mark.timeout(1500)
def test_accepted_events_stored_once_through_pod_activator_and_kafka_restarts(cluster: Settings) -> None:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from loadtest.autoscale.cluster import ClusterTokens
    from loadtest.autoscale.demo import BatchShop
    from loadtest.scenarios.driver import LoadDriver, Mix
    from loadtest.scenarios.shop import new_run_id

    deployment = ripple_deploy.deploy_ripple(cluster, say=lambda *_: None)
    run_id = new_run_id("loss")
    shop = BatchShop(run_id, 10)
    driver = LoadDriver(
        deployment.edge_url, ClusterTokens(cluster), shop, rate=5.0, workers=8,
        mix=Mix(pageview=0, order=0, payment=0, batch=1),
    )  # fmt: skip
    log: list[str] = []
    started = time.monotonic()

    def at(seconds: float) -> None:
        time.sleep(max(0.0, started + seconds - time.monotonic()))

    def say(what: str) -> None:
        log.append(f"{time.monotonic() - started:5.1f} s  {what}")

    driver.start()
    try:
        at(20)
        gateways = _delete_pods(cluster, NS, "serving.knative.dev/service=gateway", True)
        say(f"gateway pods deleted with force: {gateways}")
        say(
            "event-store pods deleted with force: "
            f"{_delete_pods(cluster, NS, 'serving.knative.dev/service=event-store', True)}"
        )
        at(45)
        say(f"activator pods deleted: {_delete_pods(cluster, 'knative-serving', 'app=activator', False)}")
        at(70)
        node.stop(cluster, "backing-kafka")
        say("Kafka stopped")
        at(85)
        backing.up(cluster)
        say("Kafka started again")
        at(120)
    finally:
        driver.set_rate(0)
        driver.stop()
    say(f"load stopped: {len(driver.accepted)} events accepted of {len(driver.sent)} sent")
    accepted = set(driver.accepted)
    assert accepted, "the gateway accepted nothing"
    stored = wait_until(
        "every accepted event stored",
        lambda: (rows := _stored(cluster, shop.source)) and accepted <= set(rows) and rows,
        600,
        every=10,
    )
    say("every accepted event stored")
    twice = {event_id: n for event_id, n in stored.items() if n != 1}
    figures = {
        "accepted": len(accepted),
        "sent": len(driver.sent),
        "stored": len(stored),
        "stored twice": len(twice),
        "timeline": log,
    }
    (cluster.home / "loss-test-figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    assert not twice, f"stored more than once: {sorted(twice)[:10]}"
    unknown = set(stored) - set(driver.sent)
    assert not unknown, f"stored but never sent: {sorted(unknown)[:10]}"
