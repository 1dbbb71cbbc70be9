"""Local stand-ins for Knative's data plane, driven by the manifests in knative/ that a cluster applies.

serving: activator, KPA autoscaler and instances of one function (Knative Serving);
kafkasource: the KafkaSource dispatcher (eventing-kafka-broker's data plane);
broker: the RabbitMQ Broker's ingress and Trigger dispatchers (eventing-rabbitmq);
delivery: what both dispatchers share: Destination and DeliverySpec, retry rules, the
knativeerror* extensions, and where destinations are (the addresses the stack runner gives).

They never import the stack runner (ripple_stack): the runner starts them and passes in what a
cluster's API server would tell them (addresses, RabbitMQ's URL) through their command line and
environment. Each folder's README maps its modules to upstream's and lists every deviation.
"""


class ConfigError(Exception):
    """A manifest or setting a stand-in cannot run with; the message says what to fix."""
