"""Every cluster manifest in knative/ and infra/ validates against its published schema.

The custom resources' JSON schemas come from infra/schemas (offline copies of the CRDs vendored into
the repository, so a clone anywhere validates with nothing beside it), the
Kubernetes core kinds' from the kubernetes-validate package; a kind without a schema is reported,
so nothing is silently left unchecked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from knative_standins.kafkasource import manifest as kafkasource
from ripple_stack.settings import REPO_ROOT

SCHEMAS = REPO_ROOT / "infra" / "schemas" / "crds"
MANIFEST_DIRS = [REPO_ROOT / "knative", REPO_ROOT / "infra"]
# Folders of infra/ that hold no cluster manifests (vendored schemas, test data).
NOT_MANIFESTS = {"schemas"}
# Kinds whose CRD publishes no schema (see infra/schemas/README.md); their fields are checked
# by the project's own strict model where the local runner reads them.
NO_PUBLISHED_SCHEMA = {
    # Checked below by the local dispatcher's strict model instead (unknown fields are errors).
    ("sources.knative.dev", "KafkaSource"),
    # Built into OpenShift, not a CRD: no schema is published outside a cluster.
    ("route.openshift.io", "Route"),
}
# API groups of Kubernetes itself ("" is the core group of ConfigMap, Service, ...).
KUBERNETES_GROUPS = {
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
}
# The Kubernetes release of the OpenShift version ripple targets (OpenShift 4.20).
KUBERNETES_VERSION = "1.33.0"


def manifests() -> list[tuple[str, dict]]:
    found = []
    for directory in MANIFEST_DIRS:
        for path in sorted(directory.rglob("*.yaml")):
            if "templates" in path.parts:  # Helm templates are rendered before validation
                continue
            if NOT_MANIFESTS.intersection(path.relative_to(REPO_ROOT).parts[1:2]):
                continue
            for index, document in enumerate(yaml.safe_load_all(path.read_text())):
                if isinstance(document, dict) and "apiVersion" in document and "kind" in document:
                    found.append((f"{path.relative_to(REPO_ROOT)}#{index}", document))
    return found


def schema_for(document: dict) -> Path | None:
    group, _, version = document["apiVersion"].rpartition("/")
    return SCHEMAS / group / f"{document['kind'].lower()}_{version}.json" if group else None


def schema_problem(where: str, document: dict) -> str | None:
    """Why the document does not match its schema; None when it does. Skips kinds without one."""
    group = document["apiVersion"].rpartition("/")[0]
    if (group, document["kind"]) == ("sources.knative.dev", "KafkaSource"):
        try:
            kafkasource.parse(document, Path(where))
        except kafkasource.ManifestError as error:
            return str(error)
        return None
    if (group, document["kind"]) in NO_PUBLISHED_SCHEMA:
        pytest.skip(f"{document['kind']} has no published schema")
    if group in KUBERNETES_GROUPS:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            return f"{where}: {'/'.join(map(str, error.path))}: {error.message}"
        return None
    schema_path = schema_for(document)
    if schema_path is None or not schema_path.exists():
        return f"{where}: no schema at {schema_path}"
    schema = json.loads(schema_path.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    if errors:
        return f"{where}: " + "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)
    return None


@pytest.mark.parametrize(("where", "document"), manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_matches_its_schema(where, document):
    problem = schema_problem(where, document)
    assert problem is None, problem


def test_the_repository_reads_nothing_beside_itself():
    """A clone anywhere passes its own tests: no file reads the shared folder beside the checkout."""
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.split()
    # Written as two pieces so that this file does not find itself.
    needles = ("../" + "shared", 'parent / "' + 'shared"')
    offenders = [
        name
        for name in tracked
        if name.endswith((".py", ".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini", "Makefile", "run"))
        and (REPO_ROOT / name).is_file()
        and any(needle in (REPO_ROOT / name).read_text(errors="replace") for needle in needles)
    ]
    assert not offenders, f"these read a folder beside the checkout, which a clone has not: {offenders}"


def test_every_vendored_schema_names_its_source():
    """Each file under infra/schemas is listed in its README (source, commit, licence)."""
    folder = REPO_ROOT / "infra" / "schemas"
    readme = (folder / "README.md").read_text()
    unlisted = [
        str(path.relative_to(folder))
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "README.md" and not path.name.startswith(("LICENSE", "NOTICE"))
        if path.name not in readme
    ]
    assert not unlisted, f"add these to infra/schemas/README.md with source and licence: {unlisted}"
