"""Grafana template variables: their definitions, their options and their use in queries.

Supported types: `datasource` (locally there is one Prometheus, so it has one option), `custom`,
`constant`, `textbox`, `interval` and `query` (`label_values(label)`, `label_values(selector,
label)`, `query_result(expr)` with an optional `regex`). In a query, `$name`, `${name}`,
`${name:format}` and `[[name]]` are replaced as Grafana replaces them for Prometheus (several
values become a regex alternation), and so are the built-ins `$__interval`, `$__rate_interval`,
`$__range` and their `_ms`/`_s` forms.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

# Prometheus scrapes every 5 s locally (ripple_stack.components.prometheus); $__rate_interval
# is never shorter than four scrapes, as in Grafana.
SCRAPE_INTERVAL_S = 5
ALL = "$__all"

_REFERENCE = re.compile(
    r"\$(?P<plain>__[A-Za-z_]+|[A-Za-z_]\w*)|\$\{(?P<braced>[A-Za-z_]\w*)(?::(?P<fmt>[A-Za-z]+))?\}"
    r"|\[\[(?P<old>[A-Za-z_]\w*)(?::(?P<oldfmt>[A-Za-z]+))?\]\]"
)
_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<selector>.+?)\s*,\s*)?(?P<label>[A-Za-z_]\w*)\s*\)\s*$"
)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.+)\)\s*$", re.DOTALL)
_REGEX_SPECIALS = re.compile(r"[\\^$*+?.()|{}\[\]]")


def _split_custom(query: str) -> list[dict[str, str]]:
    """Grafana's custom list: "a,b" or "text : value" pairs, commas escaped with a backslash."""
    options = []
    for item in re.split(r"(?<!\\),", query):
        item = item.replace("\\,", ",").strip()
        if not item:
            continue
        text, _, value = item.partition(" : ")
        options.append({"text": text.strip(), "value": (value or text).strip()})
    return options


def _query_text(variable: Mapping[str, Any]) -> str:
    query = variable.get("query", "")
    if isinstance(query, dict):  # newer Grafana: {"query": "...", "refId": ...}
        query = query.get("query", "")
    return str(query or variable.get("definition", "") or "")


def parse_variable_query(query: str) -> dict[str, str]:
    """A query variable's query: label_values (label, selector) or query_result (expr), as a dict."""
    match = _LABEL_VALUES.match(query)
    if match:
        return {"kind": "label_values", "label": match["label"], "selector": match["selector"] or ""}
    match = _QUERY_RESULT.match(query)
    if match:
        return {"kind": "query_result", "expr": match["expr"].strip()}
    raise ValueError(
        f"unsupported variable query {query!r}: use label_values(label), label_values(selector, label) "
        "or query_result(expr)"
    )


def _current(variable: Mapping[str, Any]) -> list[str]:
    value = (variable.get("current") or {}).get("value")
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def variable_model(variable: Mapping[str, Any]) -> dict[str, Any]:
    """What the page needs of one variable: name, label, type, options (when static), current value."""
    kind = variable.get("type", "custom")
    query = _query_text(variable)
    model: dict[str, Any] = {
        "name": variable.get("name", ""),
        "label": variable.get("label") or variable.get("name", ""),
        "type": kind,
        "multi": bool(variable.get("multi", False)),
        "includeAll": bool(variable.get("includeAll", False)),
        "allValue": variable.get("allValue") or "",
        "hidden": variable.get("hide", 0) == 2,
        "options": [],
        "current": _current(variable),
        "dynamic": False,
    }
    if kind == "datasource":
        model["options"] = [{"text": "Prometheus (local)", "value": query or "prometheus"}]
        model["current"] = [query or "prometheus"]
    elif kind in ("custom", "interval"):
        model["options"] = _split_custom(query)
    elif kind in ("constant", "textbox"):
        model["options"] = [{"text": query, "value": query}] if query else []
        model["current"] = model["current"] or ([query] if query else [])
    elif kind == "query":
        model["dynamic"] = True
        model["query"] = query
        model["regex"] = variable.get("regex", "")
    else:
        model["unsupported"] = f"variable type {kind!r} is not supported locally"
    if model["includeAll"]:
        model["options"] = [{"text": "All", "value": ALL}, *model["options"]]
    if not model["current"] and model["options"]:
        model["current"] = [model["options"][0]["value"]]
    return model


def options_from_values(values: Sequence[str], regex: str = "") -> list[dict[str, str]]:
    """Sorted unique option values; a Grafana regex keeps matching values (its first group as the value)."""
    pattern = None
    if regex:
        body = regex[1:].rsplit("/", 1)[0] if regex.startswith("/") else regex
        pattern = re.compile(body)
    options: dict[str, str] = {}
    for value in values:
        if pattern is None:
            options[value] = value
            continue
        match = pattern.search(value)
        if match:
            kept = match.group(1) if match.groups() else value
            options[kept] = kept
    return [{"text": value, "value": value} for value in sorted(options)]


def duration(seconds: float) -> str:
    """A Prometheus duration for a number of seconds: 15s, 2m, 1h, 90s."""
    whole = max(1, round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def _escape_regex(value: str) -> str:
    return _REGEX_SPECIALS.sub(lambda m: "\\" + m.group(0), value)


def _format(values: Sequence[str], fmt: str | None, multi_or_all: bool) -> str:
    if fmt == "raw" or (fmt is None and not multi_or_all):
        return ",".join(values)
    if fmt in (None, "regex"):
        escaped = [_escape_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "doublequote":
        return ",".join(f'"{v}"' for v in values)
    if fmt == "singlequote":
        return ",".join(f"'{v}'" for v in values)
    raise ValueError(
        f"unsupported variable format {fmt!r}: use raw, regex, pipe, csv, doublequote or singlequote"
    )


def builtins(range_s: float, step_s: float) -> dict[str, str]:
    """Grafana's built-in variables for a time range and a query step (both in seconds)."""
    interval = max(step_s, SCRAPE_INTERVAL_S)
    rate_interval = max(interval + SCRAPE_INTERVAL_S, 4 * SCRAPE_INTERVAL_S)
    return {
        "__interval": duration(interval),
        "__interval_ms": str(round(interval * 1000)),
        "__rate_interval": duration(rate_interval),
        "__range": duration(range_s),
        "__range_s": str(round(range_s)),
        "__range_ms": str(round(range_s * 1000)),
    }


def interpolate(
    expr: str,
    variables: Sequence[Mapping[str, Any]],
    selected: Mapping[str, Sequence[str]],
    range_s: float,
    step_s: float,
) -> str:
    """The query with every variable reference replaced; unknown names are left as they are.

    `variables` are variable models (variable_model), `selected` the values chosen on the page
    (name -> values; a missing name takes the variable's current value).
    """
    by_name = {v["name"]: v for v in variables}
    fixed = builtins(range_s, step_s)

    def replace(match: re.Match[str]) -> str:
        name = match["plain"] or match["braced"] or match["old"]
        fmt = match["fmt"] or match["oldfmt"]
        if name in fixed:
            return fixed[name]
        variable = by_name.get(name)
        if variable is None:
            return match.group(0)
        values = [str(v) for v in (selected.get(name) or variable.get("current") or [])]
        is_all = ALL in values
        if is_all:
            values = [o["value"] for o in variable.get("options", []) if o["value"] != ALL]
            if variable.get("allValue"):
                return str(variable["allValue"])
            if not values:
                return ".*"
        return _format(values, fmt, variable.get("multi", False) or is_all or len(values) > 1)

    return _REFERENCE.sub(replace, expr)
