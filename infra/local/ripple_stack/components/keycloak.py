"""Keycloak in development mode, from the Maven Central distribution, with ripple's realms.

The realm a cluster imports (infra/keycloak/realms/) holds only what production needs: roles, the
gateway's audience client, the tenant attribute. The local stack adds its test fixtures on top
(infra/keycloak/fixtures/: sample users, the publisher and CLI clients, the clients the auth tests
need, a second realm for forged issuers), merged here into the one file per realm that Keycloak
imports, because Keycloak skips a second import file of a realm it already has.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

from ..component import Component, Program, Say, ScrapeTarget, http_status, maven_fetch
from ..settings import REPO_ROOT, Settings

POM = REPO_ROOT / "infra" / "keycloak" / "pom.xml"
# Realm exports imported at start: production realms, then the local fixtures merged into them.
# Secrets in them are ${ENV} placeholders that Keycloak resolves from its environment, so the
# files hold none.
REALMS_DIR = REPO_ROOT / "infra" / "keycloak" / "realms"
FIXTURES_DIR = REPO_ROOT / "infra" / "keycloak" / "fixtures"


def local_realms() -> dict[str, dict]:
    """Realm name -> the realm the local stack imports: production realm plus the fixtures.

    Lists (clients, users, roles) of a fixtures file are appended to the production realm's;
    a fixtures file of a realm that production does not have is a realm of its own."""
    realms: dict[str, dict] = {}
    for path in [*sorted(REALMS_DIR.glob("*.json")), *sorted(FIXTURES_DIR.glob("*.json"))]:
        realm = json.loads(path.read_text())
        realms[realm["realm"]] = merge(realms.get(realm["realm"], {}), realm)
    return realms


def merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = [*merged[key], *value]
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Keycloak(Component):
    name = "keycloak"
    description = "Keycloak (dev mode)"

    def home(self, settings: Settings) -> Path:
        unpacked = settings.dist_dir / "keycloak"
        return next(unpacked.glob("keycloak-*"), unpacked / "keycloak-missing")

    def install(self, settings: Settings, say: Say) -> None:
        maven_fetch(POM, settings.dist_dir / "keycloak", say, "Keycloak")

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        # Keycloak keeps its dev database under <home>/data; point that at the state directory
        # so `make clean` wipes it and a new distribution keeps it.
        state = self.data_dir(settings)
        state.mkdir(parents=True, exist_ok=True)
        link = self.home(settings) / "data"
        if link.is_symlink() and link.resolve() != state.resolve():
            link.unlink()
        elif link.exists() and not link.is_symlink():
            shutil.rmtree(link)
        if not link.exists():
            link.symlink_to(state, target_is_directory=True)
        imports = state / "import"
        if imports.exists():
            shutil.rmtree(imports)
        imports.mkdir()
        # Keycloak imports a realm it does not have yet and skips one it has (its dev database
        # under data/keycloak keeps realms across restarts; `make clean` starts afresh).
        for name, realm in local_realms().items():
            (imports / f"{name}-realm.json").write_text(json.dumps(realm, indent=2))

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        host = settings.host
        return [
            Program(
                name="keycloak",
                command=[
                    str(self.home(settings) / "bin" / "kc.sh"),
                    "start-dev",
                    f"--http-host={host}",
                    f"--http-port={settings.ports['keycloak']}",
                    f"--http-management-host={host}",
                    f"--http-management-port={settings.ports['keycloak_management']}",
                    # A fixed issuer: tokens name the same `iss` whichever address asked.
                    f"--hostname={settings.keycloak_url}",
                    "--health-enabled=true",
                    "--metrics-enabled=true",
                    "--import-realm",
                ],
                env={
                    "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
                    "KC_BOOTSTRAP_ADMIN_PASSWORD": secrets["RIPPLE_KEYCLOAK_ADMIN_PASSWORD"],
                    **{
                        name: secrets[name]
                        for name in (
                            "RIPPLE_PUBLISHER_CLIENT_SECRET",
                            "RIPPLE_TEST_CLIENT_SECRET",
                            "RIPPLE_TEST_USER_PASSWORD",
                        )
                    },
                },
            )
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        health = f"http://{settings.host}:{settings.ports['keycloak_management']}/health/ready"
        if http_status(health) != 200:
            return "health/ready not UP"
        realm = f"{settings.keycloak_url}/realms/{settings.keycloak_realm}/.well-known/openid-configuration"
        if http_status(realm) != 200:
            return f"realm {settings.keycloak_realm} not served"
        return None

    def address(self, settings: Settings) -> str:
        return settings.keycloak_url

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        return [ScrapeTarget("keycloak", f"{settings.host}:{settings.ports['keycloak_management']}")]
