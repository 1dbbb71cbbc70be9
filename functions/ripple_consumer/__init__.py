"""What ripple's consumer functions share: the CloudEvent functions a KafkaSource calls.

Their PostgreSQL settings and engine (database), their Alembic environment (migrations), and the
HTTP plumbing around a functions-framework CloudEvent handler (http: problem answers, probes,
metrics), and the envelope columns of a stored CloudEvent (rows). Nothing here knows about a
particular event or table.
"""
