"""A Knative Service manifest -> what one function's activator runs (a `FunctionSpec`).

The manifest stays the one source: the first container's command/args, its env (in-cluster
addresses rewritten to this stack's loopback ports, `secretKeyRef`s resolved from the local
secrets), its readiness probe path, and the revision's autoscaling settings (config.py). The
spec is written as JSON (mode 0600: it holds secrets) for the activator process to read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from ..pod_cpu import CpuQuantityError, PodCpu
from .config import AutoscalerConfig, RevisionSpec, ServingConfigError, revision_spec


class ManifestError(ServingConfigError):
    pass


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    namespace: str
    manifest: str
    host: str
    port: int  # the function's address: the activator listens here
    admin_port: int  # /metrics and /status of the activator
    instance_ports: list[int]  # one per possible instance (max-scale of them)
    command: list[str]
    cwd: str
    env: dict[str, str]
    readiness_path: str
    log_dir: str
    cold_start_log: str
    revision: RevisionSpec
    # The container's CPU request and limit (millicores; 0 / None: none), applied to each instance
    # as kubelet applies them to a pod (pod_cpu.py).
    cpu_request_milli: int = 0
    cpu_limit_milli: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FunctionSpec:
        data = json.loads(text)
        data["revision"] = RevisionSpec(**data["revision"])
        return cls(**data)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before anything is written: the env holds the local secrets.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.to_json())


def load_manifest(path: Path) -> dict:
    import yaml

    manifest = yaml.safe_load(path.read_text())
    if (
        not isinstance(manifest, dict)
        or manifest.get("kind") != "Service"
        or not str(manifest.get("apiVersion", "")).startswith("serving.knative.dev/")
    ):
        raise ManifestError(f"{path}: expected a serving.knative.dev Service")
    return manifest


def first_container(manifest: Mapping, where: str) -> dict:
    try:
        return manifest["spec"]["template"]["spec"]["containers"][0]
    except (KeyError, IndexError, TypeError):
        raise ManifestError(f"{where}: spec.template.spec.containers[0] is missing") from None


def container_environment(
    container: Mapping, where: str, addresses: Mapping[str, str], secrets: Mapping[str, str]
) -> dict[str, str]:
    """The container's env with cluster addresses rewritten and secret references resolved."""
    env: dict[str, str] = {}
    for index, item in enumerate(container.get("env", [])):
        here = f"{where}: spec.template.spec.containers[0].env[{index}]"
        if "value" in item:
            value = str(item["value"])
            for cluster_address, local_address in addresses.items():
                value = value.replace(cluster_address, local_address)
            env[item["name"]] = value
        elif "secretKeyRef" in item.get("valueFrom", {}):
            key = item["valueFrom"]["secretKeyRef"]["key"]
            if key not in secrets:
                raise ManifestError(f"{here}: secret key {key!r} is not one of the local secrets")
            env[item["name"]] = secrets[key]
        else:
            raise ManifestError(f"{here}: only value and valueFrom.secretKeyRef are supported")
    return env


def function_spec(
    manifest_path: Path,
    manifest: Mapping,
    config: AutoscalerConfig,
    *,
    host: str,
    port: int,
    admin_port: int,
    first_instance_port: int,
    cwd: Path,
    env: Mapping[str, str],
    log_dir: Path,
) -> FunctionSpec:
    where = str(manifest_path)
    container = first_container(manifest, where)
    command = [*container.get("command", []), *container.get("args", [])]
    if not command:
        raise ManifestError(f"{where}: the container needs command/args to run locally")
    revision = revision_spec(manifest, where, config)
    probe = (container.get("readinessProbe") or {}).get("httpGet") or {}
    try:
        cpu = PodCpu.from_resources(container.get("resources"), f"{where} resources")
    except CpuQuantityError as error:
        raise ManifestError(str(error)) from None
    return FunctionSpec(
        name=manifest["metadata"]["name"],
        namespace=manifest["metadata"].get("namespace", "default"),
        manifest=where,
        host=host,
        port=port,
        admin_port=admin_port,
        instance_ports=[first_instance_port + i for i in range(revision.effective_max_scale)],
        command=[str(part) for part in command],
        cwd=str(cwd),
        env=dict(env),
        readiness_path=str(probe.get("path", "/")),
        log_dir=str(log_dir),
        cold_start_log=str(log_dir / "cold-starts.jsonl"),
        revision=revision,
        cpu_request_milli=cpu.request_milli,
        cpu_limit_milli=cpu.limit_milli,
    )
