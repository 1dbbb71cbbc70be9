"""The page model of the dashboard JSON: rows, panels, units, legends (no server needed)."""

from __future__ import annotations

import json

import pytest
import yaml

from ripple_dashboard.model import (
    DashboardError,
    all_panels,
    load_dashboard_json,
    page_model,
    rows_of,
    unit_format,
)
from ripple_stack.settings import REPO_ROOT

OVERVIEW = REPO_ROOT / "infra" / "grafana" / "ripple-overview.yaml"


def overview_json() -> dict:
    document = next(
        d for d in yaml.safe_load_all(OVERVIEW.read_text()) if d and d["kind"] == "GrafanaDashboard"
    )
    return json.loads(document["spec"]["json"])


def test_every_panel_of_the_overview_is_in_the_page_once_with_its_queries():
    raw = overview_json()
    model = page_model(load_dashboard_json(OVERVIEW))
    expected = {p["id"]: p for p in raw["panels"] if p["type"] != "row"}
    panels = all_panels(model)
    assert sorted(p["id"] for p in panels) == sorted(expected)
    for panel in panels:
        source = expected[panel["id"]]
        assert panel["title"] == source["title"]
        assert [t["expr"] for t in panel["targets"]] == [t["expr"] for t in source["targets"]]
        assert panel["drawn"], f"{panel['title']}: its type {panel['type']} is not drawn"
    assert [r["title"] for r in model["rows"]] == [
        p["title"] for p in sorted(raw["panels"], key=lambda p: p["gridPos"]["y"]) if p["type"] == "row"
    ]
    assert model["refresh"] == raw["refresh"] and model["time"] == raw["time"]


def test_units_legends_and_table_overrides_come_from_the_json():
    panels = {p["id"]: p for p in all_panels(page_model(overview_json()))}
    assert panels[2]["format"] == {"kind": "short", "suffix": " req/s", "unit": "reqps"}
    assert panels[7]["format"]["kind"] == "time" and panels[7]["format"]["base"] == 1.0
    assert panels[2]["legend"] == {"show": True, "displayMode": "list", "placement": "bottom", "calcs": []}
    assert panels[7]["targets"][1]["legendFormat"] == "p99"
    table = panels[18]
    assert table["type"] == "table" and all(t["instant"] for t in table["targets"])
    assert table["exclude"] == ["Time"]
    ended = next(o for o in table["overrides"] if o["pattern"] == "Value #A")
    assert ended["displayName"] == "ended" and ended["format"]["kind"] == "datetime"


@pytest.mark.parametrize(
    ("unit", "expected"),
    [
        (None, {"kind": "short", "unit": "short"}),
        ("ms", {"kind": "time", "base": 1e-3, "unit": "ms"}),
        ("bytes", {"kind": "bytes", "step": 1024, "unit": "bytes"}),
        ("percentunit", {"kind": "percent", "factor": 100, "unit": "percentunit"}),
        ("suffix: events", {"kind": "short", "suffix": " events", "unit": "suffix: events"}),
        ("furlongs", {"kind": "short", "suffix": " furlongs", "unit": "furlongs", "unknown": True}),
    ],
)
def test_unit_format(unit, expected):
    assert unit_format(unit) == expected


def test_rows_collapsed_rows_keep_their_panels_and_loose_panels_get_an_untitled_row():
    panels = [
        {"type": "stat", "title": "top", "id": 1, "gridPos": {"x": 0, "y": 0, "w": 6, "h": 4}},
        {"type": "row", "title": "open", "id": 2, "gridPos": {"y": 4}, "collapsed": False},
        {"type": "timeseries", "title": "b", "id": 4, "gridPos": {"x": 12, "y": 5, "w": 12, "h": 8}},
        {"type": "timeseries", "title": "a", "id": 3, "gridPos": {"x": 0, "y": 5, "w": 12, "h": 8}},
        {
            "type": "row",
            "title": "closed",
            "id": 5,
            "gridPos": {"y": 13},
            "collapsed": True,
            "panels": [{"type": "piechart", "title": "pie", "id": 6, "gridPos": {"y": 14}}],
        },
    ]
    rows = rows_of(panels)
    assert [(r["title"], r["collapsed"], [p["id"] for p in r["panels"]]) for r in rows] == [
        ("", False, [1]),
        ("open", False, [3, 4]),
        ("closed", True, [6]),
    ]
    assert rows[2]["panels"][0]["drawn"] is False  # a piechart is named, not drawn


def test_load_errors_say_what_to_fix(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(DashboardError, match="RIPPLE_DASHBOARD_FILE"):
        load_dashboard_json(missing)
    other = tmp_path / "other.yaml"
    other.write_text("kind: ConfigMap\n")
    with pytest.raises(DashboardError, match="no GrafanaDashboard"):
        load_dashboard_json(other)
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: GrafanaDashboard\nspec:\n  json: '{\"panels\": ['\n")
    with pytest.raises(DashboardError, match="does not parse"):
        load_dashboard_json(broken)
