"""The production realm holds no test fixture; the local stack imports it with its fixtures on top."""

from __future__ import annotations

import json

from ripple_stack.components.keycloak import FIXTURES_DIR, REALMS_DIR, local_realms

TEST_CLIENTS = {"ripple-norole", "ripple-noaudience"}
SAMPLE_USERS = {"alice", "bob"}


def production_realms() -> dict[str, dict]:
    realms = [json.loads(path.read_text()) for path in REALMS_DIR.glob("*.json")]
    return {realm["realm"]: realm for realm in realms}


def test_the_production_realm_holds_no_fixture_and_no_secret():
    realms = production_realms()
    assert set(realms) == {"ripple"}, "a realm of the tests (intruder) belongs in fixtures/"
    realm = realms["ripple"]
    assert not realm.get("users"), "people and service accounts are added per installation"
    clients = {client["clientId"] for client in realm["clients"]}
    assert clients == {"ripple-gateway"}
    assert not clients & TEST_CLIENTS
    assert "${" not in json.dumps(realm)


def test_the_local_stack_imports_production_plus_fixtures():
    local = local_realms()
    assert set(local) == {"ripple", "intruder"}
    ripple = local["ripple"]
    clients = {client["clientId"] for client in ripple["clients"]}
    assert TEST_CLIENTS | {"ripple-gateway", "ripple-publisher", "ripple-cli"} <= clients
    assert {user["username"] for user in ripple["users"]} >= SAMPLE_USERS
    # Production settings stay as they are: roles, token lifespan, the tenant attribute.
    production = production_realms()["ripple"]
    for key in ("roles", "accessTokenLifespan", "sslRequired", "components"):
        assert ripple[key] == production[key]
    assert all(path.name.endswith("-realm.json") for path in FIXTURES_DIR.glob("*.json"))
