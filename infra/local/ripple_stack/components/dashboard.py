"""The local dashboard page (ripple_dashboard): infra/grafana's dashboard JSON drawn live from Prometheus."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from ..component import Component, PrerequisiteError, Program, Say, http_status, python_program, run
from ..settings import REPO_ROOT, Settings

PACKAGE_DIR = REPO_ROOT / "infra" / "local" / "ripple_dashboard"
# package.json and package-lock.json pin the chart library (uPlot); `npm ci` installs exactly the lock.
NPM_FILES = ("package.json", "package-lock.json")


def npm_dir(settings: Settings) -> Path:
    """Where `npm ci` installs the page's chart library (kept by `make clean`, like every download)."""
    return settings.dist_dir / "dashboard-npm"


class Dashboard(Component):
    name = "dashboard"
    description = "the Grafana dashboard, drawn live"

    def install(self, settings: Settings, say: Say) -> None:
        """`npm ci` of the committed lock into $RIPPLE_HOME/dist, once per lock content."""
        target = npm_dir(settings)
        stamp = target / ".lock-stamp"
        wanted = (PACKAGE_DIR / "package-lock.json").read_text()
        if stamp.exists() and stamp.read_text() == wanted and (target / "node_modules").is_dir():
            return
        npm = shutil.which("npm")
        if npm is None:
            raise PrerequisiteError(
                "npm is missing (the dashboard page installs its chart library with it): "
                "install Node.js 18+ with npm (apt-get install npm) and rerun `make up`."
            )
        say("installing the dashboard's chart library with npm ci (once)…")
        target.mkdir(parents=True, exist_ok=True)
        for name in NPM_FILES:
            shutil.copyfile(PACKAGE_DIR / name, target / name)
        run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=target)
        stamp.write_text(wanted)

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            python_program(
                "dashboard",
                "ripple_dashboard",
                "--port",
                str(settings.ports["dashboard"]),
                cwd=REPO_ROOT,
                stop_wait_s=5,
            )
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        if http_status(f"{settings.dashboard_url}/vendor/uPlot.iife.min.js") != 200:
            return "the page's chart library is not served (npm ci did not run?)"
        status = http_status(f"{settings.dashboard_url}/api/dashboard")
        return None if status == 200 else f"/api/dashboard answered {status}"

    def address(self, settings: Settings) -> str:
        return settings.dashboard_url
