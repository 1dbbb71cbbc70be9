"""The query function against the real PostgreSQL and Keycloak: tenant-scoped, authenticated reads."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
import requests
import sqlalchemy as sa

from ripple_stack.settings import REPO_ROOT

pytestmark = pytest.mark.integration

SCHEMA = REPO_ROOT / "flink" / "sql" / "postgres-schema.sql"
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def query_url(stack) -> str:
    return f"http://{stack.settings.host}:{stack.settings.ports['query']}"


@pytest.fixture(scope="module")
def rows(stack):
    """Aggregate rows of two tenants, as the Flink job would have written them."""
    marker = uuid.uuid4().hex[:8]
    event_type, sku = f"test.query.{marker}", f"sku-{marker}"
    engine = sa.create_engine(stack.postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(SCHEMA.read_text())
        for tenant, events in (("acme", 7), ("globex", 3)):
            connection.execute(
                sa.text(
                    "INSERT INTO agg_events_per_minute (tenant, event_type, window_start, window_end, events,"
                    " amount_sum) VALUES (:tenant, :type, :start, :end, :events, :amount)"
                ),
                {
                    "tenant": tenant,
                    "type": event_type,
                    "start": datetime(2026, 11, 25, 12, 0),
                    "end": datetime(2026, 11, 25, 12, 1),
                    "events": events,
                    "amount": events * 10,
                },
            )
            connection.execute(
                sa.text(
                    "INSERT INTO agg_product_sales (tenant, sku, revenue, quantity, order_lines)"
                    " VALUES (:tenant, :sku, :revenue, :quantity, 1)"
                ),
                {"tenant": tenant, "sku": sku, "revenue": events * 2.5, "quantity": events},
            )
    yield {"event_type": event_type, "sku": sku}
    with engine.begin() as connection:
        delete_minutes = sa.text("DELETE FROM agg_events_per_minute WHERE event_type = :t")
        connection.execute(delete_minutes, {"t": event_type})
        connection.execute(sa.text("DELETE FROM agg_product_sales WHERE sku = :s"), {"s": sku})
    engine.dispose()


def get(url: str, token: str | None = None, **params: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, params=params, timeout=10)


def test_a_tenant_sees_its_own_minutes_only(stack, query_url, rows):
    alice = get(f"{query_url}/v1/aggregates/per-minute", stack.user_token("alice"), type=rows["event_type"])
    bob = get(f"{query_url}/v1/aggregates/per-minute", stack.user_token("bob"), type=rows["event_type"])
    assert alice.status_code == bob.status_code == 200
    assert alice.json() == {
        "tenant": "acme",
        "rows": [
            {
                "event_type": rows["event_type"],
                "window_start": "2026-11-25T12:00:00Z",
                "window_end": "2026-11-25T12:01:00Z",
                "events": 7,
                "amount_sum": 70.0,
            }
        ],
    }
    assert bob.json()["tenant"] == "globex"
    assert [row["events"] for row in bob.json()["rows"]] == [3]


def test_time_range_filters_minutes(stack, query_url, rows):
    token = stack.user_token("alice")
    url = f"{query_url}/v1/aggregates/per-minute"
    noon = {"since": "2026-11-25T12:00:00Z", "until": "2026-11-25T12:01:00Z"}
    inside = get(url, token, type=rows["event_type"], **noon)
    after = get(url, token, type=rows["event_type"], since="2026-11-25T12:00:01+00:00")
    assert len(inside.json()["rows"]) == 1
    assert after.json()["rows"] == []


def test_products_are_tenant_scoped(stack, query_url, rows):
    response = get(f"{query_url}/v1/aggregates/products", stack.client_token(), sku=rows["sku"])
    assert response.status_code == 200
    assert response.json() == {
        "tenant": "acme",
        "rows": [{"sku": rows["sku"], "revenue": 17.5, "quantity": 7, "order_lines": 1}],
    }


def test_totals_answer_for_a_tenant_without_rows(stack, query_url):
    response = get(f"{query_url}/v1/aggregates/totals", stack.user_token("bob"))
    assert response.status_code == 200
    assert response.json()["tenant"] == "globex"
    columns = {"orders", "order_amount", "payments", "payment_amount", "pageviews"}
    assert set(response.json()["totals"]) == columns


@pytest.mark.parametrize(
    ("path", "params", "status", "slug"),
    [
        ("/v1/aggregates/per-minute", {"limit": "0"}, 400, "invalid-query"),
        ("/v1/aggregates/per-minute", {"limit": "many"}, 400, "invalid-query"),
        ("/v1/aggregates/per-minute", {"since": "yesterday"}, 400, "invalid-query"),
        ("/v1/aggregates/per-minute", {"since": "2026-11-25T12:00:00"}, 400, "invalid-query"),
        ("/v1/nothing", {}, 404, "not-found"),
    ],
)
def test_bad_requests_get_a_problem(stack, query_url, path, params, status, slug):
    response = get(f"{query_url}{path}", stack.user_token("alice"), **params)
    assert response.status_code == status
    assert response.headers["Content-Type"] == PROBLEM
    assert response.json()["type"] == f"https://ripple.dev/problems/{slug}"
    assert response.json()["detail"]


def test_reads_need_a_valid_token_with_the_role(stack, query_url):
    url = f"{query_url}/v1/aggregates/products"
    missing = get(url)
    forged = get(url, "not.a.token")
    no_role = get(url, stack.client_token("ripple-norole", stack.secrets["RIPPLE_TEST_CLIENT_SECRET"]))
    assert missing.status_code == forged.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert forged.headers["Content-Type"] == PROBLEM
    assert no_role.status_code == 403
    assert no_role.json()["type"] == "https://ripple.dev/problems/forbidden"


def test_only_get_is_allowed(stack, query_url):
    response = requests.post(f"{query_url}/v1/aggregates/products", timeout=10)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


def test_probes_and_metrics(query_url):
    assert requests.get(f"{query_url}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{query_url}/readyz", timeout=10).status_code == 200
    metrics = requests.get(f"{query_url}/metrics", timeout=10).text
    assert "ripple_query_requests_total" in metrics
