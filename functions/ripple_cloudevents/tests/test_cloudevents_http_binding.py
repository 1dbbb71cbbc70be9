"""ripple_cloudevents.http_binding: what the HTTP binding (3.1.3.2) says, value by value, and that
encoding then decoding gives back any CloudEvents String unchanged (hypothesis, fixed seed)."""

from __future__ import annotations

import pytest
from cloudevents.http import CloudEvent
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from ripple_cloudevents import (
    InvalidAttribute,
    decode_headers,
    decode_value,
    encode_headers,
    encode_value,
    string_problem,
    to_binary_request,
)

# Any Unicode text a CloudEvents String may hold: no controls, no surrogates.
STRINGS = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1)


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("plain/ascii-1.0_~!#$&'()*+,:;<=>?@[]^`{|}", "plain/ascii-1.0_~!#$&'()*+,:;<=>?@[]^`{|}"),
        ("café ×", "caf%C3%A9%20%C3%97"),  # noqa: RUF001 (the multiplication sign is the point)
        ('say "hi" 100%', "say%20%22hi%22%20100%25"),
        ("😀", "%F0%9F%98%80"),
        ("e\u0301", "e%CC%81"),
    ],
)
def test_sender_encodes_space_quote_percent_and_non_ascii(value, header):
    assert encode_value(value) == header
    assert decode_value("subject", header) == value


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("caf\u00c3\u00a9", "byte 0xC3 at position 3 is not allowed"),  # raw UTF-8 read as Latin-1
        ("caf\u00e9", "byte 0xE9 at position 3"),  # Latin-1, as http.client sends a str
        ("caf%C3", "the percent-encoded bytes are not UTF-8"),
        ("%ED%A0%80", "not UTF-8"),  # an encoded surrogate
        ("tab%09end", "U+0009 at position 3 is not allowed in a CloudEvents String"),
        ("nul%00", "U+0000"),
        ("c1%C2%85", "U+0085"),
        ("del\u007f", "byte 0x7F"),
    ],
)
def test_receiver_refuses_what_the_binding_cannot_mean(raw, reason):
    with pytest.raises(InvalidAttribute) as refused:
        decode_value("subject", raw)
    assert refused.value.attribute == "subject"
    assert str(refused.value).startswith("ce-subject: ") and reason in str(refused.value)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("with space", "with space"),  # SDK 1.x senders do not encode; unambiguous, so taken
        ("100%", "100%"),  # a `%` that starts no escape stays
        ('"quoted \\"string\\""', 'quoted "string"'),  # RFC 7230 quoted-string, then decoded
        ("%22q%22", '"q"'),
    ],
)
def test_receiver_takes_lenient_but_unambiguous_values(raw, value):
    assert decode_value("subject", raw) == value


@seed(16)
@settings(max_examples=300, deadline=None)
@given(STRINGS)
def test_any_string_survives_encode_then_decode(value):
    header = encode_value(value)
    assert header.isascii() and " " not in header and '"' not in header
    assert decode_value("x", header) == value


@pytest.mark.parametrize(
    ("raw", "value"),
    [("caf\u00c3\u00a9", "café"), ("\u00f0\u009f\u0098\u0080 100%25", "😀 100%"), ("plain", "plain")],
)
def test_receivers_inside_take_raw_utf8_as_knative_data_planes_send_it(raw, value):
    assert decode_value("subject", raw, raw_utf8=True) == value
    with pytest.raises(InvalidAttribute, match="byte 0xE9"):
        decode_value("subject", "caf\u00e9", raw_utf8=True)  # Latin-1 is not UTF-8: refused


def test_string_problem_names_the_first_excluded_character():
    assert string_problem("ok \u00e9 \U0001f600 \ufffe") is None  # noncharacters pass (see module)
    assert string_problem("a\nb") == (
        "U+000A at position 1 is not allowed in a CloudEvents String "
        "(control characters and surrogates are excluded)"
    )


def test_headers_decode_ce_values_only_and_lower_case_names():
    headers = [("Ce-Subject", "caf%C3%A9"), ("Content-Type", "application/json; x=%41")]
    assert decode_headers(headers) == {"ce-subject": "café", "content-type": "application/json; x=%41"}
    assert encode_headers({"subject": "café"}) == {"ce-subject": "caf%C3%A9"}


def test_binary_request_encodes_every_attribute_and_no_other_header():
    event = CloudEvent(
        {"specversion": "1.0", "id": "é-1", "source": "/café", "type": "t", "color": "grün"},
        b"{}",
    )
    event["datacontenttype"] = "application/json"
    headers, body = to_binary_request(event)
    assert headers["ce-id"] == "%C3%A9-1" and headers["ce-source"] == "/caf%C3%A9"
    assert headers["ce-color"] == "gr%C3%BCn" and headers["content-type"] == "application/json"
    assert body == b"{}"
