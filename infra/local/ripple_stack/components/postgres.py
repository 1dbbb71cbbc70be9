"""PostgreSQL from the Debian package, as a project-owned cluster in the state directory."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from ..component import (
    Component,
    Program,
    Say,
    let_reach,
    manifest_cpu,
    manifest_document,
    require_file,
    run,
    running_as_root,
)
from ..settings import REPO_ROOT, Settings

# Debian's packages put the server outside PATH, one directory per major version (Debian 12
# ships 15). The newest installed one is used; its data directory records the version, and a
# cluster made by another major version is refused by the server with a clear message.
_INSTALLED = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
POSTGRES_BIN = _INSTALLED[-1].parent if _INSTALLED else Path("/usr/lib/postgresql/15/bin")
# The system account Debian's package creates; the server refuses to run as root.
POSTGRES_OS_USER = "postgres"
CLUSTER_MANIFEST = REPO_ROOT / "infra" / "postgres" / "cluster.yaml"


def server_parameters(manifest: Path = CLUSTER_MANIFEST) -> list[str]:
    """The manifest's spec.postgresql.parameters as `-c name=value` arguments (max_connections:
    room for every function's pool), so the local server runs with what CloudNativePG's does."""
    spec = manifest_document(manifest, "Cluster").get("spec") or {}
    parameters = (spec.get("postgresql") or {}).get("parameters") or {}
    return [argument for name, value in parameters.items() for argument in ("-c", f"{name}={value}")]


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_OS_USER, "--", *command] if running_as_root() else command


class Postgres(Component):
    name = "postgres"
    description = "PostgreSQL"

    def install(self, settings: Settings, say: Say) -> None:
        require_file(POSTGRES_BIN / "postgres", "postgresql", "PostgreSQL")

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        data, sockets = self.data_dir(settings), self.run_dir(settings)
        sockets.mkdir(parents=True, exist_ok=True)
        if running_as_root():
            shutil.chown(sockets, POSTGRES_OS_USER)
        if (data / "PG_VERSION").exists():
            return
        say("initialising the PostgreSQL cluster (once)…")
        data.mkdir(parents=True, exist_ok=True)
        password_file = settings.run_dir / "postgres-initdb-password"
        password_file.write_text(secrets["RIPPLE_POSTGRES_PASSWORD"] + "\n")
        if running_as_root():
            for path in (data, password_file):
                shutil.chown(path, POSTGRES_OS_USER)
        let_reach(POSTGRES_OS_USER, settings, data, sockets, password_file)
        try:
            run(
                _as_server_user(
                    [
                        str(POSTGRES_BIN / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        settings.postgres_user,
                        "--auth=scram-sha-256",
                        f"--pwfile={password_file}",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ]
                )
            )
        finally:
            password_file.unlink(missing_ok=True)

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            Program(
                name="postgres",
                cpu=manifest_cpu(CLUSTER_MANIFEST, "Cluster", "spec", "resources"),
                command=[
                    str(POSTGRES_BIN / "postgres"),
                    "-D",
                    str(self.data_dir(settings)),
                    "-p",
                    str(settings.ports["postgres"]),
                    "-c",
                    f"listen_addresses={settings.host}",
                    "-c",
                    f"unix_socket_directories={self.run_dir(settings)}",
                    *server_parameters(),
                ],
                run_as_when_root=POSTGRES_OS_USER,
                # SIGINT is PostgreSQL's "fast" shutdown: clients are cut, data is safe.
                stop_signal="INT",
            )
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        result = subprocess.run(
            [str(POSTGRES_BIN / "pg_isready"), "-h", settings.host, "-p", str(settings.ports["postgres"])],
            capture_output=True,
            text=True,
        )
        return None if result.returncode == 0 else result.stdout.strip() or "not accepting connections"

    def after_ready(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        import psycopg2

        connection = psycopg2.connect(
            host=settings.host,
            port=settings.ports["postgres"],
            user=settings.postgres_user,
            password=secrets["RIPPLE_POSTGRES_PASSWORD"],
            dbname="postgres",
        )
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.postgres_database,))
                if cursor.fetchone() is None:
                    say(f"creating database {settings.postgres_database}")
                    cursor.execute(f'CREATE DATABASE "{settings.postgres_database}"')
        finally:
            connection.close()

    def address(self, settings: Settings) -> str:
        return f"postgresql://{settings.host}:{settings.ports['postgres']}/{settings.postgres_database}"
