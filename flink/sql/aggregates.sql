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
CREATE TEMPORARY TABLE orders_source (
  headers MAP<STRING, BYTES> METADATA,
  kafka_time TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  orderId STRING,
  customerId STRING,
  items ARRAY<ROW<sku STRING, quantity INT, unitPrice DECIMAL(18, 2)>>,
  amount DECIMAL(18, 2),
  currency STRING,
  ce_id AS CAST(headers['ce_id'] AS STRING),
  ce_source AS CAST(headers['ce_source'] AS STRING),
  ce_type AS CAST(headers['ce_type'] AS STRING),
  tenant AS CAST(headers['ce_tenant'] AS STRING),
  event_time AS COALESCE(${PARSE_CE_TIME}, kafka_time),
  proc_time AS PROCTIME(),
  WATERMARK FOR event_time AS event_time - INTERVAL '${LATENESS_S}' SECOND
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
  ce_id AS CAST(headers['ce_id'] AS STRING),
  ce_source AS CAST(headers['ce_source'] AS STRING),
  ce_type AS CAST(headers['ce_type'] AS STRING),
  tenant AS CAST(headers['ce_tenant'] AS STRING),
  event_time AS COALESCE(${PARSE_CE_TIME}, kafka_time),
  proc_time AS PROCTIME(),
  WATERMARK FOR event_time AS event_time - INTERVAL '${LATENESS_S}' SECOND
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
  ce_id AS CAST(headers['ce_id'] AS STRING),
  ce_source AS CAST(headers['ce_source'] AS STRING),
  ce_type AS CAST(headers['ce_type'] AS STRING),
  tenant AS CAST(headers['ce_tenant'] AS STRING),
  event_time AS COALESCE(${PARSE_CE_TIME}, kafka_time),
  proc_time AS PROCTIME(),
  WATERMARK FOR event_time AS event_time - INTERVAL '${LATENESS_S}' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = '${TOPIC_PAGEVIEWS}',
  ${KAFKA_OPTIONS}
)
;

-- De-duplication ------------------------------------------------------------------------------
-- An event is (source, id): a client retrying a partly failed batch sends some events twice,
-- and the gateway writes them twice. Keep the first copy (ORDER BY proc_time ASC): Flink runs
-- this as an insert-only deduplication that keeps event_time a time attribute, so the window
-- below still works. Records without tenant or id are not ripple events and are skipped.
CREATE TEMPORARY VIEW orders AS
SELECT tenant, ce_type, event_time, orderId, items, amount FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY ce_source, ce_id ORDER BY proc_time ASC) AS copy
  FROM orders_source WHERE tenant IS NOT NULL AND ce_id IS NOT NULL
) WHERE copy = 1
;
CREATE TEMPORARY VIEW payments AS
SELECT tenant, ce_type, event_time, amount FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY ce_source, ce_id ORDER BY proc_time ASC) AS copy
  FROM payments_source WHERE tenant IS NOT NULL AND ce_id IS NOT NULL
) WHERE copy = 1
;
CREATE TEMPORARY VIEW pageviews AS
SELECT tenant, ce_type, event_time FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY ce_source, ce_id ORDER BY proc_time ASC) AS copy
  FROM pageviews_source WHERE tenant IS NOT NULL AND ce_id IS NOT NULL
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
-- 1. Windowed: per tenant, event type and minute of event time. A window's row is written once,
--    when the watermark passes its end (event time + lateness), and never changes afterwards.
INSERT INTO agg_events_per_minute
SELECT tenant, ce_type, window_start, window_end, COUNT(*), SUM(amount)
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(event_time), INTERVAL '1' MINUTE))
GROUP BY tenant, ce_type, window_start, window_end
;
-- 2. Running, per tenant and product: revenue, units and order lines of every order so far,
--    updated with each order (no window, so late orders count too).
INSERT INTO agg_product_sales
SELECT tenant, item.sku, SUM(item.quantity * item.unitPrice), SUM(CAST(item.quantity AS BIGINT)), COUNT(*)
FROM orders CROSS JOIN UNNEST(orders.items) AS item (sku, quantity, unitPrice)
GROUP BY tenant, item.sku
;
-- 3. Running, per tenant: totals of each event type.
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
