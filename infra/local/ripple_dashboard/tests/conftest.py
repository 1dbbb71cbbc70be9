"""Fixtures of the dashboard tests: a dashboard server of their own, and a real browser."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from loadtest.measure import free_port

CHROMIUM = Path(os.environ.get("RIPPLE_CHROMIUM") or "/usr/bin/chromium")


@pytest.fixture
def start_dashboard(tmp_path) -> Iterator[Callable[..., str]]:
    """Start `python -m ripple_dashboard` on a free port for a dashboard file; returns its URL."""
    processes: list[subprocess.Popen] = []

    def start(dashboard: Path, prometheus_url: str, vendor_dir: Path | None = None) -> str:
        port = free_port()
        command = [
            sys.executable,
            "-m",
            "ripple_dashboard",
            "--port",
            str(port),
            "--dashboard",
            str(dashboard),
        ]
        command += ["--prometheus", prometheus_url]
        if vendor_dir is not None:
            command += ["--vendor-dir", str(vendor_dir)]
        log = (tmp_path / f"dashboard-{port}.log").open("w")
        processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                requests.get(f"{url}/api/dashboard", timeout=1)
                return url
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError(f"the dashboard server did not start; see {log.name}")

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright; a missing browser fails with what to install."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: run `make venv` (it is in the dev extra of pyproject.toml)")
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium chromium-driver) "
            "or point RIPPLE_CHROMIUM at a Chromium binary"
        )
    with sync_playwright() as playwright:
        # Chromium's sandbox refuses to run as root (CI runs as root).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield instance
        instance.close()
