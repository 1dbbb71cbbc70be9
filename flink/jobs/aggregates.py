"""ripple-aggregates: the PyFlink job that keeps per-tenant aggregates of the shop events in PostgreSQL.

The aggregation is Flink SQL (flink/sql/aggregates.sql, next to this file in the image); this file
reads the configuration, sets up checkpointing and submits the SQL as one job. Submitted with
`flink run --python aggregates.py` (the local stack) or by the Flink Kubernetes Operator through
flink-python's PythonDriver (infra/flink/flinkdeployment.yaml).

Configuration (environment variables, read only here; defaults are the cluster addresses):
  RIPPLE_KAFKA_BOOTSTRAP      Kafka bootstrap servers      ripple-kafka-bootstrap.ripple.svc:9092
  RIPPLE_KAFKA_GROUP_ID       consumer group (offsets are committed on checkpoints, for lag
                              monitoring only: the job restores its offsets from its state)
                                                           ripple-aggregates
  RIPPLE_TOPIC_ORDERS / _PAYMENTS / _PAGEVIEWS             ripple.shop.orders / .payments / .pageviews
  RIPPLE_JDBC_URL             PostgreSQL JDBC URL          jdbc:postgresql://ripple-db-rw.ripple.svc:5432/ripple
  RIPPLE_DB_USER              database user                ripple
  RIPPLE_DB_PASSWORD          database password            (required; from a Secret, never a file)
  RIPPLE_CHECKPOINT_INTERVAL  checkpoint interval          5 s
  RIPPLE_LATENESS_S           allowed lateness (watermark delay) in seconds   30
  RIPPLE_IDLE_TIMEOUT         a partition without records this long stops holding the
                              watermark back               5 s
  RIPPLE_SINK_FLUSH_INTERVAL  JDBC sink flush interval     1 s
  RIPPLE_MINI_BATCH           buffer records and touch each aggregate's state, and emit its row,
                              once per key per batch instead of once per record   true
  RIPPLE_MINI_BATCH_LATENCY   a batch ends when event time (the watermark) crosses a multiple of
                              this, before every checkpoint, or at RIPPLE_MINI_BATCH_SIZE records;
                              should divide a minute (window ends are then batch ends; otherwise a
                              per-minute row is written up to this much later)   1 s
  RIPPLE_MINI_BATCH_SIZE      records buffered per batch and operator at most   5000
  RIPPLE_JOB_NAME             the job's name (how `make up` finds it)   ripple-aggregates

Mini-batch (flink/README.md "Mini-batch"): the running aggregates have a handful of keys (tenants,
skus) and got one state update and one upsert per record; batched, they get one per key per batch.
The latency default matches the JDBC sink's 1 s flush, so a running total shows at most about a
second later; the size bounds the buffers (the de-duplication's holds whole records) while a
backlog is read. Switching mini-batch on or off changes the job graph, so the job cannot resume
from its state across the switch: start it fresh (flink/README.md "Upgrade path").
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pyflink exists only in the Flink venv/image; the unit tests need none of it
    from pyflink.table import TableEnvironment

SQL_FILE = Path(__file__).resolve().parent.parent / "sql" / "aggregates.sql"
# In the image the SQL sits next to the job (see flink/Containerfile).
SQL_FALLBACK = Path(__file__).resolve().parent / "aggregates.sql"

# RFC 3339 `time` of a CloudEvent, in SQL: TO_TIMESTAMP_LTZ with a pattern ignores an offset in
# the text, so the local part and the offset ("Z" -> UTC) are split and the offset is passed as
# the time zone. Up to nine fraction digits; anything unparsable gives NULL.
PARSE_CE_TIME = (
    "TO_TIMESTAMP_LTZ("
    "REGEXP_EXTRACT(UPPER(CAST(headers['ce_time'] AS STRING)), '^(.+?)(Z|[+-][0-9]{2}:[0-9]{2})$', 1), "
    "'yyyy-MM-dd''T''HH:mm:ss[.SSSSSSSSS][.SSSSSS][.SSS][.SS][.S]', "
    "REGEXP_REPLACE(REGEXP_EXTRACT(UPPER(CAST(headers['ce_time'] AS STRING)), "
    "'(Z|[+-][0-9]{2}:[0-9]{2})$', 1), '^Z$', 'UTC'))"
)

# The columns every source table derives from the CloudEvents headers (aggregates.sql): the
# envelope, the tenant and the event time with its watermark. Filled before the SQL file is, as
# they hold placeholders themselves.
SOURCE_COLUMNS = """ce_id AS CAST(headers['ce_id'] AS STRING),
  ce_source AS CAST(headers['ce_source'] AS STRING),
  ce_type AS CAST(headers['ce_type'] AS STRING),
  tenant AS CAST(headers['ce_tenant'] AS STRING),
  event_time AS COALESCE(${PARSE_CE_TIME}, kafka_time),
  proc_time AS PROCTIME(),
  WATERMARK FOR event_time AS event_time - INTERVAL '${LATENESS_S}' SECOND"""

# An order item the sinks must not see, found in JSON_STRING(items) (Flink SQL has no predicate
# over array elements): sku NULL or empty; quantity NULL (missing, not a number, or beyond INT),
# negative, or of 8 digits or more (>= 10^7); unitPrice NULL (also beyond DECIMAL(18, 2)),
# negative, or of 11 integer digits or more (>= 10^10). JSON_STRING writes compact JSON, numbers
# plainly (DECIMAL(18, 2) as 1.25) and keys in any order; a match cannot come from inside a string
# value, where every quote is escaped, so the text before a key's closing quote is a real key.
# The first WHEN branches of every source's reject_reason (aggregates.sql): what each event
# needs whatever its type, so that it can be keyed, typed and stored in a text column.
ENVELOPE_CHECKS = """WHEN tenant IS NULL OR ce_id IS NULL THEN 'not-a-ripple-event'
    WHEN ce_type IS NULL THEN 'no-type'
    WHEN POSITION(CHR(0) IN tenant) > 0 OR POSITION(CHR(0) IN ce_type) > 0 THEN 'nul-character'"""
BAD_ITEM = '"(sku":(null|"")|quantity":(null|-|[0-9]{8})|unitPrice":(null|-|[0-9]{11}))'


@dataclass(frozen=True)
class JobConfig:
    kafka_bootstrap: str
    group_id: str
    topic_orders: str
    topic_payments: str
    topic_pageviews: str
    jdbc_url: str
    db_user: str
    db_password: str
    checkpoint_interval: str
    lateness_s: int
    idle_timeout: str
    sink_flush_interval: str
    mini_batch: bool
    mini_batch_latency: str
    mini_batch_size: int
    job_name: str

    @classmethod
    def from_env(cls, env: os._Environ[str] | dict[str, str] = os.environ) -> JobConfig:
        password = env.get("RIPPLE_DB_PASSWORD", "")
        if not password:
            sys.exit("ripple-aggregates: set RIPPLE_DB_PASSWORD (the PostgreSQL password, from a Secret).")
        return cls(
            kafka_bootstrap=env.get("RIPPLE_KAFKA_BOOTSTRAP", "ripple-kafka-bootstrap.ripple.svc:9092"),
            group_id=env.get("RIPPLE_KAFKA_GROUP_ID", "ripple-aggregates"),
            topic_orders=env.get("RIPPLE_TOPIC_ORDERS", "ripple.shop.orders"),
            topic_payments=env.get("RIPPLE_TOPIC_PAYMENTS", "ripple.shop.payments"),
            topic_pageviews=env.get("RIPPLE_TOPIC_PAGEVIEWS", "ripple.shop.pageviews"),
            jdbc_url=env.get("RIPPLE_JDBC_URL", "jdbc:postgresql://ripple-db-rw.ripple.svc:5432/ripple"),
            db_user=env.get("RIPPLE_DB_USER", "ripple"),
            db_password=password,
            checkpoint_interval=env.get("RIPPLE_CHECKPOINT_INTERVAL", "5 s"),
            lateness_s=int(env.get("RIPPLE_LATENESS_S", "30")),
            idle_timeout=env.get("RIPPLE_IDLE_TIMEOUT", "5 s"),
            sink_flush_interval=env.get("RIPPLE_SINK_FLUSH_INTERVAL", "1 s"),
            mini_batch=_flag(env.get("RIPPLE_MINI_BATCH", "true"), "RIPPLE_MINI_BATCH"),
            mini_batch_latency=env.get("RIPPLE_MINI_BATCH_LATENCY", "1 s"),
            mini_batch_size=_positive(env.get("RIPPLE_MINI_BATCH_SIZE", "5000"), "RIPPLE_MINI_BATCH_SIZE"),
            job_name=env.get("RIPPLE_JOB_NAME", "ripple-aggregates"),
        )


def _flag(value: str, name: str) -> bool:
    """A boolean setting: true/false (any case), as Flink's own options."""
    if value.strip().lower() not in ("true", "false"):
        sys.exit(f"ripple-aggregates: {name} must be true or false, not {value!r}.")
    return value.strip().lower() == "true"


def _positive(value: str, name: str) -> int:
    """A count setting: a whole number above 0."""
    if not value.strip().isdigit() or int(value) < 1:
        sys.exit(f"ripple-aggregates: {name} must be a whole number above 0, not {value!r}.")
    return int(value)


def table_settings(config: JobConfig) -> dict[str, str]:
    """The Flink configuration the job sets on its TableEnvironment (pure, so unit-testable)."""
    settings = {
        "pipeline.name": config.job_name,
        "table.local-time-zone": "UTC",
        # Exactly-once checkpoints: Kafka offsets and all aggregate state are snapshotted together;
        # after a failure the job resumes from the last one and replays from its offsets.
        "execution.checkpointing.interval": config.checkpoint_interval,
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.min-pause": "1 s",
        "table.exec.source.idle-timeout": config.idle_timeout,
        # Each aggregate's GROUP BY is its sink's primary key, so updates arrive keyed and in order:
        # the extra state of a SinkUpsertMaterializer would buy nothing.
        "table.exec.sink.upsert-materialize": "NONE",
        # The INSERTs read the same views (the de-duplicated topics, their union): optimized per
        # INSERT, every INSERT got its own copy of each view's check, exchange and
        # de-duplication (7 for 3 topics, each with its own state). Found by digest, each view
        # is optimized once and its output shared: one check and one de-duplication per topic.
        "table.optimizer.reuse-optimize-block-with-digest-enabled": "true",
        "table.exec.mini-batch.enabled": "true" if config.mini_batch else "false",
    }
    if config.mini_batch:
        # The window aggregate needs the event-time watermark, so the planner makes the batches
        # event-time ones (a RowTime MiniBatchAssigner after each source forwards the watermark
        # only when it crosses a multiple of the latency): a window end, a multiple of a minute,
        # is always such a crossing, so the per-minute rows fire as before. Every batching
        # operator (de-duplication, both GROUP BYs) flushes its buffer before it forwards a
        # watermark and before a checkpoint barrier (prepareSnapshotPreBarrier), so a checkpoint
        # holds every record before its barrier in state, as without batches: exactly once holds.
        # The agg-phase strategy stays AUTO: with mini-batch it splits both GROUP BYs into a
        # local pre-aggregate chained before the keyed exchange and a global one after it, so
        # only one row per key per batch crosses the exchange.
        settings["table.exec.mini-batch.allow-latency"] = config.mini_batch_latency
        settings["table.exec.mini-batch.size"] = str(config.mini_batch_size)
    return settings


def batches_on_processing_time(plan: str) -> bool:
    """Whether an EXPLAIN of the job puts a processing-time mini-batch assigner anywhere.

    Such an assigner drops the source watermarks and emits wall-clock ones, so the window behind
    it would close on the wall clock instead of event time. Flink 2.0 gives a view shared by
    several INSERTs the mini-batch mode of the INSERT planned last (aggregates.sql keeps the
    window's last); this check catches a Flink version or an SQL change where that no longer holds.
    """
    return any("MiniBatchAssigner(" in line and "mode=[ProcTime]" in line for line in plan.splitlines())


def _quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def render_statements(config: JobConfig) -> list[str]:
    """The statements of aggregates.sql with the configuration filled in."""
    kafka_options = ",\n  ".join(
        [
            f"'properties.bootstrap.servers' = {_quote(config.kafka_bootstrap)}",
            f"'properties.group.id' = {_quote(config.group_id)}",
            # First start: from the beginning of the topics; afterwards offsets come from the
            # checkpoint or savepoint the job is restored from.
            "'scan.startup.mode' = 'group-offsets'",
            "'properties.auto.offset.reset' = 'earliest'",
            "'properties.isolation.level' = 'read_committed'",
            "'value.format' = 'json'",
            # A malformed value must not stop the aggregates: a value that is not JSON is skipped,
            # a field of the wrong type or out of its column's range reads as NULL (and the
            # checks in aggregates.sql then drop the event).
            "'value.json.ignore-parse-errors' = 'true'",
        ]
    )
    jdbc_options = ",\n  ".join(
        [
            f"'url' = {_quote(config.jdbc_url)}",
            f"'username' = {_quote(config.db_user)}",
            f"'password' = {_quote(config.db_password)}",
            f"'sink.buffer-flush.interval' = {_quote(config.sink_flush_interval)}",
            "'sink.buffer-flush.max-rows' = '1000'",
            "'sink.max-retries' = '3'",
        ]
    )
    source_columns = Template(SOURCE_COLUMNS).substitute(
        PARSE_CE_TIME=PARSE_CE_TIME, LATENESS_S=str(config.lateness_s)
    )
    text = Template(SQL_FILE.read_text() if SQL_FILE.exists() else SQL_FALLBACK.read_text()).substitute(
        SOURCE_COLUMNS=source_columns,
        BAD_ITEM=_quote(BAD_ITEM),
        ENVELOPE_CHECKS=ENVELOPE_CHECKS,
        TOPIC_ORDERS=config.topic_orders,
        TOPIC_PAYMENTS=config.topic_payments,
        TOPIC_PAGEVIEWS=config.topic_pageviews,
        KAFKA_OPTIONS=kafka_options,
        JDBC_OPTIONS=jdbc_options,
    )
    statements = []
    for chunk in text.split("\n;\n"):
        lines = [line for line in chunk.splitlines() if line.strip() and not line.strip().startswith("--")]
        if lines:
            statements.append("\n".join(lines).rstrip(";"))
    return statements


def build(config: JobConfig) -> TableEnvironment:
    from pyflink.table import EnvironmentSettings, TableEnvironment

    tables = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    settings = tables.get_config()
    for key, value in table_settings(config).items():
        settings.set(key, value)
    return tables


def main() -> None:
    config = JobConfig.from_env()
    tables = build(config)
    statements = render_statements(config)
    inserts = tables.create_statement_set()
    for statement in statements:
        if statement.lstrip().upper().startswith("INSERT"):
            inserts.add_insert_sql(statement)
        else:
            tables.execute_sql(statement)
    if config.mini_batch and batches_on_processing_time(inserts.explain()):
        sys.exit(
            "ripple-aggregates: the plan batches on processing time, which would close the per-minute "
            "windows on the wall clock; keep the windowed INSERT last in aggregates.sql, or set "
            "RIPPLE_MINI_BATCH=false (flink/README.md, Mini-batch)."
        )
    # All INSERTs form one job: one set of sources, one checkpoint covering every aggregate.
    inserts.execute()


if __name__ == "__main__":
    main()
