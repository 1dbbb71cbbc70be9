"""notifier/smtp.py against the stack's mail sink (a real SMTP server): kept-open connections
are reused, and one the server dropped meanwhile is reopened without losing the mail."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent

FUNCTION_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(FUNCTION_DIR))

from notifier import smtp  # noqa: E402
from notifier.config import Config  # noqa: E402
from notifier.mail import Mail, compose  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config(stack) -> Config:
    return Config.from_env(
        {
            "POSTGRES_PASSWORD": "unused",
            "FRAUD_DESK_ADDRESS": "desk@test.invalid",
            "SMTP_SERVER": f"{stack.settings.host}:{stack.settings.ports['mail_sink']}",
        }
    )


def mail(marker: str, config: Config) -> Mail:
    attributes = {"specversion": "1.0", "id": marker, "source": "/test/smtp", "type": "smtp.test"}
    order = {"orderId": "kept-open connection test"}
    return compose(CloudEvent(attributes, None), order, config, datetime.now(UTC))


def delivered(stack, marker: str) -> int:
    header = f"\nX-Ripple-Event-Id: {marker}\r\n".encode()
    return sum(header in p.read_bytes()[:4096] for p in Path(stack.settings.mail_dir).glob("*.eml"))


def test_one_connection_carries_many_mails_and_a_dropped_one_is_reopened(stack, config):
    markers = [f"smtp-{uuid.uuid4()}" for _ in range(4)]
    smtp.send(mail(markers[0], config), config)
    kept = smtp._local.client
    smtp.send(mail(markers[1], config), config)
    assert smtp._local.client is kept  # reused
    stack.stop("mail-sink")  # the server goes away: the kept connection is dead
    stack.start("mail-sink")
    smtp.send(mail(markers[2], config), config)
    assert smtp._local.client is not kept  # reopened, and the mail went through
    smtp.send(mail(markers[3], config), config)
    assert [delivered(stack, m) for m in markers] == [1, 1, 1, 1]
