"""Knative Services of knative/ run locally with Knative Serving's behaviour: zero to N and back.

Each `knative/<name>/service.yaml` (serving.knative.dev/v1 Service) becomes one supervised
program, its activator (knative_standins.serving), which serves the function's address, runs the
function's KPA autoscaler and starts and stops the instances: processes running the first
container's command and args in `functions/<name>/` with the manifest's env (in-cluster
addresses rewritten to this stack's loopback ports, `secretKeyRef`s resolved from the local
secrets). The manifest stays the one source, its autoscaling annotations included.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from knative_standins.delivery.addresses import Addresses
from knative_standins.pod_cpu import PodCpu
from knative_standins.serving.config import LOCAL_MAX_SCALE, load_autoscaler_config, revision_spec
from knative_standins.serving.manifest import (
    FunctionSpec,
    ManifestError,
    container_environment,
    first_container,
    function_spec,
    load_manifest,
)

from ..component import Component, Program, Say, ScrapeTarget, python_program
from ..settings import REPO_ROOT, Settings

KNATIVE_DIR = REPO_ROOT / "knative"
FUNCTIONS_DIR = REPO_ROOT / "functions"
# Functions other than the gateway get ports from here on, in name order.
FIRST_FUNCTION_PORT = 18400
# The activators' autoscaler gauges are read every 2 s, Knative's tick-interval, as the cluster demo
# reads real Knative's (loadtest/autoscale/cluster.py): at 5 s a decision showed in the autoscale
# fidelity series up to 5 s late (issue 18). Measured: rendering /metrics costs 30-56 us of CPU.
SERVING_SCRAPE_INTERVAL_S = 2
# Every function's activator shares one pod, as Knative runs one activator Deployment: its request
# from serving's config/core/deployments/activator.yaml (300m). Its 1-core limit is not applied:
# here it also does the queue-proxy's work, which on a cluster runs in each function's pod, with
# the queue-proxy container's own request (config-deployment's queue-sidecar-cpu-request, 25m per
# pod). So the pod also weighs 25m for every instance the functions may run (their max-scale):
# at 300m alone it waited ~14 times as long for the CPU as it ran in the issue-19 burst, every
# function's requests with it.
ACTIVATOR_REQUEST_MILLI = 300
QUEUE_PROXY_REQUEST_MILLI = 25


@functools.cache  # every function's activator asks; the manifests are read once per process
def activator_cpu() -> PodCpu:
    """The activator pod's CPU: the activator's request plus a queue-proxy's per possible instance."""
    config = load_autoscaler_config()
    instances = sum(
        revision_spec(load_manifest(path), str(path), config).effective_max_scale
        for path in service_manifests()
    )
    return PodCpu(ACTIVATOR_REQUEST_MILLI + QUEUE_PROXY_REQUEST_MILLI * instances)


__all__ = ["FIRST_FUNCTION_PORT", "KnativeFunction", "ManifestError", "knative_functions"]


def service_manifests() -> list[Path]:
    return sorted(KNATIVE_DIR.glob("*/service.yaml"))


class KnativeFunction(Component):
    # Functions run their migrations and open Kafka/Keycloak connections as they start.
    start_tier = 1

    def __init__(self, manifest: Path, port_index: int) -> None:
        self.manifest_path = manifest
        self.manifest = load_manifest(manifest)
        self.name = self.manifest["metadata"]["name"]
        self.description = f"function {self.name}"
        self.port_index = port_index

    def container(self) -> dict:
        return first_container(self.manifest, str(self.manifest_path))

    def port(self, settings: Settings) -> int:
        return settings.ports.get(self.name) or FIRST_FUNCTION_PORT + self.port_index

    def admin_port(self, settings: Settings) -> int:
        return settings.ports["serving_admin"] + self.port_index

    def url(self, settings: Settings) -> str:
        return f"http://{settings.host}:{self.port(settings)}"

    def environment(self, settings: Settings, secrets: Mapping[str, str]) -> dict[str, str]:
        return container_environment(
            self.container(), str(self.manifest_path), settings.cluster_address_map(), secrets
        )

    def spec(self, settings: Settings, secrets: Mapping[str, str]) -> FunctionSpec:
        venv_bin = Path(sys.executable).parent
        return function_spec(
            self.manifest_path,
            self.manifest,
            load_autoscaler_config(),
            host=settings.host,
            port=self.port(settings),
            admin_port=self.admin_port(settings),
            first_instance_port=settings.ports["serving_instances"] + LOCAL_MAX_SCALE * self.port_index,
            cwd=FUNCTIONS_DIR / self.name,
            env={
                **self.environment(settings, secrets),
                "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                "PYTHONUNBUFFERED": "1",
            },
            log_dir=settings.log_dir,
        )

    def spec_path(self, settings: Settings) -> Path:
        return settings.run_dir / "serving" / f"{self.name}.json"

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        self.spec(settings, secrets).write(self.spec_path(settings))

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        spec = self.spec(settings, secrets)
        # A changed manifest or config changes this digest, so `make up` restarts the activator.
        digest = hashlib.sha256(spec.to_json().encode()).hexdigest()[:16]
        return [
            python_program(
                self.name,
                "knative_standins.serving.activator",
                "--spec",
                str(self.spec_path(settings)),
                env={"RIPPLE_SERVING_SPEC_DIGEST": digest},
                # In-flight requests finish, then every instance gets its SIGTERM and grace period.
                stop_wait_s=int(spec.revision.timeout_s) + 40,
                cpu=activator_cpu(),
                pod="activator",
            )
        ]

    def serving_status(self, settings: Settings) -> dict | None:
        """The activator's /status (instances ready/desired, failures); None when it is down."""
        try:
            with urllib.request.urlopen(
                f"http://{settings.host}:{self.admin_port(settings)}/status", timeout=3
            ) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        # Asks the activator, never the function: a probe must not wake a function at zero.
        status = self.serving_status(settings)
        if status is None:
            return "activator not answering"
        if status["last_failure"] and not status["instances_ready"]:
            return status["last_failure"]
        if not status["initial_scale_reached"]:
            return "starting its initial instance"
        return None

    def address(self, settings: Settings) -> str:
        return self.url(settings)

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        admin = f"{settings.host}:{self.admin_port(settings)}"
        return [
            ScrapeTarget("serving", admin, interval_s=SERVING_SCRAPE_INTERVAL_S),
            # The instances' own metrics, merged by the activator with a pod label.
            ScrapeTarget("functions", admin, path="/function-metrics"),
        ]


def knative_functions() -> list[KnativeFunction]:
    return [KnativeFunction(path, index) for index, path in enumerate(service_manifests())]


def standin_addresses(settings: Settings) -> Addresses:
    """What the dispatchers need to know of this stack: every function's local address and the
    in-cluster addresses of the manifests as reached here (knative_standins.delivery.addresses)."""
    return Addresses(
        {function.name: function.url(settings) for function in knative_functions()},
        settings.cluster_address_map(),
    )
