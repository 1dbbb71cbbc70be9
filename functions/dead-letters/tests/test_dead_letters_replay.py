"""dead-letters against the real PostgreSQL: a dead letter is stored once with its Knative error
extensions, and replay re-sends it, without them, to the sink that failed."""

from __future__ import annotations

import base64
import importlib.util
import uuid
from pathlib import Path

import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from sqlalchemy import text
from starlette.testclient import TestClient

from ripple_consumer.http import create_app
from ripple_events.samples import ORDER_PLACED, cloud_event

pytestmark = pytest.mark.integration

FUNCTION_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def environment(stack):
    with stack.function_environment(FUNCTION_DIR):
        yield


@pytest.fixture(scope="module")
def client(environment):
    return TestClient(create_app(str(FUNCTION_DIR / "main.py")))


@pytest.fixture
def sink(http_sink):
    """The shared sink's URL and what was posted to it since this test began."""
    url, posted = http_sink
    posted.clear()
    return url, posted


def headers_of(posted) -> list[dict[str, str]]:
    return [dict(headers) for headers, _ in posted]


def dead_letter(source: str) -> CloudEvent:
    return cloud_event(
        ORDER_PLACED,
        {"orderId": "o-1"},
        source,
        knativeerrordest="http://127.0.0.1:9/",
        knativeerrorcode="500",
        knativeerrordata=base64.b64encode(b"database exploded").decode(),
    )


def post(client, event: CloudEvent):
    headers, body = to_binary(event)
    return client.post("/", headers=headers, content=body)


def test_dead_letter_is_stored_once_and_replayed_without_error_extensions(
    client, database, sink, environment
):
    url, received = sink
    source = f"/test/dead-letters/{uuid.uuid4()}"
    event = dead_letter(source)
    assert post(client, event).status_code == 200
    assert post(client, event).status_code == 200  # a redelivered dead letter is a no-op
    with database.connect() as connection:
        rows = connection.execute(
            text("SELECT error_dest, error_code, error_data, tenant FROM dead_letters WHERE source = :s"),
            {"s": source},
        ).all()
    assert [tuple(r) for r in rows] == [("http://127.0.0.1:9/", "500", "database exploded", "acme")]

    spec = importlib.util.spec_from_file_location("dead_letters_replay", FUNCTION_DIR / "replay.py")
    replay = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replay)
    assert replay.main(["--source", source, "--to", url]) == 0
    assert len(received) == 1
    (sent,) = headers_of(received)
    assert sent["ce-id"] == event["id"]
    assert sent["ce-tenant"] == "acme"
    assert not any(h.startswith("ce-knativeerror") for h in sent)
    assert replay.main(["--source", source, "--to", url]) == 0  # already replayed: nothing sent
    assert len(received) == 1


def flagged_dead_letter(source: str) -> CloudEvent:
    event = dead_letter(source)
    event["type"] = "dev.ripple.shop.order.flagged"
    return event


def test_replay_skips_what_was_already_mailed_unless_told(client, database, sink, environment, capsys):
    """Issue 19: a flagged order already `sent` in notifications is listed as handled and not
    sent again; a `pending` one and one never recorded are replayed; --include-handled sends all."""
    url, received = sink
    source = f"/test/dead-letters/{uuid.uuid4()}"
    mailed, pending, unknown = (flagged_dead_letter(source) for _ in range(3))
    for event in (mailed, pending, unknown):
        assert post(client, event).status_code == 200
    with database.begin() as connection:
        for event, state in ((mailed, "sent"), (pending, "pending")):
            connection.execute(
                text(
                    "INSERT INTO notifications (source, id, order_id, recipient, message_id, state,"
                    " attempts, sent_at) VALUES (:s, :i, 'o-1', 'desk@test.invalid', '<m@test>', :state,"
                    " 1, CASE WHEN :state = 'sent' THEN now() END)"
                ),
                {"s": source, "i": event["id"], "state": state},
            )
    try:
        spec = importlib.util.spec_from_file_location(
            "dead_letters_replay_handled", FUNCTION_DIR / "replay.py"
        )
        replay = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(replay)
        capsys.readouterr()
        assert replay.main(["--source", source, "--to", url, "--dry-run"]) == 0
        listed = capsys.readouterr().out
        assert f"{source}/{mailed['id']}" in listed.split("already handled downstream, skipped:")[1]
        assert "already mailed (notifications: sent at" in listed
        assert "notification pending after 1 attempt(s)" in listed
        assert received == []  # a dry run sends nothing
        assert replay.main(["--source", source, "--to", url]) == 0
        assert sorted(r["ce-id"] for r in headers_of(received)) == sorted([pending["id"], unknown["id"]])
        assert "1 skipped (already handled)" in capsys.readouterr().out
        # Told otherwise, the operator gets the handled one sent too (the others were replayed).
        assert replay.main(["--source", source, "--to", url, "--include-handled"]) == 0
        assert sorted(r["ce-id"] for r in headers_of(received)) == sorted(
            [pending["id"], unknown["id"], mailed["id"]]
        )
    finally:
        with database.begin() as connection:
            connection.execute(text("DELETE FROM notifications WHERE source = :s"), {"s": source})
