"""ripple's shared event catalog: what events exist and how they map to Kafka."""

from .catalog import Catalog, CatalogError, EventType, load_catalog

__all__ = ["Catalog", "CatalogError", "EventType", "load_catalog"]
