"""The smallest notifications manifests the broker stand-in's tests build on (no server).

BROKER is a RabbitmqBrokerConfig and its Broker in namespace ns; `trigger` a Trigger t of it, to
which a test appends its own spec lines; `load` reads the text with the model of
knative_standins.broker.manifest.
"""

from __future__ import annotations

from pathlib import Path

from knative_standins.broker import manifest

BROKER = """
apiVersion: eventing.knative.dev/v1alpha1
kind: RabbitmqBrokerConfig
metadata: {name: c, namespace: ns}
spec: {rabbitmqClusterReference: {name: r}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns, annotations: {eventing.knative.dev/broker.class: RabbitMQBroker}}
spec: {config: {apiVersion: eventing.knative.dev/v1alpha1, kind: RabbitmqBrokerConfig, name: c}}
"""


def trigger(subscriber: str) -> str:
    """Trigger t of Broker b with the given subscriber (a YAML flow mapping); more spec lines may follow."""
    return f"""
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t, namespace: ns}}
spec:
  broker: b
  subscriber: {subscriber}
"""


def load(directory: Path, text: str) -> manifest.Notifications:
    """The one Broker (and its Triggers) of the text, written to broker.yaml in the directory."""
    path = directory / "broker.yaml"
    path.write_text(text)
    (notifications,) = manifest.load_all([path])
    return notifications
