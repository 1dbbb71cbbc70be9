"""Knative Services of knative/ run as local processes, the way a cluster would run them.

Each `knative/<name>/service.yaml` (serving.knative.dev/v1 Service) becomes one supervised
process: the first container's command and args, run in `functions/<name>/` with the env of
the manifest. In-cluster addresses in env values are rewritten to this stack's loopback ports
and `secretKeyRef`s are resolved from the local secrets, so the manifest stays the one source.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..component import Component, PrerequisiteError, Program, ScrapeTarget, http_status
from ..settings import REPO_ROOT, Settings

KNATIVE_DIR = REPO_ROOT / "knative"
FUNCTIONS_DIR = REPO_ROOT / "functions"
# Functions other than the gateway get ports from here on, in name order.
FIRST_FUNCTION_PORT = 18400


class ManifestError(PrerequisiteError):
    pass


def service_manifests() -> list[Path]:
    return sorted(KNATIVE_DIR.glob("*/service.yaml"))


class KnativeFunction(Component):
    # Functions run their migrations and open Kafka/Keycloak connections as they start.
    start_tier = 1

    def __init__(self, manifest: Path, port_index: int) -> None:
        self.manifest_path = manifest
        self.manifest = yaml.safe_load(manifest.read_text())
        if self.manifest.get("kind") != "Service" or not str(self.manifest.get("apiVersion", "")).startswith(
            "serving.knative.dev/"
        ):
            raise ManifestError(f"{manifest}: expected a serving.knative.dev Service")
        self.name = self.manifest["metadata"]["name"]
        self.description = f"function {self.name}"
        self.port_index = port_index

    def container(self) -> dict:
        try:
            return self.manifest["spec"]["template"]["spec"]["containers"][0]
        except (KeyError, IndexError, TypeError):
            raise ManifestError(
                f"{self.manifest_path}: spec.template.spec.containers[0] is missing"
            ) from None

    def port(self, settings: Settings) -> int:
        return settings.ports.get(self.name) or FIRST_FUNCTION_PORT + self.port_index

    def url(self, settings: Settings) -> str:
        return f"http://{settings.host}:{self.port(settings)}"

    def environment(self, settings: Settings, secrets: Mapping[str, str]) -> dict[str, str]:
        addresses = settings.cluster_address_map()
        env: dict[str, str] = {}
        for index, item in enumerate(self.container().get("env", [])):
            where = f"{self.manifest_path}: spec.template.spec.containers[0].env[{index}]"
            if "value" in item:
                value = str(item["value"])
                for cluster_address, local_address in addresses.items():
                    value = value.replace(cluster_address, local_address)
                env[item["name"]] = value
            elif "secretKeyRef" in item.get("valueFrom", {}):
                key = item["valueFrom"]["secretKeyRef"]["key"]
                if key not in secrets:
                    raise ManifestError(f"{where}: secret key {key!r} is not one of the local secrets")
                env[item["name"]] = secrets[key]
            else:
                raise ManifestError(f"{where}: only value and valueFrom.secretKeyRef are supported")
        return env

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        container = self.container()
        command = [*container.get("command", []), *container.get("args", [])]
        if not command:
            raise ManifestError(f"{self.manifest_path}: the container needs command/args to run locally")
        venv_bin = Path(sys.executable).parent
        return [
            Program(
                name=self.name,
                command=command,
                cwd=FUNCTIONS_DIR / self.name,
                env={
                    **self.environment(settings, secrets),
                    "PORT": str(self.port(settings)),
                    "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                    "PYTHONUNBUFFERED": "1",
                },
                stop_wait_s=15,
            )
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        probe = self.container().get("readinessProbe", {}).get("httpGet", {})
        status = http_status(self.url(settings) + probe.get("path", "/"))
        return None if status == 200 else f"readiness answered {status}"

    def address(self, settings: Settings) -> str:
        return self.url(settings)

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        return [ScrapeTarget("functions", f"{settings.host}:{self.port(settings)}")]


def knative_functions() -> list[KnativeFunction]:
    return [KnativeFunction(path, index) for index, path in enumerate(service_manifests())]
