"""Benchmarks never write into the stack's own topics (issue 22): what they share for that.

The stack's consumers (the KafkaSources of event-store and order-alerts) and its Flink job read
the topics of `infra/kafka` (`ripple.shop.*`). A benchmark that sent its events through the
stack's gateway left hundreds of thousands of records there, which the consumers then ground
through for half an hour, on the same two cores as the next measurement. So a benchmark

- starts a **private gateway** (`PrivateGateway`): the same function, started the way the stack
  starts it (the first container of `knative/gateway/service.yaml`: its command, its env with the
  in-cluster addresses rewritten by the stack runner, run in `functions/gateway/`), on a free port,
  with `KAFKA_TOPIC_PREFIX=bench.<run>.`: every event it accepts goes to `bench.<run>.ripple.shop.*`,
  topics it creates first (the stack's partition counts) and deletes afterwards;
- creates and deletes any other topic it needs with `PrivateTopics` (retried while the shared
  broker restarts under someone else's failure drill);
- ends with `StackTopics.check()`: the end offsets of the stack's topics before and after the run
  must be equal. The stack is shared, so a difference can come from someone else's traffic; the
  check names the topics and counts, and says so.

A private gateway is served directly, without the local activator (Knative's queue-proxy stand-in)
in front of it: the peers it is compared with (Knative's Kafka receiver, the Strimzi bridge) are
measured without their ingress in front too. An instance of the gateway is one process (one core
at most); Knative adds instances, not workers, so a private gateway runs as many instances as the
KPA would keep for the benchmark's concurrency (`kpa_instances`: knative/gateway/service.yaml's
target and utilisation; 2 for wrk -c32), all on one port: each binds it with SO_REUSEPORT
(functions/ripple_server) and the kernel spreads the connections over them, as a Service spreads
them over pods, without a proxy hop.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ripple_stack.component import http_status
from ripple_stack.settings import REPO_ROOT, Settings

T = TypeVar("T")

# Where a private gateway's topics start: never "ripple.", so no consumer of the stack matches them.
PRIVATE_PREFIX = "bench."
# How long a private gateway may take to answer /readyz 200 (imports, producer, the realm's keys).
READY_TIMEOUT_S = 60.0


class IsolationError(RuntimeError):
    """A private topic or gateway could not be set up; the message says what to check."""


def run_id() -> str:
    return time.strftime("%Y%m%dt%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:4]


def stack_topic_names() -> list[str]:
    """The topics the stack's consumers and Flink read: the KafkaTopics of infra/kafka."""
    from ripple_stack.components.kafka import declared_topics

    return [topic["name"] for topic in declared_topics()]


def stack_partitions() -> dict[str, int]:
    from ripple_stack.components.kafka import declared_topics

    return {topic["name"]: topic["partitions"] for topic in declared_topics()}


class PrivateTopics:
    """Topics of one benchmark run: created on demand, all deleted by `delete_all` (also on failure)."""

    def __init__(self, bootstrap: str, client_id: str = "ripple-bench") -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.names: list[str] = []
        self._admin: Any = None

    def call(self, action: Callable[[Any], T], what: str, patience: float = 120.0) -> T:
        """action(admin), retried with a fresh client while the shared broker restarts."""
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + patience
        while True:
            try:
                if self._admin is None:
                    self._admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id)
                return action(self._admin)
            except KafkaError as error:
                with contextlib.suppress(Exception):
                    self._admin.close()
                self._admin = None
                if time.monotonic() > deadline:
                    raise IsolationError(
                        f"Kafka at {self.bootstrap} did not answer ({what}): {error}; is it up (make status)?"
                    ) from None
                time.sleep(3)

    def create(self, name: str, partitions: int = 3) -> str:
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        def create(admin: Any) -> None:
            # a retry may find the topic the broker created from the first attempt
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, partitions, 1)])

        self.call(create, f"create topic {name}")
        self.names.append(name)
        return name

    def delete_all(self) -> str | None:
        """Delete every topic created here; a sentence naming them if that failed, else None."""
        failure = None
        if self.names:
            try:
                self.call(lambda admin: admin.delete_topics(self.names), "delete topics", 60)
                self.names = []
            except IsolationError as error:
                failure = f"could not delete topics {', '.join(self.names)}: {error}"
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
        return failure


def end_offsets(bootstrap: str, topics: Sequence[str]) -> dict[str, int]:
    """Records ever written to each topic (the sum of its partitions' end offsets); a topic that
    does not exist counts 0."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topics
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        offsets = consumer.end_offsets(partitions) if partitions else {}
    finally:
        consumer.close()
    totals = dict.fromkeys(topics, 0)
    for tp, offset in offsets.items():
        totals[tp.topic] += offset
    return totals


def grown(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Topics whose end offsets moved between two snapshots, with how many records they gained."""
    return {
        topic: after.get(topic, 0) - before.get(topic, 0)
        for topic in sorted(set(before) | set(after))
        if after.get(topic, 0) != before.get(topic, 0)
    }


@dataclass
class StackTopics:
    """End offsets of the stack's topics at the start of a benchmark, compared at its end."""

    bootstrap: str
    topics: list[str] = field(default_factory=stack_topic_names)
    before: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.before = end_offsets(self.bootstrap, self.topics)

    def check(self) -> tuple[bool, str]:
        """(unchanged, one sentence for the report)."""
        changes = grown(self.before, end_offsets(self.bootstrap, self.topics))
        if not changes:
            return True, (
                f"stack topics untouched: end offsets of {', '.join(self.topics)} equal before and after"
            )
        listed = ", ".join(f"{topic} +{count}" for topic, count in changes.items())
        return False, (
            f"stack topics GREW during the run: {listed}. This benchmark writes only to private "
            "topics: another user of the shared stack wrote them (check make status and who holds "
            "/tmp/ripple-stack.lock), or a benchmark bypassed its private gateway: find it."
        )


def finish(stack_topics: StackTopics, out: Callable[[str], None] = print) -> bool:
    """The step every benchmark ends with: print the stack-topics check, return whether it held."""
    ok, sentence = stack_topics.check()
    out(("" if ok else "WARNING: ") + sentence)
    return ok


def kpa_instances(concurrency: float, target: float, utilization_pct: float, max_scale: int) -> int:
    """The pods Knative's KPA keeps for a steady `concurrency` (its desired-pods rule: observed
    concurrency over target x utilisation, rounded up), at least 1 and at most max_scale (0: no cap)."""
    wanted = max(1, math.ceil(concurrency / (target * utilization_pct / 100)))
    return min(wanted, max_scale) if max_scale > 0 else wanted


def gateway_instances(concurrency: float, source: Path = REPO_ROOT) -> int:
    """kpa_instances for the gateway of `source`, from its knative/gateway/service.yaml (Knative's
    defaults where an annotation is absent: target 100, utilisation 70 %, no max-scale); 1 for a
    build that is not served by ripple_server (gunicorn: its workers are inside one instance, and it
    cannot share the port)."""
    import yaml

    manifest = yaml.safe_load((source / "knative" / "gateway" / "service.yaml").read_text())
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    if "ripple_server" not in " ".join([*container.get("command", []), *container.get("args", [])]):
        return 1
    annotations = manifest["spec"]["template"].get("metadata", {}).get("annotations", {})
    prefix = "autoscaling.knative.dev/"
    return kpa_instances(
        concurrency,
        float(annotations.get(prefix + "target", 100)),
        float(annotations.get(prefix + "target-utilization-percentage", 70)),
        int(annotations.get(prefix + "max-scale", 0)),
    )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateGateway:
    """The gateway function on a private port, producing only to its own prefixed topics.

    `source` is the repository whose functions/gateway is run (default: this one), so that a
    benchmark can compare another build (e.g. a worktree of main) under the same conditions; it is
    started as that build's own knative/gateway/service.yaml says (its server model included).
    `env` overrides the manifest's env, `command` its command. `instances` processes serve the
    port side by side (a build whose server cannot share its port runs 1).
    """

    def __init__(
        self,
        settings: Settings,
        secrets: Mapping[str, str],
        *,
        name: str = "gateway",
        source: Path = REPO_ROOT,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        run: str | None = None,
        command: Sequence[str] | None = None,
        instances: int = 1,
    ) -> None:
        self.settings = settings
        self.secrets = secrets
        self.name = name
        self.source = Path(source)
        self.overrides = dict(env or {})
        # Another server layout to compare (e.g. uvicorn alone); default: the manifest's command.
        self.command = list(command) if command else None
        self.port = port or _free_port()
        self.run = run or run_id()
        self.prefix = f"{PRIVATE_PREFIX}{self.run}.{name}."
        self.url = f"http://127.0.0.1:{self.port}"
        self.topics = PrivateTopics(settings.kafka_bootstrap, client_id=f"ripple-bench-{name}")
        self.instances = instances
        self.processes: list[subprocess.Popen] = []
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"ripple-private-{name}-"))

    @property
    def process(self) -> subprocess.Popen | None:
        """The first instance's process (its process group holds every instance)."""
        return self.processes[0] if self.processes else None

    def command_and_env(self) -> tuple[list[str], dict[str, str]]:
        """What the stack's activator would run for an instance of the build's gateway, on this port."""
        from ripple_stack.components.functions import KnativeFunction

        manifest = self.source / "knative" / "gateway" / "service.yaml"
        if not manifest.is_file():
            raise IsolationError(f"{manifest} is missing: nothing to start")
        function = KnativeFunction(manifest, 0)
        container = function.container()
        command = self.command or [*container.get("command", []), *container.get("args", [])]
        venv_bin = Path(sys.executable).parent
        env = {
            **function.environment(self.settings, self.secrets),
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            **self.overrides,
            "PORT": str(self.port),
            "KAFKA_TOPIC_PREFIX": self.prefix,
        }
        return [str(part) for part in command], env

    def topic_names(self) -> list[str]:
        return [self.prefix + name for name in stack_topic_names()]

    def records(self) -> int:
        """Records written to the private topics so far."""
        return sum(end_offsets(self.settings.kafka_bootstrap, self.topic_names()).values())

    def pids(self) -> list[int]:
        """The process group's processes (every instance, and a server's workers if it has any)."""
        if self.process is None:
            return []
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[2]) == self.process.pid:  # process group id
                found.append(int(stat.parent.name))
        return sorted(found)

    def start(self) -> PrivateGateway:
        """Create the topics, start the process, wait until it is ready; cleaned up if that fails."""
        cwd = self.source / "functions" / "gateway"
        config = cwd / "ripple_gateway" / "config.py"
        if "KAFKA_TOPIC_PREFIX" not in config.read_text():
            raise IsolationError(
                f"the gateway of {self.source} predates KAFKA_TOPIC_PREFIX: its events would go to the "
                "stack's topics. Merge the commit that added it into that build first."
            )
        try:
            self._start(cwd)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, cwd: Path) -> None:
        for topic, count in stack_partitions().items():
            self.topics.create(self.prefix + topic, count)
        command, env = self.command_and_env()
        # The shared ripple_* packages of that build, ahead of this venv's editable install.
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(self.source / "functions"), env.get("PYTHONPATH")])
        )
        # The first instance leads a new process group; the others join it, so that one signal
        # stops them all and pids() finds them all.
        for index in range(max(1, self.instances)):
            with (self.log_dir / f"gateway-{index}.log").open("wb") as log:
                group = {"process_group": 0 if index == 0 else self.processes[0].pid}
                self.processes.append(
                    subprocess.Popen(
                        command,
                        cwd=cwd,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        **group,
                    )
                )
            self._wait_ready(command, cwd, index)

    def _wait_ready(self, command: list[str], cwd: Path, index: int) -> None:
        """/readyz 200, and the new instance listening (ss: one more process on the port)."""
        from loadtest.measure import processes_on_port

        process = self.processes[index]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while http_status(self.url + "/readyz") != 200 or (
            index > 0 and process.pid not in processes_on_port(self.port)
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                log = self.log_dir / f"gateway-{index}.log"
                tail = log.read_text(errors="replace")[-3000:]
                raise IsolationError(
                    f"the private gateway ({' '.join(command)} in {cwd}, instance {index + 1}) did not "
                    f"become ready within {READY_TIMEOUT_S:.0f} s; is Kafka/Keycloak up (make status)? "
                    f"Its log:\n{tail}"
                )
            time.sleep(0.3)

    def stop(self) -> str | None:
        """Stop the process group, delete the topics; a sentence if a topic could not be deleted."""
        if self.processes:
            group = self.processes[0].pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            for process in self.processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(group, signal.SIGKILL)
                    process.wait()
        failure = self.topics.delete_all()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        return failure

    def __enter__(self) -> PrivateGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        failure = self.stop()
        if failure:
            print(f"WARNING: {failure}", file=sys.stderr)


@contextlib.contextmanager
def private_gateways(
    settings: Settings,
    secrets: Mapping[str, str],
    builds: Mapping[str, Path],
    concurrency: float = 1,
    instances: int | None = None,
    **kwargs: Any,
) -> Iterator[dict[str, PrivateGateway]]:
    """One private gateway per build (name -> repository), all stopped and cleaned up at the end;
    each runs `instances`, or as many as the KPA keeps for `concurrency` (gateway_instances)."""
    started: dict[str, PrivateGateway] = {}
    run = run_id()
    try:
        for name, source in builds.items():
            count = gateway_instances(concurrency, source)
            if instances and count > 1:
                count = instances
            started[name] = PrivateGateway(
                settings, secrets, name=name, source=source, run=run, instances=count, **kwargs
            ).start()
        yield started
    finally:
        for gateway in started.values():
            failure = gateway.stop()
            if failure:
                print(f"WARNING: {failure}", file=sys.stderr)


# The consumer groups that read the stack's topics: the KafkaSources of knative/ and the Flink job.
STACK_GROUPS = ("ripple-event-store", "ripple-order-alerts", "ripple-aggregates")


def consumer_lag(bootstrap: str, groups: Sequence[str] = STACK_GROUPS) -> dict[str, int]:
    """Records each group has not committed yet, over the stack's topics (a group that has
    committed nothing counts 0). Flink commits on checkpoints only: its figure trails by one."""
    from kafka import KafkaAdminClient, KafkaConsumer

    topics = set(stack_topic_names())
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, client_id="ripple-lag")
    try:
        listed = admin.list_group_offsets(list(groups))  # {group: {TopicPartition: offset}}
        committed = {group: listed.get(group) or {} for group in groups}
    finally:
        admin.close()
    partitions = {tp for offsets in committed.values() for tp in offsets if tp.topic in topics}
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        ends = consumer.end_offsets(list(partitions)) if partitions else {}
    finally:
        consumer.close()
    return {
        group: sum(
            max(0, ends[tp] - meta.offset) for tp, meta in offsets.items() if tp in ends and meta.offset >= 0
        )
        for group, offsets in committed.items()
    }


def wait_for_zero_lag(
    bootstrap: str, within_s: float, out: Callable[[str], None] = print, poll_s: float = 5.0
) -> float | None:
    """Seconds until every stack group's lag was 0 (None if not within within_s); prints each reading."""
    started = time.monotonic()
    while True:
        lag = consumer_lag(bootstrap)
        elapsed = time.monotonic() - started
        out(f"  +{elapsed:4.0f} s  lag " + ", ".join(f"{group} {count}" for group, count in lag.items()))
        if not any(lag.values()):
            return elapsed
        if elapsed > within_s:
            return None
        time.sleep(poll_s)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m loadtest.isolation lag [--within 60]`: wait for the stack's consumers to catch up."""
    import argparse

    from ripple_stack.settings import load_settings

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["lag"])
    parser.add_argument("--within", type=float, default=60.0, help="seconds the lag may take to reach 0")
    args = parser.parse_args(argv)
    bootstrap = load_settings().kafka_bootstrap
    print(f"stack consumer lag ({', '.join(STACK_GROUPS)}), waiting up to {args.within:.0f} s for 0:")
    took = wait_for_zero_lag(bootstrap, args.within)
    if took is None:
        print(f"lag NOT back to 0 within {args.within:.0f} s (Flink's figure trails by one checkpoint)")
        return 1
    print(f"lag back to 0 after {took:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
