"""The components of the local stack, in the order they are installed and shown."""

from __future__ import annotations

from ..component import Component
from .brokers import broker_components
from .dashboard import Dashboard
from .flink import Flink
from .functions import knative_functions
from .kafka import Kafka
from .kafkasources import kafkasource_dispatchers
from .keycloak import Keycloak
from .mailsink import MailSink
from .nginx import Nginx
from .postgres import Postgres
from .prometheus import Prometheus, Pushgateway
from .rabbitmq import RabbitMQ


def all_components() -> list[Component]:
    broker_ingresses, trigger_dispatchers = broker_components()
    components: list[Component] = [
        Postgres(),
        Kafka(),
        RabbitMQ(),
        Keycloak(),
        Flink(),
        Pushgateway(),
        MailSink(),
        *knative_functions(),
        *kafkasource_dispatchers(),
        *broker_ingresses,
        *trigger_dispatchers,
        Nginx(),
    ]
    # Prometheus scrapes every other component, itself included.
    prometheus = Prometheus(components)
    components.append(prometheus)
    # The dashboard page reads Prometheus, so it is shown after it.
    components.append(Dashboard())
    return components
