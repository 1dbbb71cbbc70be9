"""The e-mail for a flagged order (sent by notifier/smtp.py)."""

from __future__ import annotations

import json
import uuid
from email.message import EmailMessage
from typing import Any

from cloudevents.abstract import AnyCloudEvent

from .config import Config

FLAGGED = "dev.ripple.shop.order.flagged"
# Message-IDs are uuid5(this, "<source>#<id>"): a resend after a crash is recognisably the same mail.
MESSAGE_NAMESPACE = uuid.UUID("0b6c3f52-8e1d-5a47-9c2b-4d7e6f8a9b10")


class PermanentError(Exception):
    """A flagged-order event that can never be e-mailed (answered 422: dead-lettered)."""


def order_of(event: AnyCloudEvent) -> dict[str, Any]:
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise PermanentError("the data is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("orderId"), str) or not data["orderId"]:
        raise PermanentError("data.orderId is missing")
    return data


def message_id(event: AnyCloudEvent) -> str:
    name = "{}#{}".format(event["source"], event["id"])
    return f"<{uuid.uuid5(MESSAGE_NAMESPACE, name)}@ripple.notifier>"


def compose(event: AnyCloudEvent, order: dict[str, Any], config: Config) -> EmailMessage:
    tenant = event.get("tenant") or "(no tenant)"
    amount, currency = order.get("amount"), order.get("currency") or ""
    mail = EmailMessage()
    mail["From"] = config.mail_from
    mail["To"] = config.fraud_desk
    # Headers holding attribute values are built with the policy's header factory: assigned as a
    # str, a value with U+2028/U+2029 (valid CloudEvents text) is refused as a "linefeed" (the
    # check uses str.splitlines) and the event failed with a 500; built, they are RFC 2047-encoded.
    header = mail.policy.header_factory
    subject = f"Flagged order {tenant}/{order['orderId']}: {amount} {currency}".strip()
    mail["Subject"] = header("Subject", subject)
    mail["Message-ID"] = message_id(event)
    # The event's identity, for the desk's tools (and the tests) to match mails to events.
    mail["X-Ripple-Event-Source"] = header("X-Ripple-Event-Source", event["source"])
    mail["X-Ripple-Event-Id"] = header("X-Ripple-Event-Id", event["id"])
    mail.set_content(
        f"Order {order['orderId']} of tenant {tenant} was flagged for review.\n\n"
        f"Amount: {amount} {currency}\n"
        f"Reason: {order.get('reason', 'not given')}\n"
        f"Flagged at: {event.get('time') or 'unknown'}\n"
        f"Event: {event['source']} {event['id']}\n"
    )
    return mail
