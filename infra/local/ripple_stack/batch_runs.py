"""Push the result of a batch run (load run, failure scenario, benchmark, replay, savepoint) to the
Pushgateway, so that Prometheus keeps the last run of each job and Grafana's "Batch runs" row
shows it.

At the end of a run, `push_run("load", duration_s=..., passed=..., counts={...})`; or around it,
`with pushed_run("bench-edge") as counts: ...` (timed; failed when it raises or exits non-zero;
fill the `counts` dict as the run goes). A run's job label names what ran; pushing again replaces
that job's previous result. A Pushgateway
that cannot be reached is a warning on stderr, never a failed run: the run's own report stays the
record.

| variable | default | meaning |
| RIPPLE_PUSHGATEWAY_URL | the local stack's Pushgateway (RIPPLE_PUSHGATEWAY_PORT) | where to push |
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from .settings import load_settings

TIMEOUT_SECONDS = 5.0


def pushgateway_url() -> str:
    return os.environ.get("RIPPLE_PUSHGATEWAY_URL") or load_settings().pushgateway_url


def push_run(
    job: str,
    *,
    duration_s: float,
    passed: bool,
    counts: Mapping[str, float] | None = None,
) -> bool:
    """Push one run's result under job=<job>; True when the Pushgateway took it."""
    registry = CollectorRegistry()
    Gauge("ripple_batch_last_run_timestamp_seconds", "When the run ended", registry=registry).set(time.time())
    Gauge("ripple_batch_duration_seconds", "How long the run took", registry=registry).set(duration_s)
    Gauge("ripple_batch_success", "1 when the run passed, 0 when it failed", registry=registry).set(
        1 if passed else 0
    )
    if counts:
        count = Gauge("ripple_batch_count", "Counts of the run (events, ...)", ["what"], registry=registry)
        for what, value in counts.items():
            count.labels(what=re.sub(r"[^A-Za-z0-9_]", "_", what)).set(value)
    address = pushgateway_url()
    try:
        push_to_gateway(address, job=job, registry=registry, timeout=TIMEOUT_SECONDS)
    except (OSError, ValueError) as error:  # refused, timed out, bad address: the run still counts
        print(f"warning: could not push the {job} run's result to {address}: {error}", file=sys.stderr)
        return False
    return True


@contextmanager
def pushed_run(job: str) -> Iterator[dict[str, float]]:
    """Time the with-block and push its result; it passed unless it raised or exited non-zero."""
    started = time.monotonic()
    counts: dict[str, float] = {}
    passed = False
    try:
        yield counts
        passed = True
    except SystemExit as exit:  # sys.exit(main()) inside the block: its code is the verdict
        passed = exit.code in (0, None)
        raise
    finally:
        push_run(job, duration_s=time.monotonic() - started, passed=passed, counts=counts)
