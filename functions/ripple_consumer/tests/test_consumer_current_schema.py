"""ripple_consumer.current_schema: the head of a chain of migration scripts and the version table,
read without Alembic (tables), agree with Alembic on every consumer shipped; anything unsure is
"not current" (so Alembic runs); and against the stack's PostgreSQL a migrated schema is current."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from ripple_consumer.current_schema import (
    expected_version,
    head_revision,
    is_current,
    postgres_settings,
    version_table,
)
from ripple_settings import ConfigError

FUNCTIONS = Path(__file__).resolve().parents[2]
CONSUMERS = ["event-store", "order-alerts", "notifier", "dead-letters"]


def script(revision: str, down: str | None, annotated: bool = False) -> str:
    colon = ": str" if annotated else ""
    down_text = "None" if down is None else f'"{down}"'
    return f'"""x"""\nimport sqlalchemy\n\nrevision{colon} = "{revision}"\ndown_revision = {down_text}\n'


@pytest.mark.parametrize(
    ("scripts", "head"),
    [
        ({"1.py": script("0001", None)}, "0001"),
        ({"1.py": script("0001", None), "2.py": script("0002", "0001")}, "0002"),
        ({"2.py": script("b", "a", annotated=True), "1.py": script("a", None)}, "b"),
        ({"1.py": "revision = '0001'\ndown_revision = None\n"}, "0001"),
        ({}, None),  # no scripts
        ({"1.py": script("a", None), "2.py": script("b", "a"), "3.py": script("c", "a")}, None),  # branch
        ({"1.py": script("a", None), "2.py": 'revision = "b"\ndown_revision = ("a", "c")\n'}, None),  # merge
        ({"1.py": "revision = make()\ndown_revision = None\n"}, None),  # not a literal
        ({"1.py": script("a", None), "2.py": script("b", "z")}, None),  # a parent that does not exist
        ({"1.py": script("a", None), "2.py": script("a", None)}, None),  # twice the same
    ],
)
def test_the_head_of_a_plain_chain_and_nothing_else(scripts, head):
    assert head_revision(scripts) == head


@pytest.mark.parametrize(
    ("env_py", "table"),
    [
        ('run_migrations("event-store", metadata, lock_key=1)', "alembic_version_event_store"),
        ("run_migrations(\n    'dead-letters', metadata, lock_key=2)", "alembic_version_dead_letters"),
        ("run_migrations(NAME, metadata, lock_key=1)", None),
        ("", None),
    ],
)
def test_the_version_table_named_by_env_py(env_py, table):
    assert version_table(env_py) == table


@pytest.mark.parametrize("function", CONSUMERS)
def test_every_consumer_is_read_as_alembic_reads_it(function):
    folder = FUNCTIONS / function
    heads = ScriptDirectory.from_config(Config(str(folder / "alembic.ini"))).get_heads()
    assert expected_version(folder) == ("alembic_version_" + function.replace("-", "_"), heads[0])


def test_a_folder_without_migrations_is_not_current(tmp_path):
    assert expected_version(tmp_path) is None
    assert is_current(tmp_path, {"POSTGRES_PASSWORD": "x"}) is False


def test_postgresql_not_answering_is_not_current():
    env = {"POSTGRES_ADDRESS": "127.0.0.1:1", "POSTGRES_PASSWORD": "x", "DB_CONNECT_TIMEOUT_S": "1"}
    assert is_current(FUNCTIONS / "event-store", env) is False


def test_unusable_settings_are_not_current_and_say_what_to_set_elsewhere():
    assert is_current(FUNCTIONS / "event-store", {}) is False
    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD is not set"):
        postgres_settings({}, "knative/x/service.yaml")
    with pytest.raises(ConfigError, match="must be host:port"):
        postgres_settings({"POSTGRES_PASSWORD": "x", "POSTGRES_ADDRESS": "db"}, "m")


@pytest.mark.integration
@pytest.mark.parametrize("function", CONSUMERS)
def test_a_migrated_schema_is_current(stack, function):
    # The stack's consumers have migrated at `make up`.
    assert is_current(FUNCTIONS / function, stack.postgres_env) is True


@pytest.mark.integration
def test_a_wrong_password_is_not_current(stack):
    env = {**stack.postgres_env, "POSTGRES_PASSWORD": "not-the-password"}
    assert is_current(FUNCTIONS / "event-store", env) is False
