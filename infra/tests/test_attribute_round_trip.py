"""Every CloudEvent attribute crosses every hop of the stack byte for byte (issue 16), as a property.

Hypothesis draws lists of arbitrary Unicode text (control characters and surrogates excluded: the
CloudEvents String type excludes them and the gateway refuses them by design), mixed with the
characters that broke or could break a hop: `%` and `%XX` look-alikes, `"`, `\\`, spaces, emoji and
ZWJ sequences, combining marks, astral-plane and private-use characters, BOM, line separator,
no-break and ideographic spaces. Each drawn text goes, as subject, inside the source, the id, an
extension (`color`), the orderId (hence `partitionkey` and the flagged alert's subject) and the
item's sku, into order events sent through the edge (nginx) in binary mode (header values
percent-encoded with ripple_cloudevents.encode_value, as a conformant sender does), structured mode
and one batch. The amount is above order-alerts' ALERT_THRESHOLD, so every event is flagged. The
tenant, from the token, is a non-ASCII one of a Keycloak user the test creates and deletes.

Compared, exactly, for every event: the Kafka record's headers on ripple.shop.orders; the `events`
row (event-store, via its KafkaSource); the `order_alerts` row; the flagged alert's record on
ripple.shop.alerts, its `events` row (Broker Trigger or alerts KafkaSource: same key) and the
notifier's mail (Subject, decoded with email.policy.default); the Flink job's agg_product_sales
row of each sku. And the dead-letter path: each text in a dead letter posted to the dead-letters
function as a KafkaSource dispatcher would, its `dead_letters` row, and what replay.py sends to a
receiver of the test's own, percent-decoded here per the binding (not with the project's decoder).

Each example sends everything at once and then waits for everything at once (each wait costs
seconds); a fixed seed, no shrinking and a small budget keep it to about a minute.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st
from keycloak import KeycloakAdmin, KeycloakOpenID, KeycloakOpenIDConnection

from ripple_cloudevents import encode_value
from ripple_stack.components.functions import knative_functions
from ripple_stack.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "functions" / "gateway" / "tests"))
from gateway_testkit import ORDER_TYPE, TopicReader, record_headers

pytestmark = pytest.mark.integration

FLAGGED_TYPE = "dev.ripple.shop.order.flagged"
ALERT_SOURCE = "/ripple/order-alerts"  # order-alerts' ALERT_SOURCE default
# Above knative/order-alerts/service.yaml's ALERT_THRESHOLD (1000): every order is flagged.
QUANTITY, UNIT_PRICE = 2, 2500
DEAD_LETTERS_DIR = REPO_ROOT / "functions" / "dead-letters"
WAIT_LIMIT_S = 180.0
# The edge admits 20 requests/s per token (burst 10, strict profile): stay under it.
EDGE_PAUSE_S = 0.07
EXAMPLES = 9  # generated, besides the explicit example: ~10 examples, ~60 s

SPECIALS = [
    "%",
    "%25",
    "%41",
    "%C3%A9",
    "100%",
    '"',
    '"quoted"',
    "\\",
    "'",
    " ",
    "  ",
    "a b",
    "+",
    "&=;,/?#",
    "\u00e9",  # e acute
    "\u00d7",  # multiplication sign
    "\u00b7",  # middle dot
    "e\u0301",  # e + combining acute
    "\u0301",  # a lone combining mark
    "\U0001f600",  # emoji
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # ZWJ family
    "\U0001d518",  # mathematical fraktur U (astral)
    "\U0010fffd",  # private use, plane 16
    "\u200b",  # zero-width space
    "\ufeff",  # BOM
    "\u2028",  # line separator (Zl, not a control character)
    "\u00a0",  # no-break space
    "\u3000",  # ideographic space
    "\ufffd",  # replacement character
    "\u6771\u4eac",  # Tokyo
    "\u0645\u0631\u062d\u0628\u0627",  # Arabic (right to left)
]
_piece = st.one_of(
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=8),
    st.sampled_from(SPECIALS),
)
TEXT = st.lists(_piece, min_size=1, max_size=5).map("".join)
TEXTS = st.lists(TEXT, min_size=6, max_size=9)
# The issue's table, and more: the first example.
ISSUE_TEXTS = [
    "caf\u00e9 \u00d7",
    "gr\u00fcn",
    "/caf\u00e9/\u00fc",
    "caf%C3%A9",
    '100% "sure"',
    " lead and trail ",
    "\U0001f600 e\u0301 \U0001d518",
    "\u6771\u4eac\u3000\u2028\ufeff",
]


# --- the stack's parts -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenant_user(stack, database) -> Iterator[tuple[str, Callable[[], str]]]:
    """(tenant, token()) of a temporary Keycloak user whose `tenant` attribute is non-ASCII."""
    tenant = f"prop-{uuid.uuid4().hex[:6]} Caf\u00e9 \u00b7 \u6771\u4eac \U0001f600 %41"
    username, password = f"prop-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = KeycloakAdmin(
        connection=KeycloakOpenIDConnection(
            server_url=stack.keycloak_url,
            username="admin",
            password=stack.secrets["RIPPLE_KEYCLOAK_ADMIN_PASSWORD"],
            realm_name=stack.realm,
            user_realm_name="master",
            client_id="admin-cli",
        )
    )
    user_id = admin.create_user(
        {
            "username": username,
            "enabled": True,
            "email": f"{username}@prop.example",
            "emailVerified": True,
            "firstName": "Prop",
            "lastName": "Test",
            "attributes": {"tenant": [tenant]},
            "credentials": [{"type": "password", "value": password, "temporary": False}],
        }
    )
    try:
        admin.assign_realm_roles(user_id, [admin.get_realm_role("orders.publish")])
        openid = KeycloakOpenID(server_url=stack.keycloak_url, realm_name=stack.realm, client_id="ripple-cli")
        yield tenant, lambda: openid.token(username, password)["access_token"]
    finally:
        admin.delete_user(user_id)
        with database.begin() as connection:
            connection.execute(sa.text("DELETE FROM agg_product_sales WHERE tenant = :t"), {"t": tenant})
            connection.execute(sa.text("DELETE FROM agg_tenant_totals WHERE tenant = :t"), {"t": tenant})
            connection.execute(sa.text("DELETE FROM agg_events_per_minute WHERE tenant = :t"), {"t": tenant})


@pytest.fixture(scope="module")
def dead_letters_url(stack) -> str:
    return next(f.url(stack.settings) for f in knative_functions() if f.name == "dead-letters") + "/"


# --- what is sent ------------------------------------------------------------------------------


def binding_decode(value: str) -> str:
    """HTTP binding 3.1.3.2 decoding, written here independently of ripple_cloudevents."""
    assert value.isascii() and value.isprintable(), f"an unencoded header value: {value!r}"
    return unquote_to_bytes(value).decode("utf-8")


def _event(text: str, mode: str, when: str, sku: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:10]
    return {
        "specversion": "1.0",
        "id": f"{tag} {text}",
        "source": f"/prop/{mode}/{text}",
        "type": ORDER_TYPE,
        "subject": text,
        "time": when,
        "color": text,
        "data": {
            "orderId": f"o-{tag} {text}",
            "customerId": "c-prop",
            "items": [{"sku": sku, "quantity": QUANTITY, "unitPrice": UNIT_PRICE}],
            "amount": QUANTITY * UNIT_PRICE,
            "currency": "EUR",
        },
    }


def _binary_request(event: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    headers |= {f"ce-{k}": encode_value(v) for k, v in event.items() if k != "data"}
    return headers, json.dumps(event["data"], ensure_ascii=False).encode()


def _post_through_edge(session: requests.Session, url: str, headers: dict[str, str], body: bytes) -> None:
    for _ in range(20):
        time.sleep(EDGE_PAUSE_S)
        response = session.post(url, data=body, headers=headers, timeout=30)
        if response.status_code not in (429, 503):  # the edge's limit; Kafka briefly stopped by a drill
            break
        time.sleep(float(response.headers.get("Retry-After") or 1))
    assert response.status_code == 202, f"{response.status_code} {response.text}"


def _dead_letter(text: str, when: str, tenant: str, marker: str) -> tuple[dict[str, str], dict[str, str]]:
    """(attributes as delivered, knativeerror* extensions) of a dead letter carrying `text`."""
    tag = uuid.uuid4().hex[:10]
    attributes = {
        "specversion": "1.0",
        "id": f"{tag} {text}",
        "source": f"/prop/dead/{text}",
        "type": ORDER_TYPE,
        "subject": text,
        "time": when,
        "datacontenttype": "application/json",
        "color": text,
        "tenant": tenant,
        "partitionkey": f"{tenant}/o-{tag} {text}",
    }
    errors = {
        "knativeerrordest": f"http://127.0.0.1:9/{marker}/{text}",
        "knativeerrorcode": "500",
        "knativeerrordata": base64.b64encode(f"refused {text}".encode()).decode(),
    }
    return attributes, errors


# --- what arrived ------------------------------------------------------------------------------


def _rows(database: sa.Engine, query: str, **parameters: Any) -> list[Any]:
    """The rows, read again while PostgreSQL is briefly down (other tests stop it on purpose)."""
    for _ in range(120):
        try:
            with database.connect() as connection:
                return connection.execute(sa.text(query), parameters).all()
        except sa.exc.OperationalError:
            time.sleep(1)
    with database.connect() as connection:
        return connection.execute(sa.text(query), parameters).all()


def _mail_headers(mail_dir: Path, since: float, event_ids: set[str]) -> dict[str, tuple[str, str]]:
    """X-Ripple-Event-Id -> decoded (Subject, X-Ripple-Event-Source) of the mails since `since`."""
    found: dict[str, tuple[str, str]] = {}
    for path in mail_dir.glob("*.eml"):
        try:
            if path.stat().st_mtime < since - 1:
                continue
            head = path.read_bytes().split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        except FileNotFoundError:
            continue
        mail = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.default)
        event_id = str(mail.get("X-Ripple-Event-Id", ""))
        if event_id in event_ids:
            found[event_id] = (str(mail["Subject"]), str(mail["X-Ripple-Event-Source"]))
    return found


def _wait(what: str, ready: Callable[[], bool], strict: bool = True) -> None:
    """Poll until ready(); strict=False returns at the deadline for the caller's assert to show why."""
    started = time.monotonic()
    while not ready():
        if time.monotonic() > started + WAIT_LIMIT_S:
            if strict:
                raise AssertionError(f"gave up waiting for {what}")
            break
        time.sleep(0.5)
    print(f"{what}: {time.monotonic() - started:.1f} s", file=sys.stderr)


# --- the property ------------------------------------------------------------------------------


@seed(16)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@example(texts=ISSUE_TEXTS)
@given(texts=TEXTS)
def test_every_attribute_arrives_byte_for_byte_everywhere(
    stack, database, tenant_user, http_sink, dead_letters_url, texts
):
    tenant, token = tenant_user
    # Hypothesis does not show the drawn texts next to these fixtures; a failure's stderr does.
    print(f"texts: {texts!r}", file=sys.stderr)
    run = uuid.uuid4().hex[:8]
    started = time.time()
    when = (datetime.now(UTC) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    # One sku per drawn text (texts may repeat): the three modes' orders of a text share it.
    skus = [f"sku-{run}-{n} {text}" for n, text in enumerate(texts)]
    binary = [_event(text, "binary", when, sku) for text, sku in zip(texts, skus, strict=True)]
    structured = [_event(text, "structured", when, sku) for text, sku in zip(texts, skus, strict=True)]
    batch = [_event(text, "batch", when, sku) for text, sku in zip(texts, skus, strict=True)]
    sent = {event["id"]: event for event in [*binary, *structured, *batch]}

    orders = TopicReader(stack.kafka_bootstrap, "ripple.shop.orders")
    alerts = TopicReader(stack.kafka_bootstrap, "ripple.shop.alerts")
    try:
        # Everything out at once: through the edge in three modes, and the dead letters.
        url = stack.nginx_url.rstrip("/") + "/"
        bearer = {"Authorization": f"Bearer {token()}"}
        with requests.Session() as session:
            for event in binary:
                headers, body = _binary_request(event)
                _post_through_edge(session, url, headers | bearer, body)
            for event in structured:
                body = json.dumps(event, ensure_ascii=False).encode()
                _post_through_edge(
                    session, url, {"Content-Type": "application/cloudevents+json"} | bearer, body
                )
            _post_through_edge(
                session,
                url,
                {"Content-Type": "application/cloudevents-batch+json"} | bearer,
                json.dumps(batch).encode(),  # \u escapes here, raw UTF-8 above
            )
            marker = f"prop-dead-{run}"
            dead = [_dead_letter(text, when, tenant, marker) for text in texts]
            for attributes, errors in dead:
                headers = {f"ce-{k}": encode_value(v) for k, v in {**attributes, **errors}.items()}
                headers["content-type"] = headers.pop("ce-datacontenttype")
                for _ in range(60):  # 503 while PostgreSQL is down (another test's drill)
                    response = session.post(
                        dead_letters_url, data=b'{"orderId": "o-dead"}', headers=headers, timeout=30
                    )
                    if response.status_code != 503:
                        break
                    time.sleep(2)
                assert response.status_code in (200, 202, 204), response.text

        # Kafka: every header of every record.
        records = orders.records_with_ids(sent)
        for event_id, event in sent.items():
            key = f"{tenant}/{event['data']['orderId']}"
            headers = {name: value.decode() for name, value in records[event_id].headers}
            assert headers == record_headers(event_id, event, tenant, time=when, color=event["color"])
            assert records[event_id].key == key.encode()

        # event-store and order-alerts (behind the KafkaSources), then the alerts' hops.
        ids = list(sent)
        stored_query = (
            "SELECT id, source, type, subject, tenant, extensions, data FROM events WHERE id = ANY(:ids)"
        )
        alerts_query = (
            "SELECT trigger_id, trigger_source, tenant, order_id, alert_id FROM order_alerts "
            "WHERE trigger_id = ANY(:ids)"
        )
        _wait("the events rows", lambda: len(_rows(database, stored_query, ids=ids)) == len(ids))
        _wait("the order_alerts rows", lambda: len(_rows(database, alerts_query, ids=ids)) == len(ids))
        for row in _rows(database, stored_query, ids=ids):
            event = sent[row.id]
            assert (row.source, row.type, row.subject, row.tenant) == (
                event["source"],
                ORDER_TYPE,
                event["subject"],
                tenant,
            )
            assert row.extensions == {
                "color": event["color"],
                "tenant": tenant,
                "partitionkey": f"{tenant}/{event['data']['orderId']}",
            }
            assert row.data == event["data"]
        alert_of: dict[str, dict[str, Any]] = {}
        for row in _rows(database, alerts_query, ids=ids):
            event = sent[row.trigger_id]
            assert (row.trigger_source, row.tenant, row.order_id) == (
                event["source"],
                tenant,
                event["data"]["orderId"],
            )
            alert_of[row.alert_id] = event

        alert_ids = list(alert_of)
        flagged_query = (
            "SELECT id, source, type, subject, tenant, extensions FROM events "
            "WHERE source = :source AND id = ANY(:ids)"
        )
        _wait(
            "the flagged events' rows",
            lambda: len(_rows(database, flagged_query, source=ALERT_SOURCE, ids=alert_ids)) == len(alert_ids),
        )
        for row in _rows(database, flagged_query, source=ALERT_SOURCE, ids=alert_ids):
            order_id = alert_of[row.id]["data"]["orderId"]
            assert (row.type, row.subject, row.tenant) == (FLAGGED_TYPE, order_id, tenant)
            assert row.extensions == {"tenant": tenant, "partitionkey": f"{tenant}/{order_id}"}
        for alert_id, record in alerts.records_with_ids(alert_ids).items():
            order_id = alert_of[alert_id]["data"]["orderId"]
            headers = {name: value.decode() for name, value in record.headers}
            assert (headers["ce_subject"], headers["ce_tenant"], headers["ce_partitionkey"]) == (
                order_id,
                tenant,
                f"{tenant}/{order_id}",
            )
        mails: dict[str, tuple[str, str]] = {}

        def mailed() -> bool:
            mails.update(_mail_headers(stack.settings.mail_dir, started, set(alert_ids)))
            return len(mails) == len(alert_ids)

        _wait("the notifier's mails", mailed)
        for alert_id, (subject, source) in mails.items():
            prefix = f"Flagged order {tenant}/{alert_of[alert_id]['data']['orderId']}: "
            assert subject.startswith(prefix), (subject, prefix)
            assert source == ALERT_SOURCE

        # Flink: one agg_product_sales row per (tenant, sku), the three modes' orders in it.
        per_sku = (Decimal(3 * QUANTITY * UNIT_PRICE).quantize(Decimal("0.01")), 3 * QUANTITY, 3)
        products_query = (
            "SELECT sku, revenue, quantity, order_lines FROM agg_product_sales "
            "WHERE tenant = :tenant AND sku = ANY(:skus)"
        )

        def products() -> dict[str, tuple]:
            found = _rows(database, products_query, tenant=tenant, skus=skus)
            return {row.sku: (row.revenue, row.quantity, row.order_lines) for row in found}

        expected_products = dict.fromkeys(skus, per_sku)
        _wait("Flink's agg_product_sales rows", lambda: products() == expected_products, strict=False)
        assert products() == expected_products

        # Dead letters: stored as delivered, and replayed with the same attributes.
        dead_query = (
            "SELECT id, source, type, subject, tenant, time, datacontenttype, extensions, error_dest, "
            "error_code, error_data FROM dead_letters WHERE error_dest LIKE :marker"
        )
        rows = {row.id: row for row in _rows(database, dead_query, marker=f"%/{marker}/%")}
        assert set(rows) == {attributes["id"] for attributes, _ in dead}
        for attributes, errors in dead:
            row = rows[attributes["id"]]
            assert (row.source, row.type, row.subject, row.tenant, row.time, row.datacontenttype) == (
                attributes["source"],
                ORDER_TYPE,
                attributes["subject"],
                tenant,
                when,
                "application/json",
            )
            extensions = {k: attributes[k] for k in ("color", "tenant", "partitionkey")}
            assert row.extensions == extensions | errors
            assert (row.error_dest, row.error_code) == (errors["knativeerrordest"], "500")
            assert row.error_data == base64.b64decode(errors["knativeerrordata"]).decode()
        url, received = http_sink
        received.clear()
        replayed = subprocess.run(
            [sys.executable, "replay.py", "--dest", marker, "--to", url],
            cwd=DEAD_LETTERS_DIR,
            env={**os.environ, **stack.postgres_env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        decoded = [
            {name[3:]: binding_decode(value) for name, value in headers if name.startswith("ce-")}
            | {"datacontenttype": dict(headers)["content-type"]}
            for headers, _ in received
        ]
        assert sorted(decoded, key=lambda a: a["id"]) == sorted(
            (attributes for attributes, _ in dead), key=lambda a: a["id"]
        )
    finally:
        orders.close()
        alerts.close()
