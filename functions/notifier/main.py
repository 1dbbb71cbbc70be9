"""notifier: e-mails the fraud desk once per flagged order, fed by the notifications Broker.

For each dev.ripple.shop.order.flagged event (other types are acknowledged and ignored) one
e-mail to FRAUD_DESK_ADDRESS, once per (source, id) however often the event is delivered: an
outbox row in notifications, pending before the send and sent after it (notifier/notify.py).
503 while PostgreSQL or the SMTP server cannot be reached (the Trigger's dispatcher retries, then
dead-letters); 422 for an event that can never be e-mailed. Metrics: notifier/metrics.py.

An asynchronous function (ripple_server.aio: Starlette without Flask, served by uvicorn), like
event-store and order-alerts: the outbox and the SMTP send are blocking clients and run on one of
the DELIVERIES threads (one per pooled connection), one hop per delivery. Served as a Flask
function through a2wsgi it spent about half of its CPU bridging the WSGI thread and the event loop
(py-spy, issue 19's bursts: loadtest/broker/profiles/), and the notifier is the most CPU-hungry hop
of the alert path.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from concurrent.futures import ThreadPoolExecutor

from cloudevents.http import CloudEvent
from notifier.config import Config
from notifier.mail import FLAGGED, PermanentError
from notifier.metrics import HANDLED
from notifier.notify import Unrecorded, notify_once
from ripple_server import aio
from sqlalchemy.exc import SQLAlchemyError

from ripple_consumer.database import MAX_OVERFLOW, LazyEngine
from ripple_consumer.http import problem
from ripple_settings import or_exit

log = logging.getLogger("notifier")
CONFIG = or_exit("notifier", Config.from_env)

engine = LazyEngine(CONFIG)
# Mails the SMTP server accepted whose `sent` PostgreSQL did not commit (notifier/notify.py).
unrecorded = Unrecorded(engine)
# The deliveries' threads: one per connection the pool can give (a delivery holds one from its
# outbox row to its commit). asyncio.to_thread's default executor has CPUs + 4 threads (6 on two
# cores), which would hold the rest of containerConcurrency's deliveries in its queue.
DELIVERIES = ThreadPoolExecutor(max_workers=CONFIG.pool_size + MAX_OVERFLOW, thread_name_prefix="notify")


@aio.cloud_event
async def handle(event: CloudEvent) -> None:
    if event["type"] != FLAGGED:
        HANDLED.labels("ignored").inc()
        return
    await asyncio.get_running_loop().run_in_executor(DELIVERIES, notify, event)


def notify(event: CloudEvent) -> None:
    try:
        result = notify_once(engine(), event, CONFIG, unrecorded)
    except PermanentError as error:
        HANDLED.labels("rejected").inc()
        raise problem(422, "unnotifiable-event", "Event cannot be e-mailed", str(error)) from None
    except (smtplib.SMTPException, OSError) as error:
        HANDLED.labels("smtp_unavailable").inc()
        log.warning("SMTP %s:%s: %r", CONFIG.smtp_host, CONFIG.smtp_port, error)
        raise problem(
            503, "smtp-unavailable", "Mail server unavailable", "the e-mail was not accepted"
        ) from None
    except SQLAlchemyError as error:
        HANDLED.labels("database_unavailable").inc()
        log.warning("PostgreSQL: %s", str(error).splitlines()[0])
        raise problem(
            503, "database-unavailable", "Database unavailable", "the notification was not recorded"
        ) from None
    HANDLED.labels(result.outcome).inc()
