"""order-alerts' alert on the wire (order_alerts/emit.py), without servers.

The Kafka record and the Broker request are written from the alert's attributes without the SDK's
conversions: they must be what those conversions write (cloudevents.kafka.to_binary plus the
partitionkey header; ripple_cloudevents.to_binary_request). The alert row's INSERT, written as
SQL, must name the table's columns. The publisher waits for Kafka's delivery report (a stand-in
producer here) and answers a failed or missing report with KafkaUnacknowledged (503); the Broker
post (a local HTTP server here) keeps its connection, replaces one the server closed, and fails
the request with 503 unless the Broker answers 2xx.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cloudevents.http import CloudEvent
from cloudevents.kafka import to_binary as to_kafka
from starlette.exceptions import HTTPException

from ripple_cloudevents import to_binary_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from order_alerts import emit
from order_alerts.alerts import RECORD, Alert, alert_message
from order_alerts.config import Config, ConfigError
from order_alerts.schema import order_alerts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def alert(tenant: str = "acme", order_id: str = "o-1", currency: str | None = "EUR") -> Alert:
    return Alert(
        tenant=tenant,
        order_id=order_id,
        alert_id="0f1e2d3c-4b5a-5968-8776-655443322110",
        amount=Decimal("2500.50"),
        currency=currency,
        threshold=Decimal("1000"),
        created_at=datetime(2026, 12, 3, 17, 0, 0, 123456, tzinfo=UTC),
        emitted=False,
    )


@pytest.mark.parametrize(
    "flagged",
    [
        alert(),
        alert(currency=None),
        # percent-encoded in HTTP, raw UTF-8 in Kafka
        alert(tenant="zürich", order_id='o 1 %2F "quoted" ü'),
    ],
)
def test_the_record_and_the_request_are_what_the_sdk_writes(flagged: Alert) -> None:
    message = alert_message(flagged, "/ripple/order-alerts")
    event = CloudEvent(message.attributes, message.data)

    record = to_kafka(event)
    sdk_headers = {**record.headers, "ce_partitionkey": record.key.encode()}
    assert dict(emit.kafka_headers(message)) == sdk_headers
    assert len(emit.kafka_headers(message)) == len(sdk_headers)
    assert message.key == record.key.encode() == f"{flagged.tenant}/{flagged.order_id}".encode()
    assert message.body == record.value

    headers, body = to_binary_request(event)
    assert emit.http_headers(message) == headers
    assert message.body == body


def test_the_alert_is_the_same_whenever_it_is_rebuilt() -> None:
    first, again = alert_message(alert(), "/s"), alert_message(alert(), "/s")
    assert first == again
    assert first.attributes["id"] == alert().alert_id
    assert first.attributes["time"] == "2026-12-03T17:00:00.123456+00:00"
    assert first.data["threshold"] == 1000.0 and first.data["amount"] == 2500.5


def test_the_alert_insert_names_the_tables_columns() -> None:
    # Written as SQL (SQLAlchemy cannot cache its ON CONFLICT construct): it must follow the table.
    written = RECORD.text.split("(", 2)[1].split(")")[0].split(", ")
    left_to_the_server = {"created_at", "emitted_at"}  # server default; set when marked emitted
    assert sorted(written) == sorted(set(order_alerts.c.keys()) - left_to_the_server)
    returned = RECORD.text.split("RETURNING ")[1].split(", ")
    assert sorted(returned) == sorted(set(order_alerts.c.keys()) - {"trigger_source", "trigger_id"})


class StandInProducer:
    """confluent_kafka.Producer's calls the publisher makes; reports as told (or never)."""

    def __init__(self, options: dict[str, Any], report: str) -> None:
        self.options = options
        self.report = report
        self.records: list[dict[str, Any]] = []
        self.pending: list[Any] = []

    def produce(self, topic: str, **record: Any) -> None:
        self.records.append({"topic": topic, **record})
        if self.report != "never":
            self.pending.append(record["on_delivery"])

    def poll(self, timeout: float) -> int:
        served = 0
        while self.pending:
            callback = self.pending.pop()
            callback(None if self.report == "ok" else "KafkaError{code=_MSG_TIMED_OUT}", None)
            served += 1
        if not served:
            time.sleep(min(timeout, 0.01))
        return served


@pytest.fixture
def publisher(monkeypatch: pytest.MonkeyPatch) -> Any:
    import confluent_kafka

    monkeypatch.delenv("BROKER_URL", raising=False)
    monkeypatch.setattr(emit, "REPORT_MARGIN_S", 0.0)
    made: list[StandInProducer] = []

    def publisher_reporting(report: str) -> tuple[emit.AlertPublisher, list[StandInProducer]]:
        def factory(options: dict[str, Any]) -> StandInProducer:
            made.append(StandInProducer(options, report))
            return made[-1]

        monkeypatch.setattr(confluent_kafka, "Producer", factory)
        config = Config.from_env({"POSTGRES_PASSWORD": "x", "KAFKA_ACK_TIMEOUT_S": "0.2"})
        return emit.AlertPublisher(config), made

    yield publisher_reporting
    for producer in made:
        producer.report = "ok"


def test_publish_returns_once_kafka_acknowledged(publisher: Any) -> None:
    alerts, made = publisher("ok")
    message = alert_message(alert(), "/s")
    alerts.publish(message)
    (producer,) = made
    assert producer.options["acks"] == "all" and producer.options["enable.idempotence"] is True
    assert producer.options["delivery.timeout.ms"] == 200
    (record,) = producer.records
    assert record["topic"] == "ripple.shop.alerts" and record["key"] == b"acme/o-1"
    assert record["value"] == message.body and record["headers"] == emit.kafka_headers(message)


@pytest.mark.parametrize("report", ["error", "never"])
def test_an_alert_kafka_did_not_acknowledge_fails(publisher: Any, report: str) -> None:
    alerts, _ = publisher(report)
    with pytest.raises(emit.KafkaUnacknowledged):  # "never": after KAFKA_ACK_TIMEOUT_S
        alerts.publish(alert_message(alert(), "/s"))


def test_the_delivery_signal_passes_between_threads() -> None:
    delivery = emit._Delivery()
    assert not delivery.wait(0)
    threading.Thread(target=delivery.report, args=(None, None)).start()
    assert delivery.wait(5) and delivery.error is None


class Broker(BaseHTTPRequestHandler):
    """A Broker ingress stand-in: answers each POST with the status the test set, kept alive
    unless the test asked it to close the connection after answering."""

    protocol_version = "HTTP/1.1"
    status = 202
    close_after = False
    received: ClassVar[list[tuple[str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        Broker.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response_only(Broker.status)
        self.send_header("content-length", "0")
        self.end_headers()
        if Broker.close_after:
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broker_url() -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Broker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Broker.status, Broker.close_after, Broker.received = 202, False, []
    yield f"http://127.0.0.1:{server.server_address[1]}/ingress"
    server.shutdown()
    server.server_close()


def test_the_broker_gets_the_binary_mode_request_on_a_kept_connection(broker_url: str) -> None:
    broker = emit.BrokerConnections(broker_url, 5)
    message = alert_message(alert(tenant="zürich"), "/s")
    assert broker.post(message.body, emit.http_headers(message))[0] == 202
    first = broker.connection
    assert broker.post(message.body, emit.http_headers(message))[0] == 202
    assert broker.connection is first  # kept alive
    path, headers, body = Broker.received[0]
    assert path == "/ingress" and body == message.body
    assert headers["ce-tenant"] == "z%C3%BCrich" and headers["content-type"] == "application/json"


def test_a_connection_the_broker_closed_is_replaced_before_it_is_used(broker_url: str) -> None:
    broker = emit.BrokerConnections(broker_url, 5)
    Broker.close_after = True
    assert broker.post(b"{}", {"content-type": "application/json"})[0] == 202
    Broker.close_after = False
    time.sleep(0.2)  # the server's close reaches this side (no timing is asserted)
    assert broker.post(b"{}", {"content-type": "application/json"})[0] == 202
    assert len(Broker.received) == 2


def test_a_broker_that_does_not_confirm_fails_the_request(
    broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_URL", broker_url)
    config = Config.from_env({"POSTGRES_PASSWORD": "x"})
    Broker.status = 503
    with pytest.raises(HTTPException) as refused:
        emit.AlertPublisher(config)._to_broker(alert_message(alert(), "/s"))
    assert refused.value.status_code == 503 and "broker-unavailable" in refused.value.detail
    monkeypatch.setenv("BROKER_URL", f"http://127.0.0.1:{free_port()}/")  # nothing listens there
    with pytest.raises(HTTPException):
        emit.AlertPublisher(config)._to_broker(alert_message(alert(), "/s"))


def test_a_broker_url_that_is_no_http_url_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", "notifications-broker-ingress:80")
    with pytest.raises(ConfigError):
        emit.AlertPublisher(Config.from_env({"POSTGRES_PASSWORD": "x"}))
