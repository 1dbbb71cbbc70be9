"""The aggregation job on the local Flink session cluster: submit, resume, savepoint, upgrade, status.

`make up` (the Flink component's after_ready) calls `ensure_running`: it applies the PostgreSQL
schema and submits flink/jobs/aggregates.py unless a job of that name is already running. The
local cluster has no HA service, so a JobManager crash forgets the job; its retained checkpoints
stay on disk (RETAIN_ON_CANCELLATION), and the job is resubmitted from the newest of them or of
the savepoints taken by `savepoint`/`upgrade` — the local stand-in for Kubernetes HA, where the
operator does the same from the HA metadata.
"""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from .batch_runs import pushed_run
from .component import PrerequisiteError, Say
from .components.flink import Flink, rest_get
from .settings import REPO_ROOT, Settings

JOB_NAME = "ripple-aggregates"
JOB_FILE = REPO_ROOT / "flink" / "jobs" / "aggregates.py"
SCHEMA_FILE = REPO_ROOT / "flink" / "sql" / "postgres-schema.sql"
GROUP_ID = "ripple-aggregates"
TOPICS = ("ripple.shop.orders", "ripple.shop.payments", "ripple.shop.pageviews")
TERMINAL_STATES = {"FINISHED", "CANCELED", "FAILED"}


@dataclass
class JobInfo:
    job_id: str
    state: str
    start_time_ms: int


def _state_file(settings: Settings) -> Path:
    """Job ids this stack submitted and savepoints it took (which checkpoints are ours)."""
    return Flink().data_dir(settings) / f"{JOB_NAME}.json"


def _load_state(settings: Settings) -> dict:
    path = _state_file(settings)
    if path.exists():
        return json.loads(path.read_text())
    return {"job_ids": [], "savepoints": []}


def _save_state(settings: Settings, state: dict) -> None:
    _state_file(settings).write_text(json.dumps(state, indent=2))


def job_env(settings: Settings, secrets: Mapping[str, str]) -> dict[str, str]:
    """The job's configuration (flink/jobs/aggregates.py documents each variable)."""
    return {
        "RIPPLE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RIPPLE_KAFKA_GROUP_ID": GROUP_ID,
        "RIPPLE_JDBC_URL": (
            f"jdbc:postgresql://{settings.host}:{settings.ports['postgres']}/{settings.postgres_database}"
        ),
        "RIPPLE_DB_USER": settings.postgres_user,
        "RIPPLE_DB_PASSWORD": secrets["RIPPLE_POSTGRES_PASSWORD"],
        "RIPPLE_JOB_NAME": JOB_NAME,
    }


def apply_schema(settings: Settings, secrets: Mapping[str, str], timeout_s: float = 120) -> None:
    """Create the aggregate tables (idempotent DDL); waits for PostgreSQL if it is starting."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            connection = psycopg2.connect(
                host=settings.host,
                port=settings.ports["postgres"],
                dbname=settings.postgres_database,
                user=settings.postgres_user,
                password=secrets["RIPPLE_POSTGRES_PASSWORD"],
                connect_timeout=5,
            )
            break
        except psycopg2.OperationalError as error:
            if time.monotonic() > deadline:
                raise PrerequisiteError(
                    f"PostgreSQL is not reachable for the Flink tables: {error}"
                ) from error
            time.sleep(2)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(SCHEMA_FILE.read_text())
    finally:
        connection.close()


def wait_for_topics(settings: Settings, timeout_s: float = 120) -> None:
    """The job's topics exist (the Kafka component creates them; it may finish after Flink)."""
    from kafka import KafkaAdminClient  # only needed when submitting

    deadline = time.monotonic() + timeout_s
    missing: set[str] = set(TOPICS)
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
            try:
                missing = set(TOPICS) - set(admin.list_topics())
            finally:
                admin.close()
        except Exception:  # Kafka still starting: retried until the deadline
            pass
        if not missing:
            return
        time.sleep(2)
    raise PrerequisiteError(
        f"Kafka topics {', '.join(sorted(missing))} are missing: "
        "check `make status` (kafka) and rerun `make up`."
    )


def jobs(settings: Settings) -> list[JobInfo]:
    overview = rest_get(settings, "/jobs/overview")
    found = [
        JobInfo(job["jid"], job["state"], job["start-time"])
        for job in overview.get("jobs", [])
        if job["name"] == JOB_NAME
    ]
    # Remember every job of ours the JobManager knows (also ones submitted by hand), so their
    # checkpoints can be found after a JobManager crash has made it forget them.
    state = _load_state(settings)
    unknown = [job.job_id for job in found if job.job_id not in state["job_ids"]]
    if unknown:
        state["job_ids"].extend(unknown)
        _save_state(settings, state)
    return found


def running_job(settings: Settings) -> JobInfo | None:
    """The job of that name that is not in a terminal state (RUNNING, RESTARTING, ...)."""
    alive = [job for job in jobs(settings) if job.state not in TERMINAL_STATES]
    return max(alive, key=lambda job: job.start_time_ms) if alive else None


def latest_restore_point(settings: Settings) -> Path | None:
    """The newest complete retained checkpoint of our jobs, or savepoint we took, if any."""
    state = _load_state(settings)
    checkpoints = Flink().data_dir(settings) / "checkpoints"
    candidates = [
        chk
        for job_id in state["job_ids"]
        for chk in (checkpoints / job_id).glob("chk-*")
        if (chk / "_metadata").exists()
    ]
    candidates += [Path(p) for p in state["savepoints"] if (Path(p) / "_metadata").exists()]
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path / "_metadata").stat().st_mtime)


# Flink's words when a checkpoint holds state for an operator the submitted job graph lacks. The
# client waits for the JobManager to restore the state, so `flink run` itself fails with them.
STATE_MISMATCH = "Cannot map checkpoint/savepoint state"


class StateMismatch(PrerequisiteError):
    """The job graph changed so that the state to resume from no longer maps to its operators."""


def run_python_job(
    settings: Settings, job_file: Path, env: Mapping[str, str], restore_from: Path | None = None
) -> str:
    """`flink run --detached --python job_file` against the local cluster; returns the job id."""
    flink = Flink()
    command = [str(flink.cli(settings)), "run", "--detached"]
    if restore_from is not None:
        command += ["--fromSavepoint", str(restore_from)]
    command += ["--python", str(job_file)]
    result = subprocess.run(
        command,
        env={**flink.cli_env(settings), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    found = re.search(r"JobID ([0-9a-f]{32})", result.stdout + result.stderr)
    if not found and restore_from is not None and STATE_MISMATCH in result.stdout + result.stderr:
        raise StateMismatch(
            f"{job_file.name} cannot resume from {restore_from}: its state does not fit the changed job "
            "graph (operators were added or removed in flink/sql or flink/jobs); put the previous version "
            'back, or start fresh as flink/README.md "Upgrade path" says.'
        )
    if not found:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise PrerequisiteError(f"submitting {job_file.name} failed:\n{tail}")
    return found.group(1)


def submit(settings: Settings, secrets: Mapping[str, str], restore_from: Path | None = None) -> str:
    """Submit the job (from a checkpoint or savepoint when given); returns its job id."""
    try:
        job_id = run_python_job(settings, JOB_FILE, job_env(settings, secrets), restore_from)
    except StateMismatch:
        # Every resubmission from this state fails the same way: the keeper leaves the job
        # stopped (as after `make flink-savepoint`) instead of resubmitting it in a loop.
        state = _load_state(settings)
        state["stopped_by_operator"] = True
        _save_state(settings, state)
        raise
    state = _load_state(settings)
    state["job_ids"].append(job_id)
    state["stopped_by_operator"] = False
    _save_state(settings, state)
    return job_id


@contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """One submitter at a time: two `make up` (or test sessions) at once must not both submit."""
    Flink().data_dir(settings).mkdir(parents=True, exist_ok=True)
    with open(Flink().data_dir(settings) / f"{JOB_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_running(settings: Settings, secrets: Mapping[str, str], say: Say) -> str:
    """Submit the job unless it runs; resume from the newest checkpoint/savepoint if one exists."""
    apply_schema(settings, secrets)
    with exclusive(settings):
        job = running_job(settings)
        if job is not None:
            say(f"{JOB_NAME} is {job.state} as {job.job_id}")
            return job.job_id
        wait_for_topics(settings)
        restore_from = latest_restore_point(settings)
        if restore_from is None:
            say(f"submitting {JOB_NAME} to Flink (fresh state)…")
        else:
            say(f"submitting {JOB_NAME} to Flink, resuming from {restore_from}…")
        job_id = submit(settings, secrets, restore_from)
    say(f"{JOB_NAME} submitted as {job_id}")
    return job_id


def watch(settings: Settings, secrets: Mapping[str, str], say: Say, interval_s: float = 10) -> None:
    """Keep the job running: the local stand-in for the Flink operator's JobManager HA.

    A session cluster without an HA service forgets its jobs when the JobManager restarts
    (supervisord restarts a crashed one at once). This loop, a supervised program of the flink
    component, notices the job is gone and resubmits it from the newest retained checkpoint, as
    `make up` would. It leaves alone a job an operator stopped with `flink savepoint`, and backs
    off (up to 5 minutes) when a submission fails, so a broken job is not resubmitted in a loop.
    """
    backoff_s = interval_s
    while True:
        time.sleep(backoff_s)
        try:
            overview = rest_get(settings, "/overview")
            state = _load_state(settings)
            if (
                overview.get("taskmanagers", 0) < 1
                or not state["job_ids"]  # never submitted yet: `make up` does the first one
                or state.get("stopped_by_operator")
                or running_job(settings) is not None
            ):
                backoff_s = interval_s
                continue
            say(f"{JOB_NAME} is not running on the JobManager: resubmitting")
            ensure_running(settings, secrets, say)
            backoff_s = interval_s
        except (OSError, PrerequisiteError, subprocess.SubprocessError) as error:
            backoff_s = min(backoff_s * 2, 300)
            say(f"cannot check or resubmit {JOB_NAME} ({error}); next try in {backoff_s:.0f} s")


def _rest_post(settings: Settings, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        settings.flink_rest_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def stop_with_savepoint(settings: Settings, say: Say, timeout_s: float = 300) -> Path:
    """Stop the running job with a savepoint (REST stop-with-savepoint); returns its path."""
    with pushed_run("flink-savepoint"):
        return _stop_with_savepoint(settings, say, timeout_s)


def _stop_with_savepoint(settings: Settings, say: Say, timeout_s: float) -> Path:
    job = running_job(settings)
    if job is None or job.state != "RUNNING":
        raise PrerequisiteError(f"{JOB_NAME} is not RUNNING: nothing to savepoint (see `make flink-status`).")
    target = Flink().data_dir(settings) / "savepoints"
    say(f"stopping {job.job_id} with a savepoint under {target}…")
    trigger = _rest_post(
        settings, f"/jobs/{job.job_id}/stop", {"targetDirectory": str(target), "drain": False}
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = rest_get(settings, f"/jobs/{job.job_id}/savepoints/{trigger['request-id']}")
        if status["status"]["id"] == "COMPLETED":
            operation = status.get("operation", {})
            if "failure-cause" in operation:
                raise PrerequisiteError(f"savepoint failed: {operation['failure-cause'].get('class')}")
            path = Path(operation["location"].removeprefix("file:"))
            state = _load_state(settings)
            state["savepoints"].append(str(path))
            # Stopped on purpose: the keeper (watch) must not bring it back until a submit.
            state["stopped_by_operator"] = True
            _save_state(settings, state)
            say(f"savepoint written: {path}")
            return path
        time.sleep(1)
    raise PrerequisiteError(f"the savepoint of {job.job_id} did not complete within {timeout_s:.0f} s")


def upgrade(settings: Settings, secrets: Mapping[str, str], say: Say) -> str:
    """Stop with a savepoint and submit the (possibly changed) job from it."""
    with pushed_run("flink-upgrade"):
        apply_schema(settings, secrets)
        with exclusive(settings):
            savepoint = stop_with_savepoint(settings, say)
            job_id = submit(settings, secrets, savepoint)
    say(f"{JOB_NAME} resubmitted as {job_id} from {savepoint}")
    return job_id


def consumer_lag(settings: Settings) -> dict[str, int] | None:
    """Records behind per topic, from the offsets the job commits to its group on checkpoints."""
    from kafka import KafkaAdminClient, KafkaConsumer  # only the status verb needs it

    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
        committed = admin.list_group_offsets(GROUP_ID)[GROUP_ID]
        admin.close()
        consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
        ends = consumer.end_offsets(list(committed))
        consumer.close()
    except Exception:  # status must answer even when Kafka does not
        return None
    lag: dict[str, int] = {}
    for partition, offset in committed.items():
        lag[partition.topic] = lag.get(partition.topic, 0) + max(0, ends[partition] - offset.offset)
    return lag


def status(settings: Settings) -> dict:
    """The job, its state, its last completed checkpoint and its lag."""
    job = running_job(settings)
    report: dict = {"job": JOB_NAME, "job_id": None, "state": "NOT RUNNING"}
    if job is not None:
        report.update(job_id=job.job_id, state=job.state)
        checkpoints = rest_get(settings, f"/jobs/{job.job_id}/checkpoints")
        latest = (checkpoints.get("latest") or {}).get("completed")
        counts = checkpoints.get("counts", {})
        report["checkpoints"] = {"completed": counts.get("completed"), "failed": counts.get("failed")}
        if latest:
            report["last_checkpoint"] = {
                "id": latest["id"],
                "time": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(latest["latest_ack_timestamp"] / 1000)
                ),
                "path": latest.get("external_path"),
            }
    restore = latest_restore_point(settings)
    report["restore_point"] = str(restore) if restore else None
    report["lag"] = consumer_lag(settings)
    return report
