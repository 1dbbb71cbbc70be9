"""Serve the local dashboard page: `python -m ripple_dashboard` (the stack's `dashboard` component runs it).

Every option has an environment variable and a default, so `make up` needs none of them:
  --host            RIPPLE_DASHBOARD_HOST   127.0.0.1
  --port            RIPPLE_DASHBOARD_PORT   19300
  --dashboard       RIPPLE_DASHBOARD_FILE   infra/grafana/ripple-overview.yaml
  --prometheus      RIPPLE_PROMETHEUS_URL   the stack's Prometheus (RIPPLE_PROMETHEUS_PORT, default 19090)
  --vendor-dir      RIPPLE_DASHBOARD_VENDOR $RIPPLE_HOME/dist/dashboard-npm/node_modules/uplot/dist
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from ripple_stack.settings import ConfigError, load_settings

from .server import Config, DashboardServer

DEFAULT_DASHBOARD = Path(__file__).resolve().parents[3] / "infra" / "grafana" / "ripple-overview.yaml"


def vendor_dir(home: Path) -> Path:
    """Where `npm ci` puts uPlot's built files (ripple_stack.components.dashboard installs them)."""
    return home / "dist" / "dashboard-npm" / "node_modules" / "uplot" / "dist"


def main(argv: list[str] | None = None) -> int:
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"ripple_dashboard: {error}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="ripple_dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("RIPPLE_DASHBOARD_HOST") or settings.host)
    parser.add_argument("--port", type=int, default=settings.ports["dashboard"])
    parser.add_argument(
        "--dashboard", type=Path, default=Path(os.environ.get("RIPPLE_DASHBOARD_FILE") or DEFAULT_DASHBOARD)
    )
    parser.add_argument(
        "--prometheus", default=os.environ.get("RIPPLE_PROMETHEUS_URL") or settings.prometheus_url
    )
    parser.add_argument(
        "--vendor-dir",
        type=Path,
        default=Path(os.environ.get("RIPPLE_DASHBOARD_VENDOR") or vendor_dir(settings.home)),
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = Config(
        host=arguments.host,
        port=arguments.port,
        dashboard_file=arguments.dashboard.resolve(),
        prometheus_url=arguments.prometheus.rstrip("/"),
        vendor_dir=arguments.vendor_dir,
    )
    try:
        server = DashboardServer(config)
    except OSError as error:
        print(
            f"ripple_dashboard: cannot listen on {config.host}:{config.port} ({error.strerror}): "
            "stop what holds it or set RIPPLE_DASHBOARD_PORT to a free port.",
            file=sys.stderr,
        )
        return 2
    logging.getLogger("ripple_dashboard").info(
        "serving %s on http://%s:%d/ (Prometheus %s)",
        config.dashboard_file,
        config.host,
        config.port,
        config.prometheus_url,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
