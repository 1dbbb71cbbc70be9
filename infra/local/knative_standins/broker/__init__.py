"""Knative's RabbitMQ Broker (eventing-rabbitmq) data plane, locally on a real RabbitMQ.

manifest: Broker, RabbitmqBrokerConfig and Trigger of knative/ (strictly parsed); topology:
exchange, queue and binding names and declarations; message: CloudEvent <-> AMQP message;
ingress: HTTP CloudEvents in, 202 after the publisher confirm; dispatcher: one per Trigger,
ack after the subscriber's 2xx, retries, dead letters. README.md maps each to upstream.
"""
