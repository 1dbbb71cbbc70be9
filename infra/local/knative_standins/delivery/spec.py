"""The Destination and DeliverySpec of eventing's duck/v1, and the strict YAML reader both
stand-ins' manifests use (KafkaSource, Broker, Trigger).

Every field a manifest reader does not know is an error naming the file and the field path, so a
typo never becomes a silently ignored setting; `ManifestReader.error` is the exception each
stand-in raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import ConfigError

LINEAR, EXPONENTIAL = "linear", "exponential"


class ManifestError(ConfigError):
    """A manifest a stand-in cannot run; the message names the file and the field path."""


@dataclass(frozen=True)
class Destination:
    """A Knative Destination (duck/v1): a reference to an addressable, a URI, or both."""

    ref_api_version: str | None = None
    ref_kind: str | None = None
    ref_name: str | None = None
    ref_namespace: str | None = None
    uri: str | None = None


@dataclass(frozen=True)
class Delivery:
    """eventing duck/v1 DeliverySpec, with Knative's KafkaSource defaults applied."""

    retry: int = 0
    backoff_policy: str = EXPONENTIAL
    backoff_delay_s: float = 0.2
    timeout_s: float = 600.0
    dead_letter_sink: Destination | None = None


_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)
_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


def parse_duration(text: str) -> float:
    """Seconds of an ISO 8601 duration such as PT0.2S, PT1M30S or P1D.

    Years and months are refused: their length in seconds is ambiguous, and a delivery delay
    measured in months is a typo.
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration like PT0.5S, PT2M or P1D")
    return sum(float(v) * _SECONDS[k] for k, v in match.groupdict().items() if v is not None)


class ManifestReader:
    """Walks a YAML mapping and names the exact path of whatever is wrong.

    Shared by the Knative stand-ins that read Destinations and DeliverySpecs (the RabbitMQ
    Broker's Triggers too); `error` is the exception type each of them raises.
    """

    error: type[Exception] = ManifestError

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> Exception:
        return self.error(f"{self.path}: {where}: {message}")

    def mapping(self, value: Any, where: str, allowed: set[str], required: set[str] = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, "must be a mapping")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    f"{where}.{key}" if where else key,
                    f"unknown or unsupported field (supported: {', '.join(sorted(allowed))})",
                )
        for key in sorted(required - value.keys()):
            raise self.fail(f"{where}.{key}" if where else key, "is required")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(where, "must be a non-empty string")
        return value

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(where, "must be a non-empty list of strings")
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(value))

    def choice(self, value: Any, where: str, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.fail(where, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def duration(self, value: Any, where: str) -> float:
        try:
            return parse_duration(value)
        except ValueError as error:
            raise self.fail(where, str(error)) from None

    def destination(self, value: Any, where: str) -> Destination:
        spec = self.mapping(value, where, {"ref", "uri"})
        if not spec:
            raise self.fail(where, "needs a ref or a uri")
        uri = self.string(spec["uri"], f"{where}.uri") if "uri" in spec else None
        if "ref" not in spec:
            if not re.match(r"^https?://", uri or ""):
                raise self.fail(f"{where}.uri", "must be an absolute http(s) URL when there is no ref")
            return Destination(uri=uri)
        ref = self.mapping(
            spec["ref"],
            f"{where}.ref",
            {"apiVersion", "kind", "name", "namespace"},
            {"apiVersion", "kind", "name"},
        )
        return Destination(
            ref_api_version=self.string(ref["apiVersion"], f"{where}.ref.apiVersion"),
            ref_kind=self.string(ref["kind"], f"{where}.ref.kind"),
            ref_name=self.string(ref["name"], f"{where}.ref.name"),
            ref_namespace=self.string(ref["namespace"], f"{where}.ref.namespace")
            if "namespace" in ref
            else None,
            uri=uri,
        )

    def delivery(self, value: Any, where: str, default_timeout_s: float = 600.0) -> Delivery:
        """A DeliverySpec; a missing timeout is Knative's data-plane default unless told otherwise."""
        spec = self.mapping(
            value, where, {"retry", "backoffPolicy", "backoffDelay", "timeout", "deadLetterSink"}
        )
        retry = spec.get("retry", 0)
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise self.fail(f"{where}.retry", "must be a whole number >= 0")
        return Delivery(
            retry=retry,
            backoff_policy=self.choice(
                spec.get("backoffPolicy", EXPONENTIAL), f"{where}.backoffPolicy", (LINEAR, EXPONENTIAL)
            ),
            # Knative's consumer reconciler defaults the delay to 200 ms when only `retry` is set.
            backoff_delay_s=self.duration(spec["backoffDelay"], f"{where}.backoffDelay")
            if "backoffDelay" in spec
            else 0.2,
            # Knative's data plane defaults a missing per-attempt timeout to 600 s.
            timeout_s=self.duration(spec["timeout"], f"{where}.timeout")
            if "timeout" in spec
            else default_timeout_s,
            dead_letter_sink=(
                self.destination(spec["deadLetterSink"], f"{where}.deadLetterSink")
                if "deadLetterSink" in spec
                else None
            ),
        )
