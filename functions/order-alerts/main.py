"""order-alerts: an order above ALERT_THRESHOLD raises dev.ripple.shop.order.flagged.

For each dev.ripple.shop.order.placed event (other types are acknowledged and ignored): below or
at the threshold nothing happens; above it, one row per (tenant, orderId) in order_alerts
records the alert (a redelivery finds it), and the alert event goes to ripple.shop.alerts with
an id derived from the order event, so a redelivery re-emits the same event rather than a new
one. 503 while PostgreSQL or Kafka cannot be reached (the dispatcher retries); 422 for an order
that can never be handled.
"""

from __future__ import annotations

import logging

import flask
import functions_framework
from cloudevents.http import CloudEvent
from kafka.errors import KafkaError
from order_alerts.alerts import (
    ORDER_PLACED,
    PermanentError,
    alert_event,
    mark_emitted,
    record_alert,
)
from order_alerts.config import Config, ConfigError
from order_alerts.emit import AlertPublisher
from prometheus_client import Counter
from sqlalchemy.exc import SQLAlchemyError

from ripple_consumer.database import LazyEngine
from ripple_consumer.http import abort_with_problem, add_routes

log = logging.getLogger("order-alerts")
try:
    CONFIG = Config.from_env()
except ConfigError as error:
    raise SystemExit(f"order-alerts: {error}") from None
HANDLED = Counter("ripple_order_alerts_events", "Events handled by order-alerts", ["outcome"])
PUBLISHER = AlertPublisher(CONFIG)

engine = LazyEngine(CONFIG)


if flask.has_app_context():
    add_routes(flask.current_app)


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    if event["type"] != ORDER_PLACED:
        HANDLED.labels("ignored").inc()
        return
    try:
        alert = record_alert(engine(), event, CONFIG.threshold)
        if alert is None:
            HANDLED.labels("below_threshold").inc()
            return
        if alert.emitted:
            HANDLED.labels("duplicate").inc()
            return
        PUBLISHER.publish(alert_event(alert, CONFIG.alert_source))
        mark_emitted(engine(), alert)
    except PermanentError as error:
        HANDLED.labels("rejected").inc()
        abort_with_problem(422, "unprocessable-order", "Order cannot be processed", str(error))
    except SQLAlchemyError as error:
        HANDLED.labels("database_unavailable").inc()
        log.warning("PostgreSQL: %s", str(error).splitlines()[0])
        abort_with_problem(
            503, "database-unavailable", "Database unavailable", "the alert state was not written"
        )
    except KafkaError as error:
        HANDLED.labels("kafka_unavailable").inc()
        log.warning("Kafka did not acknowledge the alert: %s", error)
        abort_with_problem(503, "kafka-unavailable", "Kafka unavailable", "the alert was not acknowledged")
    HANDLED.labels("alerted").inc()
