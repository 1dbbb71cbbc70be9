"""The local mail sink (ripple_stack.mailsink): an SMTP server writing each mail to $RIPPLE_HOME/mail."""

from __future__ import annotations

import smtplib
from collections.abc import Mapping

from ..component import Component, Program, Say, ScrapeTarget, python_program
from ..settings import REPO_ROOT, Settings


class MailSink(Component):
    name = "mail-sink"
    description = "SMTP mail sink"

    def metrics_port(self, settings: Settings) -> int:
        return settings.ports["mail_sink_metrics"]

    def prepare(self, settings: Settings, secrets: Mapping[str, str], say: Say) -> None:
        settings.mail_dir.mkdir(parents=True, exist_ok=True)

    def programs(self, settings: Settings, secrets: Mapping[str, str]) -> list[Program]:
        return [
            python_program(
                "mail-sink",
                "ripple_stack.mailsink",
                "--host",
                settings.host,
                "--port",
                str(settings.ports["mail_sink"]),
                "--metrics-port",
                str(self.metrics_port(settings)),
                "--dir",
                str(settings.mail_dir),
                cwd=REPO_ROOT,
            )
        ]

    def probe(self, settings: Settings, secrets: Mapping[str, str]) -> str | None:
        try:
            with smtplib.SMTP(settings.host, settings.ports["mail_sink"], timeout=3) as client:
                code, _ = client.noop()
        except (OSError, smtplib.SMTPException) as error:
            return f"SMTP: {error}"
        return None if code == 250 else f"SMTP NOOP answered {code}"

    def address(self, settings: Settings) -> str:
        return f"smtp://{settings.host}:{settings.ports['mail_sink']} -> {settings.mail_dir}"

    def scrape_targets(self, settings: Settings) -> list[ScrapeTarget]:
        return [ScrapeTarget("mail-sink", f"{settings.host}:{self.metrics_port(settings)}")]
