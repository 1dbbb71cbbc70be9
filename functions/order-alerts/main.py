"""order-alerts: an order above ALERT_THRESHOLD raises dev.ripple.shop.order.flagged.

For each dev.ripple.shop.order.placed event (other types are acknowledged and ignored): below or
at the threshold nothing happens; above it, one row per (tenant, orderId) in order_alerts
records the alert (a redelivery finds it), and the alert event goes to ripple.shop.alerts with
an id derived from the order event, so a redelivery re-emits the same event rather than a new
one. 503 while PostgreSQL or Kafka cannot be reached (the dispatcher retries); 422 for an order
that can never be handled.

An asynchronous function (ripple_server.aio: no Flask; uvicorn): most orders are below the threshold
and are answered on the event loop without a thread or a database round trip, which is what
keeps its KafkaSource's deliveries cheap (unordered since issue 19: many in flight at once).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from cloudevents.http import CloudEvent
from order_alerts.alerts import (
    ORDER_PLACED,
    PermanentError,
    above_threshold,
    alert_message,
    mark_emitted,
    order_delay_s,
    record_alert,
)
from order_alerts.config import Config
from order_alerts.emit import AlertPublisher, KafkaUnacknowledged
from prometheus_client import Counter, Histogram
from ripple_server import aio
from sqlalchemy.exc import SQLAlchemyError

from ripple_consumer.database import LazyEngine
from ripple_consumer.http import problem
from ripple_settings import or_exit

log = logging.getLogger("order-alerts")
CONFIG = or_exit("order-alerts", Config.from_env)
HANDLED = Counter("ripple_order_alerts_events", "Events handled by order-alerts", ["outcome"])
# The first hop of the order -> notification delay (issue 19): from the order event's time to its
# alert confirmed by Kafka and the Broker. Where a backlog in front of order-alerts shows; the
# notifier's ripple_notifier_alert_to_mail_seconds starts where this ends. Alert rule:
# RippleOrderAlertsLate (infra/prometheus/rules/broker.yaml).
ORDER_TO_ALERT = Histogram(
    "ripple_order_alerts_order_to_alert_seconds",
    "Delay from an order event's time to its alert confirmed by Kafka and the notifications Broker",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
PUBLISHER = or_exit("order-alerts", lambda: AlertPublisher(CONFIG))

engine = LazyEngine(CONFIG)


@aio.cloud_event
async def handle(event: CloudEvent) -> None:
    if event["type"] != ORDER_PLACED:
        HANDLED.labels("ignored").inc()
        return
    try:
        if not above_threshold(event, CONFIG.threshold):
            HANDLED.labels("below_threshold").inc()
            return
    except PermanentError as error:
        HANDLED.labels("rejected").inc()
        raise problem(422, "unprocessable-order", "Order cannot be processed", str(error)) from None
    # The few orders above the threshold write PostgreSQL and wait for Kafka's acknowledgement,
    # both blocking clients: on a worker thread, so the loop keeps answering the others.
    await asyncio.to_thread(raise_alert, event)


def raise_alert(event: CloudEvent) -> None:
    try:
        # One pooled connection (one checkout, one liveness ping) for the alert row and, once Kafka
        # and the Broker confirmed it, its mark, as the notifier's outbox does.
        with engine().connect() as connection:
            alert = record_alert(connection, event, CONFIG.threshold)
            if alert is None:  # unreachable after above_threshold; kept for the function's own contract
                HANDLED.labels("below_threshold").inc()
                return
            if alert.emitted:
                HANDLED.labels("duplicate").inc()
                return
            PUBLISHER.publish(alert_message(alert, CONFIG.alert_source))
            mark_emitted(connection, alert)
        delay = order_delay_s(event, datetime.now(UTC))
        if delay is not None:
            ORDER_TO_ALERT.observe(delay)
    except PermanentError as error:
        HANDLED.labels("rejected").inc()
        raise problem(422, "unprocessable-order", "Order cannot be processed", str(error)) from None
    except SQLAlchemyError as error:
        HANDLED.labels("database_unavailable").inc()
        log.warning("PostgreSQL: %s", str(error).splitlines()[0])
        raise problem(
            503, "database-unavailable", "Database unavailable", "the alert state was not written"
        ) from None
    except KafkaUnacknowledged as error:
        HANDLED.labels("kafka_unavailable").inc()
        log.warning("Kafka did not acknowledge the alert: %s", error)
        raise problem(
            503, "kafka-unavailable", "Kafka unavailable", "the alert was not acknowledged"
        ) from None
    HANDLED.labels("alerted").inc()
