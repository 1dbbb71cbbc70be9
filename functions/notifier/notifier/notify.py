"""Once per flagged order: the row in notifications and the e-mail, in one transaction.

The row of (source, id) is inserted before the mail is sent and committed after. A concurrent
redelivery of the same event blocks in its own INSERT on the uncommitted key until this one
commits (then it inserts nothing: already sent) or rolls back (then it sends); a failed send
rolls the row back, so a retry sends again. The one window left is a crash between the
SMTP server's acceptance and the commit: the retry then resends the same mail (same Message-ID).
"""

from __future__ import annotations

from cloudevents.abstract import AnyCloudEvent
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert

from .config import Config
from .mail import compose, message_id, order_of, send
from .schema import notifications


def notify_once(engine: Engine, event: AnyCloudEvent, config: Config) -> bool:
    """True when this call sent the mail, False when it had been sent already."""
    order = order_of(event)
    with engine.begin() as connection:
        inserted = connection.execute(
            insert(notifications)
            .values(
                source=event["source"],
                id=event["id"],
                tenant=event.get("tenant"),
                order_id=order["orderId"],
                recipient=config.fraud_desk,
                message_id=message_id(event),
            )
            .on_conflict_do_nothing()
            .returning(notifications.c.id)
        ).first()
        if inserted is None:
            return False  # sent by an earlier delivery (committed)
        send(compose(event, order, config), config)
    return True
