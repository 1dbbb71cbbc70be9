"""Pure logic of the aggregation job and its local lifecycle (no servers)."""

from __future__ import annotations

import os
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
    assert kinds.count("CREATE TEMPORARY VIEW") == 4
    assert sum(s.startswith("INSERT INTO") for s in statements) == 3
    assert all("INTERVAL '45' SECOND" in s for s in statements if "WATERMARK" in s)
    # The password is a SQL literal with its quote doubled, never breaking the statement.
    assert sum("'password' = 's3cr''et'" in s for s in statements) == 3


def test_missing_password_stops_with_a_message():
    with pytest.raises(SystemExit, match="RIPPLE_DB_PASSWORD"):
        aggregates.JobConfig.from_env({})


def test_defaults_are_the_cluster_addresses():
    job = config()
    assert job.kafka_bootstrap == "ripple-kafka-bootstrap.ripple.svc:9092"
    assert job.jdbc_url == "jdbc:postgresql://ripple-db-rw.ripple.svc:5432/ripple"
    assert (job.checkpoint_interval, job.lateness_s, job.job_name) == ("5 s", 30, "ripple-aggregates")


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
