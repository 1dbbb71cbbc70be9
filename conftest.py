"""Fixtures shared by every test: the live local stack (integration tests only)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
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
