"""The flagged order's e-mail (notifier/mail.py), read back with the email package's parser.

Table tests: whatever the event's attributes and the order hold (non-ASCII, CR/LF, U+2028, very
long values), the bytes are one RFC 5322 message whose headers and body decode back to exactly
what went in, with no header an attribute could add, lines within the RFCs' limits, and the
Message-ID derived from (source, id).
"""

from __future__ import annotations

import email
import email.policy
import re
import sys
from datetime import UTC, datetime
from email.utils import getaddresses
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

FUNCTION_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(FUNCTION_DIR))

from notifier.config import Config, ConfigError, addresses_usable  # noqa: E402
from notifier.mail import compose, encoded_words, header, message_id  # noqa: E402

ENV = {"POSTGRES_PASSWORD": "unused", "FRAUD_DESK_ADDRESS": "desk@test.invalid"}
NOW = datetime(2026, 12, 3, 17, 0, 0, tzinfo=UTC)


def event(source: str = "/test/mail", event_id: str = "e-1", tenant: str | None = "acme") -> CloudEvent:
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "dev.ripple.shop.order.flagged",
        "time": "2026-12-03T16:59:59Z",
    }
    if tenant is not None:
        attributes["tenant"] = tenant
    return CloudEvent(attributes, {"orderId": "o-1"})


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def body_of(event_: CloudEvent, order: dict) -> str:
    tenant = event_.get("tenant") or "(no tenant)"
    return (
        f"Order {order['orderId']} of tenant {tenant} was flagged for review.\n\n"
        f"Amount: {order.get('amount')} {order.get('currency') or ''}\n"
        f"Reason: {order.get('reason', 'not given')}\n"
        f"Flagged at: {event_.get('time') or 'unknown'}\n"
        f"Event: {event_['source']} {event_['id']}\n"
    )


CASES = [
    # (case, event, order, settings)
    ("plain ASCII", event(), {"orderId": "o-1", "amount": 5000, "currency": "EUR", "reason": "amount"}, {}),
    ("no tenant, no amount", event(tenant=None), {"orderId": "o-2"}, {}),
    (
        "non-ASCII tenant, order, reason",
        event(tenant="bäckerei-müller"),
        {"orderId": "bestellung-ü", "amount": 12.5, "currency": "€", "reason": "Betrag über 1000 — prüfen"},
        {},
    ),
    (
        "line breaks in attributes (U+2028, CRLF, LF)",
        event(source="/shop\u2028Bcc: x@y", event_id="id\r\nBcc: evil@example.com", tenant="a\nb"),
        {"orderId": "o\r3", "reason": "line one\nline two\r\n.\r\n"},
        {},
    ),
    (
        "control characters and tabs",
        event(source="/s\x00\x1b", event_id="id\tx"),
        {"orderId": "o-4", "reason": "tab\there and trailing spaces   "},
        {},
    ),
    ("very long values", event(source="/" + "s" * 1500, event_id="é" * 400), {"orderId": "o" * 1200}, {}),
    (
        "display names in the settings",
        event(),
        {"orderId": "o-5"},
        {
            "MAIL_FROM": "Ripple Benachrichtigung <notifier@ripple.invalid>",
            "FRAUD_DESK_ADDRESS": '"Désk, Fraud" <desk@test.invalid>, b@test.invalid',
        },
    ),
]


@pytest.mark.parametrize(("case", "event_", "order", "settings"), CASES, ids=[c[0] for c in CASES])
def test_the_mail_decodes_back_to_what_went_in(case, event_, order, settings):
    config = Config.from_env(ENV | settings)
    mail = compose(event_, order, config, NOW)
    message = parsed(mail.data)
    tenant = event_.get("tenant") or "(no tenant)"
    subject = (
        f"Flagged order {tenant}/{order['orderId']}: {order.get('amount')} {order.get('currency') or ''}"
    )
    assert message["Subject"] == subject.strip()
    assert message["X-Ripple-Event-Source"] == event_["source"]
    assert message["X-Ripple-Event-Id"] == event_["id"]
    assert message["Message-ID"] == mail.message_id == message_id(event_)
    assert message["Date"].datetime == NOW
    for name, setting in (("From", config.mail_from), ("To", config.fraud_desk)):
        assert [(a.display_name, a.addr_spec) for a in message[name].addresses] == getaddresses([setting])
    assert message.get_content_type() == "text/plain"
    # The body's lines end in CRLF on the wire; a CR inside a value stays a CR.
    assert message.get_content() == body_of(event_, order).replace("\n", "\r\n")
    # Nothing an attribute holds becomes a header of its own.
    assert sorted(message.keys()) == sorted(
        [
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "X-Ripple-Event-Source",
            "X-Ripple-Event-Id",
            "MIME-Version",
            "Content-Type",
            "Content-Transfer-Encoding",
        ]
    )
    assert not message.defects and all(not message[name].defects for name in message)
    # CRLF line ends only; no line over 998 characters, none holding an encoded word over 76.
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", mail.data) is None
    for line in mail.data.split(b"\r\n"):
        assert len(line) <= 998
        if b"=?utf-8?" in line:
            assert len(line) <= 76, line


def test_plain_values_go_as_they_are_and_the_envelope_comes_from_the_settings():
    config = Config.from_env(
        ENV
        | {
            "MAIL_FROM": "Ripple <notifier@ripple.invalid>",
            "FRAUD_DESK_ADDRESS": "Désk <d@x.invalid>, e@x.invalid",
        }
    )
    mail = compose(event(event_id="e-42"), {"orderId": "o-1", "amount": 5000, "currency": "EUR"}, config, NOW)
    head = mail.data.split(b"\r\n\r\n")[0]
    assert b"\r\nSubject: Flagged order acme/o-1: 5000 EUR\r\n" in head
    assert b"\r\nX-Ripple-Event-Id: e-42\r\n" in head  # what the tests' mail search looks for
    assert b"\r\nContent-Transfer-Encoding: 7bit" in head
    assert head.startswith(b"From: Ripple <notifier@ripple.invalid>\r\nTo: =?utf-8?b?")
    assert (mail.sender, mail.recipients) == ("notifier@ripple.invalid", ("d@x.invalid", "e@x.invalid"))
    assert parsed(mail.data)["To"].addresses[0].display_name == "Désk"


def test_a_resend_is_the_same_message_byte_for_byte():
    config = Config.from_env(ENV)
    order = {"orderId": "o-1", "amount": 5000, "currency": "EUR"}
    first, again = compose(event(), order, config, NOW), compose(event(), order, config, NOW)
    assert first == again
    assert first.message_id.startswith("<") and first.message_id.endswith("@ripple.notifier>")
    assert compose(event(event_id="e-2"), order, config, NOW).message_id != first.message_id


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "ä"),
        ("Subject", "€" * 100),  # three bytes each: never split between two words
        ("X-Ripple-Event-Source", "x" * 44 + "😀" * 30),
        ("X-Ripple-Event-Id", "\r\n\u2028\u2029\x00"),
    ],
)
def test_encoded_words_hold_whole_characters_within_76_columns(name, value):
    line = header(name, value)
    assert line.endswith("\r\n") and "\n" not in line[:-2].replace("\r\n ", "")
    for row in line[:-2].split("\r\n"):
        assert len(row) <= 76
    assert str(parsed(line.encode() + b"\r\n")[name]) == value
    for word in encoded_words(name, value).split("\r\n "):
        # each word decodes alone (no UTF-8 sequence cut in two)
        email.header.decode_header(word)[0][0].decode("utf-8")


@pytest.mark.parametrize(
    ("value", "usable"),
    [
        ("desk@test.invalid", True),
        ("Désk <desk@test.invalid>", True),
        ("a@test.invalid, b@test.invalid", True),
        ("dé@test.invalid", False),  # would need SMTPUTF8
        ("desk", False),
        ("", False),
    ],
)
def test_addresses_usable(value, usable):
    assert addresses_usable(value) is usable


def test_settings_refuse_addresses_the_mail_cannot_carry():
    with pytest.raises(ConfigError, match="FRAUD_DESK_ADDRESS"):
        Config.from_env(ENV | {"FRAUD_DESK_ADDRESS": "dé@test.invalid"})
    with pytest.raises(ConfigError, match="MAIL_FROM"):
        Config.from_env(ENV | {"MAIL_FROM": "a@test.invalid, b@test.invalid"})
