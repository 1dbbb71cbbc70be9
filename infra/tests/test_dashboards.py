"""Every query of the Grafana dashboards is valid PromQL for the stack's real Prometheus."""

from __future__ import annotations

import json

import pytest
import requests
import yaml

from ripple_stack.settings import REPO_ROOT

DASHBOARDS = sorted((REPO_ROOT / "infra" / "grafana").glob("*.yaml"))


def dashboard_queries() -> list[tuple[str, str]]:
    queries = []
    for path in DASHBOARDS:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "GrafanaDashboard":
                continue
            dashboard = json.loads(document["spec"]["json"])
            for panel in dashboard["panels"]:
                for target in panel.get("targets", []):
                    queries.append((f"{path.name}: {panel['title']}", target["expr"]))
    return queries


def test_dashboards_have_unique_panel_ids():
    for path in DASHBOARDS:
        for document in yaml.safe_load_all(path.read_text()):
            ids = [panel["id"] for panel in json.loads(document["spec"]["json"])["panels"]]
            assert len(ids) == len(set(ids)), path


@pytest.mark.integration
@pytest.mark.parametrize(("panel", "expr"), dashboard_queries(), ids=lambda value: value[:60])
def test_panel_query_is_valid_promql(stack, panel, expr):
    response = requests.get(f"{stack.prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, f"{panel}: {response.text}"
    assert response.json()["status"] == "success"
