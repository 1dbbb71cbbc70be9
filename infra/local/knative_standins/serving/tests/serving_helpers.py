"""Runs a real activator (and its real instance processes) for the serving tests."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml

from knative_standins.serving.config import load_autoscaler_config
from knative_standins.serving.manifest import function_spec
from loadtest.measure import free_port

HERE = Path(__file__).parent
TINY_MANIFEST = HERE / "tiny" / "service.yaml"
# Short windows so that a full zero -> N -> zero cycle takes seconds (Knative's minimum window).
FAST_CONFIG = {
    "stable-window": "6s",
    "scale-to-zero-grace-period": "1s",
    "tick-interval": "500ms",
    "allow-zero-initial-scale": "true",
}


class RunningActivator:
    def __init__(self, spec, process: subprocess.Popen, log_dir: Path) -> None:
        self.spec = spec
        self.process = process
        self.log_dir = log_dir
        self.url = f"http://127.0.0.1:{spec.port}"
        self.admin = f"http://127.0.0.1:{spec.admin_port}"

    def status(self) -> dict:
        with urllib.request.urlopen(self.admin + "/status", timeout=5) as response:
            return json.loads(response.read())

    def metrics(self) -> str:
        with urllib.request.urlopen(self.admin + "/metrics", timeout=5) as response:
            return response.read().decode()

    def request(self, path: str = "/work", timeout: float = 60) -> tuple[int, dict, dict]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read() or b"{}")

    def wait_for(self, predicate, what: str, limit_s: float = 60) -> dict:
        """Poll /status until predicate(status) holds (a bound against hangs, not a timing check)."""
        deadline = time.monotonic() + limit_s
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} never happened; last status {status}")
            time.sleep(0.1)

    def cold_starts(self) -> list[dict]:
        path = self.log_dir / "cold-starts.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def tiny_spec(tmp_path: Path, annotations: dict | None = None, env: dict | None = None, **pod_spec):
    """The tiny function's FunctionSpec on free ports, and the JSON file an activator reads."""
    manifest = yaml.safe_load(TINY_MANIFEST.read_text())
    manifest = copy.deepcopy(manifest)
    template = manifest["spec"]["template"]
    template["metadata"]["annotations"].update(
        {f"autoscaling.knative.dev/{key}": value for key, value in (annotations or {}).items()}
    )
    template["spec"].update(pod_spec)
    config = load_autoscaler_config(overrides=FAST_CONFIG)
    venv_bin = Path(sys.executable).parent
    spec = function_spec(
        TINY_MANIFEST,
        manifest,
        config,
        host="127.0.0.1",
        port=free_port(),
        admin_port=free_port(),
        first_instance_port=0,
        cwd=HERE,
        env={"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})},
        log_dir=tmp_path,
    )
    spec.instance_ports[:] = [free_port() for _ in spec.instance_ports]
    spec_file = tmp_path / "tiny.json"
    spec.write(spec_file)
    return spec, spec_file


@contextmanager
def activator(tmp_path: Path, annotations: dict | None = None, env: dict | None = None, **pod_spec):
    spec, spec_file = tiny_spec(tmp_path, annotations, env, **pod_spec)
    log = (tmp_path / "activator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "knative_standins.serving.activator", "--spec", str(spec_file)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    running = RunningActivator(spec, process, tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                running.status()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "activator.log").read_text()) from None
                time.sleep(0.05)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
