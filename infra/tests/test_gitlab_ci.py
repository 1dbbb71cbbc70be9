""".gitlab-ci.yml, checked offline: GitLab's own CI schema, the stage order, make-only jobs, no secrets.

The schema is GitLab's (infra/schemas/gitlab/ci.json, see infra/schemas/README.md); GitLab's CI
lint API would need a GitLab instance, so this is the offline half of that check.
"""

from __future__ import annotations

import json
import re
import subprocess

import jsonschema
import pytest
import yaml

from ripple_stack.settings import REPO_ROOT

PIPELINE = REPO_ROOT / ".gitlab-ci.yml"
SCHEMA = REPO_ROOT / "infra" / "schemas" / "gitlab" / "ci.json"
# Top-level keys that are not jobs (GitLab's reserved keywords).
KEYWORDS = {"stages", "variables", "default", "include", "workflow", "image", "services", "cache"}
STAGES = ["lint", "test", "build", "push", "package", "deploy", "smoke", "production"]


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return yaml.safe_load(PIPELINE.read_text())


def jobs(pipeline: dict) -> dict[str, dict]:
    return {name: job for name, job in pipeline.items() if name not in KEYWORDS and not name.startswith(".")}


def test_the_pipeline_matches_gitlabs_ci_schema(pipeline):
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(pipeline)]
    assert not errors, "\n".join(errors)


def test_the_schema_rejects_a_broken_pipeline():
    """The schema is strict enough to catch a misspelt keyword (it would be useless otherwise)."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = {"stages": ["test"], "unit": {"stage": "test", "scirpt": ["make test"]}}
    assert list(validator.iter_errors(broken))


def test_stages_run_from_lint_to_a_manual_production_promotion(pipeline):
    assert pipeline["stages"] == STAGES
    used = {job["stage"] for job in jobs(pipeline).values()}
    assert used == set(STAGES), f"stages without a job: {set(STAGES) - used}"
    production = [job for job in jobs(pipeline).values() if job["stage"] == "production"]
    assert production and all(
        any(rule.get("when") == "manual" for rule in job.get("rules", [])) for job in production
    ), "production must be promoted by hand"


def make_targets() -> set[str]:
    database = subprocess.run(
        ["make", "-pRrq", "-f", "Makefile", ":"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    return set(re.findall(r"^([a-zA-Z0-9][\w.-]*):", database, re.MULTILINE))


def test_every_job_only_calls_make_targets_that_exist(pipeline):
    targets = make_targets()
    for name, job in jobs(pipeline).items():
        for line in job["script"]:
            words = line.split()
            assert words[0] == "make", f"{name}: `{line}` is not a make call (the pipeline only calls make)"
            missing = [w for w in words[1:] if "=" not in w and not w.startswith("-") and w not in targets]
            assert not missing, f"{name}: make targets {missing} do not exist in the Makefile"


def test_the_pipeline_holds_no_secret(pipeline):
    """Secret-looking variables only reference CI variables ($NAME), never carry a value."""
    secretive = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
    scopes = [pipeline.get("variables", {})] + [job.get("variables", {}) for job in jobs(pipeline).values()]
    for variables in scopes:
        for name, value in variables.items():
            if secretive.search(name):
                assert re.fullmatch(r"\$\{?\w+\}?", str(value)), f"{name} carries a literal value"
