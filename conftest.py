"""Fixtures shared by every test: the live local stack (integration tests only).

Beside the stack: `database` (an engine on its PostgreSQL), `http_sink` (a plain HTTP server that
records what is posted to it) and `LiveStack.function_environment` (a function's folder with its
database settings pointing at the stack), which the function, stand-in and round-trip tests all
need alike.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from keycloak import KeycloakOpenID

from ripple_stack.secrets import load_secrets
from ripple_stack.settings import Settings, load_settings
from ripple_stack.stack import Stack


@dataclass
class LiveStack:
    """Addresses, secrets and controls of the running local stack."""

    settings: Settings
    secrets: dict[str, str]
    _stack: Stack = field(repr=False)

    @property
    def kafka_bootstrap(self) -> str:
        return self.settings.kafka_bootstrap

    @property
    def keycloak_url(self) -> str:
        return self.settings.keycloak_url

    @property
    def realm(self) -> str:
        return self.settings.keycloak_realm

    @property
    def issuer(self) -> str:
        return f"{self.keycloak_url}/realms/{self.realm}"

    @property
    def gateway_url(self) -> str:
        return self.settings.gateway_url

    @property
    def nginx_url(self) -> str:
        return self.settings.nginx_url

    @property
    def flink_rest_url(self) -> str:
        return self.settings.flink_rest_url

    @property
    def prometheus_url(self) -> str:
        return self.settings.prometheus_url

    @property
    def pushgateway_url(self) -> str:
        return self.settings.pushgateway_url

    @property
    def postgres_url(self) -> str:
        """SQLAlchemy URL of the ripple database, password included."""
        return self.settings.postgres_url(self.secrets["RIPPLE_POSTGRES_PASSWORD"])

    @property
    def postgres_env(self) -> dict[str, str]:
        """The variables a consumer function reads to reach the stack's PostgreSQL."""
        return {
            "POSTGRES_ADDRESS": f"{self.settings.host}:{self.settings.ports['postgres']}",
            "POSTGRES_PASSWORD": self.secrets["RIPPLE_POSTGRES_PASSWORD"],
        }

    @contextmanager
    def function_environment(self, function_dir: Path, **extra: str) -> Iterator[None]:
        """In a function's folder, with `postgres_env` and `extra` set, for the with-block."""
        patch = pytest.MonkeyPatch()
        for name, value in {**self.postgres_env, **extra}.items():
            patch.setenv(name, value)
        patch.chdir(function_dir)
        try:
            yield
        finally:
            patch.undo()

    def stop(self, component: str) -> None:
        self._stack.stop(component)

    def start(self, component: str) -> None:
        """Start a component and wait until it is ready again."""
        self._stack.start(component)

    @contextmanager
    def stopped(self, component: str) -> Iterator[None]:
        """Keep a component down for the body of the with-block; it is back afterwards."""
        self.stop(component)
        try:
            yield
        finally:
            self.start(component)

    def client_token(
        self, client_id: str = "ripple-publisher", secret: str | None = None, realm: str | None = None
    ) -> str:
        """An access token from the client-credentials grant."""
        if secret is None:
            secret = self.secrets[
                "RIPPLE_PUBLISHER_CLIENT_SECRET"
                if client_id == "ripple-publisher"
                else "RIPPLE_TEST_CLIENT_SECRET"
            ]
        openid = KeycloakOpenID(
            server_url=self.keycloak_url,
            realm_name=realm or self.realm,
            client_id=client_id,
            client_secret_key=secret,
        )
        return openid.token(grant_type="client_credentials")["access_token"]

    def user_token(self, username: str = "alice") -> str:
        """An access token of a sample user (alice: tenant acme; bob: tenant globex)."""
        openid = KeycloakOpenID(server_url=self.keycloak_url, realm_name=self.realm, client_id="ripple-cli")
        return openid.token(username, self.secrets["RIPPLE_TEST_USER_PASSWORD"])["access_token"]


def _say(message: str) -> None:
    print(message, file=sys.stderr)


@pytest.fixture(scope="session")
def stack() -> LiveStack:
    """The running local stack; started with `python -m ripple_stack up` if it is not up."""
    settings = load_settings()
    live = Stack(settings, _say)
    if not all(row.ready for row in live.status()):
        subprocess.run([sys.executable, "-m", "ripple_stack", "up"], check=True)
    return LiveStack(settings=settings, secrets=load_secrets(settings), _stack=live)


@pytest.fixture(scope="module")
def database(stack: LiveStack) -> Iterator[sa.Engine]:
    """An engine on the stack's ripple database (pre-ping: a test may restart PostgreSQL)."""
    engine = sa.create_engine(stack.postgres_url, pool_pre_ping=True)
    yield engine
    engine.dispose()


Posted = tuple[list[tuple[str, str]], bytes]


@pytest.fixture(scope="module")
def http_sink() -> Iterator[tuple[str, list[Posted]]]:
    """A plain HTTP server on 127.0.0.1 answering 202: its URL and what was posted to it,
    as (lower-cased header pairs, body). Module-scoped: clear the list where a test counts."""
    received: list[Posted] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(([(k.lower(), v) for k, v in self.headers.items()], body))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", received
    server.shutdown()
    server.server_close()
