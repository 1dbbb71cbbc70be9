"""KafkaSources of knative/ run as local dispatchers, the way Knative's data plane would.

Each `knative/<name>/kafkasource.yaml` becomes one supervised `python -m knative_standins.kafkasource
<manifest>` process (named kafkasource-<name>), which resolves its sink refs to the local URLs of
the functions and rewrites in-cluster bootstrap servers to the local broker (both from the
addresses this runner passes in its environment: standin_addresses). Its metrics port
(18500 + index, name order) is its readiness probe and a Prometheus target.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from knative_standins.kafkasource.manifest import ManifestError, load
from knative_standins.pod_cpu import PodCpu

from ..component import PortComponent, PrerequisiteError, Program, python_program
from ..settings import REPO_ROOT, Settings
from .functions import KNATIVE_DIR, standin_addresses

# Every KafkaSource's dispatcher shares one pod, as eventing-kafka-broker runs one
# kafka-source-dispatcher for all sources: its resources from data-plane/config/source/500-dispatcher.yaml.
DISPATCHER_CPU = PodCpu(1000, 2000)

FIRST_DISPATCHER_PORT = 18500


def kafkasource_manifests() -> list[Path]:
    return sorted(KNATIVE_DIR.glob("*/kafkasource.yaml"))


class KafkaSourceDispatcher(PortComponent):
    scrape_job = "kafkasources"
    # Delivers to functions, which must be up first.
    start_tier = 2

    def __init__(self, manifest: Path, port_index: int) -> None:
        try:
            self.source = load(manifest)
        except ManifestError as error:
            raise PrerequisiteError(str(error)) from None
        self.manifest_path = manifest
        self.name = f"kafkasource-{self.source.name}"
        self.description = f"KafkaSource {self.source.name} -> dispatcher"
        self.port_index = port_index

    def port(self, settings: Settings) -> int:
        return settings.ports.get(self.name) or FIRST_DISPATCHER_PORT + self.port_index

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            python_program(
                self.name,
                "knative_standins.kafkasource",
                str(self.manifest_path),
                "--metrics-port",
                str(self.port(settings)),
                cwd=REPO_ROOT,
                cpu=DISPATCHER_CPU,
                pod="kafka-source-dispatcher",
                env={
                    "RIPPLE_DISPATCHER_HOST": settings.host,
                    **standin_addresses(settings).to_env(),
                },
                # In-flight deliveries finish or give up within this; anything unfinished stays
                # uncommitted and is redelivered after the restart.
                stop_wait_s=20,
            )
        ]


def kafkasource_dispatchers() -> list[KafkaSourceDispatcher]:
    return [KafkaSourceDispatcher(path, index) for index, path in enumerate(kafkasource_manifests())]
