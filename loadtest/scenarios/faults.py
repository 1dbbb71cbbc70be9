"""The failure switches: each breaks one part of the stack and, whatever happens, restores it.

`restore()` is safe to call twice and is called from a `finally`, with Ctrl-C ignored while it
runs, so an interrupted scenario still leaves the shared stack as it found it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2

from ripple_stack.component import PrerequisiteError
from ripple_stack.secrets import load_secrets
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


class Kill(Fault):
    """SIGKILL one process, no goodbye: in-flight requests and unacknowledged work are cut.

    `program`: a supervised program (a function's activator, a Trigger's dispatcher); supervisord
    starts it again and inject() returns once its component is ready. `instance_of`: one ready
    instance of a function (its own process group); its activator notices the exit and scales
    again on demand. inject() waits up to `wait_s` for an instance to exist; `detail` says what
    was killed (or that there was nothing to kill).
    """

    def __init__(
        self,
        settings: Settings,
        program: str | None = None,
        instance_of: str | None = None,
        wait_s: float = 20.0,
    ) -> None:
        self.settings = settings
        self.program = program
        self.instance_of = instance_of
        self.wait_s = wait_s
        self.description = f"{instance_of} instance killed" if instance_of else f"{program} killed"
        self.detail = ""
        self.ready_after_s: float | None = None
        self._stack = Stack(settings, lambda message: log.info("stack: %s", message))

    def inject(self) -> None:
        if self.instance_of is not None:
            self._kill_instance(self.instance_of)
        elif self.program is not None:
            self._kill_program(self.program)

    def _kill_program(self, program: str) -> None:
        info = self._stack.supervisor.processes().get(program)
        if not info or not info["pid"]:
            self.detail = f"{program} was not running: nothing killed"
            return
        started, killed = time.monotonic(), info["pid"]
        os.killpg(killed, signal.SIGKILL)
        # supervisord notices the exit and starts it again (autorestart): wait for the new process
        # to leave STARTING (until then its state may still be the old one's, or EXITED).
        deadline = started + 120
        while time.monotonic() < deadline:
            info = self._stack.supervisor.processes().get(program) or {}
            if info.get("statename") == "RUNNING" and info.get("pid") not in (0, None, killed):
                break
            time.sleep(0.2)
        else:
            raise PrerequisiteError(
                f"{program} did not come back within 120 s of its SIGKILL: see its log under .ripple/logs"
            )
        component = self._stack.component(info.get("group") or program)
        self._stack.wait_ready([component], load_secrets(self.settings))
        self.ready_after_s = time.monotonic() - started
        self.detail = (
            f"{program} (pid {killed}) SIGKILLed; supervisord started pid {info.get('pid')}, ready "
            f"{self.ready_after_s:.1f} s after the kill"
        )

    def _kill_instance(self, function: str) -> None:
        component = self._stack.component(function)
        deadline = time.monotonic() + self.wait_s
        while True:
            status = component.serving_status(self.settings) or {}  # type: ignore[attr-defined]
            ready = [i for i in status.get("instances", []) if i["state"] == "ready" and i["pid"]]
            if ready or time.monotonic() >= deadline:
                break
            time.sleep(0.5)
        if not ready:
            self.detail = (
                f"no ready {function} instance within {self.wait_s:g} s: nothing killed "
                f"(instances: {json.dumps(status.get('instances'))})"
            )
            return
        victim = max(ready, key=lambda i: i["active"])  # the busiest
        os.killpg(victim["pid"], signal.SIGKILL)
        self.detail = f"{victim['name']} (pid {victim['pid']}, {victim['active']} requests active) SIGKILLed"

    def restore(self) -> None:
        """Nothing to undo: the process is replaced by its supervisor (or activator)."""


class Restart(Fault):
    """Stop a component and start it again at once; inject() returns when it is ready."""

    def __init__(self, settings: Settings, component: str) -> None:
        self.component = component
        self.description = f"{component} restarted"
        self.detail = ""
        self._down = ComponentDown(settings, component)

    def inject(self) -> None:
        started = time.monotonic()
        self._down.inject()
        stopped = time.monotonic() - started
        self._down.restore()
        self.detail = (
            f"{self.component} stopped in {stopped:.1f} s, ready again {time.monotonic() - started:.1f} s "
            "after the stop began"
        )

    def restore(self) -> None:
        self._down.restore()


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
