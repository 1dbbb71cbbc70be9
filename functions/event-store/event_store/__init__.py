"""event-store: every CloudEvent into PostgreSQL, once per (source, id)."""
