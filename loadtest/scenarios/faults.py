"""The failure switches: each breaks one part of the stack and, whatever happens, restores it.

`restore()` is safe to call twice and is called from a `finally`, with Ctrl-C ignored while it
runs, so an interrupted scenario still leaves the shared stack as it found it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from ripple_stack.settings import Settings
from ripple_stack.stack import Stack

log = logging.getLogger(__name__)


class Fault:
    description = ""
    interference: str | None = None  # someone else undid the failure early (shared stack)

    def inject(self) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        raise NotImplementedError


class ComponentDown(Fault):
    """Stop one supervised component of the local stack; start it again and wait until ready.

    For flink, "ready" includes the aggregation job being resubmitted from its newest retained
    checkpoint (the component's after_ready step), as `make start-flink` does.
    """

    def __init__(self, settings: Settings, component: str) -> None:
        self.component = component
        self.description = f"{component} stopped"
        self._stack = Stack(settings, lambda message: log.info("stack: %s", message))
        self._down = False

    def inject(self) -> None:
        self._down = True
        self._stack.stop(self.component)

    def restore(self) -> None:
        if self._down:
            states = {
                info["statename"]
                for info in self._stack.supervisor.processes().values()
                if info["group"] == self.component
            }
            if states == {"RUNNING"}:
                self.interference = (
                    f"{self.component} was already running again when the scenario restored it: another "
                    "developer started it during the failure window, which was shorter than planned"
                )
            self._stack.start(self.component)
            self._down = False


class PostgresSlow(Fault):
    """PostgreSQL slow but up: a session that keeps taking write locks on the tables we write.

    `LOCK TABLE ... IN EXCLUSIVE MODE` blocks INSERT/UPDATE/DELETE on `events` and the Flink
    aggregate tables while it is held, but not SELECTs: the same thing a long migration, a
    bulk backfill or a forgotten open transaction does to a production database. The lock is
    held `hold_s`, released `gap_s`, and taken again, so writes still progress in bursts, each
    waiting up to `hold_s` — a database that is slow, not down.

    Reversible by construction: the locks live in one transaction of one connection. restore()
    rolls it back; if this process dies instead, PostgreSQL ends the session itself after
    idle_in_transaction_session_timeout, and the locks go with it.
    """

    TABLES = ("events", "agg_events_per_minute", "agg_product_sales", "agg_tenant_totals")

    def __init__(self, dsn: str, hold_s: float = 4.0, gap_s: float = 1.0) -> None:
        self.dsn = dsn
        self.hold_s = hold_s
        self.gap_s = gap_s
        self.description = f"PostgreSQL write-locked {hold_s:g} s of every {hold_s + gap_s:g} s"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.locked_s = 0.0

    def inject(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="postgres-slow", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        connection = psycopg2.connect(self.dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET idle_in_transaction_session_timeout = '60s'")
                # Waiting behind a long writer must not make the switch itself the outage.
                cursor.execute("SET lock_timeout = '5s'")
            connection.commit()
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(f"LOCK TABLE {', '.join(self.TABLES)} IN EXCLUSIVE MODE")
                    self._stop.wait(self.hold_s)
                finally:
                    connection.rollback()
                    self.locked_s += time.monotonic() - started
                self._stop.wait(self.gap_s)
        except psycopg2.Error as error:
            log.warning("postgres-slow switch: %s", error)
        finally:
            connection.close()

    def restore(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


@contextmanager
def uninterruptible() -> Iterator[None]:
    """Ctrl-C is ignored inside (the restore must finish); it works again afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
