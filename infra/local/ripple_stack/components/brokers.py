"""RabbitMQ Brokers of knative/ run as a local ingress plus one dispatcher per Trigger.

For each Broker of class RabbitMQBroker (knative/notifications/) one supervised
`python -m knative_standins.broker ingress <broker>` (component broker-<broker>, the address that
cluster manifests call <broker>-broker-ingress), and per Trigger one
`python -m knative_standins.broker dispatch <broker> <trigger>` (component trigger-<trigger>), as
eventing-rabbitmq runs one ingress Deployment per Broker and one dispatcher per Trigger.
Ports: RIPPLE_BROKER_INGRESS_PORT + Broker index, RIPPLE_TRIGGER_DISPATCHER_PORT + Trigger index
(name order); each port is the readiness probe and a Prometheus target.
"""

from __future__ import annotations

from collections.abc import Mapping

from knative_standins.broker.manifest import Broker, ManifestError, Trigger, knative_manifests, load_all
from knative_standins.pod_cpu import PodCpu

from ..component import PortComponent, PrerequisiteError, Program, python_program
from ..settings import REPO_ROOT, Settings
from .functions import KNATIVE_DIR, standin_addresses


def _program(
    name: str, settings: Settings, secrets: Mapping[str, str], cpu: PodCpu, *arguments: str
) -> Program:
    return python_program(
        name,
        "knative_standins.broker",
        *arguments,
        "--manifests",
        str(KNATIVE_DIR),
        cwd=REPO_ROOT,
        env={
            "RIPPLE_BROKER_HOST": settings.host,
            "RIPPLE_BROKER_AMQP_URL": settings.amqp_url(secrets["RIPPLE_RABBITMQ_PASSWORD"]),
            **standin_addresses(settings).to_env(),
        },
        # In-flight deliveries settle within 15 s; anything unsettled is redelivered by RabbitMQ.
        stop_wait_s=20,
        # The pod's CPU from the manifest's eventing-rabbitmq annotations (none: a BestEffort pod).
        cpu=cpu,
    )


class BrokerIngress(PortComponent):
    # Needs RabbitMQ (tier 0) ready to declare its exchange.
    start_tier = 1
    probe_path, address_path, scrape_job, what = "/healthz", "/", "brokers", "ingress"
    first_port = "broker_ingress"

    def __init__(self, broker: Broker, index: int) -> None:
        self.broker = broker
        self.index = index
        self.name = f"broker-{broker.name}"
        self.description = f"Broker {broker.name} ingress (RabbitMQ)"

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            _program(
                self.name,
                settings,
                secrets,
                self.broker.cpu,
                "ingress",
                self.broker.name,
                "--port",
                str(self.port(settings)),
            )
        ]


class TriggerDispatcher(PortComponent):
    # Delivers to functions, which must be up first.
    start_tier = 2
    scrape_job = "triggers"
    first_port = "trigger_dispatchers"

    def __init__(self, broker: Broker, trigger: Trigger, index: int) -> None:
        self.broker = broker
        self.trigger = trigger
        self.index = index
        self.name = f"trigger-{trigger.name}"
        self.description = f"Trigger {trigger.name} -> dispatcher"

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        arguments = (
            "dispatch",
            self.broker.name,
            self.trigger.name,
            "--metrics-port",
            str(self.port(settings)),
        )
        return [_program(self.name, settings, secrets, self.trigger.cpu, *arguments)]


def broker_components() -> tuple[list[BrokerIngress], list[TriggerDispatcher]]:
    try:
        everything = load_all(knative_manifests(KNATIVE_DIR))
    except ManifestError as error:
        raise PrerequisiteError(str(error)) from None
    ingresses = [BrokerIngress(n.broker, index) for index, n in enumerate(everything)]
    triggers = [t for n in everything for t in ((n.broker, trigger) for trigger in n.triggers)]
    dispatchers = [
        TriggerDispatcher(broker, trigger, index) for index, (broker, trigger) in enumerate(triggers)
    ]
    return ingresses, dispatchers
