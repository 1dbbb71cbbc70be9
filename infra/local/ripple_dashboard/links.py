"""Links into the local dashboard page for a time range (what the demo and scenario reports print)."""

from __future__ import annotations

from ripple_stack.settings import Settings


def dashboard_link(settings: Settings, start_s: float, end_s: float) -> str:
    """The page's URL showing [start_s, end_s] (Unix seconds), in Grafana's `?from=<ms>&to=<ms>` form."""
    return f"{settings.dashboard_url}/?from={int(start_s * 1000)}&to={int(end_s * 1000)}"


def dashboard_live_link(settings: Settings, start_s: float, refresh: str = "5s") -> str:
    """The page's URL from start_s (Unix seconds) to now, refreshing itself: to watch a run while it goes."""
    return f"{settings.dashboard_url}/?from={int(start_s * 1000)}&to=now&refresh={refresh}"
