"""SMTP sending over kept-open connections: one per serving thread, reused for every mail.

Opening a connection costs the greeting, EHLO, (STARTTLS, LOGIN) and QUIT round trips and, at a
hundred mails a second, more CPU in the notifier and in the SMTP server than the mail itself
(make bench-broker: the notifier path drained 165 mails/s with a connection per mail). A
connection unused for SMTP_IDLE_S is closed and reopened rather than reused (servers drop idle
clients: Postfix after 300 s, the local mail sink never). A kept connection the server closed
meanwhile fails at its first command, before anything was sent: it is reopened once and the mail
sent on the new one. Anything else propagates (smtplib.SMTPException or OSError: the handler
answers 503 and the outbox row stays pending). The mail arrives as bytes with its envelope
(notifier/mail.py): nothing is parsed or flattened here.
"""

from __future__ import annotations

import contextlib
import smtplib
import threading
import time

from .config import Config
from .mail import Mail

_local = threading.local()


def _open(config: Config) -> smtplib.SMTP:
    client = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.smtp_timeout_s)
    try:
        if config.smtp_starttls:
            client.starttls()
        if config.smtp_username:
            client.login(config.smtp_username, config.smtp_password or "")
    except BaseException:
        client.close()
        raise
    return client


def _drop() -> None:
    client = getattr(_local, "client", None)
    _local.client = None
    if client is not None:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.close()


def send(mail: Mail, config: Config) -> None:
    """Hand the mail to the SMTP server; raise smtplib.SMTPException or OSError on failure."""
    client: smtplib.SMTP | None = getattr(_local, "client", None)
    now = time.monotonic()
    if client is not None and (
        getattr(_local, "config", None) is not config or now - _local.used > config.smtp_idle_s
    ):
        _drop()
        client = None
    reused = client is not None
    if client is None:
        client = _local.client = _open(config)
        _local.config = config
    try:
        client.sendmail(mail.sender, list(mail.recipients), mail.data)
    except smtplib.SMTPServerDisconnected:
        _drop()
        if not reused:
            raise
        client = _local.client = _open(config)  # the kept connection had gone stale
        _local.config = config
        try:
            client.sendmail(mail.sender, list(mail.recipients), mail.data)
        except BaseException:
            _drop()
            raise
    except BaseException:
        _drop()  # its state is unknown: the next mail opens a new one
        raise
    _local.used = time.monotonic()
