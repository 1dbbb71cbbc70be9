"""`make up` is idempotent and `make down` / `make up` keeps every server's data."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from ripple_stack.supervisor import Supervisor

pytestmark = pytest.mark.integration


def stack_cli(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ripple_stack", *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def process_ids(stack) -> dict[str, int]:
    return {name: info["pid"] for name, info in Supervisor(stack.settings).processes().items()}


def test_second_up_changes_nothing(stack):
    before = process_ids(stack)
    output = stack_cli("up")
    for word in ("downloading", "initialising", "formatting", "creating", "starting", "started"):
        assert word not in output, f"second `up` still did work:\n{output}"
    assert process_ids(stack) == before


def test_down_then_up_keeps_data(stack):
    marker = uuid.uuid4().hex
    topic = f"test.lifecycle.{marker[:8]}"
    engine = sa.create_engine(stack.postgres_url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE IF NOT EXISTS lifecycle_check (marker text PRIMARY KEY)"))
        connection.execute(sa.text("INSERT INTO lifecycle_check VALUES (:m)"), {"m": marker})
    engine.dispose()
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    producer.send(topic, value=marker.encode()).get(timeout=30)
    producer.close()

    stack_cli("down")
    assert Supervisor(stack.settings).processes() == {}
    stack_cli("up")

    engine = sa.create_engine(stack.postgres_url)
    with engine.begin() as connection:
        found = connection.execute(
            sa.text("SELECT count(*) FROM lifecycle_check WHERE marker = :m"), {"m": marker}
        )
        assert found.scalar_one() == 1
    engine.dispose()
    consumer = KafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    values = [r.value for r in consumer.poll(timeout_ms=15000).get(partition, [])]
    consumer.close()
    assert values == [marker.encode()]
    # Tokens still issue and verify after the restart (realm and keys kept).
    assert stack.client_token()


def test_a_taken_port_stops_up_with_what_to_do(stack, tmp_path):
    """A second stack (another RIPPLE_HOME) finds the first one's ports taken."""
    result = subprocess.run(
        [sys.executable, "-m", "ripple_stack", "up"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RIPPLE_HOME": str(tmp_path / "second")},
    )
    assert result.returncode == 2
    assert "is already taken by another process" in result.stderr
    assert "Traceback" not in result.stderr
