"""Template variables: definitions, options and their replacement in queries (no server needed)."""

from __future__ import annotations

import pytest

from ripple_dashboard.variables import (
    builtins,
    interpolate,
    options_from_values,
    parse_variable_query,
    variable_model,
)

JOB = variable_model(
    {
        "name": "job",
        "type": "custom",
        "query": "gateway,event-store : event_store",
        "multi": True,
        "includeAll": True,
    }
)
DS = variable_model({"name": "datasource", "type": "datasource", "query": "prometheus"})


def test_custom_variable_options_and_default():
    assert JOB["options"] == [
        {"text": "All", "value": "$__all"},
        {"text": "gateway", "value": "gateway"},
        {"text": "event-store", "value": "event_store"},
    ]
    assert JOB["current"] == ["$__all"]
    assert DS["options"] == [{"text": "Prometheus (local)", "value": "prometheus"}] and DS["current"] == [
        "prometheus"
    ]


@pytest.mark.parametrize(
    ("expr", "selected", "expected"),
    [
        ('up{job="$job"}', {"job": ["gateway"]}, 'up{job="gateway"}'),
        ('up{job=~"${job}"}', {"job": ["gateway", "event_store"]}, 'up{job=~"(gateway|event_store)"}'),
        ('up{job=~"$job"}', {"job": ["$__all"]}, 'up{job=~"(gateway|event_store)"}'),
        ('up{job=~"${job:pipe}"}', {"job": ["a.b", "c"]}, 'up{job=~"a.b|c"}'),
        ('up{job=~"[[job]]"}', {"job": ["a.b"]}, 'up{job=~"a\\.b"}'),
        ("rate(x[$__rate_interval])", {}, "rate(x[20s])"),
        ("increase(x[$__range])", {}, "increase(x[1h])"),
        ("$unknown and ${datasource}", {}, "$unknown and prometheus"),
    ],
)
def test_interpolate(expr, selected, expected):
    assert interpolate(expr, [JOB, DS], selected, range_s=3600, step_s=5) == expected


def test_builtins_follow_the_step():
    assert builtins(range_s=86400, step_s=216) == {
        "__interval": "216s",
        "__interval_ms": "216000",
        "__rate_interval": "221s",
        "__range": "1d",
        "__range_s": "86400",
        "__range_ms": "86400000",
    }


def test_query_variables_are_parsed_and_filtered():
    assert parse_variable_query("label_values(job)") == {
        "kind": "label_values",
        "label": "job",
        "selector": "",
    }
    assert parse_variable_query('label_values(up{job!=""}, instance)') == {
        "kind": "label_values",
        "label": "instance",
        "selector": 'up{job!=""}',
    }
    assert parse_variable_query("query_result(count by (job) (up))") == {
        "kind": "query_result",
        "expr": "count by (job) (up)",
    }
    with pytest.raises(ValueError, match="label_values"):
        parse_variable_query("metrics(up)")
    assert options_from_values(["b", "a", "a"]) == [{"text": "a", "value": "a"}, {"text": "b", "value": "b"}]
    assert options_from_values(["fn-gateway", "fn-query", "other"], "/fn-(.*)/") == [
        {"text": "gateway", "value": "gateway"},
        {"text": "query", "value": "query"},
    ]
    model = variable_model({"name": "fn", "type": "query", "query": {"query": "label_values(service_name)"}})
    assert model["dynamic"] and model["query"] == "label_values(service_name)"
