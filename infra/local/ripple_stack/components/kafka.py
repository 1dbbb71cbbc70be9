"""Kafka as a single KRaft node (broker and controller in one JVM), from Maven Central jars."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..component import Component, Program, Say, manifest_cpu, maven_fetch, run
from ..settings import REPO_ROOT, Settings

POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"
# Strimzi KafkaTopic manifests: the topics a cluster gets, and the ones created locally.
TOPICS_MANIFEST = REPO_ROOT / "infra" / "kafka" / "topics.yaml"
CLUSTER_MANIFEST = REPO_ROOT / "infra" / "kafka" / "cluster.yaml"
# The single-node KRaft configuration, shared with the cluster's backing Kafka (placeholders in braces).
SERVER_PROPERTIES = REPO_ROOT / "infra" / "kafka" / "server.properties"

LOG4J2_CONFIG = """\
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


def server_properties(host: str, port: int, controller_port: int, log_dirs: Path) -> str:
    """infra/kafka/server.properties with this node's addresses and data folder filled in."""
    return SERVER_PROPERTIES.read_text().format(
        host=host, port=port, controller_port=controller_port, log_dirs=log_dirs
    )


def declared_topics(manifest: Path = TOPICS_MANIFEST) -> list[dict]:
    """The KafkaTopic resources of the manifest, as (name, partitions, config) dictionaries."""
    if not manifest.exists():
        return []
    topics = []
    for document in yaml.safe_load_all(manifest.read_text()):
        if not document or document.get("kind") != "KafkaTopic":
            continue
        spec = document.get("spec", {})
        topics.append(
            {
                "name": spec.get("topicName") or document["metadata"]["name"],
                "partitions": int(spec.get("partitions", 1)),
                "config": {k: str(v) for k, v in (spec.get("config") or {}).items()},
            }
        )
    return topics


class Kafka(Component):
    name = "kafka"
    description = "Kafka (KRaft, single node)"

    def libs_dir(self, settings: Settings) -> Path:
        return settings.dist_dir / "kafka-libs"

    def config_file(self, settings: Settings) -> Path:
        return self.run_dir(settings) / "server.properties"

    def install(self, settings: Settings, say: Say) -> None:
        maven_fetch(POM, self.libs_dir(settings), say, "Kafka")

    def _java(self, settings: Settings, main_class: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms512m",
            "-Xmx1g",
            f"-Dlog4j2.configurationFile={self.run_dir(settings) / 'log4j2.yaml'}",
            "-cp",
            f"{self.libs_dir(settings)}/*",
            main_class,
            *args,
        ]

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        data, config_dir = self.data_dir(settings), self.run_dir(settings)
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "log4j2.yaml").write_text(LOG4J2_CONFIG)
        self.config_file(settings).write_text(
            server_properties(
                settings.host, settings.ports["kafka"], settings.ports["kafka_controller"], data
            )
        )
        if (data / "meta.properties").exists():
            return
        say("formatting Kafka storage (once)…")
        run(
            self._java(
                settings,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
                "-c",
                str(self.config_file(settings)),
            )
        )

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            Program(
                name="kafka",
                command=self._java(settings, "kafka.Kafka", str(self.config_file(settings))),
                cpu=manifest_cpu(CLUSTER_MANIFEST, "KafkaNodePool", "spec", "resources"),
            )
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap,
                request_timeout_ms=3000,
                client_id="ripple-stack-probe",
            )
        except (KafkaError, OSError, ValueError) as error:
            return f"broker not answering ({type(error).__name__})"
        try:
            admin.list_topics()
            return None
        except (KafkaError, OSError) as error:
            return f"metadata unavailable ({type(error).__name__})"
        finally:
            admin.close()

    def after_ready(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic

        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, client_id="ripple-stack")
        try:
            existing = set(admin.list_topics())
            wanted = [t for t in declared_topics() if t["name"] not in existing]
            if wanted:
                say("creating topics " + ", ".join(t["name"] for t in wanted))
                admin.create_topics(
                    [NewTopic(t["name"], t["partitions"], 1, topic_configs=t["config"]) for t in wanted]
                )
        finally:
            admin.close()

    def address(self, settings: Settings) -> str:
        return settings.kafka_bootstrap
