"""ripple_events.catalog: the shipped schemas are valid JSON Schema (checked here, not at each
start), one validator (jsonschema-rs) decides and lists the errors, so invalid data is never passed
as valid, Python's jsonschema is never imported by the gateway, and parse_catalog still refuses a
document whose schema is not JSON Schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from ripple_events import load_catalog
from ripple_events.catalog import CatalogError, parse_catalog, shipped_document
from ripple_events.samples import order_data

FUNCTIONS = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("index", range(len(shipped_document()["events"])))
def test_every_shipped_schema_is_valid_json_schema(index):
    jsonschema.Draft202012Validator.check_schema(shipped_document()["events"][index]["data_schema"])


def test_a_schema_that_is_not_json_schema_is_refused_by_parse_catalog():
    entry = {"type": "t", "topic": "x", "partition_key": "k", "data_schema": {"type": 5, "required": ["k"]}}
    with pytest.raises(CatalogError, match=r"events\[0\]: data_schema is not valid JSON Schema"):
        parse_catalog({"events": [entry]})


def test_failures_are_listed_as_before():
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    assert entry is not None
    errors = entry.schema_errors({"orderId": 5})
    assert errors and all(error["path"].startswith("/data") for error in errors)
    assert [e["path"] for e in errors] == sorted(e["path"] for e in errors)


ORDER = order_data()


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({}, None),
        # `$` matches only at the end (ECMA-262): Python's re.search let these through before.
        ({"currency": "EUR\n"}, "/data/currency"),
        ({"orderId": "o-1\n"}, "/data/orderId"),
        ({"orderId": "o-\x851"}, "/data/orderId"),
        ({"currency": "eur"}, "/data/currency"),
        ({"amount": True}, "/data/amount"),
        ({"amount": 10**30}, "/data/amount"),
        ({"items": [{"sku": "s", "quantity": 2**70, "unitPrice": 1}]}, "/data/items/0/quantity"),
        ({"items": [{"sku": "s", "quantity": 1.0, "unitPrice": 1}]}, None),
        ({"items": [{"sku": "s", "quantity": -(2**64), "unitPrice": 1}]}, "/data/items/0/quantity"),
        ({"orderId": "😀"}, None),
        ({"extra": 1}, "/data"),
    ],
)
def test_order_data_is_valid_exactly_when_no_error_is_listed(change, path):
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    assert entry is not None
    errors = entry.schema_errors({**ORDER, **change})
    assert [error["path"] for error in errors] == ([] if path is None else [path])
    assert all(error["message"] for error in errors)


def test_data_json_cannot_hold_is_an_error_not_a_crash():
    entry = load_catalog().get("dev.ripple.shop.order.placed")
    assert entry is not None
    # The gateway hands over parsed JSON only; a key that is not a string cannot come from it.
    errors = entry.schema_errors({**ORDER, 1: "x"})
    assert errors and errors[0]["path"] == "/data"


def test_loading_the_catalog_and_checking_valid_data_imports_no_jsonschema():
    script = (
        "import sys; from ripple_events import load_catalog; "
        "entry = load_catalog().get('dev.ripple.shop.page.viewed'); "
        "print('jsonschema' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(FUNCTIONS)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
