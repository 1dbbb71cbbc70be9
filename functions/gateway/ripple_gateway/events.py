"""CloudEvents in (HTTP binding: binary, structured, batch) -> validated events ready for Kafka.

Parsing is the cloudevents SDK's (`from_http` for binary and structured mode; the 1.x SDK has
no batch reader, so each batch element is the event its `from_dict` makes, after the same
attribute checks). On top of the SDK this module enforces what the SDK lets through: specversion
exactly 1.0 (the SDK also takes 0.3), attribute names per the spec, RFC 3339 `time`, JSON data
only (a binary-mode request without Content-Type is JSON data: an absent datacontenttype means
application/json).

The hot path (profiled under wrk, loadtest/gateway/profiles/) avoids the SDK's generic
machinery where the gateway has already done its work, and produces exactly what the SDK would:
a binary-mode event whose attributes were all checked is built as the SDK's `from_http` builds
it (same attribute order), a batch element as its `from_dict` does, the Kafka headers are written
as `cloudevents.kafka.to_binary` writes them, and JSON is read and written with orjson, falling
back to the standard library (and its error messages and spelling) for everything orjson refuses
or handles differently (integers beyond 64 bits, some floats' spelling).
`test_gateway_events_unit.py` checks the fast paths against the SDK's.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from cloudevents import exceptions as ce_errors
from cloudevents.http import CloudEvent, from_http

from ripple_auth import Problem
from ripple_cloudevents import InvalidAttribute, decode_value, string_problem
from ripple_events import Catalog, EventType

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON = "application/json"
REQUIRED = ("specversion", "id", "source", "type")
# CloudEvents 1.0: names are lower-case ASCII letters and digits; 20 characters at most (SHOULD).
# Checked with fullmatch: `$` also matches before a final newline, and a JSON key can end in one.
ATTRIBUTE_NAME = re.compile(r"[a-z0-9]{1,20}")
# CloudEvents Integer: 32-bit signed.
INT32 = (-(2**31), 2**31 - 1)
# Event time drives Flink's watermark for every tenant: one event stamped far in the future
# would make everyone's events "late". Clock skew of a few minutes is tolerated.
MAX_TIME_AHEAD = timedelta(minutes=5)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# An escaped NUL (\u0000) is valid JSON, but PostgreSQL's text and jsonb cannot hold it: one such
# string reaching the aggregation's sink stopped the Flink job, so the gateway refuses it.
NUL_ESCAPE = re.compile(rb"\\u0000")
# orjson reads an integer beyond 64 bits as a float; the standard library keeps it an integer.
# A JSON number starts the document or follows [ , or : (and blanks, a minus): such a run of 19+
# digits sends the body to the standard library (digits inside strings only rarely match).
LONG_NUMBER = re.compile(rb"(?:^|[\[,:])[ \t\r\n]*-?\d{19}")
# What _long_number needs to find LONG_NUMBER's matches without the regex scanning every byte.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_NINETEEN_DIGITS = b"0" * 19
_BEFORE_NUMBER = frozenset(b"[,:")
_JSON_BLANKS = frozenset(b" \t\r\n")
# Where orjson and the standard library spell a float differently: always with a negative
# exponent (1e-07 / 1e-7) or below 1e-4 (1e-05 / 0.00001), so orjson's output then holds one of
# these; positive exponents are spelled alike (1e+16).
FLOAT_SPELLED_APART = (b"e-", b"0.0000")
# Attributes that kafka_headers does not write as ce_<name>.
NOT_CE_HEADERS = frozenset(("data", "partitionkey", "datacontenttype"))
# Attribute names of the CloudEvents spec: valid names (ATTRIBUTE_NAME), checked without the regex.
SPEC_ATTRIBUTES = frozenset(
    ("specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time")
)
# The attributes the SDK's v1 event holds as fields, in the order it lists them (Properties());
# extensions follow in the order they came. The SDK treats "data" and "extensions" specially.
SDK_FIELDS = ("specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time")
SDK_SPECIAL = frozenset(("data", "extensions"))
# Set by the gateway whatever the client sent: a client never chooses its tenant or key.
STAMPED = ("tenant", "partitionkey")


# slots: no instance dict, one object fewer per event for the garbage collector to track.
@dataclass(slots=True)
class Incoming:
    index: int
    event: CloudEvent
    data_bytes: bytes  # the Kafka record value: as sent (binary mode) or compact JSON
    data: Any  # the parsed data, for schema validation and the partition key
    # The SDK's CloudEvent invents a `time` when absent; the gateway stamps its own receive time.
    has_time: bool


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_type: str
    event_id: str


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    kind = media_type(content_type)
    return kind == JSON or (kind.startswith("application/") and kind.endswith("+json"))


def _compact(value: Any) -> bytes:
    """`value` as compact JSON in UTF-8, key order kept: the standard library's bytes.

    orjson writes the same bytes ~10x faster (the standard library's encoder was ~15 % of a batch
    event's CPU, loadtest/gateway/profiles/issue22/), except for a float with an exponent or below
    1e-4, where the two spell some differently (1e-07 / 1e-7, 1e-05 / 0.00001), an integer beyond
    64 bits or nesting deeper than 254 levels (which orjson refuses): those, and any text holding
    "e-" or "0.0000" (a string such as "blue-green" included), the standard library writes as before.
    """
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    else:
        if FLOAT_SPELLED_APART[0] not in encoded and FLOAT_SPELLED_APART[1] not in encoded:
            return encoded
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def attribute_errors(attributes: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """What is wrong with one event's context attributes (empty when nothing is)."""
    errors: list[dict[str, Any]] = []

    def error(name: str, message: str) -> None:
        errors.append({"index": index, "path": f"/{name}", "message": message})

    for name in REQUIRED:
        value = attributes.get(name)
        if value is None:
            error(name, f"required attribute '{name}' is missing")
        elif not isinstance(value, str) or not value:
            error(name, f"'{name}' must be a non-empty string")
    if isinstance(attributes.get("specversion"), str) and attributes["specversion"] not in ("", "1.0"):
        error("specversion", f"specversion {attributes['specversion']!r} is not supported: send '1.0'")
    for name, value in attributes.items():
        if name in ("data", "data_base64"):
            continue
        if name not in SPEC_ATTRIBUTES and not ATTRIBUTE_NAME.fullmatch(name):
            error(name, f"attribute name {name!r} is invalid: use 1-20 lower-case letters and digits")
        elif type(value) is str:
            # Printable ASCII (the common case) holds no character string_problem refuses.
            if not (value.isascii() and value.isprintable()) and (problem := string_problem(value)):
                # Refused, not cleaned: a control character would be altered on some hop.
                error(name, f"attribute '{name}': {problem}")
        elif value is None or isinstance(value, dict | list):
            error(name, f"attribute '{name}' must be a string, integer or boolean")
        elif isinstance(value, str) and (problem := string_problem(value)) is not None:
            # Refused, not cleaned: a control character would be altered on some hop.
            error(name, f"attribute '{name}': {problem}")
        elif isinstance(value, float) and not value.is_integer():
            # JSON has one number type: 7.0 is the Integer 7 (as JSON Schema says), 7.5 is none.
            error(name, f"attribute '{name}' must be a string, integer or boolean (not a fraction)")
        elif (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and not INT32[0] <= value <= INT32[1]
        ):
            error(name, f"attribute '{name}' is outside the CloudEvents Integer range (32-bit signed)")
    time = attributes.get("time")
    moment = _rfc3339(time) if isinstance(time, str) else None
    if time is not None and moment is None:
        error("time", "'time' must be an RFC 3339 timestamp, e.g. 2026-01-31T12:00:00Z")
    elif moment is not None and moment > datetime.now(UTC) + MAX_TIME_AHEAD:
        error(
            "time",
            f"'time' is more than {MAX_TIME_AHEAD.seconds // 60} minutes in the future: check the clock",
        )
    if "data_base64" in attributes:
        error("data_base64", "data must be JSON: binary data (data_base64) is not accepted")
    return errors


def _rfc3339(value: str) -> datetime | None:
    """The moment an RFC 3339 timestamp names, or None when it is not one."""
    if not RFC3339.fullmatch(value):
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


def _attribute_string(value: Any) -> str:
    # The JSON format allows boolean and integer extensions; the Kafka binding carries strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value))  # integral: attribute_errors refused the others
    return str(value)


# JSON nested deeper than Python's recursion limit (about 1,000 levels) cannot be parsed, validated or
# written: a client error, not the gateway's (orjson stops at 1,024 levels; the standard library
# and the schema checks at Python's limit).
TOO_DEEP = "{what} nests arrays or objects too deeply (about 900 levels at most)"


def _malformed(detail: str, errors: list[dict[str, Any]] | None = None) -> Problem:
    return Problem(400, "malformed-event", detail, extra={"errors": errors} if errors else None)


def _unsupported(detail: str) -> Problem:
    return Problem(415, "unsupported-media-type", detail)


def _not_json(name: str) -> Any:
    # Python's json module reads NaN and Infinity, which are not JSON (RFC 8259).
    raise ValueError(f"{name} is not a JSON value")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    return False


def _long_number(body: bytes) -> bool:
    """Whether LONG_NUMBER matches in `body`, found ~10-30x faster than by its regex (which tried
    every byte of a batch: ~13 % of a batch event's CPU).

    Digits are made zeros (bytes.translate) and runs of 19 found with bytes.find; only a run that
    starts a maximal run of digits can match, and it matches when what precedes it is, after an
    optional minus and JSON blanks, the start or one of [ , :.
    """
    digits = body.translate(_DIGITS_AS_ZERO)
    start = digits.find(_NINETEEN_DIGITS)
    while start != -1:
        before = start - 1
        if before >= 0 and body[before] == 0x2D:  # "-"
            before -= 1
        while before >= 0 and body[before] in _JSON_BLANKS:
            before -= 1
        if before < 0 or body[before] in _BEFORE_NUMBER:
            return True
        # The next 19 digits after these: any run found inside this one is preceded by a digit.
        start = digits.find(_NINETEEN_DIGITS, start + 19)
    return False


def _load_json(body: bytes, what: str) -> Any:
    if not _long_number(body):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            pass  # the standard library decides, and words the error, as before
        else:
            if NUL_ESCAPE.search(body) and _has_nul(value):
                raise _malformed(f"{what} has a NUL character (\\u0000), which no consumer can store")
            return value  # orjson refuses lone surrogates: none can be in value
    try:
        value = json.loads(body, parse_constant=_not_json)
    except (ValueError, UnicodeDecodeError) as error:
        raise _malformed(f"{what} is not valid JSON: {error}") from None
    except RecursionError:
        raise _malformed(TOO_DEEP.format(what=what)) from None
    # JSON text may escape a lone UTF-16 surrogate (\ud800): Python parses it into a string that
    # cannot be encoded as UTF-8 (Kafka headers, the record value). Only such escapes can make
    # one, so the full check runs only on bodies that contain them.
    if SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise _malformed(
                f"{what} has a lone UTF-16 surrogate (\\uD800-\\uDFFF): not Unicode text"
            ) from None
    if NUL_ESCAPE.search(body) and _has_nul(value):
        raise _malformed(f"{what} has a NUL character (\\u0000), which no consumer can store")
    return value


def _check_datacontenttype(attributes: Mapping[str, Any], index: int) -> None:
    value = attributes.get("datacontenttype")
    if value is not None and not (isinstance(value, str) and _is_json(value)):
        raise _unsupported(f"event {index}: datacontenttype must be {JSON}, got {value!r}")


def _from_structured(
    document: Any, index: int, body: bytes | None, now: str = ""
) -> Incoming | list[dict[str, Any]]:
    """One structured event: the request's whole `body` (structured mode), or an element of a
    batch (`body` None; `now`, the receive time, is its `time` until to_record stamps it)."""
    if not isinstance(document, dict):
        return [{"index": index, "path": "", "message": "an event must be a JSON object"}]
    # The JSON format lets an optional attribute be null: it is then absent.
    nulls = [name for name, value in document.items() if value is None and name != "data"]
    if nulls:
        document = {name: value for name, value in document.items() if name not in nulls}
    errors = attribute_errors(document, index)
    if errors:
        return errors
    _check_datacontenttype(document, index)
    attributes = {
        name: value if type(value) is str else _attribute_string(value)
        for name, value in document.items()
        if name != "data"
    }
    if body is None:
        # A batch element whose attributes all passed attribute_errors: the SDK's from_dict could
        # not refuse it, so it is built directly, as from_dict builds it (~13 % of a batch event's
        # CPU, much of it the constructor's clock reading for a `time` that to_record replaces).
        data = document.get("data")
        event = _batch_event(attributes, now or receive_time())
        event.data = data_bytes = _compact(data)
        return Incoming(
            index=index, event=event, data_bytes=data_bytes, data=data, has_time="time" in document
        )
    try:
        # Structured mode: the SDK reads the envelope; data stays the raw JSON text it saw.
        event = from_http({"content-type": STRUCTURED}, body, data_unmarshaller=lambda raw: raw)
        for name, value in attributes.items():
            event[name] = value
        for name in nulls:
            if name in event:  # the SDK kept the JSON null as None
                del event[name]
    except ce_errors.GenericException as error:
        return [{"index": index, "path": "", "message": str(error)}]
    data = document.get("data")
    event.data = _compact(data)
    return Incoming(index=index, event=event, data_bytes=event.data, data=data, has_time="time" in document)


def parse_request(headers: Mapping[str, str], body: bytes, max_batch: int) -> list[Incoming]:
    """All events of one request, or a Problem (400/413/415) naming every malformed one."""
    content_type = headers.get("Content-Type", "")
    kind = media_type(content_type)
    binary_headers = {k.lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}
    if kind == BATCH:
        documents = _load_json(body, "the batch")
        if not isinstance(documents, list):
            raise _malformed("a batch must be a JSON array of structured events")
        if not documents:
            raise _malformed("the batch is empty: send at least one event")
        if len(documents) > max_batch:
            raise Problem(
                413,
                "payload-too-large",
                f"the batch has {len(documents)} events; at most {max_batch} are accepted",
            )
        now = receive_time()
        results = [_from_structured(document, index, None, now) for index, document in enumerate(documents)]
    elif kind == STRUCTURED:
        results = [_from_structured(_load_json(body, "the structured event"), 0, body)]
    elif binary_headers:
        results = [_from_binary(headers, binary_headers, body, content_type)]
    elif _is_json(content_type):
        raise _malformed(
            "binary mode needs the ce-specversion, ce-id, ce-source and ce-type headers "
            f"(or send {STRUCTURED} / {BATCH})"
        )
    else:
        raise _unsupported(
            f"send CloudEvents as {STRUCTURED}, {BATCH}, or in binary mode with ce-* headers and {JSON}"
        )
    errors = [error for result in results if isinstance(result, list) for error in result]
    if errors:
        raise _malformed("fix the attributes listed in errors (JSON pointers per event index)", errors)
    return [result for result in results if isinstance(result, Incoming)]


def _from_binary(
    headers: Mapping[str, str], binary_headers: Mapping[str, str], body: bytes, content_type: str
) -> Incoming | list[dict[str, Any]]:
    attributes: dict[str, str] = {}
    for name, value in binary_headers.items():
        try:
            # HTTP binding 3.1.3.2: percent-decoded UTF-8; raw bytes above 0x7E are refused.
            attributes[name[3:]] = decode_value(name[3:], value)
        except InvalidAttribute as error:
            return [{"index": 0, "path": f"/{error.attribute}", "message": str(error)}]
    errors = attribute_errors(attributes, 0)
    if errors:
        return errors
    if not media_type(content_type):
        # No Content-Type means no datacontenttype, and an absent datacontenttype means
        # application/json (CloudEvents JSON format 3.1.1; the Python SDK's to_binary of dict data
        # sends none, and Knative's broker ingress takes such a request). The implied type is
        # made explicit on the event, as the spec asks when re-encoding it for another binding.
        content_type = JSON
        data = _load_json(body, f"the event data (request body without Content-Type, so {JSON})")
    elif not _is_json(content_type):
        raise _unsupported(f"binary-mode data must be {JSON} (Content-Type), got {content_type!r}")
    else:
        data = _load_json(body, "the event data (request body)")
    if SDK_SPECIAL.isdisjoint(attributes):
        # Every attribute passed attribute_errors, so the SDK's from_http could not refuse the
        # event: built directly, as from_http builds it (its share of a request was a fifth).
        event = _binary_event(attributes, content_type, body)
    else:
        try:
            # Keep the body's bytes: the Kafka record value is exactly what the client sent.
            event = from_http(
                {"content-type": content_type, **{f"ce-{name}": value for name, value in attributes.items()}},
                body,
                data_unmarshaller=lambda raw: raw,
            )
        except ce_errors.GenericException as error:
            return [{"index": 0, "path": "", "message": str(error)}]
    event.data = body
    return Incoming(index=0, event=event, data_bytes=body, data=data, has_time="time" in attributes)


def _binary_event(attributes: Mapping[str, str], content_type: str, body: bytes) -> CloudEvent:
    """The CloudEvent the SDK's from_http makes of checked binary-mode attributes.

    Its v1 event lists its own fields first, in a fixed order, then the extensions as they came;
    Content-Type is the datacontenttype unless a ce-datacontenttype header says otherwise.
    `time`, when absent, comes last, as CloudEvent() adds it; its value is the receive time here
    (the SDK's constructor reads the clock itself, 9 % of a request in-process), which to_record
    stamps on such an event in any case. The names are already lower-case and the required ones
    present (attribute_errors), which is all the constructor checks.
    """
    ordered: dict[str, str] = {}
    for name in SDK_FIELDS:
        if name in attributes:
            ordered[name] = attributes[name]
        elif name == "datacontenttype":
            ordered[name] = content_type
    for name, value in attributes.items():
        if name not in ordered:
            ordered[name] = value
    if "time" not in ordered:
        ordered["time"] = receive_time()
    event = CloudEvent.__new__(CloudEvent)
    event._attributes = ordered  # what CloudEvent.__init__ stores (cloudevents 1.12.0)
    event.data = body
    return event


def _batch_event(attributes: dict[str, str], now: str) -> CloudEvent:
    """The CloudEvent the SDK's from_dict makes of a batch element's checked attributes.

    from_dict keeps the attributes as they came (string values pass its encoding unchanged) and
    its constructor lower-cases the names, fills in a missing specversion or id, and adds `time`
    last when absent, with its own clock reading: here `now`, the receive time, which to_record
    stamps on such an event in any case. attribute_errors already required lower-case names,
    specversion 1.0 and the required attributes, which is all the constructor checks.
    """
    if "time" not in attributes:
        attributes["time"] = now
    event = CloudEvent.__new__(CloudEvent)
    event._attributes = attributes  # what CloudEvent.__init__ stores (cloudevents 1.12.0)
    return event


def resolve_types(events: Sequence[Incoming], catalog: Catalog) -> list[EventType]:
    """The catalog entry of every event; 422 unknown-event-type naming the ones without."""
    entries: list[EventType] = []
    errors = []
    for incoming in events:
        entry = catalog.get(incoming.event["type"])
        if entry is None:
            errors.append(
                {
                    "index": incoming.index,
                    "path": "/type",
                    "message": f"unknown type {incoming.event['type']!r}",
                }
            )
        else:
            entries.append(entry)
    if errors:
        known = ", ".join(entry.type for entry in catalog if entry.publishable)
        raise Problem(422, "unknown-event-type", f"publishable types are: {known}", extra={"errors": errors})
    return entries


def validate_data(events: Sequence[Incoming], entries: Sequence[EventType]) -> None:
    errors = [
        {"index": incoming.index, **error}
        for incoming, entry in zip(events, entries, strict=True)
        for error in entry.schema_errors(incoming.data)
    ]
    failed = {error["index"] for error in errors}
    for incoming, entry in zip(events, entries, strict=True):
        # The partition key's value becomes the partitionkey attribute (and order-alerts' subject):
        # a control character there would be refused by every receiver behind Kafka, the
        # dead-letter sink included, and block its partition for good. The catalog's schemas say
        # so with a pattern; this holds for a type whose schema does not.
        if incoming.index in failed:
            continue
        key = incoming.data.get(entry.partition_key) if isinstance(incoming.data, dict) else None
        if (
            isinstance(key, str)
            and not (key.isascii() and key.isprintable())  # printable ASCII: nothing to refuse
            and (problem := string_problem(key)) is not None
        ):
            errors.append(
                {
                    "index": incoming.index,
                    "path": f"/data/{entry.partition_key}",
                    "message": f"{entry.partition_key} becomes the partitionkey attribute: {problem}",
                }
            )
    if errors:
        raise Problem(
            422,
            "schema-violation",
            "the data of the events listed in errors does not match the schema of their type",
            extra={"errors": errors},
        )


_second: tuple[int, str] = (-1, "")  # (a whole second, its "%Y-%m-%dT%H:%M:%S" text)


def receive_time() -> str:
    """Now as RFC 3339 with microseconds in UTC, e.g. 2026-01-31T12:00:00.123456Z.

    strftime on every call was 5 % of a request's CPU: the seconds are formatted once a second.
    """
    global _second
    now = time.time()
    second = int(now)
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{int((now - second) * 1_000_000):06d}Z"


def to_record(incoming: Incoming, entry: EventType, tenant: str, now: str) -> KafkaRecord:
    """Stamp tenant, key and defaults on the event and encode it in the Kafka binary binding."""
    event = incoming.event
    # The event's own attribute dict (what event[name] = value writes), once per event.
    attributes = event._get_attributes()
    key = entry.partition_key_of(incoming.data, tenant)
    attributes["tenant"] = tenant
    attributes["partitionkey"] = key
    if not incoming.has_time:
        attributes["time"] = now
    if not attributes.get("datacontenttype"):
        attributes["datacontenttype"] = JSON
    headers = kafka_headers(event)
    # The SDK moves partitionkey into the record key only; the contract also keeps it as a header
    # so that a KafkaSource, which forwards ce_* headers, delivers it to consumers.
    headers.append(("ce_partitionkey", key.encode()))
    return KafkaRecord(
        topic=entry.topic,
        key=key.encode(),
        value=incoming.data_bytes,
        headers=headers,
        event_type=entry.type,
        event_id=event["id"],
    )


def kafka_headers(event: CloudEvent) -> list[tuple[str, bytes]]:
    """The record headers `cloudevents.kafka.to_binary` writes for the event, in its order:
    content-type (the datacontenttype), then `ce_<name>` for every other attribute but the key's
    (partitionkey). The rest of to_binary (key mapper, data marshaller) the gateway does not use."""
    attributes = event._get_attributes()
    headers: list[tuple[str, bytes]] = []
    content_type = attributes.get("datacontenttype")
    if content_type:
        headers.append(("content-type", content_type.encode()))
    for name, value in attributes.items():
        if value is not None and name not in NOT_CE_HEADERS:
            headers.append(("ce_" + name, value.encode()))
    return headers
