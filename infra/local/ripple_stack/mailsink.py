"""The local mail sink: a real SMTP server (aiosmtpd) that keeps every message it receives.

In a cluster the notifier's SMTP server is configuration (SMTP_SERVER); locally this process
stands in for it so that `make up` can show an e-mail arriving. Each message is written whole
(headers and body as received, plus the envelope in X-Ripple-Envelope-* headers) to
$RIPPLE_HOME/mail/<time>-<n>.eml, atomically (written under tmp/, then renamed), and counted in
ripple_mail_sink_messages on GET /metrics of its metrics port.

  python -m ripple_stack.mailsink --port 18025 --metrics-port 18026 --dir .ripple/mail
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import CollectorRegistry, Counter, start_http_server


class MailDirHandler:
    def __init__(self, directory: Path, received: Counter) -> None:
        self.directory = directory
        (directory / "tmp").mkdir(parents=True, exist_ok=True)
        self.counter = itertools.count()
        self.received = received

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{next(self.counter)}.eml"
        envelope_headers = (
            f"X-Ripple-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Ripple-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        temporary = self.directory / "tmp" / name
        temporary.write_bytes(envelope_headers + content)
        os.replace(temporary, self.directory / name)
        self.received.inc()
        return "250 Message accepted for delivery"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ripple_stack.mailsink", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    arguments = parser.parse_args(argv)
    registry = CollectorRegistry()
    received = Counter("ripple_mail_sink_messages", "Messages the local mail sink stored", registry=registry)
    start_http_server(arguments.metrics_port, addr=arguments.host, registry=registry)
    controller = Controller(
        MailDirHandler(arguments.dir, received), hostname=arguments.host, port=arguments.port
    )
    controller.start()
    print(f"mail sink on smtp://{arguments.host}:{arguments.port}, writing to {arguments.dir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
