"""A small Flink SQL job for the stack test: Kafka topic -> running sum -> PostgreSQL upsert.

Submitted by infra/tests/test_flink.py with `flink run -d -py`; everything it needs comes from
the environment, so the file holds no address or secret.
"""

import os

from pyflink.table import EnvironmentSettings, TableEnvironment


def main() -> None:
    env = os.environ
    tables = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    tables.execute_sql(
        f"""
        CREATE TABLE words (word STRING, n INT) WITH (
          'connector' = 'kafka',
          'topic' = '{env["SMOKE_TOPIC"]}',
          'properties.bootstrap.servers' = '{env["SMOKE_KAFKA"]}',
          'properties.group.id' = '{env["SMOKE_TOPIC"]}',
          'scan.startup.mode' = 'earliest-offset',
          'format' = 'json'
        )"""
    )
    tables.execute_sql(
        f"""
        CREATE TABLE word_totals (word STRING, total INT, PRIMARY KEY (word) NOT ENFORCED) WITH (
          'connector' = 'jdbc',
          'url' = '{env["SMOKE_JDBC_URL"]}',
          'table-name' = '{env["SMOKE_TABLE"]}',
          'username' = '{env["SMOKE_DB_USER"]}',
          'password' = '{env["SMOKE_DB_PASSWORD"]}'
        )"""
    )
    tables.execute_sql("INSERT INTO word_totals SELECT word, SUM(n) FROM words GROUP BY word")


if __name__ == "__main__":
    main()
