"""ripple_cloudevents.binary_mode reads a binary-mode request as the pinned SDK's from_http does:
the same attributes in the same order, the same data and the same errors, case by case and on
generated requests (hypothesis, fixed seed); and it says which requests it reads."""

from __future__ import annotations

import json

import pytest
from cloudevents.exceptions import DataUnmarshallerError
from cloudevents.http import CloudEvent, from_http
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from ripple_cloudevents import is_plain_binary, read_binary_event

REQUIRED = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}


def same(headers: dict[str, str], ours: CloudEvent, theirs: CloudEvent) -> None:
    """Equal attributes in the same order and equal data. Without `ce-time` both take the clock's
    time, so then only its presence is compared."""
    ours_attributes, their_attributes = ours.get_attributes(), theirs.get_attributes()
    assert list(ours_attributes) == list(their_attributes)
    for name, value in their_attributes.items():
        if name != "time" or "ce-time" in headers:
            assert ours_attributes[name] == value
    assert ours.get_data() == theirs.get_data()
    assert type(ours.get_data()) is type(theirs.get_data())


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({**REQUIRED, "content-type": "application/json"}, b'{"a": [1, 2.5, null]}'),
        ({**REQUIRED, "content-type": "application/json", "ce-time": "2026-12-03T12:00:00Z"}, b"[]"),
        ({**REQUIRED, "ce-tenant": "t1", "ce-partitionkey": "k", "ce-subject": "s"}, b'"x"'),
        ({"ce-tenant": "t", **REQUIRED, "ce-dataschema": "urn:x", "content-type": "text/plain"}, b"no json"),
        ({**REQUIRED}, b""),
        ({**REQUIRED}, ""),
        ({**REQUIRED}, None),
        ({**REQUIRED}, b" "),
        ({**REQUIRED}, b"\xff\xfe not utf-8"),
        ({**REQUIRED, "content-type": "a", "ce-datacontenttype": "b"}, b"1"),  # the later wins
        ({**REQUIRED, "ce-datacontenttype": "b", "content-type": "a"}, b"1"),
        ({**REQUIRED, "ce-": "empty name", "ce-time": ""}, b"{}"),
        ({**REQUIRED, "x-other": "ignored", "host": "h"}, b"{}"),
    ],
)
def test_reads_what_the_sdk_reads(headers, body):
    assert is_plain_binary(headers)
    same(headers, read_binary_event(headers, body), from_http(headers, body))


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},  # no attributes: structured, for the SDK
        {key: value for key, value in REQUIRED.items() if key != "ce-id"},
        {**REQUIRED, "ce-specversion": "0.3"},
        {**REQUIRED, "content-type": "application/cloudevents+json"},
        {**REQUIRED, "content-type": "application/cloudevents+json; charset=utf-8"},
        {**REQUIRED, "ce-data": "x"},
        {**REQUIRED, "ce-extensions": "x"},
    ],
)
def test_leaves_every_other_request_to_the_sdk(headers):
    assert not is_plain_binary(headers)


def test_data_too_deep_for_json_is_the_sdks_error():
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(DataUnmarshallerError) as theirs:
        from_http(REQUIRED, body)
    with pytest.raises(DataUnmarshallerError) as ours:
        read_binary_event(REQUIRED, body)
    assert str(ours.value) == str(theirs.value)


NAMES = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
CORE = ("datacontenttype", "dataschema", "subject", "time")
BODIES = st.one_of(
    st.just(b""),
    st.binary(max_size=40),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    ).map(lambda value: json.dumps(value).encode()),
)


@seed(20261203)
@settings(max_examples=300, deadline=None)
@given(
    extra=st.lists(
        st.tuples(st.one_of(st.sampled_from(CORE), NAMES).map("ce-{}".format), VALUES), max_size=6
    ),
    content_type=st.one_of(st.none(), st.sampled_from(["application/json", "text/plain", "x/y"])),
    required_first=st.booleans(),
    body=BODIES,
)
def test_generated_requests_read_as_the_sdk_reads_them(extra, content_type, required_first, body):
    pairs = [(name, value) for name, value in extra if name not in ("ce-data", "ce-extensions", *REQUIRED)]
    if content_type is not None:
        pairs.append(("content-type", content_type))
    headers = dict([*REQUIRED.items(), *pairs] if required_first else [*pairs, *REQUIRED.items()])
    assert is_plain_binary(headers)
    same(headers, read_binary_event(headers, body), from_http(headers, body))
