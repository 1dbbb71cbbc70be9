"""Typed view of catalog.yaml: which event types exist and how each maps to Kafka.

One purpose only. The gateway validates and routes with it; consumers and the Flink job use the
topic names and schemas from here instead of repeating them.

Data is checked by jsonschema-rs (compiled Rust, ~0.7 us for an order against fastjsonschema's
~5.6 us of generated Python: the schema check was ~28 % of the gateway's CPU per batch event,
issue 22), which also lists a failure's errors, so one validator decides and explains. Before it,
fastjsonschema decided and Python's jsonschema explained; where the two disagreed the data went
through: Python's `re.search` lets `$` match before a final newline, so "EUR\n" passed the
currency's `^[A-Z]{3}$` and an orderId ending in a newline passed its no-control-characters
pattern. jsonschema-rs follows ECMA-262, as JSON Schema says. The shipped catalog's schemas are
checked against the JSON Schema meta-schema by the unit tests, not at each start; parse_catalog
checks any other document as it parses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
import yaml

CATALOG_FILE = "catalog.yaml"


class CatalogError(Exception):
    """catalog.yaml is inconsistent; the message names the entry and the field."""


@dataclass(frozen=True)
class EventType:
    type: str
    description: str
    topic: str
    # Field of `data` whose value, prefixed with the tenant, becomes the Kafka record key.
    partition_key: str
    # Realm role needed to publish through the gateway; None = internal event, not publishable.
    publish_role: str | None
    data_schema: Mapping[str, Any]
    _validator: Any = field(repr=False, compare=False, hash=False)

    @property
    def publishable(self) -> bool:
        return self.publish_role is not None

    def schema_errors(self, data: Any) -> list[dict[str, str]]:
        """Every violation of the data schema as {"path": JSON pointer, "message": ...}; [] if valid."""
        try:
            if self._validator.is_valid(data):
                return []
            errors = sorted(self._validator.iter_errors(data), key=lambda e: list(map(str, e.instance_path)))
        except (ValueError, UnicodeError) as error:
            # Only data that JSON cannot hold (a key that is not a string) gets here.
            return [{"path": "/data", "message": f"cannot be checked against the schema: {error}"}]
        listed = [
            {
                "path": "/data" + "".join(f"/{part}" for part in error.instance_path),
                "message": error.message,
            }
            for error in errors
        ]
        # Invalid data is never passed as valid, even if no error were listed.
        return listed or [{"path": "/data", "message": "does not match the schema of its type"}]

    def partition_key_of(self, data: Mapping[str, Any], tenant: str) -> str:
        """The Kafka key "<tenant>/<value>"; call only with data that passed the schema."""
        return f"{tenant}/{data[self.partition_key]}"


@dataclass(frozen=True)
class Catalog:
    types: Mapping[str, EventType]

    def get(self, event_type: str) -> EventType | None:
        return self.types.get(event_type)

    def __iter__(self) -> Iterator[EventType]:
        return iter(self.types.values())

    def topics(self) -> list[str]:
        return sorted({entry.topic for entry in self})


def check_schema(schema: Mapping[str, Any], where: str) -> None:
    """CatalogError unless the schema is valid JSON Schema (its own `$schema`, else draft 2020-12)."""
    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as error:
        raise CatalogError(f"{where}: data_schema is not valid JSON Schema: {error.message}") from None


def parse_catalog(document: Mapping[str, Any], check_schemas: bool = True) -> Catalog:
    types: dict[str, EventType] = {}
    for index, raw in enumerate(document.get("events") or []):
        where = f"{CATALOG_FILE}: events[{index}]"
        try:
            schema = raw["data_schema"]
            if check_schemas:
                check_schema(schema, where)
            entry = EventType(
                type=str(raw["type"]),
                description=str(raw.get("description", "")),
                topic=str(raw["topic"]),
                partition_key=str(raw["partition_key"]),
                publish_role=raw.get("publish_role"),
                data_schema=schema,
                _validator=jsonschema_rs.validator_for(schema, validate_formats=True),
            )
        except KeyError as missing:
            raise CatalogError(f"{where}: field {missing} is missing") from None
        if entry.partition_key not in schema.get("required", []):
            # The key is read from validated data, so it must be a required field.
            raise CatalogError(f"{where}: partition_key {entry.partition_key!r} must be a required field")
        if entry.type in types:
            raise CatalogError(f"{where}: type {entry.type} is declared twice")
        types[entry.type] = entry
    if not types:
        raise CatalogError(f"{CATALOG_FILE}: no events declared")
    return Catalog(types=types)


def shipped_document() -> Any:
    """catalog.yaml of this package, as YAML."""
    return yaml.safe_load(resources.files(__package__).joinpath(CATALOG_FILE).read_text(encoding="utf-8"))


@cache
def load_catalog() -> Catalog:
    """The catalog shipped with this package (parsed once per process). Its schemas are checked
    against the meta-schema by the unit tests, not here: the file ships with the code."""
    return parse_catalog(shipped_document(), check_schemas=False)
