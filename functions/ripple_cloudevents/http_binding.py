"""Percent-encoding of CloudEvent attributes in HTTP headers (HTTP protocol binding 1.0.2, 3.1.3.2).

Sender: the value's UTF-8 bytes, with space, `"`, `%` and every byte outside printable ASCII
(U+0021-U+007E) written as `%XX`. Receiver: unescape an RFC 7230 quoted-string, then one round of
percent-decoding, and the result must be UTF-8. A raw header byte above 0x7E has no defined meaning
under the binding (servers read it as Latin-1, clients write it as Latin-1 or UTF-8), so the gateway
refuses it rather than guess; the receivers behind it take raw bytes that form UTF-8 (decode_value).
Every receiver refuses a control character or a lone surrogate, which the CloudEvents String type
excludes (spec 1.0.2, "Type System"). Kafka and AMQP headers are not touched by this module: those
bindings carry attribute values as raw UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

# The package's public names (ripple_cloudevents re-exports exactly these).
__all__ = [
    "InvalidAttribute",
    "decode_headers",
    "decode_value",
    "encode_headers",
    "encode_value",
    "string_problem",
    "to_binary_request",
]

HEADER_PREFIX = "ce-"
# Printable ASCII that stays as it is: everything in U+0021-U+007E except `"` and `%`.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_QUOTED_PAIR = re.compile(r"\\(.)")
# Control characters (C0, DEL, C1) and lone surrogates: the CloudEvents String type excludes them
# and no hop carries them intact (a header cannot hold a newline, UTF-8 cannot hold a surrogate).
# The spec's String type also excludes noncharacters (U+FFFE, ...): they are valid UTF-8 that every
# hop carries intact, so they are let through rather than refused.
_EXCLUDED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class InvalidAttribute(ValueError):
    """An attribute header the binding cannot decode; `attribute` names it, str() says why."""

    def __init__(self, attribute: str, reason: str) -> None:
        super().__init__(f"ce-{attribute}: {reason}")
        self.attribute = attribute
        self.reason = reason

    def __repr__(self) -> str:  # frameworks that wrap the error show repr(): keep it readable
        return str(self)


def encode_value(value: str) -> str:
    """The header value of an attribute value (ASCII only, reversible by decode_value)."""
    if value.isascii() and value.isprintable() and '"' not in value and "%" not in value and " " not in value:
        return value  # the common case, no copy
    return quote(value, safe=_SAFE, encoding="utf-8", errors="strict")


def string_problem(value: str) -> str | None:
    """Why a CloudEvents String cannot hold this value, or None when it can."""
    found = _EXCLUDED.search(value)
    if found is None:
        return None
    return (
        f"U+{ord(found.group()):04X} at position {found.start()} is not allowed in a CloudEvents "
        "String (control characters and surrogates are excluded)"
    )


def decode_value(attribute: str, raw: str, raw_utf8: bool = False) -> str:
    """The attribute value of a received header value; InvalidAttribute when it has none.

    `raw` is the header as HTTP servers hand it over: its bytes read as Latin-1. With `raw_utf8`,
    bytes above 0x7E that form UTF-8 are taken as that UTF-8 text: the receivers inside the
    system accept it because Knative's own data planes send attribute values unencoded (sdk-go,
    sdk-java: cloudevents/sdk-go#1331, cloudevents/sdk-java#748), and refusing would dead-letter
    the event. The gateway, the public edge, keeps the binding strict and says how to comply.
    """
    for position, char in enumerate(raw):
        if not (" " <= char <= "~" or char == "\t"):
            if raw_utf8 and all(ord(c) <= 0xFF for c in raw):
                try:
                    raw = raw.encode("latin-1").decode("utf-8")
                    break
                except UnicodeDecodeError:
                    pass
            raise InvalidAttribute(
                attribute,
                f"byte 0x{ord(char):02X} at position {position} is not allowed in a header: "
                "percent-encode the value's UTF-8 bytes (CloudEvents HTTP binding 3.1.3.2)",
            )
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = _QUOTED_PAIR.sub(r"\1", raw[1:-1])
    if "%" in raw:
        try:
            value = unquote_to_bytes(raw).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidAttribute(
                attribute, f"the percent-encoded bytes are not UTF-8 ({error.reason} at byte {error.start})"
            ) from None
    else:
        value = raw
    problem = string_problem(value)
    if problem is not None:
        raise InvalidAttribute(attribute, problem)
    return value


def encode_headers(attributes: Mapping[str, str]) -> dict[str, str]:
    """`ce-<name>` headers for attribute values (datacontenttype is Content-Type's, not here)."""
    return {HEADER_PREFIX + name: encode_value(value) for name, value in attributes.items()}


def decode_headers(headers: Iterable[tuple[str, str]], raw_utf8: bool = False) -> dict[str, str]:
    """The received headers, lower-cased, with every `ce-*` value decoded (InvalidAttribute);
    `raw_utf8` as in decode_value."""
    decoded: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name.startswith(HEADER_PREFIX):
            decoded[name] = decode_value(name[len(HEADER_PREFIX) :], value, raw_utf8)
        else:
            decoded[name] = value
    return decoded


def to_binary_request(
    event: CloudEvent, data_marshaller: Callable[[Any], Any] | None = None
) -> tuple[dict[str, str], bytes | None]:
    """The SDK's binary-mode headers and body for an event, with the attribute values encoded."""
    headers, body = to_binary(event, data_marshaller)
    encoded = {
        name: encode_value(value) if name.startswith(HEADER_PREFIX) else value
        for name, value in headers.items()
    }
    return encoded, body
