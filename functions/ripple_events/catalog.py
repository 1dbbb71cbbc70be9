"""Typed view of catalog.yaml: which event types exist and how each maps to Kafka.

One purpose only. The gateway validates and routes with it; consumers and the Flink job use the
topic names and schemas from here instead of repeating them.

jsonschema (~75 ms of a cold start to import, issue 22) is imported only when an event fails its
schema, to list every error: valid data is checked by fastjsonschema's compiled code. The
shipped catalog's schemas are checked against the JSON Schema meta-schema by the unit tests
(functions/gateway/tests/test_gateway_events_unit.py), not at each start; parse_catalog checks
any other document as it parses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import yaml

CATALOG_FILE = "catalog.yaml"


class CatalogError(Exception):
    """catalog.yaml is inconsistent; the message names the entry and the field."""


class _ErrorLister:
    """jsonschema's validator of one schema, built when it is first needed (a failed check)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self.validator: Any = None

    def iter_errors(self, data: Any) -> Iterator[Any]:
        if self.validator is None:  # two threads may both build it: the same validator, harmless
            import jsonschema

            self.validator = jsonschema.Draft202012Validator(
                self.schema, format_checker=jsonschema.FormatChecker()
            )
        return self.validator.iter_errors(data)


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
    _validator: _ErrorLister = field(repr=False, compare=False, hash=False)
    # Compiled check for the common case (valid data), ~10x faster than jsonschema; jsonschema
    # runs only on failure, to list every error with its path.
    _fast_check: Callable[[Any], Any] = field(repr=False, compare=False, hash=False)

    @property
    def publishable(self) -> bool:
        return self.publish_role is not None

    def schema_errors(self, data: Any) -> list[dict[str, str]]:
        """Every violation of the data schema as {"path": JSON pointer, "message": ...}; [] if valid."""
        try:
            self._fast_check(data)
            return []
        except fastjsonschema.JsonSchemaException:
            pass
        errors = sorted(self._validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
        return [
            {
                "path": "/data" + "".join(f"/{part}" for part in error.absolute_path),
                "message": error.message,
            }
            for error in errors
        ]

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
    """CatalogError unless the schema is valid JSON Schema (draft 2020-12)."""
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
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
                _validator=_ErrorLister(schema),
                _fast_check=fastjsonschema.compile(schema),
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
