"""The dashboard page in a real browser (Debian's chromium driven by Playwright) against the running stack.

Every panel of infra/grafana/ripple-overview.yaml is drawn with data, "No data" or Prometheus's error,
exactly as Prometheus answers the panel's queries for the same range; a broken query shows its
error; a template variable changes the drawn series; and a function at zero woken by a request
shows its instances rise on the autoscaling panel. Screenshots go to $RIPPLE_HOME/dashboard-screenshots.
"""

from __future__ import annotations

import json
import math
import time
import urllib.request

import pytest
import requests

from ripple_dashboard.model import all_panels, load_dashboard_json, page_model
from ripple_stack.components.functions import knative_functions
from ripple_stack.settings import REPO_ROOT

pytestmark = pytest.mark.integration

OVERVIEW_INSTANCES_PANEL = 1201  # "Instances per function: ready and desired"
SCRAPE_S = 5
MAX_POINTS = 400  # as in static/dashboard.js


@pytest.fixture(scope="module")
def shots(stack):
    directory = stack.settings.home / "dashboard-screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"the page's script failed: {errors}"


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("Number(document.body.dataset.refreshes || 0) >= 1", timeout=30_000)


def panel_states(page) -> dict[int, dict]:
    return {
        int(item["id"]): item
        for item in page.eval_on_selector_all(
            ".panel",
            """nodes => nodes.map(n => ({id: n.dataset.panelId, state: n.dataset.state,
                series: Number(n.dataset.series),
                error: (n.querySelector('.panel-error') || {}).textContent || ''}))""",
        )
    }


def expected_state(
    prometheus_url: str, panel: dict, start: int, end: int, step: int
) -> tuple[str, list[str]]:
    """What Prometheus itself answers for a panel's queries: data, nodata or error (and the errors)."""
    errors, finite = [], False
    for target in panel["targets"]:
        assert "$" not in target["expr"], "the overview's queries use no template variable"
        if target["instant"] or panel["type"] == "table":
            answer = requests.get(
                f"{prometheus_url}/api/v1/query", params={"query": target["expr"], "time": end}, timeout=30
            ).json()
        else:
            answer = requests.get(
                f"{prometheus_url}/api/v1/query_range",
                params={"query": target["expr"], "start": start, "end": end, "step": step},
                timeout=30,
            ).json()
        if answer["status"] != "success":
            errors.append(answer["error"])
            continue
        for item in answer["data"]["result"]:
            values = item.get("values") or [item["value"]]
            finite = finite or any(math.isfinite(float(v)) for _, v in values)
    return ("error" if errors else "data" if finite else "nodata"), errors


def test_every_panel_of_the_dashboard_is_drawn_as_prometheus_answers(stack, page, shots):
    model = page_model(load_dashboard_json(REPO_ROOT / "infra" / "grafana" / "ripple-overview.yaml"))
    # A fixed range that ended 30 s ago: the page and this test read the same, settled samples.
    to_ms = int((time.time() - 30) * 1000)
    from_ms = to_ms - 15 * 60 * 1000
    open_page(page, f"{stack.settings.dashboard_url}/?from={from_ms}&to={to_ms}&refresh=")
    page.screenshot(path=str(shots / "overview-full.png"), full_page=True)
    states = panel_states(page)
    panels = all_panels(model)
    assert sorted(states) == sorted(p["id"] for p in panels), "one drawn panel per panel of the JSON"
    step = max(SCRAPE_S, math.ceil((to_ms - from_ms) / 1000 / MAX_POINTS))
    start, end = (from_ms // 1000 // step) * step, to_ms // 1000
    drawn = {"data": 0, "nodata": 0, "error": 0}
    for panel in panels:
        expected, errors = expected_state(stack.prometheus_url, panel, start, end, step)
        shown = states[panel["id"]]
        assert shown["state"] == expected, f"{panel['title']}: drawn {shown}, Prometheus answers {expected}"
        for error in errors:
            assert error in shown["error"], f"{panel['title']}: the panel does not show {error!r}"
        if expected == "data":
            assert shown["series"] > 0
        drawn[expected] += 1
    # Gauges every running stack exports: nginx's connections, Flink's jobs, the functions' instances.
    always = {3, 14, OVERVIEW_INSTANCES_PANEL}
    assert all(states[i]["state"] == "data" for i in always), f"panels {always} must have data: {drawn}"


def test_a_failing_query_shows_its_error_and_variables_change_the_query(
    stack, page, start_dashboard, tmp_path, shots
):
    broken = "sum(rate(ripple_gateway_requests_total[1m])"
    dashboard = {
        "title": "browser test",
        "timezone": "utc",
        "templating": {"list": [{"name": "job", "type": "query", "query": "label_values(up, job)"}]},
        "panels": [
            {"type": "row", "title": "checks", "id": 1, "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1}},
            {
                "type": "timeseries",
                "title": "broken",
                "id": 2,
                "gridPos": {"x": 0, "y": 1, "w": 8, "h": 8},
                "targets": [{"refId": "A", "expr": broken}],
            },
            {
                "type": "timeseries",
                "title": "up of the chosen job",
                "id": 3,
                "gridPos": {"x": 8, "y": 1, "w": 8, "h": 8},
                "fieldConfig": {"defaults": {"unit": "percentunit"}},
                "targets": [
                    {"refId": "A", "expr": 'max by (job) (up{job=~"$job"})', "legendFormat": "{{job}}"}
                ],
            },
            {
                "type": "stat",
                "title": "targets",
                "id": 4,
                "gridPos": {"x": 16, "y": 1, "w": 8, "h": 8},
                "targets": [{"refId": "A", "expr": "count(up)"}],
            },
        ],
    }
    path = tmp_path / "dashboard.json"
    path.write_text(json.dumps(dashboard))
    url = start_dashboard(path, stack.prometheus_url)
    open_page(page, f"{url}/?from=now-5m&to=now")
    now = int(time.time())
    message = requests.get(
        f"{stack.prometheus_url}/api/v1/query_range",
        params={"query": broken, "start": now - 300, "end": now, "step": SCRAPE_S},
        timeout=10,
    ).json()
    states = panel_states(page)
    assert states[2]["state"] == "error" and message["error"] in states[2]["error"]
    assert states[3]["state"] == "data" and states[3]["series"] == 1
    assert states[4]["state"] == "data"
    page.screenshot(path=str(shots / "error-and-variable.png"))

    select = page.locator('select[data-variable="job"]')
    jobs = select.locator("option").all_inner_texts()
    assert "prometheus" in jobs and len(jobs) > 1
    refreshes = int(page.evaluate("document.body.dataset.refreshes"))
    select.select_option("prometheus")
    page.wait_for_function(f"Number(document.body.dataset.refreshes) > {refreshes}", timeout=30_000)
    assert "var-job=prometheus" in page.url
    legend = page.locator('[data-panel-id="3"] .u-legend .u-series th').all_inner_texts()
    assert [text.strip() for text in legend[1:]] == ["prometheus"]


def function_status(stack, function) -> dict:
    with urllib.request.urlopen(
        f"http://{stack.settings.host}:{function.admin_port(stack.settings)}/status", timeout=5
    ) as response:
        return json.loads(response.read())


def instances_on_page(page, function: str) -> float | None:
    """The newest ready-instances value the page draws for a function (None: no such series yet)."""
    return page.evaluate(
        """([id, name]) => {
            const entry = window.rippleDashboard.state.plots[id];
            if (!entry) return null;
            const index = entry.plot.series.findIndex(s => s.label === `${name} ready`);
            if (index < 0) return null;
            const values = entry.plot.data[index].filter(v => v !== null);
            return values.length ? values[values.length - 1] : null;
        }""",
        [OVERVIEW_INSTANCES_PANEL, function],
    )


def test_instances_rise_on_the_page_when_a_function_at_zero_is_called(stack, page, shots):
    functions = {f.name: f for f in knative_functions()}
    preferred = ["query", "dead-letters", "order-alerts", "notifier", "event-store"]
    deadline = time.monotonic() + 120
    at_zero = None
    while at_zero is None:
        for name in preferred:
            status = function_status(stack, functions[name]) if name in functions else None
            # A function whose last start failed would not rise: another is chosen.
            if status and status["instances_ready"] == 0 and not status["last_failure"]:
                at_zero = name
                break
        if at_zero is None:
            assert time.monotonic() < deadline, (
                f"no function of {preferred} went to zero instances within 120 s (the stack is busy): "
                "rerun when no load runs"
            )
            time.sleep(3)
    open_page(page, f"{stack.settings.dashboard_url}/?from=now-5m&to=now&refresh=5s")
    page.wait_for_function(
        f"!!window.rippleDashboard.state.plots[{OVERVIEW_INSTANCES_PANEL}]", timeout=30_000
    )
    # The function may have gone to zero after Prometheus's last scrape: the page shows it within a
    # scrape interval and a refresh, so the test waits for that rather than reading the first draw.
    deadline = time.monotonic() + 4 * SCRAPE_S + 15
    while instances_on_page(page, at_zero) != 0:
        assert time.monotonic() < deadline, f"{at_zero} is at zero, and the page never showed it"
        page.wait_for_timeout(1000)
    # Load starts: the function's address wakes it through its activator (the answer does not matter).
    requests.get(functions[at_zero].url(stack.settings) + "/", timeout=60)
    deadline = time.monotonic() + 45
    while (instances_on_page(page, at_zero) or 0) < 1:
        assert time.monotonic() < deadline, f"the page never showed {at_zero} with a ready instance"
        page.wait_for_timeout(1000)
    panel = page.locator(f'[data-panel-id="{OVERVIEW_INSTANCES_PANEL}"]')
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(shots / f"instances-{at_zero}.png"))
    # The README's picture (dashboard-autoscaling.png) is this file, taken after a demo-autoscale run.
    row = page.locator("section.row", has_text="Autoscaling").first
    row.screenshot(path=str(shots / "autoscaling-row.png"))
