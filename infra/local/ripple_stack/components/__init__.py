"""The components of the local stack, in the order they are installed and shown."""

from __future__ import annotations

from ..component import Component
from .flink import Flink
from .functions import knative_functions
from .kafka import Kafka
from .kafkasources import kafkasource_dispatchers
from .keycloak import Keycloak
from .nginx import Nginx
from .postgres import Postgres
from .prometheus import Prometheus, Pushgateway


def all_components() -> list[Component]:
    components: list[Component] = [
        Postgres(),
        Kafka(),
        Keycloak(),
        Flink(),
        Pushgateway(),
        *knative_functions(),
        *kafkasource_dispatchers(),
        Nginx(),
    ]
    # Prometheus scrapes every other component, itself included.
    prometheus = Prometheus(components)
    components.append(prometheus)
    return components
