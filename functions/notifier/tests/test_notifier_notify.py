"""The notifier's outbox (notifier/notify.py).

Unit: the event's time, and the in-process memory of acceptances not yet recorded.
Integration, against the real PostgreSQL and the stack's mail sink: PostgreSQL is stopped
between the SMTP server's acceptance and the commit that marks the row sent; the redelivery then
sends nothing (one mail, row `sent`). A process that died in that window (its memory gone)
resends the same message, same Message-ID, and the row ends `sent`.
"""

from __future__ import annotations

import email
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudevents.http import CloudEvent
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from ripple_events.samples import ORDER_FLAGGED, cloud_event

FUNCTION_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(FUNCTION_DIR))

from notifier import notify  # noqa: E402
from notifier.config import Config  # noqa: E402
from notifier.notify import DUPLICATE, MAILED, RECORD, RECORDED, RESENT, Unrecorded, event_time  # noqa: E402
from notifier.schema import notifications  # noqa: E402

SOURCE = "/test/notify"


def flagged(order_id: str, **attributes: str) -> CloudEvent:
    data = json.dumps({"orderId": order_id, "amount": 5000, "currency": "EUR"})
    return cloud_event(ORDER_FLAGGED, data, SOURCE, **attributes)


# --- unit ----------------------------------------------------------------------------------------


def test_event_time_reads_rfc3339_and_tolerates_its_absence():
    assert event_time(flagged("o", time="2026-12-03T02:00:00.250Z")) == datetime(
        2026, 12, 3, 2, 0, 0, 250000, UTC
    )
    assert event_time(flagged("o", time="2026-12-03T03:00:00+01:00")) == datetime(
        2026, 12, 3, 2, 0, tzinfo=UTC
    )
    assert event_time({}) is None  # type: ignore[arg-type]  (the SDK always sets one; others may not)
    assert event_time(flagged("o", time="yesterday")) is None


def test_the_outbox_insert_names_the_tables_columns():
    # Written as SQL (SQLAlchemy cannot cache its ON CONFLICT construct): it must follow the table.
    written = RECORD.text.split("(", 2)[1].split(")")[0].split(", ")
    left_to_the_server = {"recorded_at", "sent_at"}  # server default; set when marked sent
    assert sorted(written) == sorted(set(notifications.c.keys()) - left_to_the_server)
    assert "ON CONFLICT (source, id)" in RECORD.text
    assert [c.name for c in notifications.primary_key.columns] == ["source", "id"]


def test_unrecorded_remembers_an_acceptance_until_it_is_discarded():
    memory = Unrecorded(lambda: None)  # type: ignore[arg-type,return-value]  (never records here)
    accepted = datetime.now(UTC)
    memory.add(("s", "1"), accepted)
    assert memory.get(("s", "1")) == accepted
    assert memory.get(("s", "2")) is None
    assert len(memory) == 1
    memory.discard(("s", "1"))
    memory.discard(("s", "1"))
    assert len(memory) == 0


# --- integration: the real PostgreSQL and mail sink ----------------------------------------------


@pytest.fixture(scope="module")
def config(stack) -> Config:
    return Config.from_env(
        {
            **stack.postgres_env,
            "FRAUD_DESK_ADDRESS": "desk@test.invalid",
            "SMTP_SERVER": f"{stack.settings.host}:{stack.settings.ports['mail_sink']}",
            "DB_CONNECT_TIMEOUT_S": "2",
        }
    )


@pytest.fixture(scope="module")
def engine(stack):
    engine = create_engine(stack.postgres_url, pool_pre_ping=True, connect_args={"connect_timeout": 2})
    yield engine
    engine.dispose()


def mails(stack, event_id: str) -> list[email.message.Message]:
    found = []
    header = f"\nX-Ripple-Event-Id: {event_id}\r\n".encode()
    for path in Path(stack.settings.mail_dir).glob("*.eml"):
        head = path.read_bytes()
        if header in head[:4096]:
            found.append(email.message_from_bytes(head))
    return found


def row(engine, event_id: str) -> dict:
    with engine.connect() as connection:
        found = connection.execute(
            text(
                "SELECT state, attempts, sent_at, message_id FROM notifications WHERE source = :s AND id = :i"
            ),
            {"s": SOURCE, "i": event_id},
        ).one()
    return dict(found._mapping)


@pytest.fixture
def postgres_stopped_after_the_send(stack, monkeypatch):
    """notify's send, then PostgreSQL stopped before the commit; started again on leaving."""
    stopped = []
    real_send = notify.send

    def send_then_stop(mail, config):
        real_send(mail, config)
        if not stopped:
            stack.stop("postgres")
            stopped.append(True)

    monkeypatch.setattr(notify, "send", send_then_stop)
    try:
        yield stopped
    finally:
        if stopped:
            stack.start("postgres")


@pytest.mark.integration
def test_postgres_lost_between_send_and_commit_mails_each_order_once(
    stack, config, engine, postgres_stopped_after_the_send
):
    memory = Unrecorded(lambda: engine, interval_s=0.5)
    first, second = flagged("o-window-1"), flagged("o-window-2")  # `time`: now (the SDK's default)
    observed = REGISTRY.get_sample_value("ripple_notifier_alert_to_mail_seconds_count") or 0
    with pytest.raises(SQLAlchemyError):  # the handler answers 503: the Trigger redelivers
        notify.notify_once(engine, first, config, memory)
    assert postgres_stopped_after_the_send and len(mails(stack, first["id"])) == 1
    assert memory.get((SOURCE, first["id"])) is not None
    # Redelivered while PostgreSQL is still down: still 503, and nothing sent.
    with pytest.raises(SQLAlchemyError):
        notify.notify_once(engine, first, config, memory)
    assert len(mails(stack, first["id"])) == 1
    stack.start("postgres")
    postgres_stopped_after_the_send.clear()
    # PostgreSQL is back: the redelivery (or the background recorder before it) records the
    # acceptance; nothing is sent again.
    outcome = notify.notify_once(engine, first, config, memory).outcome
    assert outcome in (RECORDED, DUPLICATE)
    postgres_stopped_after_the_send.append(True)  # no second stop
    assert notify.notify_once(engine, second, config, memory).outcome == MAILED
    assert notify.notify_once(engine, second, config, memory).outcome == DUPLICATE
    for event in (first, second):
        assert len(mails(stack, event["id"])) == 1
        stored = row(engine, event["id"])
        assert stored["state"] == "sent" and stored["sent_at"] is not None
    assert len(memory) == 0
    # Each mail's alert -> mail delay was observed once, when the SMTP server accepted it.
    assert REGISTRY.get_sample_value("ripple_notifier_alert_to_mail_seconds_count") == observed + 2


@pytest.mark.integration
def test_a_pending_row_left_by_a_dead_process_is_resent_with_the_same_message_id(
    stack, config, engine, postgres_stopped_after_the_send
):
    class DiesNow(Unrecorded):
        def keep_recording(self) -> None:  # the process dies before it records anything
            pass

    event = flagged("o-crash")
    with pytest.raises(SQLAlchemyError):
        notify.notify_once(engine, event, config, DiesNow(lambda: engine))
    stack.start("postgres")
    postgres_stopped_after_the_send.clear()
    postgres_stopped_after_the_send.append(True)
    # That process is gone (its memory with it): another instance gets the redelivery.
    assert row(engine, event["id"])["state"] == "pending"
    assert notify.notify_once(engine, event, config, Unrecorded(lambda: engine)).outcome == RESENT
    sent = mails(stack, event["id"])
    assert len(sent) == 2
    assert sent[0]["Message-ID"] == sent[1]["Message-ID"] == row(engine, event["id"])["message_id"]
    assert sent[0].as_bytes() == sent[1].as_bytes()  # the same message (its Date is the event's time)
    stored = row(engine, event["id"])
    assert (stored["state"], stored["attempts"]) == ("sent", 2)
