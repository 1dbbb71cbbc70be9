"""The e-mail for a flagged order, as the bytes the SMTP server gets (sent by notifier/smtp.py).

Written here rather than built with the email package's EmailMessage: its header registry parses
and refolds every header, and composing plus flattening one mail cost ~0.65 ms of CPU, about a
seventh of the notifier's work per notification (issue 19, loadtest/broker/profiles/). The mail is
a single text/plain part, so a small formatter gives the same RFC 5322 message:

- header values that are printable ASCII go as they are; any other (non-ASCII, or a control
  character such as CR/LF or U+2028, which CloudEvents text allows) become RFC 2047 encoded words
  (UTF-8, base64), so an attribute can never start a header of its own and decodes back unchanged;
- addresses come from the settings (MAIL_FROM, FRAUD_DESK_ADDRESS), parsed once; display names
  may be non-ASCII (encoded), addr-specs are ASCII (notifier/config.py refuses others: a server
  without SMTPUTF8 could not take them);
- the body is UTF-8, 7bit while it is plain ASCII with lines under 998 characters, otherwise
  quoted-printable; lines end in CRLF.

The Message-ID is derived from the event's (source, id) and the Date is the event's time, so a
resend is the same message, byte for byte.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import uuid
from binascii import b2a_qp
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr, getaddresses
from typing import Any

from cloudevents.abstract import AnyCloudEvent

from .config import Config

FLAGGED = "dev.ripple.shop.order.flagged"
# Message-IDs are uuid5(this, "<source>#<id>"): a resend after a crash is recognisably the same mail.
MESSAGE_NAMESPACE = uuid.UUID("0b6c3f52-8e1d-5a47-9c2b-4d7e6f8a9b10")

# RFC 2047: a line holding encoded words is at most 76 characters; an encoded word is
# "=?utf-8?b?" + base64 + "?=" (12 characters around the base64).
ENCODED_LINE = 76
ENCODED_OVERHEAD = len("=?utf-8?b??=")
# RFC 5322: at most 998 characters on a line, CRLF excluded.
LONGEST_LINE = 998
_NOT_PLAIN_HEADER = re.compile(r"[^\x20-\x7e]")
_NOT_PLAIN_BODY = re.compile(r"[^\x20-\x7e\t\n]")


class PermanentError(Exception):
    """A flagged-order event that can never be e-mailed (answered 422: dead-lettered)."""


@dataclass(frozen=True)
class Mail:
    """What the SMTP transaction needs: the envelope and the message."""

    sender: str  # MAIL FROM
    recipients: tuple[str, ...]  # RCPT TO
    message_id: str
    data: bytes  # the whole RFC 5322 message, CRLF line ends


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


def encoded_words(name: str, value: str) -> str:
    """`value` as RFC 2047 encoded words (UTF-8, base64), folded so no line passes 76 characters.

    Each word holds whole characters (a UTF-8 sequence is never split between two words); the
    first is shorter by the header's name.
    """
    words: list[str] = []
    room = ENCODED_LINE - len(name) - len(": ") - ENCODED_OVERHEAD
    chunk = bytearray()
    for character in value:
        encoded = character.encode()
        if chunk and (len(chunk) + len(encoded) + 2) // 3 * 4 > room:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
            chunk.clear()
            room = ENCODED_LINE - len(" ") - ENCODED_OVERHEAD
        chunk += encoded
    words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode()}?=")
    return "\r\n ".join(words)  # whitespace between encoded words is not part of the text


def header(name: str, value: str) -> str:
    """One header line (CRLF-terminated): the value as is when it is plain, else encoded."""
    if value and (_NOT_PLAIN_HEADER.search(value) or len(name) + 2 + len(value) > LONGEST_LINE):
        return f"{name}: {encoded_words(name, value)}\r\n"
    return f"{name}: {value}\r\n"


@functools.lru_cache(maxsize=8)
def addresses(mail_from: str, fraud_desk: str) -> tuple[str, tuple[str, ...], str, str]:
    """(envelope sender, envelope recipients, From line, To line) of the settings, parsed once."""
    sender = getaddresses([mail_from])
    recipients = getaddresses([fraud_desk])
    from_line = "From: " + ", ".join(formataddr(pair, charset="utf-8") for pair in sender) + "\r\n"
    to_line = "To: " + ", ".join(formataddr(pair, charset="utf-8") for pair in recipients) + "\r\n"
    return sender[0][1], tuple(address for _, address in recipients), from_line, to_line


def body_part(text: str) -> tuple[str, bytes]:
    """(Content-Transfer-Encoding, body with CRLF line ends) of a text whose lines end in LF."""
    lines = text.split("\n")
    if not _NOT_PLAIN_BODY.search(text) and all(len(line) <= LONGEST_LINE for line in lines):
        return "7bit", "\r\n".join(lines).encode("ascii")
    # Line by line and as binary, so a CR or LF inside a value is encoded (=0D, =0A) rather than
    # becoming a line break; the only LFs in the output are the soft breaks (=) every 76 characters.
    return "quoted-printable", b"\r\n".join(
        b2a_qp(line.encode(), istext=False).replace(b"\n", b"\r\n") for line in lines
    )


def compose(event: AnyCloudEvent, order: dict[str, Any], config: Config, date: datetime) -> Mail:
    """The mail of a flagged order. `date` is its Date: the flagged event's time (notify.py), so
    that a resend is the same bytes as the first send, not only the same Message-ID."""
    tenant = event.get("tenant") or "(no tenant)"
    amount, currency = order.get("amount"), order.get("currency") or ""
    sender, recipients, from_line, to_line = addresses(config.mail_from, config.fraud_desk)
    mail_id = message_id(event)
    subject = f"Flagged order {tenant}/{order['orderId']}: {amount} {currency}".strip()
    encoding, body = body_part(
        f"Order {order['orderId']} of tenant {tenant} was flagged for review.\n\n"
        f"Amount: {amount} {currency}\n"
        f"Reason: {order.get('reason', 'not given')}\n"
        f"Flagged at: {event.get('time') or 'unknown'}\n"
        f"Event: {event['source']} {event['id']}\n"
    )
    head = "".join(
        (
            from_line,
            to_line,
            header("Subject", subject),
            f"Date: {format_datetime(date)}\r\n",
            f"Message-ID: {mail_id}\r\n",
            # The event's identity, for the desk's tools (and the tests) to match mails to events.
            header("X-Ripple-Event-Source", str(event["source"])),
            header("X-Ripple-Event-Id", str(event["id"])),
            "MIME-Version: 1.0\r\n",
            'Content-Type: text/plain; charset="utf-8"\r\n',
            f"Content-Transfer-Encoding: {encoding}\r\n",
            "\r\n",
        )
    )
    return Mail(sender, recipients, mail_id, head.encode("ascii") + body)
