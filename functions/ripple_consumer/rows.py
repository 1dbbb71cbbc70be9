"""The columns every consumer that stores whole CloudEvents fills the same way (event-store's
`events`, dead-letters' `dead_letters`): the envelope, and the extensions as one JSON object.

Each function adds what is its own (how `time` and `data` are stored, the error extensions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The CloudEvents context attributes of the spec; anything else is an extension.
CORE_ATTRIBUTES = frozenset(
    {"specversion", "id", "source", "type", "subject", "time", "datacontenttype", "dataschema"}
)


def envelope_columns(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """id, source, type, subject, tenant and extensions (every non-core attribute, tenant too)."""
    return {
        "id": attributes["id"],
        "source": attributes["source"],
        "type": attributes["type"],
        "subject": attributes.get("subject"),
        "tenant": attributes.get("tenant"),
        "extensions": {k: v for k, v in attributes.items() if k not in CORE_ATTRIBUTES},
    }
