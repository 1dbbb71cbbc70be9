"""The Helm chart renders the repository's manifests, adapted to the release, and they stay valid."""

from __future__ import annotations

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


def test_realm_import_carries_the_realm_file_without_secrets(chart):
    documents = render(chart, "keycloak.importRealm=true")
    (realm_import,) = [d for d in documents if d["kind"] == "KeycloakRealmImport"]
    assert realm_import["spec"]["realm"]["realm"] == "ripple"
    assert set(realm_import["spec"]["placeholders"]) == {
        "RIPPLE_PUBLISHER_CLIENT_SECRET",
        "RIPPLE_TEST_CLIENT_SECRET",
        "RIPPLE_TEST_USER_PASSWORD",
    }
