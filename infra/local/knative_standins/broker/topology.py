"""Exchange, queue and binding names of a Broker and its Triggers, and their declaration.

As eventing-rabbitmq (pkg/rabbitmqnaming, pkg/rabbit, pkg/reconciler/trigger):
- the Broker is one durable `headers` exchange, b.<namespace>.<broker>;
- each Trigger has a durable queue of the RabbitmqBrokerConfig's type (quorum by default),
  t.<namespace>.<trigger>, bound to that exchange with the arguments {x-match: all,
  x-knative-trigger: <trigger>, <attribute>: <value> for each filter attribute}. Headers that
  begin with `x-` take no part in matching, so the binding matches exactly the events whose
  attributes equal every filter value; a Trigger without a filter gets every event;
- each Trigger has a durable dead-letter exchange t.<namespace>.<trigger>.dlx (fanout) and queue
  t.<namespace>.<trigger>.dlq, which its dispatcher delivers to the dead-letter sink.
Upstream appends the Kubernetes UID to each name; locally a name is unique without it.
Declarations are idempotent: every process declares what it uses when it (re)connects.
"""

from __future__ import annotations

from pika.adapters.blocking_connection import BlockingChannel

from .manifest import Broker, BrokerConfig, Trigger

TRIGGER_BINDING_KEY = "x-knative-trigger"


def exchange_name(broker: Broker) -> str:
    return f"b.{broker.namespace}.{broker.name}"


def queue_name(trigger: Trigger) -> str:
    return f"t.{trigger.namespace}.{trigger.name}"


def dead_letter_exchange_name(trigger: Trigger) -> str:
    return f"t.{trigger.namespace}.{trigger.name}.dlx"


def dead_letter_queue_name(trigger: Trigger) -> str:
    return f"t.{trigger.namespace}.{trigger.name}.dlq"


def binding_arguments(trigger: Trigger) -> dict[str, str]:
    return {"x-match": "all", TRIGGER_BINDING_KEY: trigger.name, **trigger.filters}


def queue_arguments(config: BrokerConfig) -> dict[str, str]:
    return {"x-queue-type": config.queue_type}


def declare_broker(channel: BlockingChannel, broker: Broker) -> None:
    channel.exchange_declare(exchange_name(broker), exchange_type="headers", durable=True)


def declare_trigger(channel: BlockingChannel, broker: Broker, trigger: Trigger) -> None:
    declare_broker(channel, broker)
    arguments = queue_arguments(broker.config)
    channel.queue_declare(queue_name(trigger), durable=True, arguments=arguments)
    channel.queue_bind(queue_name(trigger), exchange_name(broker), arguments=binding_arguments(trigger))
    channel.exchange_declare(dead_letter_exchange_name(trigger), exchange_type="fanout", durable=True)
    channel.queue_declare(dead_letter_queue_name(trigger), durable=True, arguments=arguments)
    channel.queue_bind(dead_letter_queue_name(trigger), dead_letter_exchange_name(trigger))
