-- The PostgreSQL tables the aggregation job writes (and the query function reads).
-- Idempotent: `make up` applies it before it submits the job; in a cluster it runs as a
-- migration step before the FlinkDeployment (see flink/README.md).
-- Times are UTC (timestamp without time zone). written_at is filled by PostgreSQL when a row
-- is first written; the benchmark uses it as the moment the row became visible.

CREATE TABLE IF NOT EXISTS agg_events_per_minute (
  tenant       text          NOT NULL,
  event_type   text          NOT NULL,
  window_start timestamp(3)  NOT NULL,
  window_end   timestamp(3)  NOT NULL,
  events       bigint        NOT NULL,
  amount_sum   numeric(20, 2),          -- NULL for types without an amount (page views)
  written_at   timestamptz   NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (tenant, event_type, window_start)
);

CREATE TABLE IF NOT EXISTS agg_product_sales (
  tenant      text           NOT NULL,
  sku         text           NOT NULL,
  revenue     numeric(20, 2) NOT NULL,  -- sum of quantity * unitPrice
  quantity    bigint         NOT NULL,
  order_lines bigint         NOT NULL,  -- order items naming this sku
  written_at  timestamptz    NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (tenant, sku)
);

CREATE TABLE IF NOT EXISTS agg_tenant_totals (
  tenant         text           NOT NULL,
  orders         bigint         NOT NULL,
  order_amount   numeric(20, 2) NOT NULL,
  payments       bigint         NOT NULL,
  payment_amount numeric(20, 2) NOT NULL,
  pageviews      bigint         NOT NULL,
  written_at     timestamptz    NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (tenant)
);
