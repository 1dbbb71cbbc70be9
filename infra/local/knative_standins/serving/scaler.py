"""The autoscaler loop of one function: measure, decide, and start or stop instances.

Every second the activator's load (time-weighted concurrency, requests) goes into per-second
buckets, as the queue-proxy's reports do in Knative; every tick-interval `decide()` turns the
stable and panic averages into a desired count, and `reconcile` makes the instances match it:
new instances on free ports, surplus ones drained (no new requests, in-flight ones finished)
and then stopped. A request that finds nothing ready pokes the loop so that the start from zero
does not wait for the next tick (Knative's activator sends the autoscaler a stat at once too).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiohttp

from ..pod_cpu import PodCgroups, PodCpu
from .decider import DeciderState, decide
from .instances import DRAINING, FAILED, READY, STARTING, STOPPED, Instance
from .manifest import FunctionSpec
from .metrics import ServingMetrics
from .throttler import Throttler
from .windows import TimedBuckets

# A command that keeps failing is retried with a growing pause, as a pod's CrashLoopBackOff.
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 30.0


def log(message: str) -> None:
    """One line in the activator's log (its supervisord log): every scaling step, timestamped."""
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}", flush=True)


class Load:
    """Concurrency integrated over time and requests counted, between two `take`s (hot path)."""

    def __init__(self, now: float) -> None:
        self.concurrency = 0
        self.area = 0.0
        self.requests = 0
        self.last = now
        self.since = now

    def enter(self, now: float) -> None:
        self.area += self.concurrency * (now - self.last)
        self.last = now
        self.concurrency += 1
        self.requests += 1

    def leave(self, now: float) -> None:
        self.area += self.concurrency * (now - self.last)
        self.last = now
        self.concurrency -= 1

    def take(self, now: float) -> tuple[float, float]:
        """(average concurrency, requests per second) since the previous take."""
        self.area += self.concurrency * (now - self.last)
        elapsed = max(now - self.since, 1e-6)
        result = (self.area / elapsed, self.requests / elapsed)
        self.area, self.requests, self.last, self.since = 0.0, 0, now, now
        return result


class Scaler:
    def __init__(
        self,
        spec: FunctionSpec,
        metrics: ServingMetrics,
        throttler: Throttler,
        pod_start_s: float = 0.0,
        pods: PodCgroups | None = None,
    ) -> None:
        self.spec = spec
        # Each instance's own cgroup, weighted by the manifest's CPU request (None: not applied).
        self.pods = pods
        self.pod_cpu = PodCpu(spec.cpu_request_milli, spec.cpu_limit_milli)
        self.pod_starts = 0
        # RIPPLE_SERVING_POD_START_MS (activator.py): what a pod spends before its container's exec.
        self.pod_start_s = pod_start_s
        self.revision = spec.revision
        self.metrics = metrics
        self.throttler = throttler
        now = time.monotonic()
        self.load = Load(now)
        keep = self.revision.stable_window_s + 2
        self.concurrency = TimedBuckets(keep)
        self.rps = TimedBuckets(keep)
        self.state = DeciderState()
        self.desired = 0
        self.instances: dict[int, Instance] = {}  # slot -> instance (starting, ready, draining)
        self.tasks: set[asyncio.Task] = set()
        self.failures = 0
        self.retry_at = 0.0
        self.last_failure = ""
        self.zero_trigger_at: float | None = None  # arrival of the request that found nothing
        self.session: aiohttp.ClientSession | None = None
        self.stopping = False

    # --- counts ---
    def count(self, *states: str) -> int:
        return sum(1 for instance in self.instances.values() if instance.state in states)

    @property
    def ready(self) -> int:
        return self.count(READY)

    # --- the loop ---
    async def run(self) -> None:
        next_tick = time.monotonic()
        while not self.stopping:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            concurrency, rps = self.load.take(now)
            self.concurrency.record(now, concurrency)
            self.rps.record(now, rps)
            if now >= next_tick:
                next_tick = now + self.revision.tick_interval_s
                self.tick(now)

    def poke(self, arrived: float) -> None:
        """A request found no instance ready or starting: count it and decide now."""
        if self.zero_trigger_at is None:
            self.zero_trigger_at = arrived
        now = time.monotonic()
        # The activator's stat for a held request: one request in flight this second.
        self.concurrency.record(now, 1.0)
        self.rps.record(now, 1.0)
        self.tick(now)

    def tick(self, now: float) -> None:
        buckets = self.rps if self.revision.metric == "rps" else self.concurrency
        stable = buckets.average(now, self.revision.stable_window_s)
        panic = buckets.average(now, self.revision.panic_window_s)
        decision = decide(self.revision, stable, panic, self.ready, now, self.state)
        self.state = decision.state
        self.desired = decision.desired
        m = self.metrics
        m.desired_pods, m.stable, m.panic = decision.desired, stable, panic
        m.panic_mode = int(decision.panic)
        self.reconcile()

    def reconcile(self) -> None:
        live = [i for i in self.instances.values() if i.state in (STARTING, READY)]
        if len(live) < self.desired and not self.stopping:
            if time.monotonic() >= self.retry_at:
                free = [s for s in range(len(self.spec.instance_ports)) if s not in self.instances]
                for slot in free[: self.desired - len(live)]:
                    # Claimed here, not in the task: every held request pokes a reconcile before
                    # the task first runs, and each would otherwise start the same slot again.
                    instance = Instance(self.spec.name, slot, self.spec.host, self.spec.instance_ports[slot])
                    self.instances[slot] = instance
                    self._spawn(self._start(instance))
        elif len(live) > self.desired:
            # Starting ones first (they serve nobody yet), then the least busy ready ones.
            victims = sorted(live, key=lambda i: (i.state == READY, i.active))[: len(live) - self.desired]
            for instance in victims:
                self.throttler.remove(instance)
                instance.state = DRAINING  # at once, so that the next reconcile does not pick it again
                self._spawn(self._stop(instance))
        self.publish()

    def publish(self) -> None:
        """The instance counts and queue into the metrics (each reconcile, and each scrape)."""
        m = self.metrics
        m.actual_pods = self.ready
        m.not_ready_pods = self.count(STARTING)
        m.terminating_pods = self.count(DRAINING)
        m.queued = self.throttler.queued

    def _spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- one instance's life ---
    async def _start(self, instance: Instance) -> None:
        cold = self.ready == 0
        # Why it starts: a request waits at zero, the revision's initial scale, or load.
        cause = "initial" if not self.state.initial_reached else "scale-out"
        log(f"starting {instance.name} on port {instance.port} (desired {self.desired}, ready {self.ready})")
        # Instances write to the function's own log, next to the activator's lines (what the
        # function's log always held; tests and people read it there).
        log_path = Path(self.spec.log_dir) / f"{self.spec.name}.log"
        if self.pod_start_s > 0:
            # The pod-start model (opt-in, for fidelity runs): a Knative pod is scheduled, gets its
            # sandbox and checks its image before the container's process starts; a held request
            # waits for that too. Scaled down meanwhile: the check after start() stops it.
            await asyncio.sleep(self.pod_start_s)
        # A cgroup per start, as each pod has its own: the one before may still be emptying.
        self.pod_starts += 1
        pod = f"{instance.name}-{self.pod_starts}"
        cgroup = self.pods.prepare(pod, self.pod_cpu) if self.pods else None
        try:
            await instance.start(self.spec.command, self.spec.cwd, self.spec.env, log_path, cgroup)
        except OSError as error:
            self._failed(instance, f"{instance.name} could not be started: {error}")
            return
        if instance.state != STARTING:  # scaled down before its process existed: stop that too
            await instance.stop()
            return
        assert self.session is not None and instance.process is not None
        watcher = asyncio.get_running_loop().create_task(instance.process.wait())
        if self.pods:
            watcher.add_done_callback(lambda _: self.pods.remove(pod))  # type: ignore[union-attr]
        if await instance.wait_ready(self.session, self.spec.readiness_path):
            if instance.state != STARTING:  # scaled down while it started
                await watcher
                return
            instance.state = READY
            self.failures = 0
            self.last_failure = ""
            wait = None
            if self.zero_trigger_at is not None and cold:
                # The held requests get their slots right here, in throttler.add.
                wait = time.monotonic() - self.zero_trigger_at
                self.zero_trigger_at = None
            reason = "request" if wait is not None else cause
            self.throttler.add(instance)
            log(f"{instance.name} ready after {instance.ready_after_s or 0.0:.2f} s ({reason})")
            self.metrics.cold_start(instance.name, instance.started_at, instance.ready_after_s or 0.0,
                                    wait, reason)  # fmt: skip
            self.publish()
        code = await watcher
        if instance.state in (STARTING, READY):
            when = "before it was ready" if instance.ready_after_s is None else "while serving"
            self._failed(instance, f"{instance.name} exited with code {code} {when}; see {log_path}")

    def _failed(self, instance: Instance, reason: str) -> None:
        log(reason)
        instance.state = FAILED
        self.throttler.remove(instance)
        self.instances.pop(instance.slot, None)
        self.metrics.instance_failures += 1
        self.failures += 1
        self.last_failure = reason
        pause = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (self.failures - 1))
        self.retry_at = time.monotonic() + pause
        self.publish()
        if not self.stopping:
            asyncio.get_running_loop().call_later(pause, self.reconcile)

    async def _stop(self, instance: Instance) -> None:
        # No new requests first, then let the ones in flight finish, then SIGTERM.
        self.throttler.remove(instance)
        self.publish()
        log(f"stopping {instance.name} (desired {self.desired}, {instance.active} in flight)")
        await instance.stop()
        log(f"{instance.name} stopped")
        instance.state = STOPPED
        self.instances.pop(instance.slot, None)
        self.publish()

    async def shutdown(self) -> None:
        self.stopping = True
        self.desired = 0
        for instance in list(self.instances.values()):
            if instance.state != DRAINING:
                self._spawn(self._stop(instance))
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=60)
        if self.session is not None:
            with contextlib.suppress(Exception):
                await self.session.close()

    def status(self) -> dict:
        return {
            "function": self.spec.name,
            "instances_ready": self.ready,
            "instances_desired": self.desired,
            "instances_starting": self.count(STARTING),
            "instances_terminating": self.count(DRAINING),
            "scaled_to_zero": not self.instances and self.desired == 0,
            "initial_scale_reached": self.state.initial_reached,
            "panic": bool(self.metrics.panic_mode),
            "queued": self.throttler.queued,
            "in_flight": self.load.concurrency,
            "last_failure": self.last_failure,
            "instances": [
                {"name": i.name, "port": i.port, "pid": i.pid, "state": i.state, "active": i.active}
                for i in sorted(self.instances.values(), key=lambda i: i.slot)
            ],
        }
