"""Grafana dashboard JSON -> the page model the browser draws (pure functions, no I/O but reading).

The dashboard is read from the GrafanaDashboard resource the cluster applies
(`infra/grafana/ripple-overview.yaml`, its `spec.json`), so the page and the cluster's Grafana show
the same panels and queries. Grafana's flat panel list, where a `row` panel starts a row that runs
until the next one (or carries its panels inside when collapsed), becomes a list of rows of panels;
each panel keeps what the page needs: its kind, grid position, unit, legend, overrides, thresholds
and targets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .variables import variable_model

# Panel kinds the page draws; any other kind is shown as a box naming it (see README "Limits").
DRAWN_KINDS = frozenset({"timeseries", "graph", "stat", "gauge", "bargauge", "table", "text"})

# Grafana unit id -> how the page formats a value of it. kind: short (SI steps k, M, G ...),
# time (value in `base` seconds), bytes (IEC 1024 or SI 1000 steps), percent (value x factor),
# datetime (milliseconds since the epoch). suffix is appended after the scaled number.
UNITS: dict[str, dict[str, Any]] = {
    "none": {"kind": "short"},
    "short": {"kind": "short"},
    "reqps": {"kind": "short", "suffix": " req/s"},
    "rps": {"kind": "short", "suffix": " rd/s"},
    "wps": {"kind": "short", "suffix": " wr/s"},
    "iops": {"kind": "short", "suffix": " io/s"},
    "ops": {"kind": "short", "suffix": " ops/s"},
    "opm": {"kind": "short", "suffix": " ops/min"},
    "cps": {"kind": "short", "suffix": " c/s"},
    "ns": {"kind": "time", "base": 1e-9},
    "µs": {"kind": "time", "base": 1e-6},
    "us": {"kind": "time", "base": 1e-6},
    "ms": {"kind": "time", "base": 1e-3},
    "s": {"kind": "time", "base": 1.0},
    "m": {"kind": "time", "base": 60.0},
    "h": {"kind": "time", "base": 3600.0},
    "d": {"kind": "time", "base": 86400.0},
    "bytes": {"kind": "bytes", "step": 1024},
    "decbytes": {"kind": "bytes", "step": 1000},
    "Bps": {"kind": "bytes", "step": 1000, "suffix": "/s"},
    "binBps": {"kind": "bytes", "step": 1024, "suffix": "/s"},
    "percent": {"kind": "percent", "factor": 1},
    "percentunit": {"kind": "percent", "factor": 100},
    "dateTimeAsIso": {"kind": "datetime"},
    "dateTimeAsSystem": {"kind": "datetime"},
    "dateTimeAsLocal": {"kind": "datetime"},
    "bool": {"kind": "short"},
}


class DashboardError(Exception):
    """The dashboard file cannot be read as a Grafana dashboard; the message says what to fix."""


def unit_format(unit: str | None) -> dict[str, Any]:
    """How the page formats values of a Grafana unit; unknown ids keep their name as a suffix."""
    if not unit:
        return {"kind": "short", "unit": "short"}
    if unit in UNITS:
        return {**UNITS[unit], "unit": unit}
    # Grafana's custom units: "suffix:<text>", "prefix:<text>".
    for side in ("suffix", "prefix"):
        if unit.startswith(f"{side}:"):
            return {"kind": "short", side: unit[len(side) + 1 :], "unit": unit}
    return {"kind": "short", "suffix": f" {unit}", "unit": unit, "unknown": True}


def load_dashboard_json(path: Path) -> dict[str, Any]:
    """The dashboard JSON of the first GrafanaDashboard resource in a YAML file (or a plain .json)."""
    try:
        text = path.read_text()
    except OSError as error:
        raise DashboardError(
            f"cannot read the dashboard {path}: {error.strerror}; set RIPPLE_DASHBOARD_FILE"
        ) from None
    if path.suffix == ".json":
        return _parse_json(text, path)
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise DashboardError(f"{path} is not valid YAML: {error}") from None
    for document in documents:
        if isinstance(document, dict) and document.get("kind") == "GrafanaDashboard":
            raw = (document.get("spec") or {}).get("json")
            if not isinstance(raw, str):
                raise DashboardError(f"{path}: the GrafanaDashboard has no spec.json string to draw")
            return _parse_json(raw, path)
    raise DashboardError(f"{path} holds no GrafanaDashboard resource (kind: GrafanaDashboard)")


def _parse_json(text: str, path: Path) -> dict[str, Any]:
    try:
        dashboard = json.loads(text)
    except ValueError as error:
        raise DashboardError(f"the dashboard JSON in {path} does not parse: {error}") from None
    if not isinstance(dashboard, dict) or not isinstance(dashboard.get("panels"), list):
        raise DashboardError(f"the dashboard JSON in {path} has no `panels` list")
    return dashboard


def _target(target: dict[str, Any]) -> dict[str, Any]:
    return {
        "refId": target.get("refId", "A"),
        "expr": target.get("expr", ""),
        "legendFormat": target.get("legendFormat", ""),
        # Tables of instant values (format "table" with instant) are one query, not a range.
        "instant": bool(target.get("instant")) and not target.get("range", False),
        "format": target.get("format", "time_series"),
        "hide": bool(target.get("hide", False)),
    }


def _legend(panel: dict[str, Any]) -> dict[str, Any]:
    legend = (panel.get("options") or {}).get("legend") or {}
    mode = legend.get("displayMode", "list")
    return {
        "show": legend.get("showLegend", True) and mode != "hidden",
        "displayMode": mode,
        "placement": legend.get("placement", "bottom"),
        "calcs": list(legend.get("calcs") or []),
    }


def _overrides(field_config: dict[str, Any]) -> list[dict[str, Any]]:
    """Overrides the page applies: unit and display name of a field matched by name or regex."""
    result = []
    for override in field_config.get("overrides") or []:
        matcher = override.get("matcher") or {}
        if matcher.get("id") not in ("byName", "byRegexp"):
            continue
        entry: dict[str, Any] = {"matcher": matcher.get("id"), "pattern": matcher.get("options", "")}
        for prop in override.get("properties") or []:
            if prop.get("id") == "unit":
                entry["format"] = unit_format(prop.get("value"))
            elif prop.get("id") == "displayName":
                entry["displayName"] = prop.get("value")
        result.append(entry)
    return result


def _thresholds(defaults: dict[str, Any]) -> list[dict[str, Any]]:
    steps = ((defaults.get("thresholds") or {}).get("steps")) or []
    return [{"value": step.get("value"), "color": step.get("color", "green")} for step in steps]


def panel_model(panel: dict[str, Any]) -> dict[str, Any]:
    """What the page needs of one Grafana panel."""
    field_config = panel.get("fieldConfig") or {}
    defaults = field_config.get("defaults") or {}
    kind = panel.get("type", "")
    options = panel.get("options") or {}
    transformations = panel.get("transformations") or []
    organize = next((t.get("options") or {} for t in transformations if t.get("id") == "organize"), {})
    return {
        "id": panel.get("id"),
        "title": panel.get("title", ""),
        "description": panel.get("description", ""),
        "type": kind,
        "drawn": kind in DRAWN_KINDS,
        "gridPos": {
            key: int((panel.get("gridPos") or {}).get(key, default))
            for key, default in (("x", 0), ("y", 0), ("w", 12), ("h", 8))
        },
        "format": unit_format(defaults.get("unit")),
        "decimals": defaults.get("decimals"),
        "min": defaults.get("min"),
        "max": defaults.get("max"),
        "thresholds": _thresholds(defaults),
        "overrides": _overrides(field_config),
        "legend": _legend(panel),
        "reduce": list(((options.get("reduceOptions") or {}).get("calcs")) or ["lastNotNull"]),
        "exclude": sorted(name for name, hidden in (organize.get("excludeByName") or {}).items() if hidden),
        "rename": dict(organize.get("renameByName") or {}),
        "content": options.get("content", ""),
        "targets": [_target(t) for t in panel.get("targets") or [] if not t.get("hide")],
    }


def rows_of(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grafana's flat panel list as rows: a row panel starts a row; a collapsed one holds its panels."""
    rows: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for panel in sorted(
        panels, key=lambda p: ((p.get("gridPos") or {}).get("y", 0), (p.get("gridPos") or {}).get("x", 0))
    ):
        if panel.get("type") == "row":
            current = {
                "id": panel.get("id"),
                "title": panel.get("title", ""),
                "collapsed": bool(panel.get("collapsed", False)),
                "panels": [panel_model(p) for p in panel.get("panels") or []],
            }
            rows.append(current)
            continue
        if current is None:  # panels above the first row: a row without a title
            current = {"id": None, "title": "", "collapsed": False, "panels": []}
            rows.append(current)
        current["panels"].append(panel_model(panel))
    return rows


def page_model(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The whole page: title, default time range and refresh, template variables, rows of panels."""
    time_range = dashboard.get("time") or {}
    return {
        "uid": dashboard.get("uid", ""),
        "title": dashboard.get("title", "dashboard"),
        "timezone": dashboard.get("timezone", "browser"),
        "refresh": dashboard.get("refresh") or "",
        "time": {"from": time_range.get("from", "now-1h"), "to": time_range.get("to", "now")},
        "variables": [variable_model(v) for v in (dashboard.get("templating") or {}).get("list") or []],
        "rows": rows_of(dashboard["panels"]),
    }


def all_panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel of a page model, row by row."""
    return [panel for row in model["rows"] for panel in row["panels"]]
