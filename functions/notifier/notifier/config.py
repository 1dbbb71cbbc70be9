"""Every setting of the notifier function, read from the environment in this one place
(the database settings through ripple_consumer.database).

| variable | default | what |
|---|---|---|
| FRAUD_DESK_ADDRESS | (required) | where the e-mails go: addresses, comma-separated, `Name <a@b>` allowed |
| MAIL_FROM | ripple-notifier@ripple.invalid | their sender (one address, `Name <addr>` allowed) |
| SMTP_SERVER | smtp.ripple.svc:25 | host:port of the SMTP server (locally the mail sink) |
| SMTP_STARTTLS | false | true: STARTTLS before sending (a relay outside the cluster) |
| SMTP_USERNAME / SMTP_PASSWORD | (none) | login, when the server wants one (from a Secret) |
| SMTP_TIMEOUT_S | 10 | an SMTP server that does not answer in time fails the request with 503 |
| SMTP_IDLE_S | 30 | a kept-open SMTP connection idle longer than this is reopened (notifier/smtp.py) |
| POSTGRES_* / DB_* | see ripple_consumer.database | the notifications table |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from email.utils import getaddresses

from ripple_consumer.database import ConfigError, DatabaseConfig, env_number

__all__ = ["Config", "ConfigError"]


def addresses_usable(value: str) -> bool:
    """Whether `value` parses as e-mail addresses the mail can carry without SMTPUTF8: every
    addr-spec ASCII with an @ (display names are RFC 2047-encoded: notifier/mail.py)."""
    parsed = getaddresses([value])
    return bool(parsed) and all("@" in address and address.isascii() for _, address in parsed)


@dataclass(frozen=True)
class Config(DatabaseConfig):
    fraud_desk: str
    mail_from: str
    smtp_host: str
    smtp_port: int
    smtp_starttls: bool
    smtp_username: str | None
    smtp_password: str | None
    smtp_timeout_s: float
    smtp_idle_s: float

    MANIFEST = "knative/notifier/service.yaml"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        database = cls.database_from_env(env)
        desk = env.get("FRAUD_DESK_ADDRESS", "")
        if not addresses_usable(desk):
            raise ConfigError(
                f"FRAUD_DESK_ADDRESS={desk!r} must be e-mail addresses with ASCII addr-specs "
                f"(a display name may be any text) ({cls.MANIFEST} sets it)."
            )
        mail_from = env.get("MAIL_FROM", "ripple-notifier@ripple.invalid")
        if not addresses_usable(mail_from) or len(getaddresses([mail_from])) != 1:
            raise ConfigError(
                f"MAIL_FROM={mail_from!r} must be one e-mail address with an ASCII addr-spec, "
                f"or unset for ripple-notifier@ripple.invalid."
            )
        server = env.get("SMTP_SERVER", "smtp.ripple.svc:25")
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"SMTP_SERVER={server!r} must be host:port.")
        starttls = env.get("SMTP_STARTTLS", "false").lower()
        if starttls not in ("true", "false"):
            raise ConfigError(f"SMTP_STARTTLS={starttls!r} must be true or false.")
        return cls(
            **{field.name: getattr(database, field.name) for field in fields(DatabaseConfig)},
            fraud_desk=desk,
            mail_from=mail_from,
            smtp_host=host,
            smtp_port=int(port),
            smtp_starttls=starttls == "true",
            smtp_username=env.get("SMTP_USERNAME") or None,
            smtp_password=env.get("SMTP_PASSWORD") or None,
            smtp_timeout_s=env_number(env, "SMTP_TIMEOUT_S", 10, minimum=1),
            smtp_idle_s=env_number(env, "SMTP_IDLE_S", 30, minimum=0),
        )
