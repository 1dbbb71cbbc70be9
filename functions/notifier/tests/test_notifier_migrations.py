"""The notifier's Alembic migrations on a throwaway database of the real PostgreSQL: 0002 turns
the rows of 0001 (each a mail already accepted) into `sent` outbox rows, and goes back down."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

pytestmark = pytest.mark.integration

FUNCTION_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def throwaway_database(stack, monkeypatch):
    name = f"notifier_migrations_{uuid.uuid4().hex[:8]}"
    admin = create_engine(stack.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    for variable, value in stack.postgres_env.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("POSTGRES_DB", name)
    monkeypatch.setenv("FRAUD_DESK_ADDRESS", "desk@test.invalid")
    monkeypatch.chdir(FUNCTION_DIR)
    monkeypatch.syspath_prepend(str(FUNCTION_DIR))
    engine = create_engine(make_url(stack.postgres_url).set(database=name))
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_0002_makes_the_old_rows_sent_and_goes_back_down(throwaway_database):
    alembic = Config(str(FUNCTION_DIR / "alembic.ini"))
    command.upgrade(alembic, "0001")
    with throwaway_database.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO notifications (source, id, order_id, recipient, message_id)"
                " VALUES ('/s', '1', 'o-1', 'desk@test.invalid', '<m@test>')"
            )
        )
    command.upgrade(alembic, "head")
    with throwaway_database.begin() as connection:
        row = connection.execute(
            text("SELECT state, attempts, sent_at = recorded_at AS kept FROM notifications")
        ).one()
        assert tuple(row) == ("sent", 1, True)
        connection.execute(
            text(
                "INSERT INTO notifications (source, id, order_id, recipient, message_id)"
                " VALUES ('/s', '2', 'o-2', 'desk@test.invalid', '<n@test>')"
            )
        )
        state = connection.execute(text("SELECT state FROM notifications WHERE id = '2'")).scalar()
        assert state == "pending"
    command.downgrade(alembic, "0001")  # the pending row goes: the old table held only mails sent
    with throwaway_database.connect() as connection:
        assert connection.execute(text("SELECT id FROM notifications")).scalars().all() == ["1"]
