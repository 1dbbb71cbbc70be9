"""The Helm chart renders the repository's manifests, adapted to the release, and they stay valid."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ripple_stack.settings import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "infra" / "helm"))
from build_chart import assemble, manifest_files
from test_manifests import schema_problem

# The pinned helm that `make helm` builds; any helm on PATH otherwise.
PINNED_HELM = REPO_ROOT / ".ripple" / "dist" / "bin" / "helm"
HELM = str(PINNED_HELM) if PINNED_HELM.exists() else shutil.which("helm") or str(PINNED_HELM)
KEYCLOAK_FIXTURES = REPO_ROOT / "infra" / "keycloak" / "fixtures"


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    if not Path(HELM).exists():
        pytest.skip("helm is missing: `make helm` installs it with go install")
    return assemble(tmp_path_factory.mktemp("chart"))


def render(chart: Path, *values: str) -> list[dict]:
    arguments = [item for value in values for item in ("--set", value)]
    result = subprocess.run(
        [HELM, "template", "shop", str(chart), "--namespace", "shop", *arguments],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def test_lint_passes(chart):
    result = subprocess.run([HELM, "lint", str(chart)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_manifest_is_rendered_once_into_the_release_namespace(chart):
    documents = render(chart)
    expected = sum(
        1
        for path in manifest_files()
        for document in yaml.safe_load_all(path.read_text())
        if isinstance(document, dict) and "kind" in document
    )
    assert len(documents) == expected
    # A manifest without a namespace is installed into the release's namespace by Helm.
    assert {document["metadata"].get("namespace", "shop") for document in documents} == {"shop"}
    text = yaml.safe_dump_all(documents)
    assert ".ripple.svc" not in text


def test_rendered_manifests_match_their_schemas(chart):
    documents = render(chart, "keycloak.importRealm=true", "secrets.postgresPassword=example")
    problems = []
    for index, document in enumerate(documents):
        where = f"{document['kind']}/{document['metadata']['name']}#{index}"
        try:
            problem = schema_problem(where, document)
        except pytest.skip.Exception:
            continue
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_parts_can_be_switched_off_and_images_moved(chart):
    documents = render(chart, "functions.gateway=false", "infra.kafka=false", "image.prefix=quay.io/acme")
    names = {(document["kind"], document["metadata"]["name"]) for document in documents}
    assert ("Service", "gateway") not in names
    assert not any(kind.startswith("Kafka") and kind != "KafkaSource" for kind, _ in names)
    images = [
        container["image"]
        for document in documents
        if document["kind"] == "Service" and document["apiVersion"].startswith("serving.knative.dev")
        for container in document["spec"]["template"]["spec"]["containers"]
    ]
    assert images and all(image.startswith("quay.io/acme/") for image in images)


def test_realm_import_carries_the_production_realm_without_secrets(chart):
    documents = render(chart, "keycloak.importRealm=true")
    (realm_import,) = [d for d in documents if d["kind"] == "KeycloakRealmImport"]
    realm = realm_import["spec"]["realm"]
    assert realm["realm"] == "ripple"
    assert {role["name"] for role in realm["roles"]["realm"]} >= {"orders.publish", "aggregates.read"}
    assert "ripple-gateway" in {client["clientId"] for client in realm["clients"]}
    assert "placeholders" not in realm_import["spec"]
    assert "${" not in json.dumps(realm), "the production realm needs no secret"


def test_no_test_fixture_reaches_what_the_chart_renders(chart):
    """The local stack's Keycloak fixtures (test clients, sample users, extra realms) stay local."""
    fixtures = [json.loads(path.read_text()) for path in sorted(KEYCLOAK_FIXTURES.glob("*.json"))]
    # The auth tests' clients and the sample people, whichever file holds them.
    clients = {"ripple-norole", "ripple-noaudience"}
    clients |= {client["clientId"] for realm in fixtures for client in realm.get("clients", [])}
    users = {"alice", "bob"} | {user["username"] for realm in fixtures for user in realm.get("users", [])}
    realms = {realm["realm"] for realm in fixtures} - {"ripple"}
    documents = render(chart, "keycloak.importRealm=true", "secrets.postgresPassword=example")
    rendered = [d for d in documents if d["kind"] == "KeycloakRealmImport"]
    assert rendered, "the realm import was not rendered"
    for document in rendered:
        realm = document["spec"]["realm"]
        assert realm["realm"] not in realms
        assert not clients & {client["clientId"] for client in realm.get("clients", [])}
        assert not users & {user["username"] for user in realm.get("users", [])}
    # Nowhere else either (a ConfigMap or Secret carrying a realm file, say).
    text = yaml.safe_dump_all(documents)
    leaked = sorted(name for name in clients | users if re.search(rf"\b{re.escape(name)}\b", text))
    assert not leaked, f"test fixtures in the chart: {leaked}"
