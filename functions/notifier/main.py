"""notifier: e-mails the fraud desk once per flagged order, fed by the notifications Broker.

For each dev.ripple.shop.order.flagged event (other types are acknowledged and ignored) one
e-mail to FRAUD_DESK_ADDRESS, once per (source, id) however often the event is delivered: an
outbox row in notifications, pending before the send and sent after it (notifier/notify.py).
503 while PostgreSQL or the SMTP server cannot be reached (the Trigger's dispatcher retries, then
dead-letters); 422 for an event that can never be e-mailed. Metrics: notifier/metrics.py.
"""

from __future__ import annotations

import logging
import smtplib

import functions_framework
from cloudevents.http import CloudEvent
from notifier.config import Config
from notifier.mail import FLAGGED, PermanentError
from notifier.metrics import HANDLED
from notifier.notify import Unrecorded, notify_once
from sqlalchemy.exc import SQLAlchemyError

from ripple_consumer.database import LazyEngine
from ripple_consumer.http import abort_with_problem
from ripple_settings import or_exit

log = logging.getLogger("notifier")
CONFIG = or_exit("notifier", Config.from_env)

engine = LazyEngine(CONFIG)
# Mails the SMTP server accepted whose `sent` PostgreSQL did not commit (notifier/notify.py).
unrecorded = Unrecorded(engine)


@functions_framework.cloud_event
def handle(event: CloudEvent) -> None:
    if event["type"] != FLAGGED:
        HANDLED.labels("ignored").inc()
        return
    try:
        result = notify_once(engine(), event, CONFIG, unrecorded)
    except PermanentError as error:
        HANDLED.labels("rejected").inc()
        abort_with_problem(422, "unnotifiable-event", "Event cannot be e-mailed", str(error))
    except (smtplib.SMTPException, OSError) as error:
        HANDLED.labels("smtp_unavailable").inc()
        log.warning("SMTP %s:%s: %r", CONFIG.smtp_host, CONFIG.smtp_port, error)
        abort_with_problem(503, "smtp-unavailable", "Mail server unavailable", "the e-mail was not accepted")
    except SQLAlchemyError as error:
        HANDLED.labels("database_unavailable").inc()
        log.warning("PostgreSQL: %s", str(error).splitlines()[0])
        abort_with_problem(
            503, "database-unavailable", "Database unavailable", "the notification was not recorded"
        )
    HANDLED.labels(result.outcome).inc()
