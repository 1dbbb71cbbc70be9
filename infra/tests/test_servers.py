"""The local stack runs the real servers: each one is used here the way ripple uses it."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
import sqlalchemy as sa
from jwcrypto import jwk
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from keycloak import KeycloakOpenID

pytestmark = pytest.mark.integration


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_kafka_round_trip_with_acks_all(stack):
    topic = f"test.stack.{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    metadata = producer.send(topic, key=b"k1", value=b"hello ripple", headers=[("ce_id", b"1")]).get(
        timeout=30
    )
    producer.close()
    assert metadata.offset == 0

    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    records = consumer.poll(timeout_ms=10000, max_records=1).get(partition, [])
    consumer.close()
    assert [(r.key, r.value, r.headers) for r in records] == [(b"k1", b"hello ripple", [("ce_id", b"1")])]


def test_declared_topics_exist(stack):
    from ripple_stack.components.kafka import declared_topics

    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    existing = set(admin.list_topics())
    admin.close()
    assert {t["name"] for t in declared_topics()} <= existing


def test_postgres_with_sqlalchemy(stack):
    engine = sa.create_engine(stack.postgres_url)
    table = f"stack_check_{uuid.uuid4().hex[:8]}"
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, note text)"))
        connection.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'ripple')"))
    with engine.begin() as connection:
        assert connection.execute(sa.text(f"SELECT note FROM {table} WHERE id = 1")).scalar_one() == "ripple"
        connection.execute(sa.text(f"DROP TABLE {table}"))
    engine.dispose()


def _verified_claims(stack, token: str) -> dict:
    """Check a token against the realm's published keys, as the gateway does."""
    openid = KeycloakOpenID(server_url=stack.keycloak_url, realm_name=stack.realm, client_id="ripple-gateway")
    keys = jwk.JWKSet.from_json(json.dumps(get_json(f"{stack.issuer}/protocol/openid-connect/certs")))
    return openid.decode_token(
        token,
        validate=True,
        key=keys,
        check_claims={"iss": stack.issuer, "aud": "ripple-gateway", "exp": None},
    )


def test_keycloak_client_credentials_token_verifies(stack):
    claims = _verified_claims(stack, stack.client_token("ripple-publisher"))
    assert claims["tenant"] == "acme"
    assert "orders.publish" in claims["realm_access"]["roles"]


def test_keycloak_user_token_verifies(stack):
    claims = _verified_claims(stack, stack.user_token("bob"))
    assert claims["preferred_username"] == "bob"
    assert claims["tenant"] == "globex"
    assert "orders.publish" not in claims["realm_access"]["roles"]


def test_nginx_answers(stack):
    with urllib.request.urlopen(f"{stack.nginx_url}/nginx-health", timeout=5) as response:
        assert response.status == 200


def test_prometheus_scrapes_every_target(stack):
    import time

    # Targets are scraped every 5 s; give a freshly started one a few rounds.
    deadline = time.monotonic() + 60
    while True:
        targets = get_json(f"{stack.prometheus_url}/api/v1/targets")["data"]["activeTargets"]
        down = [t["scrapeUrl"] for t in targets if t["health"] != "up"]
        if not down or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert targets and not down, f"targets not up: {down}"
    jobs = {t["labels"]["job"] for t in targets}
    assert {"prometheus", "pushgateway", "keycloak"} <= jobs
