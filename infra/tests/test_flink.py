"""The Flink session cluster runs a real SQL job: Kafka in, PostgreSQL out via the JDBC connector."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from ripple_stack.components.flink import rest_get
from ripple_stack.flink_job import run_python_job

pytestmark = pytest.mark.integration

SMOKE_JOB = Path(__file__).with_name("flink_smoke_job.py")


def cancel_job(stack, job_id: str) -> None:
    request = urllib.request.Request(f"{stack.flink_rest_url}/jobs/{job_id}?mode=cancel", method="PATCH")
    urllib.request.urlopen(request, timeout=10).close()


def test_cluster_has_a_taskmanager_with_free_slots(stack):
    overview = rest_get(stack.settings, "/overview")
    assert overview["taskmanagers"] >= 1
    assert overview["slots-total"] >= 1


def test_sql_job_moves_kafka_records_into_postgres(stack):
    suffix = uuid.uuid4().hex[:8]
    topic, table = f"ripple.test.flink-smoke-{suffix}", f"flink_smoke_{suffix}"
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    engine = sa.create_engine(stack.postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table} (word TEXT PRIMARY KEY, total INT NOT NULL)"))

    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    for word, n in [("kafka", 1), ("flink", 2), ("kafka", 3), ("postgres", 4)]:
        producer.send(topic, json.dumps({"word": word, "n": n}).encode())
    producer.flush()
    producer.close()

    settings = stack.settings
    job_id = run_python_job(
        stack.settings,
        SMOKE_JOB,
        {
            "SMOKE_TOPIC": topic,
            "SMOKE_KAFKA": stack.kafka_bootstrap,
            "SMOKE_TABLE": table,
            "SMOKE_JDBC_URL": (
                f"jdbc:postgresql://{settings.host}:{settings.ports['postgres']}/{settings.postgres_database}"
            ),
            "SMOKE_DB_USER": settings.postgres_user,
            "SMOKE_DB_PASSWORD": stack.secrets["RIPPLE_POSTGRES_PASSWORD"],
        },
    )
    try:
        expected = {"kafka": 4, "flink": 2, "postgres": 4}
        rows: dict[str, int] = {}
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and rows != expected:
            time.sleep(2)
            with engine.connect() as connection:
                rows = dict(connection.execute(sa.text(f"SELECT word, total FROM {table}")).all())
        assert rows == expected
    finally:
        cancel_job(stack, job_id)
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()
        admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        admin.delete_topics([topic])
        admin.close()
