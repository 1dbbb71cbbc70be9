-- ripple-aggregates: the Flink SQL of the aggregation job (flink/jobs/aggregates.py runs it).
--
-- $${...} placeholders are filled from the job's configuration (environment variables, see
-- flink/README.md); statements are separated by a line holding only ';'.
-- Times are UTC: the job sets table.local-time-zone = UTC, so window_start/window_end are UTC
-- wall-clock timestamps.

-- Sources -------------------------------------------------------------------------------------
-- One table per topic. The CloudEvents attributes travel as Kafka headers (binary mode of the
-- CloudEvents Kafka binding, ce_* names); the value is the event's data (JSON).
-- event_time: the CloudEvent `time` (RFC 3339, any offset) parsed in SQL: TO_TIMESTAMP_LTZ with
-- a pattern ignores the offset, so the offset is cut off and passed as the time zone argument.
-- A record without a parsable time falls back to the Kafka record timestamp (set by the gateway
-- when it produced it), so replays always see the same time.
-- Watermark: event_time minus the allowed lateness: events up to the lateness (RIPPLE_LATENESS_S) out of order
-- still land in their minute window; later ones are dropped from the windowed table only (see
-- README "Late events").
-- SOURCE_COLUMNS (aggregates.py) are those columns, the same for every source.
CREATE TEMPORARY TABLE orders_source (
  headers MAP<STRING, BYTES> METADATA,
  kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  orderId STRING,
  customerId STRING,
  items ARRAY<ROW<sku STRING, quantity INT, unitPrice DECIMAL(18, 2)>>,
  amount DECIMAL(18, 2),
  currency STRING,
  ${SOURCE_COLUMNS}
) WITH (
  'connector' = 'kafka',
  'topic' = '${TOPIC_ORDERS}',
  ${KAFKA_OPTIONS}
)
;
CREATE TEMPORARY TABLE payments_source (
  headers MAP<STRING, BYTES> METADATA,
  kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  paymentId STRING,
  orderId STRING,
  amount DECIMAL(18, 2),
  currency STRING,
  `method` STRING,
  ${SOURCE_COLUMNS}
) WITH (
  'connector' = 'kafka',
  'topic' = '${TOPIC_PAYMENTS}',
  ${KAFKA_OPTIONS}
)
;
CREATE TEMPORARY TABLE pageviews_source (
  headers MAP<STRING, BYTES> METADATA,
  kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  sessionId STRING,
  path STRING,
  ${SOURCE_COLUMNS}
) WITH (
  'connector' = 'kafka',
  'topic' = '${TOPIC_PAGEVIEWS}',
  ${KAFKA_OPTIONS}
)
;

-- Checks: what the sinks cannot store, or would store wrongly, never reaches an aggregate ------
-- The gateway refuses such events, but a producer writing straight to Kafka (an older gateway, a
-- bug) can still send them, and ONE row the JDBC sink cannot write fails every flush: the job
-- restarts from its checkpoint, replays the same row, fails again, forever — and no tenant's
-- aggregates move. So every value a sink writes is checked here, and an event with a bad value is
-- dropped WHOLE (reject_reason not NULL), never repaired: stripping a NUL or zeroing a number
-- would store aggregates that silently differ from the events, while a dropped event is simply
-- absent (the drops are counted by the filter's numRecordsIn - numRecordsOut metrics, see
-- flink/README.md "Rejected records"). What the checks cover:
-- * value not JSON: the format skips the record ('json.ignore-parse-errors', set in
--   aggregates.py); a field of the wrong type or too large for its column (unitPrice 1e30 in
--   DECIMAL(18, 2), quantity 1e12 in INT, amount "abc") reads as NULL.
-- * required values NULL: tenant, id, type (headers), amount, items, sku, quantity, unitPrice.
-- * U+0000 (NUL) in a string a sink writes (tenant, type, sku): PostgreSQL text refuses it.
-- * numbers out of range: negative, or above bounds one digit over the gateway schema's maxima
--   (quantity < 10^7, unitPrice < 10^10, amount < 10^13), so one order line stays < 10^17 and one
--   event cannot overflow the sinks' DECIMAL(20, 2) (< 10^18).
-- Item values are checked on JSON_STRING(items) (Flink SQL has no per-element predicate on
-- arrays) with the regular expression BAD_ITEM of aggregates.py (unit-tested); NUL on
-- CAST(items AS STRING), which keeps the characters raw (JSON_STRING escapes them).
-- ENVELOPE_CHECKS (aggregates.py) are the checks every source shares: tenant, id and type present,
-- no NUL in tenant or type.
-- Computed in views on the sources and filtered in the de-duplication's WHERE: the planner
-- merges it into the Calc that already follows each source, so the job graph, and with it the
-- state a savepoint maps to operators, is the same as without the checks.
CREATE TEMPORARY VIEW orders_checked AS
SELECT *,
  CASE
    ${ENVELOPE_CHECKS}
    WHEN amount IS NULL OR amount < 0 OR amount >= 10000000000000 THEN 'bad-amount'
    WHEN items IS NULL OR CARDINALITY(items) = 0
      OR ARRAY_CONTAINS(items, CAST(NULL AS ROW<sku STRING, quantity INT, unitPrice DECIMAL(18, 2)>))
      THEN 'no-items'
    WHEN POSITION(CHR(0) IN CAST(items AS STRING)) > 0 THEN 'nul-character'
    WHEN REGEXP(JSON_STRING(items), ${BAD_ITEM}) THEN 'bad-item'
  END AS reject_reason
FROM orders_source
;
CREATE TEMPORARY VIEW payments_checked AS
SELECT *,
  CASE
    ${ENVELOPE_CHECKS}
    WHEN amount IS NULL OR amount < 0 OR amount >= 10000000000000 THEN 'bad-amount'
  END AS reject_reason
FROM payments_source
;
CREATE TEMPORARY VIEW pageviews_checked AS
SELECT *,
  CASE
    ${ENVELOPE_CHECKS}
  END AS reject_reason
FROM pageviews_source
;

-- De-duplication ------------------------------------------------------------------------------
-- An event is (source, id): a client retrying a partly failed batch sends some events twice,
-- and the gateway writes them twice. Keep the first copy (ORDER BY proc_time ASC): Flink runs
-- this as an insert-only deduplication that keeps event_time a time attribute, so the window
-- below still works. Only checked events (reject_reason IS NULL, see Checks above) count.
CREATE TEMPORARY VIEW orders AS
SELECT tenant, ce_type, event_time, orderId, items, amount FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY ce_source, ce_id ORDER BY proc_time ASC) AS copy
  FROM orders_checked WHERE reject_reason IS NULL
) WHERE copy = 1
;
CREATE TEMPORARY VIEW payments AS
SELECT tenant, ce_type, event_time, amount FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY ce_source, ce_id ORDER BY proc_time ASC) AS copy
  FROM payments_checked WHERE reject_reason IS NULL
) WHERE copy = 1
;
CREATE TEMPORARY VIEW pageviews AS
SELECT tenant, ce_type, event_time FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY ce_source, ce_id ORDER BY proc_time ASC) AS copy
  FROM pageviews_checked WHERE reject_reason IS NULL
) WHERE copy = 1
;
-- Every event once, with its amount where its type has one.
CREATE TEMPORARY VIEW events AS
SELECT tenant, ce_type, event_time, amount FROM orders
UNION ALL
SELECT tenant, ce_type, event_time, amount FROM payments
UNION ALL
SELECT tenant, ce_type, event_time, CAST(NULL AS DECIMAL(18, 2)) AS amount FROM pageviews
;

-- Sinks: PostgreSQL tables (flink/sql/postgres-schema.sql) written by the JDBC connector in
-- upsert mode (INSERT ... ON CONFLICT (primary key) DO UPDATE): writing a row again with the
-- same values changes nothing, which is what makes replays after a failure harmless.
CREATE TEMPORARY TABLE agg_events_per_minute (
  tenant STRING,
  event_type STRING,
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  events BIGINT,
  amount_sum DECIMAL(20, 2),
  PRIMARY KEY (tenant, event_type, window_start) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'table-name' = 'agg_events_per_minute',
  ${JDBC_OPTIONS}
)
;
CREATE TEMPORARY TABLE agg_product_sales (
  tenant STRING,
  sku STRING,
  revenue DECIMAL(20, 2),
  quantity BIGINT,
  order_lines BIGINT,
  PRIMARY KEY (tenant, sku) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'table-name' = 'agg_product_sales',
  ${JDBC_OPTIONS}
)
;
CREATE TEMPORARY TABLE agg_tenant_totals (
  tenant STRING,
  orders BIGINT,
  order_amount DECIMAL(20, 2),
  payments BIGINT,
  payment_amount DECIMAL(20, 2),
  pageviews BIGINT,
  PRIMARY KEY (tenant) NOT ENFORCED
) WITH (
  'connector' = 'jdbc',
  'table-name' = 'agg_tenant_totals',
  ${JDBC_OPTIONS}
)
;

-- Aggregates ----------------------------------------------------------------------------------
-- The three INSERTs run as one job (aggregates.py), and the planner optimizes the views they
-- share once (table.optimizer.reuse-optimize-block-with-digest-enabled): one check and one
-- de-duplication per topic feed all three. Keep the windowed INSERT LAST: with mini-batch on,
-- Flink 2.0 gives a shared view the mini-batch mode of the INSERT planned last, and only the
-- window's mode (event time) keeps the source watermarks; in processing-time mode the window
-- would close on the wall clock. aggregates.py refuses to submit a plan where that happened.
-- 1. Running, per tenant and product: revenue, units and order lines of every order so far,
--    updated with each order (no window, so late orders count too).
INSERT INTO agg_product_sales
SELECT tenant, item.sku, SUM(item.quantity * item.unitPrice), SUM(CAST(item.quantity AS BIGINT)), COUNT(*)
FROM orders CROSS JOIN UNNEST(orders.items) AS item (sku, quantity, unitPrice)
GROUP BY tenant, item.sku
;
-- 2. Running, per tenant: totals of each event type.
INSERT INTO agg_tenant_totals
SELECT
  tenant,
  COUNT(*) FILTER (WHERE ce_type = 'dev.ripple.shop.order.placed'),
  COALESCE(SUM(amount) FILTER (WHERE ce_type = 'dev.ripple.shop.order.placed'), 0),
  COUNT(*) FILTER (WHERE ce_type = 'dev.ripple.shop.payment.captured'),
  COALESCE(SUM(amount) FILTER (WHERE ce_type = 'dev.ripple.shop.payment.captured'), 0),
  COUNT(*) FILTER (WHERE ce_type = 'dev.ripple.shop.page.viewed')
FROM events
GROUP BY tenant
;
-- 3. Windowed: per tenant, event type and minute of event time. A window's row is written once,
--    when the watermark passes its end (event time + lateness), and never changes afterwards.
INSERT INTO agg_events_per_minute
SELECT tenant, ce_type, window_start, window_end, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(event_time), INTERVAL '1' MINUTE))
GROUP BY tenant, ce_type, window_start, window_end
;
