"""Pure logic of the aggregation job and its local lifecycle (no servers)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
import aggregates  # the job module; pyflink is imported only when the job runs

from ripple_stack import flink_job
from ripple_stack.settings import load_settings


def config(**overrides: str) -> aggregates.JobConfig:
    return aggregates.JobConfig.from_env({"RIPPLE_DB_PASSWORD": "s3cr'et", **overrides})


def test_statements_are_complete_and_quoted():
    statements = aggregates.render_statements(config(RIPPLE_LATENESS_S="45"))
    assert not any("${" in s or "$$" in s for s in statements)
    kinds = [" ".join(s.split()[:3]) for s in statements]
    assert kinds.count("CREATE TEMPORARY TABLE") == 6  # three sources, three sinks
    assert kinds.count("CREATE TEMPORARY VIEW") == 7  # three checks, three dedups, the union
    assert sum(s.startswith("INSERT INTO") for s in statements) == 3
    assert all("INTERVAL '45' SECOND" in s for s in statements if "WATERMARK" in s)
    # The password is a SQL literal with its quote doubled, never breaking the statement.
    assert sum("'password' = 's3cr''et'" in s for s in statements) == 3


# JSON_STRING(items) as Flink 2.0.2 writes it (keys sorted, compact; taken from a local run of the
# orders_checked view on the poison values below), and whether the event must be dropped.
ITEMS_JSON = [
    ('[{"quantity":2,"sku":"a","unitPrice":1.25}]', False),
    # The largest values the bounds keep, and a sku that looks like a bad key from inside a string.
    ('[{"quantity":9999999,"sku":"b\\"quantity\\":null","unitPrice":9999999999.99}]', False),
    ('[{"quantity":1,"sku":"null","unitPrice":0.00},{"quantity":3,"sku":"\\"\\"","unitPrice":5.00}]', False),
    ('[{"quantity":2,"sku":"a","unitPrice":null}]', True),  # unitPrice 1e30: NULL in DECIMAL(18, 2)
    ('[{"quantity":2,"sku":"a","unitPrice":10000000000.00}]', True),  # >= 10^10
    ('[{"quantity":null,"sku":"a","unitPrice":1.00}]', True),  # quantity 1e12 (beyond INT) or "x"
    ('[{"quantity":10000000,"sku":"a","unitPrice":1.00}]', True),  # >= 10^7
    ('[{"quantity":1,"sku":null,"unitPrice":1.00}]', True),  # no sku
    ('[{"quantity":1,"sku":"","unitPrice":1.00}]', True),
    ('[{"quantity":-3,"sku":"a","unitPrice":1.00}]', True),
    ('[{"quantity":3,"sku":"a","unitPrice":-1.00}]', True),
    ('[{"quantity":1,"sku":"ok","unitPrice":1.00},{"unitPrice":null,"sku":"a","quantity":1}]', True),
]


@pytest.mark.parametrize(("items_json", "bad"), ITEMS_JSON)
def test_bad_item_pattern_finds_what_the_sinks_cannot_store(items_json, bad):
    # Flink's REGEXP is Java's regex `find`; the pattern uses only syntax Python's re shares.
    assert bool(re.search(aggregates.BAD_ITEM, items_json)) is bad


def test_only_checked_events_reach_the_aggregates():
    statements = aggregates.render_statements(config())
    views = {s.split()[3]: s for s in statements if s.startswith("CREATE TEMPORARY VIEW")}
    checks = {name: s for name, s in views.items() if name.endswith("_checked")}
    assert set(checks) == {"orders_checked", "payments_checked", "pageviews_checked"}
    # The pattern is one SQL literal (no quote of its own to break out of).
    assert aggregates._quote(aggregates.BAD_ITEM) in checks["orders_checked"]
    for name in ("orders", "payments", "pageviews"):
        dedup = next(s for s in statements if s.startswith(f"CREATE TEMPORARY VIEW {name} AS"))
        assert f"FROM {name}_checked WHERE reject_reason IS NULL" in dedup
        assert f"{name}_source" not in dedup
    # Every value a sink writes is checked: strings for NUL, numbers for NULL and range.
    for check in checks.values():
        assert "POSITION(CHR(0) IN tenant)" in check and "POSITION(CHR(0) IN ce_type)" in check
    for name in ("orders_checked", "payments_checked"):
        assert "amount IS NULL OR amount < 0" in checks[name]
    assert "POSITION(CHR(0) IN CAST(items AS STRING))" in checks["orders_checked"]


def test_every_reject_reason_is_documented():
    sql = "\n".join(aggregates.render_statements(config()))  # with the shared ENVELOPE_CHECKS
    reasons = set(re.findall(r"THEN '([a-z-]+)'", sql))
    assert {"not-a-ripple-event", "no-type", "nul-character", "bad-amount", "no-items", "bad-item"} <= reasons
    readme = (aggregates.SQL_FILE.parents[1] / "README.md").read_text()
    assert all(f"`{reason}`" in readme for reason in reasons), reasons


def test_missing_password_stops_with_a_message():
    with pytest.raises(SystemExit, match="RIPPLE_DB_PASSWORD"):
        aggregates.JobConfig.from_env({})


def test_defaults_are_the_cluster_addresses():
    job = config()
    assert job.kafka_bootstrap == "ripple-kafka-bootstrap.ripple.svc:9092"
    assert job.jdbc_url == "jdbc:postgresql://ripple-db-rw.ripple.svc:5432/ripple"
    assert (job.checkpoint_interval, job.lateness_s, job.job_name) == ("5 s", 30, "ripple-aggregates")


def test_mini_batch_is_on_by_default_and_configurable():
    settings = aggregates.table_settings(config())
    assert settings["table.exec.mini-batch.enabled"] == "true"
    assert settings["table.exec.mini-batch.allow-latency"] == "1 s"
    assert settings["table.exec.mini-batch.size"] == "5000"
    # Exactly once stays whatever the batches.
    assert settings["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    tuned = aggregates.table_settings(config(RIPPLE_MINI_BATCH_LATENCY="2 s", RIPPLE_MINI_BATCH_SIZE="100"))
    assert (tuned["table.exec.mini-batch.allow-latency"], tuned["table.exec.mini-batch.size"]) == (
        "2 s",
        "100",
    )
    off = aggregates.table_settings(config(RIPPLE_MINI_BATCH="False"))
    assert off["table.exec.mini-batch.enabled"] == "false"
    assert not any(
        key.startswith("table.exec.mini-batch.") and key != "table.exec.mini-batch.enabled" for key in off
    )


def test_views_are_optimized_once_for_every_insert():
    # Without it every INSERT had its own check and de-duplication of each topic it reads.
    settings = aggregates.table_settings(config(RIPPLE_MINI_BATCH="false"))
    assert settings["table.optimizer.reuse-optimize-block-with-digest-enabled"] == "true"


def test_the_windowed_insert_is_planned_last():
    # Flink 2.0 gives a shared view the mini-batch mode of the INSERT planned last; only the
    # window's (event time) keeps the source watermarks (aggregates.sql, Aggregates).
    inserts = [s for s in aggregates.render_statements(config()) if s.startswith("INSERT INTO")]
    assert inserts[-1].startswith("INSERT INTO agg_events_per_minute")


# Lines of `StatementSet.explain()` of this job on Flink 2.0.2 (shortened): the SQL as committed,
# and with the windowed INSERT first, where the shared views got the processing-time mode.
EVENT_TIME_PLAN = """== Optimized Execution Plan ==
Calc(select=[tenant, ce_type, event_time, orderId, items, amount])(reuse_id=[1])
+- Deduplicate(keep=[FirstRow], key=[ce_id, ce_source], order=[PROCTIME])
   +- Exchange(distribution=[hash[ce_id, ce_source]])
      +- Calc(select=[orderId, items, amount, ...])
         +- MiniBatchAssigner(interval=[1000ms], mode=[RowTime])
            +- TableSourceScan(table=[[default_catalog, default_database, orders_source, ...]])
"""
PROCESSING_TIME_PLAN = EVENT_TIME_PLAN.replace("mode=[RowTime]", "mode=[ProcTime]")


def test_a_plan_batching_on_processing_time_is_refused():
    assert not aggregates.batches_on_processing_time(EVENT_TIME_PLAN)
    assert aggregates.batches_on_processing_time(PROCESSING_TIME_PLAN)
    assert not aggregates.batches_on_processing_time("Deduplicate(keep=[FirstRow], order=[PROCTIME])")


@pytest.mark.parametrize(
    ("name", "value"),
    [("RIPPLE_MINI_BATCH", "yes"), ("RIPPLE_MINI_BATCH_SIZE", "0"), ("RIPPLE_MINI_BATCH_SIZE", "1k")],
)
def test_bad_mini_batch_settings_stop_with_a_message(name, value):
    with pytest.raises(SystemExit, match=name):
        config(**{name: value})


def test_restore_point_is_the_newest_complete_checkpoint_of_our_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv("RIPPLE_HOME", str(tmp_path))
    settings = load_settings()
    checkpoints = tmp_path / "data" / "flink" / "checkpoints"
    assert flink_job.latest_restore_point(settings) is None

    def checkpoint(job: str, n: int, complete: bool, mtime: int) -> Path:
        path = checkpoints / job / f"chk-{n}"
        path.mkdir(parents=True)
        if complete:
            (path / "_metadata").write_bytes(b"x")
            os.utime(path / "_metadata", (mtime, mtime))
        return path

    checkpoint("a" * 32, 1, True, 1000)
    newest = checkpoint("a" * 32, 2, True, 2000)
    checkpoint("a" * 32, 3, False, 0)  # in progress when the JobManager died: unusable
    checkpoint("f" * 32, 9, True, 3000)  # another job's
    flink_job._save_state(settings, {"job_ids": ["a" * 32], "savepoints": []})
    assert flink_job.latest_restore_point(settings) == newest


def test_a_job_that_cannot_take_its_state_is_left_stopped_with_a_reason(tmp_path, monkeypatch):
    """A changed job graph fails `flink run` at restore: say what to do, and stop the keeper's resubmits."""
    monkeypatch.setenv("RIPPLE_HOME", str(tmp_path))
    settings = load_settings()
    flink_job.Flink().data_dir(settings).mkdir(parents=True)
    restore_from = tmp_path / "savepoint-1"
    # What `flink run --detached --fromSavepoint` of Flink 2.0.2 printed for such a job (the client
    # waits for the JobManager to restore the state; no JobID line).
    output = (
        "Caused by: org.apache.flink.runtime.client.JobInitializationException: Could not start the "
        "JobMaster.\nCaused by: java.lang.IllegalStateException: Failed to rollback to checkpoint/savepoint "
        f"file:{restore_from}. Cannot map checkpoint/savepoint state for operator "
        "1d4c33aa18a3fd3246f4cb02dc044305 to the new program, because the operator is not available in "
        "the new program.\norg.apache.flink.client.program.ProgramAbortException: Python process exits"
    )
    answer = subprocess.CompletedProcess([], 1, stdout="", stderr=output)
    monkeypatch.setattr(flink_job.subprocess, "run", lambda *args, **kwargs: answer)
    secrets = {"RIPPLE_POSTGRES_PASSWORD": "x"}
    with pytest.raises(flink_job.StateMismatch, match="does not fit the changed job graph"):
        flink_job.submit(settings, secrets, restore_from)
    assert flink_job._load_state(settings)["stopped_by_operator"] is True

    # Any other failure is reported with Flink's own words, and a success resumes as before.
    answer.stderr = "java.net.ConnectException: Connection refused"
    with pytest.raises(flink_job.PrerequisiteError, match="Connection refused") as failure:
        flink_job.submit(settings, secrets, restore_from)
    assert not isinstance(failure.value, flink_job.StateMismatch)
    answer.stdout = "Job has been submitted with JobID " + "c" * 32
    assert flink_job.submit(settings, secrets, restore_from) == "c" * 32
    assert flink_job._load_state(settings)["stopped_by_operator"] is False
