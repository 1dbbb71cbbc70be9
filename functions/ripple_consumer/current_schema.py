"""Is a consumer's schema current already? Asked without Alembic or SQLAlchemy, at every cold start.

ripple_consumer.serve runs `alembic upgrade head` in a forked child while the function is
imported, and serves only once it is done. With the schema current (every start but the first
after a new migration) Alembic and SQLAlchemy are imported just to learn that: ~450-550 ms, longer
than importing the function itself, so the child was the cold start's critical path (issue 22,
loadtest/serving/cold-start/README.md). This asks first, with psycopg2 alone: the version the
function's version table holds against the head of its migration scripts, read from their
`revision` / `down_revision` lines. Equal: nothing to do. Anything else (a fresh database, a newer
script, scripts that are no plain chain, a version table that is not named where expected,
PostgreSQL refusing the connection) is not decided here: Alembic runs as before, under the
advisory lock, and says what is wrong. Reading without the lock is safe: a migration another pod
is running is not committed, so its old version is read and this start waits for the lock.

The connection settings are the consumers' (ripple_consumer.database's table), read here by
`postgres_settings`, which DatabaseConfig uses too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ripple_settings import ConfigError, env_number

MIGRATIONS = "migrations"
# The alembic.ini line every consumer has; another script_location is left to Alembic.
SCRIPT_LOCATION = re.compile(r"^script_location\s*=\s*%\(here\)s/migrations\s*$", re.MULTILINE)
REVISION = re.compile(r"""^revision(?:\s*:\s*str)?\s*=\s*["']([^"']+)["']\s*$""", re.MULTILINE)
DOWN_REVISION = re.compile(
    r"""^down_revision(?:\s*:[^=]+)?\s*=\s*(?:None|["']([^"']+)["'])\s*$""", re.MULTILINE
)
# migrations/env.py: run_migrations("<function>", ...) names the version table (ripple_consumer.migrations).
FUNCTION_NAME = re.compile(r"""run_migrations\(\s*["']([a-z0-9-]+)["']""")


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    user: str
    password: str
    database: str


def postgres_settings(env: Mapping[str, str], manifest: str) -> PostgresSettings:
    """The consumers' PostgreSQL variables (defaults in ripple_consumer.database's table)."""
    password = env.get("POSTGRES_PASSWORD")
    if not password:
        raise ConfigError(
            "POSTGRES_PASSWORD is not set: give it from the Secret key RIPPLE_POSTGRES_PASSWORD "
            f"({manifest} does)."
        )
    address = env.get("POSTGRES_ADDRESS", "ripple-db-rw.ripple.svc:5432")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"POSTGRES_ADDRESS={address!r} must be host:port.")
    return PostgresSettings(
        host=host,
        port=int(port),
        user=env.get("POSTGRES_USER", "ripple"),
        password=password,
        database=env.get("POSTGRES_DB", "ripple"),
    )


def head_revision(scripts: Mapping[str, str]) -> str | None:
    """The one head of migration scripts (file name -> text) that form a plain chain; None otherwise
    (no scripts, a line not understood, a branch or a merge): Alembic decides those."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for text in scripts.values():
        revision, down = REVISION.findall(text), DOWN_REVISION.search(text)
        if len(revision) != 1 or down is None or revision[0] in revisions:
            return None
        revisions.add(revision[0])
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    if len(heads) != 1 or not parents <= revisions:
        return None
    return heads.pop()


def version_table(env_py: str) -> str | None:
    """The version table migrations/env.py uses (ripple_consumer.migrations' naming); None if unnamed."""
    found = FUNCTION_NAME.findall(env_py)
    return "alembic_version_" + found[0].replace("-", "_") if len(found) == 1 else None


def expected_version(folder: Path) -> tuple[str, str] | None:
    """(version table, head revision) of the function in `folder`; None when that cannot be read."""
    try:
        if not SCRIPT_LOCATION.search((folder / "alembic.ini").read_text()):
            return None
        table = version_table((folder / MIGRATIONS / "env.py").read_text())
        scripts = {path.name: path.read_text() for path in (folder / MIGRATIONS / "versions").glob("*.py")}
    except OSError:
        return None
    head = head_revision(scripts)
    return (table, head) if table and head else None


def is_current(folder: Path, env: Mapping[str, str] = os.environ) -> bool:
    """True only when the version table holds exactly the head revision; False when unsure."""
    expected = expected_version(folder)
    if expected is None:
        return False
    table, head = expected
    try:
        settings = postgres_settings(env, "the function's knative/<name>/service.yaml")
        timeout_s = int(env_number(env, "DB_CONNECT_TIMEOUT_S", 5, minimum=1))
    except ConfigError:
        return False  # Alembic's path reads the same settings and says what to set
    import psycopg2
    from psycopg2 import sql

    try:
        connection = psycopg2.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            dbname=settings.database,
            connect_timeout=timeout_s,
        )
    except psycopg2.Error:
        return False
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(table)))
            rows = cursor.fetchall()
    except psycopg2.Error:
        return False  # no version table yet: a fresh database
    finally:
        connection.close()
    return rows == [(head,)]
