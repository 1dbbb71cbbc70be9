"""ripple_consumer.serve: the consumers' container command stops, saying why, when it cannot migrate.

The successful path is what every consumer of the live stack runs (knative/<name>/service.yaml),
so the functions' own integration tests exercise it; these check that a start which cannot apply
its schema never serves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

FUNCTIONS = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "ripple_consumer.serve", "--target=handle", "--source=main.py"]
    return subprocess.run(
        command,
        cwd=folder,
        env={**os.environ, **env, "PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_outside_a_function_folder_it_says_where_to_run(tmp_path):
    result = serve(tmp_path, {})
    assert result.returncode != 0
    assert "alembic.ini" in result.stderr and "function's folder" in result.stderr


@pytest.mark.integration
def test_a_migration_that_cannot_connect_stops_the_start(stack):
    url = make_url(stack.postgres_url)
    address = f"{url.host}:{url.port}"
    result = serve(
        FUNCTIONS / "notifier", {"POSTGRES_ADDRESS": address, "POSTGRES_PASSWORD": "not-the-password"}
    )
    assert result.returncode != 0
    assert "password authentication failed" in result.stderr
    assert "Listening at" not in result.stderr
